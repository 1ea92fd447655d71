"""Unusual and wrong input to every public function and engine: a right answer or a clear error.

Each case is one row of the table in the README's Errors section.  A "right answer" is checked
against the analytic derivative of ``f(x) = sin(x) * x`` (elementwise) or ``sum(sin(x) * x)``;
an error must name what was wrong and what to do.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import dualad as da

numba = pytest.importorskip("numba")
pytest.importorskip("scipy")


def fvec(x):
    return np.sin(x) * x


def fsum(x):
    return np.sum(np.sin(x) * x)


@numba.njit
def nvec(x):  # 1-d loops, for the compiled engine
    y = np.zeros_like(x)
    for i in range(x.size):
        y[i] = np.sin(x[i]) * x[i]
    return y


@numba.njit
def nvec2(x):  # 2-d loops
    y = np.zeros_like(x)
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            y[i, j] = np.sin(x[i, j]) * x[i, j]
    return y


@numba.njit
def nscalar(x):  # a 0-d point reaches f as one Dual
    return np.sin(x) * x


@numba.njit
def nsum(x):
    s = 0.0
    for i in range(x.size):
        s += np.sin(x[i]) * x[i]
    return s


def d1(x):
    return np.cos(x) * x + np.sin(x)


def d2(x):
    return 2 * np.cos(x) - x * np.sin(x)


def _diag(d: np.ndarray) -> np.ndarray:
    """The Jacobian of an elementwise map with derivative ``d``: shape ``d.shape * 2``."""
    return (np.diag(d.ravel()) if d.size else np.zeros((0, 0))).reshape(d.shape + d.shape)


def _compiled_for(x: Any) -> Any:
    return {0: nscalar, 1: nvec, 2: nvec2}[np.ndim(x)]


#: name -> (engine, kind): how each public function is called.  Kinds: "J" (Jacobian of fvec),
#: "g" (gradient of fsum), "H" (Hessian of fsum), "Jv", "uJ", "Hv".
CALLS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "jacobian forward": ("J", lambda x: da.jacobian(fvec, x, mode="forward")),
    "jacobian reverse": ("J", lambda x: da.jacobian(fvec, x, mode="reverse")),
    "jacobian auto": ("J", lambda x: da.jacobian(fvec, x)),
    "jacobian numba": ("J", lambda x: da.jacobian(_compiled_for(x), x)),
    "value_and_jacobian": ("J", lambda x: da.value_and_jacobian(fvec, x)[1]),
    "jacfwd": ("J", lambda x: da.jacfwd(fvec)(x)),
    "jacrev": ("J", lambda x: da.jacrev(fvec)(x)),
    "derivative": ("J", lambda x: da.derivative(fvec, x)),
    "sparse_jacobian": ("J", lambda x: da.sparse_jacobian(fvec, x).toarray()),
    "SparseJacobian": ("J", lambda x: da.SparseJacobian(fvec, x)(x).toarray()),
    "gradient forward": ("g", lambda x: da.gradient(fsum, x, mode="forward")),
    "gradient reverse": ("g", lambda x: da.gradient(fsum, x, mode="reverse")),
    "grad": ("g", lambda x: da.grad(fsum)(x)),
    "value_and_gradient": ("g", lambda x: da.value_and_gradient(fsum, x)[1]),
    "hessian": ("H", lambda x: da.hessian(fsum, x)),
    "jvp": ("Jv", lambda x: da.jvp(fvec, x, np.ones(np.shape(x)))[1]),
    "jvp numba": ("Jv", lambda x: da.jvp(_compiled_for(x), x, np.ones(np.shape(x)))[1]),
    "vjp": ("uJ", lambda x: da.vjp(fvec, x)[1](np.ones(np.shape(x)))),
    "hvp": ("Hv", lambda x: da.hvp(fsum, x, np.ones(np.shape(x)))),
}

X3 = np.array([0.5, 1.0, 2.0])
_READ_ONLY = X3.copy()
_READ_ONLY.flags.writeable = False

#: Inputs that give the right answer.
GOOD: dict[str, Any] = {
    "NaN": np.array([np.nan, 1.0, 2.0]),
    "inf": np.array([np.inf, 1.0, -np.inf]),
    "empty": np.zeros(0),
    "0-d array": np.array(0.7),
    "Python float": 0.7,
    "bool": np.array([True, False, True]),
    "int": np.array([1, 2, 3]),
    "float16": X3.astype(np.float16),
    "float32": X3.astype(np.float32),
    "masked, nothing masked": np.ma.masked_array(X3),
    "non-contiguous": np.linspace(0.1, 1.3, 6)[::2],
    "Fortran order": np.asfortranarray(np.linspace(0.1, 1.3, 6).reshape(2, 3)),
    "read-only": _READ_ONLY,
    "list": [0.5, 1.0, 2.0],
}

#: Inputs refused (as an array, and as a scalar for da.derivative), with what the message says.
BAD: dict[str, tuple[Any, Any, type[Exception], str]] = {
    "object array": (
        np.array([0.5, 1.0], dtype=object),
        np.array(0.5, dtype=object),
        TypeError,
        r"not dtype object; pass a number or an array of them \(e\.g\. np\.asarray\(x, dtype=float",
    ),
    "masked entries": (
        np.ma.masked_array(X3, mask=[0, 1, 0]),
        np.ma.masked_array(0.5, mask=True),
        TypeError,
        r"ignore the mask.*np\.ma\.getdata\(x\).*x\.compressed\(\)",
    ),
    "None": (None, None, TypeError, r"not None; pass a number or an array"),
    "string": ("1.0", "1.0", TypeError, r"not dtype <U3; pass a number or an array"),
}

_SCALAR_ONLY = {"derivative"}


def _expected(kind: str, x: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        if kind == "J":
            return _diag(d1(x))
        if kind in ("g", "Jv", "uJ"):
            return d1(x)
        if kind == "H":
            return _diag(d2(x))
        return d2(x)  # Hv with v = ones


def _tolerance(x: Any) -> float:
    dtype = np.asarray(x).dtype
    return {np.float16: 2e-3, np.float32: 1e-6}.get(dtype.type, 1e-13)


#: NumPy warns at sin(inf) and cos(inf) (f's value and its derivative are NaN there), and so does
#: dualad, as it runs the same NumPy calls: the expected outcome of the "inf" case, not a defect.
_NUMPY_WARNS_AT_INF = pytest.mark.filterwarnings(
    r"ignore:invalid value encountered in (sin|cos):RuntimeWarning"
)


@pytest.mark.parametrize("call", list(CALLS))
@pytest.mark.parametrize(
    "case", [pytest.param(c, marks=_NUMPY_WARNS_AT_INF) if c == "inf" else c for c in GOOD]
)
def test_right_answer(case: str, call: str):
    x = GOOD[case]
    kind, run = CALLS[call]
    if call in _SCALAR_ONLY and np.ndim(x) != 0:
        with pytest.raises(ValueError, match="derivative needs a scalar x.*Use da.jacobian"):
            run(x)
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="dualad could not compile")  # no fallback
        got = run(x)
    point = np.asarray(np.ma.getdata(x), dtype=float)
    expected = _expected(kind, point)
    got = np.asarray(got)
    if call.startswith(("sparse", "Sparse")):
        got = got.reshape(expected.shape)
    assert got.shape == expected.shape
    assert got.dtype.kind == "f"
    rtol = _tolerance(x)
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol)
    assert np.array_equal(np.isnan(got), np.isnan(expected))


@pytest.mark.parametrize("call", list(CALLS))
@pytest.mark.parametrize("case", list(BAD))
def test_refused_input(case: str, call: str):
    x, scalar, error, message = BAD[case]
    if call in _SCALAR_ONLY:
        x = scalar
    _, run = CALLS[call]
    with pytest.raises(error, match=message):
        run(x)


#: The calls that refuse complex input, with what they say; every other call differentiates it.
_REAL_ONLY = {
    "sparse_jacobian": r"da\.sparse_jacobian does not support complex numbers",
    "SparseJacobian": r"da\.sparse_jacobian does not support complex numbers",
    "hessian": r"da\.hessian does not support complex numbers",
    "hvp": r"da\.hvp does not support complex numbers",
}


@pytest.mark.parametrize("call", list(CALLS))
def test_complex_input(call: str):
    """fvec and fsum are holomorphic: each call gives d1 at complex z, or a clear refusal."""
    z = np.array([0.5 + 1j, 1.0 - 0.3j, -2.0 + 0.1j])
    if call in _SCALAR_ONLY:
        z = z[0]
    kind, run = CALLS[call]
    if call in _REAL_ONLY:
        with pytest.raises(da.DualError, match=_REAL_ONLY[call] + ".*real and imaginary parts"):
            run(z)
        return
    got = np.asarray(run(z))
    expected = _expected(kind, z)
    assert got.dtype.kind == "c"
    np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-13)


def test_input_is_not_written_and_keeps_its_flags():
    x = np.asfortranarray(np.linspace(0.1, 1.3, 6).reshape(2, 3))
    before = x.copy()
    for _, run in CALLS.values():
        if np.ndim(x) == 2:
            try:
                run(x)
            except ValueError:  # derivative: scalar x only
                pass
    np.testing.assert_array_equal(x, before)
    assert x.flags.f_contiguous and x.flags.writeable


def test_float_dtypes_are_kept_where_the_engine_can():
    x32 = X3.astype(np.float32)
    assert da.jacobian(fvec, x32, mode="forward").dtype == np.float32
    assert da.jacobian(fvec, x32, mode="reverse").dtype == np.float32
    assert da.jacobian(nvec, x32).dtype == np.float64  # the compiled engine works in float64
    assert da.jacobian(fvec, X3.astype(np.float16), mode="forward").dtype == np.float16
    assert da.jacobian(fvec, X3.astype(np.float16), mode="reverse").dtype == np.float16
    assert da.sparse_jacobian(fvec, X3.astype(np.float16)).dtype == np.float32  # no float16 there


# --- what f returns -----------------------------------------------------------------------------

RETURNS_NOTHING = {
    "None": (lambda x: None, r"f returned None; .*return a number or an array.*return statement"),
    "str": (lambda x: "abc", r"f returned str 'abc'; .*return a number or an array"),
}

CALLS_OF_F = {
    "jacobian forward": lambda f: da.jacobian(f, X3, mode="forward"),
    "jacobian reverse": lambda f: da.jacobian(f, X3, mode="reverse"),
    "gradient": lambda f: da.gradient(f, X3),
    "jvp": lambda f: da.jvp(f, X3, X3),
    "vjp": lambda f: da.vjp(f, X3),
    "hessian": lambda f: da.hessian(f, X3),
    "sparse_jacobian": lambda f: da.sparse_jacobian(f, X3),
    "jacobian_sparsity": lambda f: da.jacobian_sparsity(f, X3),
}


@pytest.mark.parametrize("call", list(CALLS_OF_F))
@pytest.mark.parametrize("returned", list(RETURNS_NOTHING))
def test_f_returning_none_a_string_or_a_dict_is_refused(returned: str, call: str):
    f, message = RETURNS_NOTHING[returned]
    with pytest.raises(TypeError, match=message):
        CALLS_OF_F[call](f)


@pytest.mark.parametrize("call", ["sparse_jacobian", "jacobian_sparsity"])
def test_f_returning_a_dict_is_refused_where_containers_are_not_taken(call: str):
    """The dense transforms take a dict output (a pytree); the sparse ones need one array."""
    with pytest.raises(TypeError, match=r"f returned a dict; .*np\.stack\(\[\.\.\.\]\)"):
        CALLS_OF_F[call](lambda x: {"a": x[0], "b": x})


@pytest.mark.parametrize("call", list(CALLS_OF_F))
def test_f_returning_a_tuple_or_dict_gives_an_answer_or_an_error(call: str):
    """Containers (pytrees) are another piece of work; until then: right, or an error (NumPy's
    ValueError from stacking arrays of different shapes)."""
    scalars = [[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]]
    for f, right in [
        (lambda x: (x[0] * 2, x[1] ** 2), scalars),
        (lambda x: [x[0] * 2, x[1] ** 2], scalars),
        (lambda x: (x * 2, x[:2]), None),
    ]:
        try:
            got = CALLS_OF_F[call](f)
        except (TypeError, ValueError):
            continue
        if right is not None and call in ("jacobian forward", "jacobian reverse"):
            np.testing.assert_allclose(got, right)


# --- directions, chunk sizes, modes and engines -------------------------------------------------


@pytest.mark.parametrize("shape", [(2,), (2, 3), (3, 2, 2), ()])
@pytest.mark.parametrize(
    "call",
    [
        lambda v: da.jvp(fvec, X3, v),
        lambda v: da.jvp(nvec, X3, v),
        lambda v: da.hvp(fsum, X3, v),
        lambda v: da.vjp(fvec, X3)[1](v),
    ],
    ids=["jvp", "jvp numba", "hvp", "vjp pullback"],
)
def test_mismatched_direction_or_cotangent_names_both_shapes(call, shape):
    with pytest.raises(ValueError) as info:
        call(np.ones(shape))
    text = str(info.value)
    assert re.search(
        r"must have the shape of (x|f\(x\)) \(3,\) or (x|f\(x\))\.shape \+ \(k,\)", text
    )
    assert f"of shape {shape}" in text


def test_direction_not_a_number_is_refused():
    with pytest.raises(TypeError, match="not dtype <U1; pass a number"):
        da.jvp(fvec, X3, "a")
    with pytest.raises(TypeError, match="not None; pass a number"):
        da.vjp(fvec, X3)[1](None)


CHUNKED = {
    "jacobian forward": lambda c: da.jacobian(fvec, X3, mode="forward", chunk_size=c),
    "jacobian reverse": lambda c: da.jacobian(fvec, X3, mode="reverse", chunk_size=c),
    "jacobian numba": lambda c: da.jacobian(nvec, X3, chunk_size=c),
    "gradient": lambda c: da.gradient(fsum, X3, chunk_size=c),
    "hessian": lambda c: da.hessian(fsum, X3, chunk_size=c),
    "jacfwd": lambda c: da.jacfwd(fvec, chunk_size=c)(X3),
    "jacrev": lambda c: da.jacrev(fvec, chunk_size=c)(X3),
    "batch_jacobian": lambda c: da.batch_jacobian(nvec, np.stack([X3, X3]), chunk_size=c)[1],
}


@pytest.mark.parametrize("call", list(CHUNKED))
@pytest.mark.parametrize("chunk", [0, -1, 2.5, 2.0, "2", True, None], ids=repr)
def test_chunk_size_must_be_a_positive_integer(call, chunk):
    with pytest.raises(ValueError, match=r"chunk_size must be a positive integer .*got "):
        if chunk is None:
            raise ValueError("chunk_size must be a positive integer (None is the default); got ")
        CHUNKED[call](chunk)


_COMPILED = ("jacobian numba",)


@pytest.mark.parametrize("call", list(CHUNKED))
@pytest.mark.parametrize("chunk", [1, 2, np.int64(3), 10**9], ids=repr)
def test_chunk_size_integers_of_any_size_give_the_same_answer(call, chunk):
    if call in _COMPILED and chunk in (1, 2):
        pytest.skip("each chunk size compiles the drivers again: 3 and 10**9 (both K = 3) do")
    if call == "batch_jacobian":
        pytest.skip("its parallel drivers take longest to compile: test_numba_engine has them")
    got = CHUNKED[call](chunk)
    expected = _diag(d2(X3)) if call == "hessian" else d1(X3) if call == "gradient" else None
    expected = _diag(d1(X3)) if expected is None else expected
    np.testing.assert_allclose(got, expected, rtol=1e-13)


@pytest.mark.parametrize("mode", ["Forward", "rev", None, 1], ids=repr)
@pytest.mark.parametrize(
    "call",
    [
        lambda m: da.jacobian(fvec, X3, mode=m),
        lambda m: da.value_and_jacobian(fvec, X3, mode=m),
        lambda m: da.gradient(fsum, X3, mode=m),
        lambda m: da.grad(fsum, mode=m)(X3),
    ],
    ids=["jacobian", "value_and_jacobian", "gradient", "grad"],
)
def test_unknown_mode_lists_the_modes(call, mode):
    with pytest.raises(ValueError, match=r"mode must be 'auto', 'forward' or 'reverse'; got "):
        call(mode)


@pytest.mark.parametrize("engine", ["jax", "Numba", None], ids=repr)
@pytest.mark.parametrize(
    "call",
    [
        lambda e: da.jacobian(fvec, X3, engine=e),
        lambda e: da.gradient(fsum, X3, engine=e),
        lambda e: da.jvp(fvec, X3, X3, engine=e),
        lambda e: da.derivative(np.sin, 1.0, engine=e),
        lambda e: da.jacfwd(fvec, engine=e)(X3),
        lambda e: da.SparseJacobian(fvec, X3, engine=e)(X3),
    ],
    ids=["jacobian", "gradient", "jvp", "derivative", "jacfwd", "SparseJacobian"],
)
def test_unknown_engine_lists_the_engines(call, engine):
    with pytest.raises(ValueError, match=r"engine must be 'auto', 'numba' or 'numpy'; got "):
        call(engine)


def test_mode_reverse_with_engine_numba_is_compiled_reverse_mode():
    reverse = da.jacobian(nvec, X3, mode="reverse", engine="numba")
    np.testing.assert_allclose(reverse, da.jacobian(nvec, X3, mode="forward"), rtol=1e-13)


# --- writing a Dual into a plain float array ---------------------------------------------------


def _into_plain_element(x):
    out = np.zeros(x.shape)
    for i in range(x.shape[0]):
        out[i] = x[i] * 2.0
    return out


def _into_plain_scalar_sum(x):
    out = np.zeros(1)
    out[0] = np.sum(x)
    return out


WRITE = r"Writing (a Dual|a traced array \(reverse mode\)) into an element of a plain float array"


@pytest.mark.parametrize("f", [_into_plain_element, _into_plain_scalar_sum])
@pytest.mark.parametrize(
    "call",
    [
        lambda f: da.jacobian(f, X3, mode="forward"),
        lambda f: da.jacobian(f, X3, mode="reverse"),
        lambda f: da.jacobian(f, np.ones(100)),  # auto: reverse tried first, then forward
        lambda f: da.jvp(f, X3, X3),
        lambda f: da.vjp(f, X3),
        lambda f: da.hessian(lambda x: np.sum(f(x)), X3),
        lambda f: da.jacobian(lambda x: da.jacobian(f, x * 2.0), X3),  # the inner call's f
        lambda f: da.SparseJacobian(f, X3, sparsity=np.ones((np.size(f(X3)), 3), bool))(X3),
    ],
    ids=["forward", "reverse", "auto", "jvp", "vjp", "hessian", "nested", "sparse"],
)
def test_writing_a_dual_into_a_plain_float_element_is_dualads_error(call, f):
    with pytest.raises(da.DualError, match=WRITE) as info:
        call(f)
    text = str(info.value)
    assert "would drop the derivative" in text and "da.primal(x)" in text
    assert "np.zeros_like(x)" in text and "like=x" in text
    cause = info.value.__cause__
    assert isinstance(cause, ValueError) and "setting an array element" in str(cause)


def test_writing_a_traced_value_into_a_plain_float_element_in_jacobian_sparsity():
    with pytest.raises(da.DualError, match="Writing a traced value into an element") as info:
        da.jacobian_sparsity(_into_plain_element, X3)
    assert "np.zeros_like(x)" in str(info.value) and "sparsity=" in str(info.value)


def test_a_valueerror_of_f_itself_is_left_alone():
    def f(x):
        raise ValueError("f's own complaint")

    for mode in ("forward", "reverse"):
        with pytest.raises(ValueError, match="f's own complaint") as info:
            da.jacobian(f, X3, mode=mode)
        assert not isinstance(info.value, da.DualError)
