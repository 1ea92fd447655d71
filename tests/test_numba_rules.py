"""The rules of ``dualad/rules.py`` run by the compiled engine, against the NumPy engine.

Every rule whose key is a NumPy ufunc, the ``math.*`` functions mapped onto those rules
(``scalars._MATH`` / ``_MATH_SCIPY``), and the Python operators and builtins are applied to
scalars ``x[i]`` inside compiled code, at the sample points of ``tests/test_rules.py`` (which
checks the NumPy engine against mpmath).  The compiled Jacobian and value must agree with the
NumPy engine's on the same points: an error in a generated overload, a partial compiled wrongly,
or an argument pattern (Dual and Dual, Dual and a float or an int constant, either way round)
that takes a different path shows up as a mismatch naming the case and the point.

Numba compiles every overload it meets (0.1-0.3 s each), so the cases are grouped: one function
per group applies case j to its own range of entries of ``x`` (in a loop, so the points cost no
compile time) and one Jacobian checks the whole group.  All groups use the same chunk size, so
the implementations they share are compiled once.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

numba = pytest.importorskip("numba")
sp = pytest.importorskip("scipy.special")

from test_rules import DOMAINS  # noqa: E402 - the sample points checked against mpmath

import dualad as da  # noqa: E402
from dualad import rules  # noqa: E402
from dualad.numba import scalars  # noqa: E402

K = 2  # the chunk size of every compiled Jacobian here: two directions per pass
RTOL = 1e-14  # the engines' partials are the same formulas; libm and NumPy differ by an ulp
ATOL = 1e-300


@pytest.fixture(autouse=True)
def _no_fallback_and_quiet():
    """engine='numba' never falls back; the NumPy engine warns about inf/nan like NumPy."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        warnings.filterwarnings("error", message="dualad could not compile")
        yield


# --- cases and the functions that apply them --------------------------------------------------


@dataclass(frozen=True)
class Case:
    """``expr`` (compiled) and ``ref`` (NumPy engine) of inputs ``{a}`` (and ``{b}``).

    ``kind`` says what each input is: D a Dual entry of x, F a float constant, I an int constant.
    """

    label: str
    expr: str
    ref: str
    kind: str
    points: tuple[tuple[float, ...], ...]


def _source(cases: Sequence[Case], attr: str, nout: int) -> str:
    """``f(x, cf, ci)`` setting ``out[i]`` for the outputs of each case in a loop.

    Output i of a case reads its Dual input(s) from the case's own entries of x: one per point,
    or two adjacent ones for a DD case, so that a chunk of K = 2 directions moves both inputs of
    one call at once.  Constants come from ``cf[i]`` (float64) and ``ci[i]`` (int64).
    """
    lines = ["def f(x, cf, ci):", "    out = np.zeros_like(x)"]
    start = at = 0
    for case in cases:
        stop = start + len(case.points)
        one = f"x[i + {at - start}]"
        a, b = {
            "D": (one, None),
            "DD": (f"x[2 * i + {at - 2 * start}]", f"x[2 * i + {at - 2 * start + 1}]"),
            "DF": (one, "cf[i]"),
            "FD": ("cf[i]", one),
            "DI": (one, "ci[i]"),
            "ID": ("ci[i]", one),
        }[case.kind]
        lines.append(f"    for i in range({start}, {stop}):")
        lines.append("        out[i] = " + getattr(case, attr).format(a=a, b=b))
        at += len(case.points) * (2 if case.kind == "DD" else 1)
        start = stop
    lines.append(f"    return out[:{nout}]")
    return "\n".join(lines) + "\n"


def _function(source: str) -> Any:
    namespace = {"np": np, "math": math, "da": da, "sp": sp}
    exec(compile(source, "<generated>", "exec"), namespace)  # noqa: S102
    return namespace["f"]


