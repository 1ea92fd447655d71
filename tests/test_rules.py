"""The derivative rules of ``dualad/rules.py`` against mpmath at 50 significant digits.

Every rule in the table is differentiated through the public API (``da.gradient`` of the function
summed over a vector of sample points, and ``da.derivative`` at each point on its own), and
compared with an analytic derivative evaluated in mpmath.  The analytic references are themselves
checked against mpmath's numerical differentiation (``mp.diff``) of the function wherever finite
differences are reliable, so that a formula copied wrongly into this file cannot hide a wrong rule.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import mpmath
import numpy as np
import pytest
import scipy.special as sp

import dualad as da
from dualad import rules

pytestmark = pytest.mark.usefixtures("both_modes")  # each test runs forward and reverse

# A private mpmath context, so that the precision set here does not leak into other tests.
MP = mpmath.MPContext()
MP.dps = 50

rules.lookup(sp.erf)  # load SciPy's rules now, so that the tables below see them

RTOL = 1e-12
# Results in the subnormal range carry an absolute rounding error of a few units of 5e-324.
ATOL_FLOOR = 1e-322


# --- sample points -------------------------------------------------------------------------------


def pm(*xs: float, zero: bool = True) -> list[float]:
    """Each value with both signs (and 0 if asked), sorted."""
    out = {s * x for x in xs for s in (1.0, -1.0)}
    if zero:
        out.add(0.0)
    return sorted(out)


def grid(xs: Sequence[float], ys: Sequence[float]) -> list[tuple[float, float]]:
    return [(x, y) for x in xs for y in ys]


HALF_PI = math.pi / 2
ONE_MINUS = 1.0 - 2.0**-53  # the largest float below 1
ONE_PLUS = 1.0 + 2.0**-52  # the smallest float above 1

REALS = pm(1e-300, 1e-8, 1e-3, 0.1, 0.6, 1.0, 2.0, 3.3, 42.0, 1e5, 1e15, 1e300)
NONZERO = [x for x in REALS if x != 0.0]
POSITIVE = [1e-300, 1e-100, 1e-20, 1e-8, 1e-3, 0.1, 0.25, 0.5, ONE_MINUS, 1.0, ONE_PLUS]
POSITIVE += [1.0 + 1e-10, 2.0, 3.0, 7.5, 10.0, 123.4, 1e5, 1e10, 1e20, 1e100, 1e300]
EXP_ARGS = pm(1e-300, 1e-10, 1e-3, 0.1, 0.5, 1.0, 2.0, 10.0, 50.0, 300.0, 700.0)
UNIT = pm(1e-300, 1e-8, 1e-3, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99, 0.999999, ONE_MINUS)
TRIG = pm(1e-300, 1e-8, 1e-3, 0.5, 1.0, HALF_PI, 2.0, math.pi, 4.0, 10.0, 100.0, 1e5)
TAN = pm(1e-300, 1e-8, 1e-3, 0.5, math.pi / 4, 1.0, 1.3, 1.57, 1.5707963, HALF_PI, 2.0, 1e5)
ERF = pm(1e-300, 1e-8, 1e-3, 0.1, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 26.0)

# 2-input grids: the rows and columns avoid ties (max/min) and exact integer quotients (fmod)
BIN_X = [-1e10, -3.5, -1.0, -1e-3, 0.0, 1e-8, 0.75, 2.0, 1e5]
BIN_Y = [-2.5, -2e-3, 0.5, 3.0, 1e10]  # no 0: also the divisors
POW_BASE = [1e-3, 0.2, 1.0, 1.5, 3.0, 1e3]
POW_EXP = [-3.5, -2.0, -1.0, -0.5, 0.5, 1.0, 2.0, 2.5, 7.0]
# negative bases with integer exponents: only the base partial exists there
POW_NEG = grid([-3.0, -0.7], [-2.0, 1.0, 2.0, 3.0])
MOD_X = [-7.4, -3.3, -1.0, -0.35, 0.45, 1.0, 2.7, 10.5, 1e5 + 0.1]
MOD_Y = [-2.5, -0.7, 0.1, 0.3, 1.9, 3.0]
LSE_X = [-1e5, -800.0, -30.0, -1.0, 0.0, 1e-8, 2.5, 40.0, 1e5]
LSE_Y = [-750.0, -20.5, -1e-3, 1.0, 35.0, 1e5 - 20.0, 1e5 + 3.0]
ATAN2_X = [-1e200, -3.0, -1e-3, -1e-200, 1e-200, 0.5, 2.0, 1e200]
ATAN2_Y = [-1e200, -2.0, -1e-200, 1e-200, 1e-3, 1.0, 1e200]


# --- the reference table -------------------------------------------------------------------------


@dataclass
class Domain:
    """Sample points of a rule and its mpmath reference.

    ``f`` is the function in mpmath (used to check ``df`` by numerical differentiation);
    ``df(*args)`` its partial derivatives (one value for one input, a tuple for several).
    ``points_by_input`` overrides ``points`` for the partial in one input; ``atol`` is an
    absolute error allowed on top of ``RTOL`` (documented where it is not zero).
    """

    points: list[Any]
    f: Callable[..., Any]
    df: Callable[..., Any]
    points_by_input: dict[int, list[Any]] = field(default_factory=dict)
    atol: float = 0.0

    def points_for(self, i: int) -> list[tuple[float, ...]]:
        pts = self.points_by_input.get(i, self.points)
        return [p if isinstance(p, tuple) else (p,) for p in pts]

    def partial(self, i: int, args: Sequence[float]) -> Any:
        d = self.df(*[MP.mpf(a) for a in args])
        return d[i] if isinstance(d, tuple) else d


def _sgn(x: Any) -> int:
    return (x > 0) - (x < 0)


def _sinc(x: Any) -> Any:
    return MP.sincpi(x)


def _dsinc(x: Any) -> Any:
    if x == 0:
        return MP.mpf(0)
    # (pi x cos(pi x) - sin(pi x)) / (pi x^2) cancels like x^3 near 0: add digits to match
    with MP.workdps(60 + 3 * max(0, -int(MP.log10(abs(x))))):
        px = MP.pi * x
        return (px * MP.cos(px) - MP.sin(px)) / (MP.pi * x * x)


def _lse(b: Any) -> Callable[..., Any]:
    def f(x1: Any, x2: Any) -> Any:
        return MP.log(MP.power(b, x1) + MP.power(b, x2)) / MP.log(b)

    return f


def _dlse(b: Any) -> Callable[..., Any]:
    def df(x1: Any, x2: Any) -> Any:
        return 1 / (1 + MP.power(b, x2 - x1)), 1 / (1 + MP.power(b, x1 - x2))

    return df


def _fmod(x1: Any, x2: Any) -> Any:
    return x1 - x2 * _trunc_quotient(x1, x2)


def _trunc_quotient(x1: Any, x2: Any) -> Any:
    q = x1 / x2
    assert abs(q - MP.nint(q)) > MP.mpf(10) ** -40 or q == 0, "a kink: not a sample point"
    return MP.floor(q) if q >= 0 else MP.ceil(q)


def _floor_quotient(x1: Any, x2: Any) -> Any:
    q = x1 / x2
    assert abs(q - MP.nint(q)) > MP.mpf(10) ** -40, "a jump: not a sample point"
    return MP.floor(q)


def _power(x: Any, p: Any) -> Any:
    return MP.power(x, p)


def _dpower(x: Any, p: Any) -> Any:
    dp = MP.power(x, p) * MP.log(x) if x > 0 else MP.nan  # no real partial in p for x < 0
    return p * MP.power(x, p - 1), dp


def _log_abs_gamma(x: Any) -> Any:
    return MP.log(abs(MP.gamma(x)))


def _expit(x: Any) -> Any:
    return 1 / (1 + MP.exp(-x))


def _dexpit(x: Any) -> Any:
    return _expit(x) * _expit(-x)


def _ddeg(x: Any) -> Any:
    return MP.pi / 180


def _drad(x: Any) -> Any:
    return 180 / MP.pi


def _atan2_partials(x1: Any, x2: Any) -> Any:
    r2 = x1 * x1 + x2 * x2
    return x2 / r2, -x1 / r2


def _hypot_partials(x1: Any, x2: Any) -> Any:
    h = MP.hypot(x1, x2)
    return x1 / h, x2 / h


_POWER_DOMAIN = Domain(
    grid(POW_BASE, POW_EXP) + POW_NEG,
    _power,
    _dpower,
    points_by_input={1: grid(POW_BASE, POW_EXP)},
)
_LOGADDEXP_POINTS = grid(LSE_X, LSE_Y)
_ZETA_POINTS = grid([1.5, 2.0, 3.0, 4.5, 10.0], [1e-3, 0.1, 0.5, 1.0, 2.5, 10.0, 1e3, 1e6])
_ZETA_DOMAIN = Domain(
    _ZETA_POINTS, lambda s, q: MP.zeta(s, q), lambda s, q: (None, -s * MP.zeta(s + 1, q))
)

DOMAINS: dict[Any, Domain] = {
    # arithmetic
    np.add: Domain(grid(BIN_X, BIN_Y), lambda a, b: a + b, lambda a, b: (1, 1)),
    np.subtract: Domain(grid(BIN_X, BIN_Y), lambda a, b: a - b, lambda a, b: (1, -1)),
    np.multiply: Domain(grid(BIN_X, BIN_Y), lambda a, b: a * b, lambda a, b: (b, a)),
    np.true_divide: Domain(grid(BIN_X, BIN_Y), lambda a, b: a / b, lambda a, b: (1 / b, -a / b**2)),
    np.power: _POWER_DOMAIN,
    np.float_power: _POWER_DOMAIN,
    np.negative: Domain(REALS, lambda x: -x, lambda x: -1),
    np.positive: Domain(REALS, lambda x: x, lambda x: 1),
    np.conjugate: Domain(REALS, MP.conj, lambda x: 1),
    np.reciprocal: Domain(
        pm(1e-150, 3.3e-7, 1e-3, 0.3, 1.0, 2.5, 7.0, 1e3, 1e8, 1e150, zero=False),
        lambda x: 1 / x,
        lambda x: -1 / x**2,
    ),
    np.square: Domain(REALS, lambda x: x * x, lambda x: 2 * x),
    np.sqrt: Domain(POSITIVE, MP.sqrt, lambda x: 1 / (2 * MP.sqrt(x))),
    np.cbrt: Domain(
        pm(1e-300, 1e-30, 1e-3, 0.1, 0.5, 1.0, 2.0, 27.0, 1e3, 1e30, 1e300, zero=False),
        lambda x: _sgn(x) * MP.cbrt(abs(x)),
        lambda x: 1 / (3 * MP.cbrt(x * x)),
    ),
    np.fmod: Domain(grid(MOD_X, MOD_Y), _fmod, lambda a, b: (1, -_trunc_quotient(a, b))),
    np.remainder: Domain(
        grid(MOD_X, MOD_Y),
        lambda a, b: a - b * _floor_quotient(a, b),
        lambda a, b: (1, -_floor_quotient(a, b)),
    ),
    np.copysign: Domain(
        grid(pm(1e-300, 1e-8, 3.0, 1e300, zero=False), [-2.0, -1e-300, 1e-3, 7.0, 1e300]),
        lambda a, b: abs(a) * _sgn(b),
        lambda a, b: (_sgn(a) * _sgn(b), 0),
    ),
    np.absolute: Domain(NONZERO, abs, lambda x: _sgn(x)),  # at 0: test_abs_at_zero
    np.fabs: Domain(NONZERO, abs, lambda x: _sgn(x)),
    # max/min at ties: test_max_min_ties
    np.maximum: Domain(grid(BIN_X, BIN_Y), max, lambda a, b: (int(a > b), int(b > a))),
    np.minimum: Domain(grid(BIN_X, BIN_Y), min, lambda a, b: (int(a < b), int(b < a))),
    np.fmax: Domain(grid(BIN_X, BIN_Y), max, lambda a, b: (int(a > b), int(b > a))),
    np.fmin: Domain(grid(BIN_X, BIN_Y), min, lambda a, b: (int(a < b), int(b < a))),
    # exponentials and logarithms
    np.exp: Domain(EXP_ARGS, MP.exp, MP.exp),
    np.exp2: Domain(
        [1.4 * x for x in EXP_ARGS], lambda x: MP.power(2, x), lambda x: MP.ln2 * MP.power(2, x)
    ),
    np.expm1: Domain(EXP_ARGS, MP.expm1, MP.exp),
    np.log: Domain(POSITIVE, MP.log, lambda x: 1 / x),
    np.log2: Domain(POSITIVE, lambda x: MP.log(x, 2), lambda x: 1 / (x * MP.ln2)),
    np.log10: Domain(POSITIVE, MP.log10, lambda x: 1 / (x * MP.ln10)),
    np.log1p: Domain(
        [-ONE_MINUS, -0.999999, -0.9, -0.5]
        + pm(1e-300, 1e-10, 1e-3, 0.1)
        + [0.5, 1.0, 2.0, 10.0, 1e5, 1e10, 1e100, 1e300],
        MP.log1p,
        lambda x: 1 / (1 + x),
    ),
    np.logaddexp: Domain(_LOGADDEXP_POINTS, _lse(MP.e), _dlse(MP.e)),
    np.logaddexp2: Domain(_LOGADDEXP_POINTS, _lse(MP.mpf(2)), _dlse(MP.mpf(2))),
    # trigonometric and hyperbolic
    np.sin: Domain(TRIG, MP.sin, MP.cos),
    np.cos: Domain(TRIG, MP.cos, lambda x: -MP.sin(x)),
    np.tan: Domain(TAN, MP.tan, lambda x: 1 / MP.cos(x) ** 2),
    np.arcsin: Domain(UNIT, MP.asin, lambda x: 1 / MP.sqrt(1 - x * x)),
    np.arccos: Domain(UNIT, MP.acos, lambda x: -1 / MP.sqrt(1 - x * x)),
    np.arctan: Domain(
        pm(1e-300, 1e-8, 1e-3, 0.5, 1.0, 2.0, 10.0, 1e5, 1e10, 1e100, 1e150),
        MP.atan,
        lambda x: 1 / (1 + x * x),
    ),
    np.arctan2: Domain(grid(ATAN2_X, ATAN2_Y), MP.atan2, _atan2_partials),
    np.hypot: Domain(grid(ATAN2_X + [0.0], ATAN2_Y), MP.hypot, _hypot_partials),
    np.sinh: Domain(EXP_ARGS, MP.sinh, MP.cosh),
    np.cosh: Domain(EXP_ARGS, MP.cosh, MP.sinh),
    np.tanh: Domain(
        pm(1e-300, 1e-8, 1e-3, 0.5, 1.0, 2.5, 10.0, 19.5, 30.0, 100.0, 300.0),
        MP.tanh,
        lambda x: MP.sech(x) ** 2,
    ),
    np.arcsinh: Domain(
        pm(1e-300, 1e-8, 1e-3, 0.5, 1.0, 3.0, 100.0, 1e8, 1e100, 1e300),
        MP.asinh,
        lambda x: 1 / MP.sqrt(1 + x * x),
    ),
    np.arccosh: Domain(
        [ONE_PLUS, 1.0 + 1e-10, 1.000001, 1.01, 1.1, 1.5, 2.0, 3.0, 10.0, 100.0, 1e3, 1e5]
        + [1e8, 1e15, 1e50, 1e100, 1e154, 1e155, 1e200, 1e300],
        MP.acosh,
        lambda x: 1 / MP.sqrt(x * x - 1),
    ),
    np.arctanh: Domain(UNIT, MP.atanh, lambda x: 1 / (1 - x * x)),
    np.deg2rad: Domain(REALS, lambda x: x * MP.pi / 180, _ddeg),
    np.rad2deg: Domain(REALS, lambda x: x * 180 / MP.pi, _drad),
    np.radians: Domain(REALS, lambda x: x * MP.pi / 180, _ddeg),
    np.degrees: Domain(REALS, lambda x: x * 180 / MP.pi, _drad),
    np.sinc: Domain(
        pm(1e-300, 1e-8, 1e-3, 0.0099, 0.0101, 0.1, 0.3, 0.5, 1.0, 1.5, 2.7, 10.25, 123.3)
        + [12345.67, 1e5 + 0.3],
        _sinc,
        _dsinc,
    ),
    # SciPy
    sp.erf: Domain(ERF, MP.erf, lambda x: 2 / MP.sqrt(MP.pi) * MP.exp(-x * x)),
    sp.erfc: Domain(ERF, MP.erfc, lambda x: -2 / MP.sqrt(MP.pi) * MP.exp(-x * x)),
    sp.expit: Domain(
        pm(1e-300, 1e-3, 0.5, 1.0, 5.0, 20.0, 40.0, 100.0, 300.0, 700.0), _expit, _dexpit
    ),
    sp.gammaln: Domain(
        [-100.5, -10.3, -3.7, -2.5, -1.5, -0.5, -1e-8, 1e-300, 1e-8, 1e-3, 0.1, 0.5, 1.0]
        + [1.4616321449683622, 2.0, 2.5, 5.0, 10.0, 100.0, 1e5, 1e10, 1e100],
        _log_abs_gamma,
        MP.digamma,
    ),
    sp.gamma: Domain(
        [-10.3, -4.5, -3.7, -2.5, -1.5, -0.5, -1e-3, 1e-8, 1e-3, 0.1, 0.5, 1.0]
        + [1.4616321449683622, 2.0, 2.5, 3.3, 5.0, 10.0, 30.5, 100.0, 170.5],
        MP.gamma,
        lambda x: MP.gamma(x) * MP.digamma(x),
    ),
    sp.digamma: Domain(
        [-100.25, -10.7, -2.3, -1.5, -0.5, 1e-150, 1e-8, 1e-3, 0.1, 0.5, 1.0]
        + [1.4616321449683622, 2.0, 3.3, 10.0, 100.0, 1e5, 1e10, 1e100, 1e150],
        MP.digamma,
        lambda x: MP.psi(1, x),
    ),
    sp.zeta: _ZETA_DOMAIN,
}
zeta_ufunc = getattr(getattr(sp, "_ufuncs", None), "_zeta", None)
if zeta_ufunc is not None:
    DOMAINS[zeta_ufunc] = _ZETA_DOMAIN  # what sp.zeta(x, q) calls: the ufunc NumPy dispatches


def _name(func: Any) -> str:
    return getattr(func, "__name__", repr(func))


def _builtin(func: Any) -> bool:
    """A NumPy or SciPy function: a rule of the table, not a user's register_rule of their own."""
    module = getattr(func, "__module__", None) or ""
    return isinstance(func, np.ufunc) or module.split(".")[0] in ("numpy", "scipy")


