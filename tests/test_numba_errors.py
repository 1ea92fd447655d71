"""Every error of the compiled engine (dualad.numba) says what went wrong, where, and what to do.

dualad's own refusals are ``da.DualError`` with the advice and "(at file, line N)" of the user's
line; a Numba typing failure that is not dualad's is ``dualad.numba.NotCompilable`` carrying
Numba's message and a final "dualad: compiling ... stopped at ..." line; engine="auto" turns the
latter into a warning and the NumPy engine.  A failing compilation costs Numba time too, so each
case here is one small function.
"""

from __future__ import annotations

import inspect
import math
import re
import warnings

import numpy as np
import pytest

numba = pytest.importorskip("numba")

sp = pytest.importorskip("scipy.special")

import dualad as da  # noqa: E402
import dualad.numba as dn  # noqa: E402
from dualad.numba import NotCompilable  # noqa: E402

X = np.array([0.5, 2.0, 3.0])
LOST = "would drop the derivative"


@pytest.fixture(autouse=True)
def _fallback_is_an_error():
    """Only the tests of the fallback may see it: elsewhere the warning fails the test."""
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="dualad could not compile")
        yield


def _line(func, text: str) -> int:
    """The line number of the first line of ``func``'s source containing ``text``."""
    lines, first = inspect.getsourcelines(getattr(func, "py_func", func))
    return first + next(i for i, line in enumerate(lines) if text in line)


def _at(func, text: str) -> str:
    """The "(at file, line N)" dualad appends, as a regex, for the line of ``func`` with text."""
    return rf"\(at [^()]*test_numba_errors\.py, line {_line(func, text)}\)"


# --- dualad's refusals: DualError ----------------------------------------------------------------


@numba.njit
def _ldexp(x):
    return math.ldexp(x[0], 3) * x[1]


@numba.njit
def _spacing(x):
    return np.spacing(x[0]) + x[1]  # a ufunc Numba compiles that has no rule


@pytest.mark.parametrize(
    "func, name, text",
    [(_ldexp, "math.ldexp", "math.ldexp(x[0], 3)"), (_spacing, "np.spacing", "np.spacing(x[0])")],
    ids=["math.ldexp", "np.spacing"],
)
def test_function_without_a_rule(func, name, text):
    with pytest.raises(
        da.DualError, match=f"dualad has no derivative rule for {re.escape(name)}"
    ) as e:
        da.jacobian(func, X, engine="numba")
    message = str(e.value)
    assert f"da.register_rule({name}, " in message
    assert "da.primal(x)" in message
    assert re.search(_at(func, text), message), message


@numba.njit
def _into_float_array(x):
    out = np.empty(len(x))
    for i in range(len(x)):
        out[i] = 2.0 * x[i]
    return out


def test_dual_written_into_a_float_array():
    with pytest.raises(da.DualError, match="writing a Dual into a float array") as e:
        da.jacobian(_into_float_array, X)  # engine="auto": dualad's refusal is no fallback
    message = str(e.value)
    assert "np.empty_like(x)" in message and "dtype=x.dtype" in message
    assert re.search(_at(_into_float_array, "out[i] = 2.0 * x[i]"), message), message


@numba.njit
def _to_float(x):
    return float(x[0]) * x[1]


@numba.njit
def _to_int(x):
    return int(x[0]) * x[1]


@pytest.mark.parametrize(
    "func, what", [(_to_float, "float()"), (_to_int, "int()")], ids=["float", "int"]
)
def test_scalar_conversions_name_primal(func, what):
    with pytest.raises(da.DualError, match=re.escape(what) + ".*" + LOST) as e:
        da.jacobian(func, X, engine="numba")
    assert "da.primal(x)" in str(e.value)
    assert re.search(_at(func, what.replace("()", "(x[0])")), str(e.value)), str(e.value)


def _scaled(n, v):
    return n * v


def test_input_a_rule_cannot_be_differentiated_in(restore_rules):
    """A rule registered with NONDIFF for an input refuses a Dual there, in compiled code too."""
    scaled = da.register_rule(_scaled, da.NONDIFF, lambda n, v, y: n, name="scaled")

    def dual_n(x):
        return scaled(x[0], x[1]) + x[2]

    with pytest.raises(da.DualError, match="scaled is not differentiable in its input 1") as e:
        da.jacobian(numba.njit(dual_n), X, engine="numba")
    assert "pass a plain number" in str(e.value)
    assert re.search(_at(dual_n, "scaled(x[0], x[1])"), str(e.value)), str(e.value)
    # a plain number in that input is fine
    jac = da.jacobian(numba.njit(lambda x: scaled(3.0, x[1])), X, engine="numba")
    np.testing.assert_array_equal(jac, [0.0, 3.0, 0.0])