def _inputs(cases: Sequence[Case]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """x (the Dual inputs, in the order _source reads them), cf, ci, a label per output."""
    x: list[float] = []
    cf: list[float] = []
    ci: list[int] = []
    labels: list[str] = []
    for case in cases:
        for p in case.points:
            labels.append(f"{case.label} [{case.kind}] at {p}")
            const = 0.0
            if case.kind == "DD":
                x += [p[0], p[1]]
            elif case.kind[0] == "D":
                x.append(p[0])
                const = p[1] if len(p) > 1 else 0.0
            else:
                x.append(p[1])
                const = p[0]
            cf.append(float(const))
            ci.append(int(const) if "I" in case.kind else 0)
    return np.array(x, dtype=float), np.array(cf), np.array(ci, dtype=np.int64), labels


def check_group(cases: Sequence[Case]) -> None:
    """The compiled value and Jacobian of all ``cases`` at once equal the NumPy engine's."""
    x, cf, ci, labels = _inputs(cases)
    nout = len(labels)
    compiled = numba.njit(_function(_source(cases, "expr", nout)))
    reference = _function(_source(cases, "ref", nout))
    value, jac = da.value_and_jacobian(compiled, x, args=(cf, ci), engine="numba", chunk_size=K)
    ref_value, ref_jac = da.value_and_jacobian(reference, x, args=(cf, ci), engine="numpy")
    assert jac.shape == ref_jac.shape == (nout, x.size)
    bad_value = ~np.isclose(value, ref_value, rtol=RTOL, atol=ATOL, equal_nan=True)
    bad_jac = ~np.isclose(jac, ref_jac, rtol=RTOL, atol=ATOL, equal_nan=True)
    problems = [
        f"  {labels[r]}: value {value[r]!r} vs {ref_value[r]!r}" for r in np.flatnonzero(bad_value)
    ]
    for r, c in zip(*np.nonzero(bad_jac)):
        problems.append(f"  {labels[r]}: d/dx[{c}] {jac[r, c]!r} vs NumPy engine {ref_jac[r, c]!r}")
    assert not problems, f"{len(problems)} entries differ:\n" + "\n".join(problems[:40])


# --- sample points ------------------------------------------------------------------------------


def _points(func: Any, i: int = 0) -> tuple[tuple[float, ...], ...]:
    return tuple(DOMAINS[func].points_for(i))


def _both(func: Any) -> tuple[tuple[float, ...], ...]:
    """Points where both partials exist (power's negative bases have none in the exponent)."""
    second = set(_points(func, 1))
    return tuple(p for p in _points(func, 0) if p in second)


def _with_int(points: Sequence[tuple[float, ...]], i: int) -> tuple[tuple[float, ...], ...]:
    """The points with input ``i`` rounded to an integer (it becomes an int constant).

    Those beyond 2**53 are left out; those rounded to 0 stay (a divisor of 0: inf or NaN).
    """
    out = []
    for p in points:
        if abs(p[i]) > 2.0**53:
            continue
        q = list(p)
        q[i] = float(int(np.rint(q[i])))
        out.append(tuple(q))
    return tuple(dict.fromkeys(out))


def _name(func: Any) -> str:
    return func.__name__


def _np(func: Any) -> str:
    """How the generated source spells a NumPy ufunc."""
    assert getattr(np, func.__name__) is func, func
    return f"np.{func.__name__}"


NUMPY_UFUNC_RULES = [
    f for f in rules.RULES if isinstance(f, np.ufunc) and getattr(np, f.__name__, None) is f
]
UNARY = [f for f in NUMPY_UFUNC_RULES if rules.RULES[f].nin == 1]
BINARY = [f for f in NUMPY_UFUNC_RULES if rules.RULES[f].nin == 2]
#: SciPy's ufuncs cannot be named in nopython code at all (Numba has no type for them without
#: numba-scipy); the math.* functions mapped to their rules are tested instead.
SCIPY_UFUNC_RULES = [
    f for f in rules.RULES if isinstance(f, np.ufunc) and f not in NUMPY_UFUNC_RULES
]

BINARY_KINDS = ("DD", "DF", "FD", "DI", "ID")


def _binary_points(func: Any, kind: str) -> tuple[tuple[float, ...], ...]:
    if kind == "DD":
        return _both(func)
    dual = 0 if kind[0] == "D" else 1
    points = _points(func, dual)
    return _with_int(points, 1 - dual) if "I" in kind else points


def _binary_case(label: str, expr: str, ref: str, func: Any, kind: str) -> Case:
    points = _binary_points(func, kind)
    if label in ("/", "%"):  # Python's operators raise ZeroDivisionError, as Numba's do on floats
        points = tuple(p for p in points if p[1] != 0)
    return Case(label, expr, ref, kind, points)


# --- 1. every NumPy ufunc rule -----------------------------------------------------------------


def test_the_tables_cover_every_rule():
    """A rule added to rules.py or scalars._MATH later is tested here, or fails here."""
    assert set(UNARY) | set(BINARY) == set(NUMPY_UFUNC_RULES)
    missing = [_name(f) for f in NUMPY_UFUNC_RULES if f not in DOMAINS]
    assert not missing, f"add sample points to test_rules.DOMAINS for {missing}"
    scipy_names = {"erf", "erfc", "expit", "gammaln", "gamma", "psi", "_zeta"}  # math.* only
    assert {_name(f) for f in SCIPY_UFUNC_RULES} <= scipy_names
    assert set(MATH_UNARY) | set(MATH_BINARY) == {n for n in scalars._MATH if hasattr(math, n)}
    assert set(scalars._MATH_SCIPY) == {"erf", "erfc", "lgamma", "gamma"}  # tested below
    written = {op for op, _, _ in BINARY_OPERATORS}
    assert written == {"+", "-", "*", "/", "**", "%", "pow", "min", "max"}


def test_unary_ufunc_rules():
    check_group(
        [Case(_name(f), f"{_np(f)}({{a}})", f"{_np(f)}({{a}})", "D", _points(f)) for f in UNARY]
    )


@pytest.mark.parametrize("kind", BINARY_KINDS)
def test_binary_ufunc_rules(kind):
    """Both inputs Duals, or one a float64 / int64 constant (read from an argument array)."""
    cases = [
        _binary_case(_name(f), f"{_np(f)}({{a}}, {{b}})", f"{_np(f)}({{a}}, {{b}})", f, kind)
        for f in BINARY
    ]
    check_group(cases)


# --- 2. math.* functions, operators and builtins -----------------------------------------------

MATH_UNARY = {
    name: ufunc
    for name, ufunc in scalars._MATH.items()
    if hasattr(math, name) and rules.RULES[ufunc].nin == 1
}
MATH_BINARY = {
    name: ufunc
    for name, ufunc in scalars._MATH.items()
    if hasattr(math, name) and rules.RULES[ufunc].nin == 2
}


def test_math_functions_of_one_argument():
    cases = [
        Case(f"math.{n}", f"math.{n}({{a}})", f"{_np(f)}({{a}})", "D", _points(f))
        for n, f in MATH_UNARY.items()
    ]
    cases += [
        Case(f"math.{n}", f"math.{n}({{a}})", f"sp.{n}({{a}})", "D", _points(getattr(sp, n)))
        for n in ("erf", "erfc")
    ]
    cases += [
        Case("-x", "-{a}", "-{a}", "D", _points(np.negative)),
        Case("+x", "+{a}", "+{a}", "D", _points(np.positive)),
        Case("abs", "abs({a})", "abs({a})", "D", _points(np.absolute)),
    ]
    check_group(cases)


#: (operator as written, the NumPy function whose rule it uses, template)
BINARY_OPERATORS = [
    ("+", np.add, "{a} + {b}"),
    ("-", np.subtract, "{a} - {b}"),
    ("*", np.multiply, "{a} * {b}"),
    ("/", np.true_divide, "{a} / {b}"),
    ("**", np.power, "{a} ** {b}"),
    ("%", np.remainder, "{a} % {b}"),
    ("pow", np.power, "pow({a}, {b})"),
    ("min", np.minimum, "min({a}, {b})"),
    ("max", np.maximum, "max({a}, {b})"),
]


@pytest.mark.parametrize("kind", BINARY_KINDS)
def test_binary_operators_builtins_and_math_functions(kind):
    """``a op b``, pow/min/max and math.atan2 etc., compared with the NumPy ufunc's rule."""
    cases = [
        _binary_case(op, expr, f"{_np(f)}({{a}}, {{b}})", f, kind)
        for op, f, expr in BINARY_OPERATORS
    ]
    cases += [
        _binary_case(f"math.{n}", f"math.{n}({{a}}, {{b}})", f"{_np(f)}({{a}}, {{b}})", f, kind)
        for n, f in MATH_BINARY.items()
    ]
    check_group(cases)


# --- 3. literal constants and in-place operators -----------------------------------------------


def _literals(x):
    out = np.zeros_like(x)
    out[0] = x[0] ** 2 + x[1] ** 3 + x[2] ** -1 + x[3] ** 0.5
    out[1] = 3 * x[0] - 2.5 / x[1] + x[2] * 4 - 1
    out[2] = x[3] / 2 + (7 - x[0]) % 3 + pow(x[1], 2) + x[2] % 1.5
    out[3] = abs(-x[0]) - +x[3] + 2 ** x[1] + 1.5 ** x[0]  # literal bases, Dual exponents
    return out


def _in_place(x):
    out = np.zeros_like(x)
    s = x[0]
    s += x[1]
    s -= 0.5
    s *= x[2]
    s /= 3
    s **= 2
    s %= 7.0
    out[0] = s
    t = 0.0  # a float that becomes a Dual
    for i in range(len(x)):
        t += x[i] * x[i]
    out[1] = t
    out[2] = x[0]
    out[2] += x[1]
    out[2] *= 2
    out[2] -= x[2]
    out[2] /= x[3]
    u = 1
    u -= x[3]
    out[3] = u
    return out


LITERALS = numba.njit(_literals)
IN_PLACE = numba.njit(_in_place)


@pytest.mark.parametrize("func", [LITERALS, IN_PLACE], ids=["literals", "in-place"])
@pytest.mark.parametrize("point", [[1.5, 2.0, 0.75, 4.0], [-0.5, 3.5, -2.25, 0.01]])
def test_literal_constants_and_in_place_operators(func, point):
    value, jac = da.value_and_jacobian(func, point, engine="numba", chunk_size=K)
    ref_value, ref_jac = da.value_and_jacobian(func.py_func, point, engine="numpy")
    np.testing.assert_allclose(value, ref_value, rtol=RTOL)
    np.testing.assert_allclose(jac, ref_jac, rtol=RTOL)


# --- 4. infinite or NaN local derivatives ------------------------------------------------------


@numba.njit
def _non_finite_partials(x):
    out = np.zeros_like(x)
    out[0] = np.exp(x[0]) + x[1]  # exp'(800) is inf; x[0] does not move along x[1]: 1, not NaN
    out[1] = np.exp(x[0] * 0.0 + 800.0) + x[1]  # a zero tangent times inf is 0
    out[2] = np.sin(x[2]) + x[3]  # sin'(inf) is NaN; x[2] does not move along x[3]
    out[3] = np.cosh(x[0]) - x[3] * x[1]
    return out


def test_infinite_or_nan_local_derivative_keeps_zero_tangents_zero():
    """Both directions of a pass (K = 2) go through the same call; only one sees inf/NaN."""
    x = [800.0, 1.0, np.inf, 0.5]
    value, jac = da.value_and_jacobian(_non_finite_partials, x, engine="numba", chunk_size=K)
    ref_value, ref_jac = da.value_and_jacobian(_non_finite_partials.py_func, x, engine="numpy")
    expected = [[np.inf, 1, 0, 0], [0, 1, 0, 0], [0, 0, np.nan, 1], [np.inf, -0.5, 0, -1]]
    np.testing.assert_array_equal(ref_jac, expected)
    np.testing.assert_array_equal(jac, expected)
    np.testing.assert_array_equal(value, ref_value)


@numba.njit
def _sqrt_at_zero(x):
    return np.sqrt(x[0]) + x[1]


@numba.njit
def _log_at_zero(x):
    return np.log(x[0]) + x[1]


@numba.njit
def _power_at_zero(x):
    return np.power(x[0], 0.5) + x[1]


@pytest.mark.parametrize(
    "func", [_sqrt_at_zero, _log_at_zero, _power_at_zero], ids=["sqrt", "log", "power"]
)
def test_infinite_local_derivative_from_a_division_by_zero(func):
    """The partials run with error_model='numpy': 0.5 / 0.0 is inf, not a ZeroDivisionError."""
    x = [0.0, 4.0]
    jac = da.jacobian(func, x, engine="numba", chunk_size=K)
    ref = da.jacobian(func.py_func, x, engine="numpy")
    np.testing.assert_array_equal(ref, [np.inf, 1.0])
    np.testing.assert_array_equal(jac, ref)


# --- 5. functions of values only: zero derivative ----------------------------------------------


@numba.njit
def _values_only(x, c):
    out = np.zeros(23, dtype=x.dtype)
    a, b = x[0], x[1]
    out[0] = np.floor(a)
    out[1] = np.ceil(a)
    out[2] = np.trunc(a)
    out[3] = np.rint(a)
    out[4] = np.sign(a)
    out[5] = math.floor(a)
    out[6] = math.ceil(a)
    out[7] = math.trunc(a)
    out[8] = round(a)
    out[9] = np.floor_divide(a, b)
    out[10] = a // 0.75 + 7 // b + a // c
    out[11] = np.sign(b) * np.sign(-a)
    out[12] = np.signbit(a)
    out[13] = np.isnan(a) + 2 * np.isinf(b) + 4 * np.isfinite(a)
    out[14] = math.isnan(a) + 2 * math.isinf(b) + 4 * math.isfinite(a)
    out[15] = (a < b) + 2 * (a <= b) + 4 * (a > b) + 8 * (a >= b) + 16 * (a == b) + 32 * (a != b)
    out[16] = (a < 1.0) + 2 * (1 <= b) + 4 * (a > c) + 8 * (c >= b) + 16 * (a == 0.5)
    out[17] = np.less(a, b) + 2 * np.less_equal(a, 1.0) + 4 * np.greater(2, b)
    out[18] = np.greater_equal(a, b) + 2 * np.equal(a, a) + 4 * np.not_equal(c, b)
    out[19] = np.floor(a) * b  # d/db is floor(a)
    out[20] = b if a > b else a * b  # a branch on values
    s = 0.0
    n = 0
    while s < a and n < 10:  # a loop on values
        s += abs(b)
        n += 1
    out[21] = s
    q = a
    q //= 0.75  # a Dual variable given a value-only result: zero partials
    out[22] = q
    return out


@pytest.mark.parametrize("point", [(-2.5, 1.5), (0.5, 0.5), (3.7, -1.25), (-0.0, 2.0)])
def test_comparisons_floor_round_sign_act_on_values(point):
    """The value of every such function as on floats, and a zero derivative."""
    a, b = point
    value, jac = da.value_and_jacobian(
        _values_only, list(point), args=(2,), engine="numba", chunk_size=K
    )  # a list of numbers is one array point; a tuple would be a container
    np.testing.assert_array_equal(value, _values_only.py_func(np.array(point), 2))
    expected = np.zeros((23, 2))
    expected[19] = [0.0, math.floor(a)]
    expected[20] = [0.0, 1.0] if a > b else [b, a]
    steps = min(10, max(0, math.ceil(a / abs(b))))
    expected[21] = [0.0, steps * math.copysign(1.0, b)]
    np.testing.assert_array_equal(jac, expected)


def test_np_round_acts_on_values():
    f = numba.njit(lambda x: np.round(x[0]) * x[1])
    np.testing.assert_array_equal(
        da.jacobian(f, [2.4, 3.0], engine="numba", chunk_size=K), [0.0, 2.0]
    )


# --- 6. rules added at run time, and rules Numba cannot run ------------------------------------


def test_rule_registered_at_run_time_reaches_functions_compiled_afterwards(restore_rules):
    """np.spacing has no rule and Numba compiles it (the rule given here is made up)."""
    da.jacobian(LITERALS, [1.0, 2.0, 3.0, 4.0], engine="numba", chunk_size=K)  # engine set up
    assert rules.lookup(np.spacing) is None
    da.register_rule(np.spacing, lambda x, y: 0.0 * x + 180.0 / math.pi)
    f = numba.njit(lambda x: np.spacing(x[0]) * x[1])
    jac = da.jacobian(f, [0.5, 2.0], engine="numba", chunk_size=K)
    np.testing.assert_allclose(jac, [360.0 / math.pi, np.spacing(0.5)], rtol=1e-15)


def _softplus(x):
    return np.log1p(np.exp(x))


def _logistic(x, y):
    return 1.0 / (1.0 + np.exp(-x))


def test_plain_function_registered_at_run_time(restore_rules):
    """register_rule's wrapper of a Python function is compiled, value and rule alike."""
    da.jacobian(LITERALS, [1.0, 2.0, 3.0, 4.0], engine="numba", chunk_size=K)  # engine set up
    softplus = da.register_rule(_softplus, _logistic, name="softplus")
    f = numba.njit(lambda x: softplus(x[0]) * x[1])
    x = [0.3, 2.0]
    value, jac = da.value_and_jacobian(f, x, engine="numba", chunk_size=K)
    ref_value, ref_jac = da.value_and_jacobian(f.py_func, x, engine="numpy")
    np.testing.assert_allclose(value, ref_value, rtol=RTOL)
    np.testing.assert_allclose(jac, ref_jac, rtol=RTOL)
    np.testing.assert_allclose(jac, [2.0 / (1.0 + math.exp(-0.3)), _softplus(0.3)], rtol=RTOL)


def test_math_lgamma_and_gamma_compile_with_a_compiled_digamma():
    """Their rules call sp.digamma, which compiled code reads from dualad.numba.special."""
    import mpmath

    f = numba.njit(lambda x: math.lgamma(x[0]) + math.gamma(x[1]) * x[0])
    x = [2.5, 0.7]
    jac = da.jacobian(f, x, chunk_size=K)
    gamma = float(mpmath.gamma(0.7))
    expected = [float(mpmath.digamma(2.5)) + gamma, gamma * float(mpmath.digamma(0.7)) * 2.5]
    np.testing.assert_allclose(jac, expected, rtol=1e-13)


def _sin_degrees_rule(x, y):  # a partial Numba cannot compile: SciPy's cosdg
    return sp.cosdg(x * 180.0 / math.pi)


def test_rule_whose_partial_numba_cannot_compile_is_refused(restore_rules):
    sine = da.register_rule(lambda x: np.sin(x), _sin_degrees_rule, name="sine_by_degrees")
    f = numba.njit(lambda x: sine(x[0]) + x[1])
    with pytest.raises(da.DualError, match="rule of sine_by_degrees cannot run in compiled") as e:
        da.jacobian(f, [2.5, 1.0], chunk_size=K)  # engine="auto": not a Numba failure, no fallback
    assert "engine='numpy'" in str(e.value)
    assert re.search(r"\(at .*test_numba_rules\.py, line \d+\)", str(e.value)), str(e.value)