# Every NumPy/SciPy rule in the table: one added later is tested here or fails for want of a domain.
TABLE = [f for f in rules.RULES if _builtin(f)]


def _nin(func: Any) -> int:
    return rules.RULES[func].nin


# --- comparing -----------------------------------------------------------------------------------


def assert_close(got: Any, ref: Sequence[Any], points: Sequence[Any], rtol: float, atol: float):
    got = np.asarray(got, dtype=float)
    ref_f = np.array([float(r) for r in ref])
    err = np.abs(got - ref_f)
    ok = err <= rtol * np.abs(ref_f) + max(atol, ATOL_FLOOR)
    if not ok.all():
        lines = [
            f"  at {p}: got {g!r}, mpmath {r!r}, rel err {e / abs(r) if r else e:.3g}"
            for p, g, r, e, good in zip(points, got, ref_f, err, ok)
            if not good
        ]
        raise AssertionError(f"{len(lines)} of {len(points)} points off:\n" + "\n".join(lines))


def _gradient_at(func: Any, points: Sequence[tuple[float, ...]], i: int) -> Any:
    """Partial in input i at each point: gradient of sum(func) over a vector of the points."""
    cols = [np.array([p[j] for p in points]) for j in range(len(points[0]))]

    def total(z: Any) -> Any:
        args = list(cols)
        args[i] = z
        return np.sum(func(*args))

    return da.gradient(total, cols[i])