@numba.njit
def _cubes(x):
    s = 0.0
    for i in range(len(x)):
        s += x[i] ** 3
    return s


def test_engine_numba_at_a_dual_point():
    """A derivative inside a derivative (as in da.hessian) runs on Duals: NumPy engine only."""

    def inner(z):
        return da.gradient(_cubes, z, engine="numba")

    with pytest.raises(da.DualError, match="engine='numba' cannot differentiate at a Dual point"):
        da.jacobian(inner, X)
    # engine="auto" (the default) goes to the NumPy engine there
    np.testing.assert_allclose(da.hessian(_cubes, X), np.diag(6.0 * X), rtol=1e-15)


@pytest.mark.parametrize("call", [da.jacobian, da.gradient, da.value_and_jacobian])
def test_unknown_engine(call):
    with pytest.raises(ValueError, match="engine must be 'auto', 'numba' or 'numpy'; got 'bogus'"):
        call(_cubes, X, engine="bogus")


@pytest.mark.parametrize(
    "call",
    [
        lambda: da.gradient(_cubes, X + 1j, engine="numba"),
        lambda: da.jacobian(_cubes, X + 1j, engine="numba", mode="reverse"),
        lambda: da.jvp(_cubes, X + 1j, X + 0j, engine="numba"),
        lambda: da.vjp(_cubes, X + 1j, engine="numba"),
    ],
    ids=["gradient", "jacobian reverse", "jvp", "vjp"],
)
def test_complex_input_is_refused(call):
    with pytest.raises(
        da.DualError,
        match=r"engine='numba'\) does not support complex numbers; pass engine='numpy'",
    ):
        call()


def test_complex_input_with_engine_auto_runs_the_python_source():
    """engine='auto' gives a numba.njit function's complex input to the NumPy engine."""
    z = X + 1j
    expected = da.gradient(_cubes.py_func, z, engine="numpy")
    np.testing.assert_allclose(da.gradient(_cubes, z), expected, rtol=1e-15)
    np.testing.assert_allclose(expected, 3 * z**2, rtol=1e-15)  # holomorphic: d/dz z**3
    for engine in ("numba", "numpy"):  # the batch transforms are real-only in both engines
        with pytest.raises(da.DualError, match="da.batch_jvp does not support complex numbers"):
            da.batch_jvp(_cubes, np.stack([z]), np.stack([z]), engine=engine)


def test_jvp_direction_of_the_wrong_shape_names_both_shapes():
    with pytest.raises(ValueError, match=r"shape of x \(3,\).*got v of shape \(2,\)"):
        da.jvp(_cubes, X, np.ones(2))
    with pytest.raises(ValueError, match=r"\(3,\).*\(2, 3\)"):
        da.jvp(_cubes, X, np.ones((2, 3)))


@pytest.mark.parametrize("call", [da.batch_jvp, da.batch_jacobian], ids=["jvp", "jacobian"])
def test_batch_needs_a_first_axis(call):
    extra = (np.float64(1.0),) if call is da.batch_jvp else ()
    with pytest.raises(ValueError, match=r"stacked along a first axis; got shape \(\)"):
        call(_cubes, np.float64(2.0), *extra)


@numba.njit
def _sized_by_sign(x):
    out = np.empty(2 if x[0] > 0.0 else 3, x.dtype)  # the output's size follows a value
    for i in range(out.size):
        out[i] = x[i] * x[1]
    return out


@pytest.mark.parametrize("call", [da.batch_jvp, da.batch_jacobian], ids=["jvp", "jacobian"])
def test_batch_refuses_points_whose_outputs_differ_in_size(call):
    # the parallel loop cannot raise (Numba drops the error): this point's row stayed zero
    xs = np.array([[1.0, 2.0, 3.0], [-1.0, 2.0, 3.0]])
    extra = (xs,) if call is da.batch_jvp else ()
    with pytest.raises(ValueError, match="another size than at the first point"):
        call(_sized_by_sign, xs, *extra)
    values = call(_sized_by_sign, xs[::-1][1:], *(e[::-1][1:] for e in extra))  # one point: fine
    assert np.shape(values[1] if call is da.batch_jvp else values) == (
        (1, 2) if call is da.batch_jvp else (1, 2, 3)
    )


# --- da.primal inside compiled code --------------------------------------------------------------