def _derivative_at(func: Any, point: tuple[float, ...], i: int) -> Any:
    """The same partial by da.derivative at one point, the other inputs Python floats."""

    def f(t: Any) -> Any:
        args = list(point)
        args[i] = t
        return func(*args)

    return da.derivative(f, point[i])


# --- 1. first derivatives of every rule ----------------------------------------------------------


def test_every_rule_has_a_domain():
    missing = [_name(f) for f in rules.RULES if _builtin(f) and f not in DOMAINS]
    assert not missing, f"rules without sample points: add them to DOMAINS: {missing}"


def test_domains_are_rich_enough():
    for func, dom in DOMAINS.items():
        for i in range(len(dom.points_for(0)[0])):
            pts = dom.points_for(i)
            assert len(pts) >= 20, f"{_name(func)}: only {len(pts)} points for input {i}"


@pytest.mark.parametrize("func", TABLE, ids=_name)
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_first_derivative_against_mpmath(func):
    if func not in DOMAINS:
        pytest.fail(f"rules.RULES has a rule for {_name(func)} but DOMAINS has no sample points")
    dom, rule = DOMAINS[func], rules.RULES[func]
    for i, partial in enumerate(rule.partials):
        points = dom.points_for(i)
        if partial is da.NONDIFF:
            with pytest.raises(da.DualError, match=rule.name):
                _gradient_at(func, points, i)
            continue
        ref = [dom.partial(i, p) for p in points]
        got = _gradient_at(func, points, i)
        assert_close(got, ref, points, RTOL, dom.atol)
        got_scalar = [_derivative_at(func, p, i) for p in points]
        assert_close(got_scalar, ref, points, RTOL, dom.atol)


@pytest.mark.parametrize("func", [f for f in TABLE if f is not zeta_ufunc], ids=_name)
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_all_partials_at_once(func):
    """Seeding every input at once gives the partials side by side (their contributions add)."""
    if func not in DOMAINS or _nin(func) == 1:
        return
    dom, rule = DOMAINS[func], rules.RULES[func]
    if any(p is da.NONDIFF for p in rule.partials):
        return
    points = dom.points_for(0)
    if any(points != dom.points_for(i) for i in range(rule.nin)):
        points = [p for p in points if all(p in dom.points_for(i) for i in range(rule.nin))]
    stacked = np.array(points).T

    def total(z: Any) -> Any:
        return np.sum(func(*z))

    both = da.gradient(total, stacked)
    for i in range(rule.nin):
        np.testing.assert_array_equal(both[i], _gradient_at(func, points, i))


def _moderate(point: tuple[float, ...]) -> bool:
    return all(a == 0 or 1e-3 <= abs(a) <= 1e3 for a in point)


@pytest.mark.parametrize("func", list(DOMAINS), ids=_name)
def test_reference_formulas_match_numerical_differentiation(func):
    """The analytic derivatives above agree with mpmath.diff of the functions."""
    dom = DOMAINS[func]
    rule = rules.lookup(func)
    nin = len(dom.points_for(0)[0])
    for i in range(nin):
        if rule is not None and rule.partials[i] is da.NONDIFF:
            continue
        if dom.partial(i, dom.points_for(i)[0]) is None:  # no reference for this input
            continue
        for p in filter(_moderate, dom.points_for(i)):
            args = [MP.mpf(a) for a in p]

            def g(t: Any, args: list[Any] = args, i: int = i) -> Any:
                return dom.f(*args[:i], t, *args[i + 1 :])

            numeric = MP.diff(g, args[i])
            exact = dom.partial(i, p)
            assert abs(numeric - exact) <= MP.mpf(10) ** -30 * (1 + abs(exact)), (func, p, i)