@numba.njit
def _with_primal(x):
    out = np.zeros_like(x)
    out[0] = da.primal(x[0]) * x[1]  # the value of x[0], no derivative through it
    out[1] = da.primal(x[2]) + da.stop_gradient(x[1])
    out[2] = math.gamma(da.primal(x[2])) * x[2]  # a function of the value only
    return out


def test_primal_inside_compiled_code():
    value, jac = da.value_and_jacobian(_with_primal, X, engine="numba")
    a, b, c = X
    np.testing.assert_allclose(value, [a * b, c + b, math.gamma(c) * c], rtol=1e-15)
    np.testing.assert_array_equal(jac, [[0, a, 0], [0, 0, 0], [0, 0, math.gamma(c)]])


# --- Numba's failures: NotCompilable, and the fallback of engine="auto" ------------------------


def _whole_array(x):
    return np.trace(np.outer(x, x)) * 2.0


def test_whole_array_numpy_call_is_not_compilable():
    f = numba.njit(_whole_array)
    with pytest.raises(NotCompilable) as e:
        da.gradient(f, X, engine="numba")
    message = str(e.value)
    assert isinstance(e.value, numba.core.errors.TypingError)
    assert "No implementation of function" in message  # Numba's own text
    dualad_line = message.strip().splitlines()[-1]
    assert dualad_line.startswith("dualad: compiling _whole_array for Dual inputs (K = 3)")
    assert re.search(r"stopped at no implementation of trace\(DualArray", dualad_line), dualad_line
    assert re.search(_at(_whole_array, "np.trace("), dualad_line), dualad_line
    assert "engine='numpy'" in dualad_line


def _untypeable(x):
    return _A_DICT["scale"] * x[0]


_A_DICT = {"scale": 2.0}


def test_untypeable_global_is_not_compilable():
    with pytest.raises(NotCompilable, match="Untyped global name '_A_DICT'") as e:
        da.gradient(_untypeable, X, engine="numba")  # a plain function compiled on request
    dualad_line = str(e.value).strip().splitlines()[-1]
    assert "dualad: compiling _untypeable for Dual inputs" in dualad_line
    assert "stopped at Untyped global name '_A_DICT'" in dualad_line
    assert re.search(_at(_untypeable, "_A_DICT["), dualad_line), dualad_line


def _fall_back(x):
    return np.trace(np.outer(x, x)) + np.sum(np.cos(x) * x)


def test_auto_warns_once_then_uses_the_numpy_engine(monkeypatch):
    f = numba.njit(_fall_back)
    expected = 2.0 * X + np.cos(X) - X * np.sin(X)
    with pytest.warns(
        UserWarning, match=r"dualad could not compile _fall_back .*no implementation"
    ):
        grad = da.gradient(f, X)
    np.testing.assert_allclose(grad, expected, rtol=1e-15)

    def no_second_try(*args, **kwargs):
        raise AssertionError("engine='auto' compiled a function that failed before")

    monkeypatch.setattr(dn, "run", no_second_try)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and it does not warn again
        np.testing.assert_allclose(da.gradient(f, X), expected, rtol=1e-15)
        np.testing.assert_allclose(da.jacobian(f, X), expected, rtol=1e-15)
    # engine="numba" still says why
    monkeypatch.undo()
    with pytest.raises(NotCompilable, match="dualad: compiling _fall_back"):
        da.gradient(f, X, engine="numba")


# --- bugs ---------------------------------------------------------------------------------------


@numba.njit
def _float_twice(x):
    return float(x[0]) * x[1]


def test_refusal_is_the_same_on_a_second_call():
    for _ in range(2):
        with pytest.raises(da.DualError, match="float\\(\\) of a Dual would drop"):
            da.jacobian(_float_twice, X, engine="numba")


@numba.njit
def _heaviside(x):
    return np.heaviside(x[0], 0.5) * x[1]


@numba.njit
def _scipy_erf(x):
    return sp.erf(x[0]) * x[1]


@pytest.mark.parametrize(
    "func, text",
    [(_heaviside, "np.heaviside(x[0], 0.5)"), (_scipy_erf, "sp.erf(x[0])")],
    ids=["np.heaviside", "scipy.special.erf"],
)
def test_failure_inside_a_generated_overload_names_the_users_line(func, text):
    """Numba computes neither np.heaviside nor SciPy's erf, not even on floats: NotCompilable,
    met inside the overload dualad generates (value-only for heaviside, erf's rule for erf)."""
    with pytest.raises(NotCompilable) as e:
        da.jacobian(func, X, engine="numba")
    dualad_line = str(e.value).strip().splitlines()[-1]
    assert re.search(_at(func, text), dualad_line), dualad_line