# --- 2. second derivatives by nesting ------------------------------------------------------------

SECOND = {
    "sin": (np.sin, MP.sin, pm(1e-3, 0.5, 1.0, HALF_PI, 2.0, 3.0, 10.0)),
    "exp": (np.exp, MP.exp, pm(1e-3, 0.5, 1.0, 2.0, 10.0, 100.0)),
    "log": (np.log, MP.log, [1e-3, 0.1, 0.5, 1.0, 2.0, 10.0, 1e3]),
    "tan": (np.tan, MP.tan, pm(1e-3, 0.5, 1.0, 1.5, 1.57, 3.0)),
    "tanh": (np.tanh, MP.tanh, pm(1e-3, 0.5, 1.0, 3.0, 10.0, 30.0)),
    "arcsin": (np.arcsin, MP.asin, pm(1e-3, 0.1, 0.5, 0.9, 0.999)),
    "arctan": (np.arctan, MP.atan, pm(1e-3, 0.5, 1.0, 3.0, 100.0)),
    "sqrt": (np.sqrt, MP.sqrt, [1e-3, 0.1, 0.5, 1.0, 2.0, 10.0, 1e3]),
    "power 2.5": (lambda x: x**2.5, lambda x: MP.power(x, 2.5), [1e-3, 0.1, 0.5, 1.0, 2, 10]),
    "power -1.5": (lambda x: np.power(x, -1.5), lambda x: x**-1.5, [1e-3, 0.5, 1.0, 2.0, 10]),
    "power 3": (lambda x: x**3, lambda x: x**3, pm(1e-3, 0.5, 1.0, 2.0, 10.0)),
    "power -2": (
        lambda x: np.power(x, -2),
        lambda x: x**-2,
        pm(1e-3, 0.5, 1.0, 2.0, 10.0, zero=False),
    ),
    "float_power 4": (lambda x: np.float_power(x, 4), lambda x: x**4, pm(1e-3, 0.5, 2.0, 10.0)),
    "sinc": (np.sinc, MP.sincpi, pm(1e-3, 0.0099, 0.0101, 0.1, 0.5, 1.0, 1.5, 2.7, 10.25)),
    "erf": (sp.erf, MP.erf, pm(1e-3, 0.1, 0.5, 1.0, 2.0, 3.0, 5.0)),
    "expit": (sp.expit, _expit, pm(1e-3, 0.5, 1.0, 5.0, 20.0, 40.0)),
    # rules rewritten for accuracy in rules.py: their second derivatives, ties included
    "logaddexp": (
        lambda x: np.logaddexp(x, 0.3),
        lambda x: _lse(MP.e)(x, MP.mpf(0.3)),
        [-30.0, -1.0, 0.0, 0.3, 2.0, 25.0],
    ),
    "logaddexp2": (
        lambda x: np.logaddexp2(0.3, x),
        lambda x: _lse(MP.mpf(2))(MP.mpf(0.3), x),
        [-30.0, -1.0, 0.0, 0.3, 2.0, 25.0],
    ),
    "arctan2": (lambda x: np.arctan2(1.5, x), lambda x: MP.atan2(1.5, x), pm(1e-3, 0.5, 2, 50)),
    "arccosh": (np.arccosh, MP.acosh, [1.001, 1.5, 2.0, 10.0, 1e3]),
    "gammaln": (sp.gammaln, _log_abs_gamma, [-10.3, -2.5, -0.5, 1e-3, 0.5, 1.0, 2.5, 10.0, 100.0]),
    "digamma": (sp.digamma, MP.digamma, [-10.3, -2.5, -0.5, 1e-3, 0.5, 1.0, 2.5, 10.0, 100.0]),
}


def _second(f: Callable[..., Any], x: float) -> Any:
    return da.derivative(lambda t: da.derivative(f, t), x)


# mp.diff's finite differences leave noise of about 1e-60 (relative to f) where the derivative is
# exactly 0 (e.g. the second derivative of expit at 0); it only matters for values below 1e-30.
MP_DIFF_NOISE = 1e-40


def _mp_diff(f: Callable[..., Any], x: float, n: int) -> Any:
    # mpmath's step is 2**-(prec + 10) (absolute); the points here are at most 1e3 in size
    return MP.diff(f, MP.mpf(x), n)


@pytest.mark.parametrize("case", list(SECOND))
def test_second_derivative_by_nesting(case):
    f, mp_f, points = SECOND[case]
    got = [_second(f, x) for x in points]
    ref = [_mp_diff(mp_f, x, 2) for x in points]
    assert_close(got, ref, points, 1e-10, MP_DIFF_NOISE)


# --- 3. special cases ----------------------------------------------------------------------------

INT_EXPONENTS = [2, 2.0, np.int64(2), np.float64(2.0), np.array(2.0)]


@pytest.mark.parametrize("power", [np.power, np.float_power], ids=_name)
@pytest.mark.parametrize("two", INT_EXPONENTS, ids=lambda p: type(p).__name__)
def test_power_integer_exponent_exact_at_zero(power, two):
    three, one, zero = two + 1, two - 1, two - 2
    assert da.derivative(lambda x: power(x, two), 0.0) == 0.0
    assert _second(lambda x: power(x, two), 0.0) == 2.0
    assert da.derivative(lambda x: power(x, three), 0.0) == 0.0
    assert _second(lambda x: power(x, three), 0.0) == 0.0
    assert da.derivative(lambda x: _second(lambda y: power(y, three), x), 0.0) == 6.0
    assert da.derivative(lambda x: power(x, one), 0.0) == 1.0
    assert _second(lambda x: power(x, one), 0.0) == 0.0
    for x in [-2.0, -0.0, 0.0, 1e-300, 3.0]:
        assert da.derivative(lambda x: power(x, zero), x) == 0.0
        assert _second(lambda x: power(x, zero), x) == 0.0
    # the same with a vector of bases and of exponents (the array code path)
    xs = np.array([0.0, 0.0, 0.0, 0.0, -1.5])
    ps = np.array([0.0, 1.0, 2.0, 3.0, 3.0]) + zero
    grad = da.gradient(lambda x: np.sum(power(x, ps)), xs)
    np.testing.assert_array_equal(grad, [0.0, 1.0, 0.0, 0.0, 3 * 1.5**2])


@pytest.mark.parametrize("power", [np.power, np.float_power], ids=_name)
@pytest.mark.parametrize("x", [0.5, 2.0, 7.0])
def test_power_mixed_second_derivative_at_zero_exponent(power, x):
    """d/dp d/dx x**p = x**(p-1) (1 + p log x): 1/x at p == 0 (the exponent partial nests too)."""
    hess = da.hessian(lambda z: power(z[0], z[1]), [x, 0.0])
    expected = [[0.0, 1.0 / x], [1.0 / x, math.log(x) ** 2]]
    np.testing.assert_allclose(hess, expected, rtol=1e-15, atol=0.0)
    ref = [MP.power(x, p - 1) * (1 + p * MP.log(x)) for p in map(MP.mpf, [-1.5, 0.0, 0.5, 3.0])]
    got = [
        da.derivative(lambda p: da.derivative(lambda t: power(t, p), x), p)
        for p in [-1.5, 0.0, 0.5, 3.0]
    ]
    assert_close(got, ref, [-1.5, 0.0, 0.5, 3.0], 1e-12, 0.0)


def test_power_operator_exact_at_zero():
    assert da.derivative(lambda x: x**2, 0.0) == 0.0
    assert _second(lambda x: x**3, 0.0) == 0.0
    assert da.derivative(lambda x: x**0, 0.0) == 0.0
    assert da.derivative(lambda x: x**1, 0.0) == 1.0


@pytest.mark.parametrize(
    "two_to",
    [lambda p: 2.0**p, lambda p: np.power(2.0, p), lambda p: np.float_power(2.0, p)],
    ids=["operator", "power", "float_power"],
)
def test_dual_exponent(two_to):
    points = [-30.0, -3.0, -1e-8, 0.0, 0.5, 1.0, 10.0, 1000.0]
    ref = [MP.ln2 * MP.power(2, p) for p in points]
    assert_close([da.derivative(two_to, p) for p in points], ref, points, RTOL, 0.0)
    ref2 = [MP.ln2**2 * MP.power(2, p) for p in points]
    assert_close([_second(two_to, p) for p in points], ref2, points, 1e-10, 0.0)
    # 0**p: derivative in p is 0 for p > 0
    assert da.derivative(lambda p: np.power(0.0, p), 2.5) == 0.0


@pytest.mark.parametrize(
    "x_to_x",
    [lambda x: x**x, lambda x: np.power(x, x), lambda x: np.float_power(x, x)],
    ids=["operator", "power", "float_power"],
)
def test_x_to_the_x(x_to_x):
    points = [1e-3, 0.1, 1 / math.e, 0.5, 1.0, 2.0, 3.7, 50.0]
    ref = [MP.power(x, x) * (MP.log(x) + 1) for x in map(MP.mpf, points)]
    # The derivative is the sum of the two partials x**x and x**x log x, which cancel at the
    # minimum x = 1/e (true value 2.3e-17 at the float nearest 1/e): allow a rounding error of
    # the terms, 0.69 * 2**-52, there.
    atol = 2e-16
    assert_close([da.derivative(x_to_x, x) for x in points], ref, points, RTOL, atol)
    ref2 = [MP.diff(lambda t: t**t, MP.mpf(x), 2) for x in points]
    assert_close([_second(x_to_x, x) for x in points], ref2, points, 1e-10, 0.0)


@pytest.mark.parametrize("func", [np.maximum, np.minimum, np.fmax, np.fmin], ids=_name)
@pytest.mark.parametrize("t", [-2.0, 0.0, 1.5])
def test_max_min_ties(func, t):
    np.testing.assert_array_equal(da.gradient(lambda z: func(z[0], z[1]), [t, t]), [0.5, 0.5])
    assert da.derivative(lambda x: func(x, t), t) == 0.5
    assert da.derivative(lambda x: func(t, x), t) == 0.5
    assert da.derivative(lambda x: func(x, x), t) == 1.0
    np.testing.assert_array_equal(da.jacobian(lambda x: func(x, t), [t]), [[0.5]])


@pytest.mark.parametrize("func", [np.fmax, np.fmin], ids=_name)
def test_fmax_fmin_ignore_nan(func):
    np.testing.assert_array_equal(
        da.gradient(lambda z: func(z[0], z[1]), [np.nan, 2.0]), [0.0, 1.0]
    )
    np.testing.assert_array_equal(
        da.gradient(lambda z: func(z[0], z[1]), [2.0, np.nan]), [1.0, 0.0]
    )


@pytest.mark.parametrize("x", [0.0, -0.0])
def test_abs_at_zero(x):
    assert da.derivative(np.abs, x) == 0.0
    assert da.derivative(np.fabs, x) == 0.0
    assert da.derivative(abs, x) == 0.0


def test_sinc_at_and_near_zero():
    assert da.derivative(np.sinc, 0.0) == 0.0
    for x in [1e-3, -1e-3, 1e-8, 0.0099, 0.0101]:
        ref = MP.diff(MP.sincpi, MP.mpf(x))
        assert abs(da.derivative(np.sinc, x) - ref) <= RTOL * abs(ref), x
    f = np.sinc
    for order in (1, 2, 3, 4):
        ref = MP.diff(MP.sincpi, 0, order)  # 0, -pi^2/3, 0, pi^4/5
        f = (lambda g: lambda t: da.derivative(g, t))(f)
        got = f(0.0)
        assert abs(got - ref) <= 1e-12 * abs(ref) + 1e-40, (order, got, ref)
    # the third and fourth derivatives near 0 (series branch) too
    for x in [1e-3, -5e-3]:
        ref4 = MP.diff(MP.sincpi, MP.mpf(x), 4)
        assert abs(f(x) - ref4) <= 1e-10 * abs(ref4), x


@pytest.mark.parametrize("x", [30.0, -30.0, 40.0, 300.0, -300.0])
def test_tanh_has_no_cancellation(x):
    x_mp = MP.mpf(x)
    ref = MP.sech(x_mp) ** 2  # about 3.5e-26 at 30, 1.1e-260 at 300
    got = da.derivative(np.tanh, x)
    assert got != 0.0
    assert abs(got - ref) <= RTOL * ref
    # nested derivatives neither underflow early nor overflow into nan
    ref2 = -2 * MP.tanh(x_mp) * ref
    assert abs(_second(np.tanh, x) - ref2) <= 1e-10 * abs(ref2)
    ref3 = 4 * MP.tanh(x_mp) ** 2 * ref - 2 * ref**2
    third = da.derivative(lambda t: _second(np.tanh, t), x)
    assert abs(third - ref3) <= 1e-10 * abs(ref3)


def test_tanh_derivatives_far_out_and_at_zero():
    for x in [400.0, -800.0, 1e5]:  # the true derivatives underflow to 0
        assert da.derivative(np.tanh, x) == 0.0
        assert _second(np.tanh, x) == 0.0
        assert da.derivative(lambda t: _second(np.tanh, t), x) == 0.0
    assert da.derivative(np.tanh, 0.0) == 1.0
    assert _second(np.tanh, 0.0) == 0.0
    assert da.derivative(lambda t: _second(np.tanh, t), 0.0) == -2.0


@pytest.mark.parametrize("x", [40.0, -40.0, 700.0, -700.0])
def test_expit_has_no_cancellation(x):
    ref = _dexpit(MP.mpf(x))  # about 4.2e-18 at +-40
    got = da.derivative(sp.expit, x)
    assert got != 0.0
    assert abs(got - ref) <= RTOL * ref


def test_zeta_not_differentiable_in_s():
    with pytest.raises(da.DualError, match="zeta"):
        da.derivative(lambda s: sp.zeta(s, 2.0), 3.0)
    ref = -3 * MP.zeta(4, 2)
    assert abs(da.derivative(lambda q: sp.zeta(3.0, q), 2.0) - ref) <= RTOL * abs(ref)


# --- 4. value-only functions ---------------------------------------------------------------------

ZERO_UFUNCS = sorted((f for f in rules.ZERO_DERIVATIVE if isinstance(f, np.ufunc)), key=_name)
VALUES = np.array([-2.5, -1.0, -0.5, -0.0, 0.0, 0.3, 0.5, 1.0, 1.5, 2.5, 7.0, np.inf, np.nan])
OTHER = np.array([1.5, -1.0, 0.5, 2.0, 0.0, 0.3, -0.5, 1.0, np.nan, 3.0, 7.0, 1.0, 0.0])


def _args(func: np.ufunc, x: Any) -> tuple[Any, ...]:
    return (x,) if func.nin == 1 else (x, OTHER)


@pytest.mark.parametrize("func", ZERO_UFUNCS, ids=_name)
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_zero_derivative_functions(func):
    plain = func(*_args(func, VALUES))
    for i in range(func.nin):
        # a Dual in input i: the plain value comes out, with no Dual around it
        args = list(_args(func, VALUES))
        args[i] = da.Dual(args[i], np.ones(args[i].shape + (1,)))
        out = func(*args)
        assert not isinstance(out, da.Dual), f"{_name(func)} returned a Dual"
        np.testing.assert_array_equal(out, plain)

        def f(z: Any, i: int = i) -> Any:
            a = list(_args(func, VALUES))
            a[i] = z
            return func(*a)

        jac = da.jacobian(f, _args(func, VALUES)[i])
        assert jac.shape == plain.shape * 2
        np.testing.assert_array_equal(jac, 0.0)
    # nested Duals: the value comes out of every layer; all inputs Duals at once
    both = da.gradient(lambda z: np.sum(func(*z[: func.nin]) * 1.0), np.stack([VALUES, OTHER]))
    np.testing.assert_array_equal(both, 0.0)
    # nested differentiation (forward over forward): the value comes out of every layer, so
    # the gradient of sum(func(z) * z) is func(z) and the Hessian is 0
    z0 = np.array([-2.5, -0.75, 0.25, 1.0, 3.5])
    other = np.array([1.5, -1.0, 0.5, 2.0, 0.3])

    def g(z: Any) -> Any:
        return np.sum(func(*(z, other)[: func.nin]) * z)

    np.testing.assert_array_equal(da.gradient(g, z0), func(*(z0, other)[: func.nin]))
    np.testing.assert_array_equal(da.hessian(g, z0), 0.0)


# --- 5. register_rule ----------------------------------------------------------------------------


SQRT_2PI = math.sqrt(2 * math.pi)


def _npdf(x: Any, y: Any = None) -> Any:
    return np.exp(-0.5 * (x * x)) / SQRT_2PI


NDTR_POINTS = [-30.0, -8.0, -2.5, -1.0, -1e-3, 0.0, 1e-8, 0.5, 1.0, 3.0, 8.0]


def test_register_rule_on_a_ufunc(restore_rules):
    assert rules.lookup(sp.ndtr) is None
    with pytest.raises(da.DualError, match="ndtr"):
        da.derivative(sp.ndtr, 0.5)
    assert da.register_rule(sp.ndtr, _npdf) is sp.ndtr
    ref = [MP.npdf(x) for x in NDTR_POINTS]
    got = [da.derivative(sp.ndtr, x) for x in NDTR_POINTS]
    assert_close(got, ref, NDTR_POINTS, RTOL, 0.0)
    ref2 = [-x * MP.npdf(x) for x in NDTR_POINTS]
    assert_close([_second(sp.ndtr, x) for x in NDTR_POINTS], ref2, NDTR_POINTS, 1e-10, 0.0)
    jac = da.jacobian(sp.ndtr, np.array(NDTR_POINTS))
    np.testing.assert_allclose(np.diag(jac), [float(r) for r in ref], rtol=RTOL)
    np.testing.assert_array_equal(jac - np.diag(np.diag(jac)), 0.0)
    hess = da.hessian(lambda x: np.sum(sp.ndtr(x)), np.array([0.5, -1.0]))
    np.testing.assert_allclose(np.diag(hess), [float(-x * MP.npdf(x)) for x in (0.5, -1.0)])


def test_register_rule_is_undone_by_the_fixture():
    assert rules.lookup(sp.ndtr) is None


def _softplus(x: Any) -> Any:
    return np.logaddexp(0.0, x)


def test_register_rule_on_a_plain_function(restore_rules):
    wrapped = da.register_rule(_softplus, lambda x, y: sp.expit(x), name="softplus")
    assert wrapped is not _softplus and callable(wrapped)
    assert wrapped.__name__ == "softplus"
    xs = np.array([-50.0, -2.0, 0.0, 0.3, 4.0, 50.0])
    out = wrapped(xs)
    assert not isinstance(out, da.Dual)
    np.testing.assert_array_equal(out, _softplus(xs))
    ref = [_expit(MP.mpf(x)) for x in xs]
    assert_close([da.derivative(wrapped, x) for x in xs], ref, xs, RTOL, 0.0)
    ref2 = [_dexpit(MP.mpf(x)) for x in xs]
    assert_close([_second(wrapped, x) for x in xs], ref2, xs, 1e-10, 0.0)
    jac = da.jacobian(wrapped, xs)
    np.testing.assert_allclose(np.diag(jac), [float(r) for r in ref], rtol=RTOL)
    np.testing.assert_array_equal(jac - np.diag(np.diag(jac)), 0.0)


def test_register_rule_on_a_plain_function_of_two_inputs(restore_rules):
    def scaled_hypot(a: Any, b: Any) -> Any:
        return 2.0 * np.hypot(a, b)

    wrapped = da.register_rule(
        scaled_hypot, lambda a, b, y: 4.0 * a / y, lambda a, b, y: 4.0 * b / y
    )
    np.testing.assert_allclose(da.gradient(lambda z: wrapped(z[0], z[1]), [3.0, 4.0]), [1.2, 1.6])
    assert da.derivative(lambda a: wrapped(a, 4.0), 3.0) == pytest.approx(1.2, rel=1e-15)
    hess = da.hessian(lambda z: wrapped(z[0], z[1]), [3.0, 4.0])
    np.testing.assert_allclose(hess, 2.0 * np.array([[16, -12], [-12, 9]]) / 125.0, rtol=1e-14)


def test_register_rule_wrong_number_of_partials(restore_rules):
    with pytest.raises(ValueError, match="ndtr"):
        da.register_rule(sp.ndtr, _npdf, _npdf)
    with pytest.raises(ValueError):
        da.register_rule(sp.ndtr)
    with pytest.raises(ValueError):
        da.register_rule(sp.gammainc, lambda a, x, y: x)
    with pytest.raises(ValueError):
        da.register_rule(_softplus)
    assert rules.lookup(sp.ndtr) is None and rules.lookup(sp.gammainc) is None


def test_register_rule_wrong_number_of_partials_plain_function(restore_rules):
    def product(a: Any, b: Any) -> Any:
        return a * b

    # one partial for two inputs would silently drop the second input's derivative
    with pytest.raises(ValueError, match="product takes 2 positional inputs but 1 partials"):
        da.register_rule(product, lambda a, b, y: b)


def _gammainc_dx(a: Any, x: Any, y: Any) -> Any:
    return np.exp((a - 1.0) * np.log(x) - x - sp.gammaln(a))


def test_register_rule_nondiff_input(restore_rules):
    da.register_rule(sp.gammainc, da.NONDIFF, _gammainc_dx, name="gammainc")
    with pytest.raises(da.DualError, match="gammainc"):
        da.derivative(lambda a: sp.gammainc(a, 2.0), 1.5)
    with pytest.raises(da.DualError, match="gammainc"):
        da.gradient(lambda z: sp.gammainc(z[0], z[1]), [1.5, 2.0])
    for a, x in [(0.5, 0.1), (1.5, 2.0), (3.0, 7.5), (10.0, 4.0)]:
        ref = MP.diff(lambda t, a=a: MP.gammainc(a, 0, t, regularized=True), MP.mpf(x))
        got = da.derivative(lambda t, a=a: sp.gammainc(a, t), x)
        assert abs(got - ref) <= 1e-12 * abs(ref), (a, x)
    # a plain function with a non-differentiable input
    wrapped = da.register_rule(lambda n, x: x * n, da.NONDIFF, lambda n, x, y: n, name="times_n")
    assert da.derivative(lambda x: wrapped(3.0, x), 2.0) == 3.0
    with pytest.raises(da.DualError, match="times_n"):
        da.derivative(lambda n: wrapped(n, 2.0), 3.0)
