"""The one table of derivative rules that every engine reads.

Each elementwise primitive appears here exactly once: the function that computes it and, for each
input, its partial derivative written as a NumPy expression of the inputs and the output.  Because
the partials are themselves NumPy code, an engine can evaluate them on dual numbers, and nesting
dual numbers then yields second and higher derivatives with no further rules.

A partial is one of

* a callable ``d(*inputs, out)`` returning the partial derivative (broadcastable to ``out``),
* a Python number (a constant partial, e.g. ``1.0`` for addition),
* ``None``: the output does not depend on that input (zero partial),
* :data:`NONDIFF`: the function is not differentiable in that input; asking for it is an error.

Functions in :data:`ZERO_DERIVATIVE` act on values only (comparisons, ``floor``, ``sign``):
their derivative is zero wherever it exists, so branches and loops on values work.
"""

from __future__ import annotations

import inspect
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "NONDIFF",
    "Rule",
    "RULES",
    "ZERO_DERIVATIVE",
    "register_rule",
    "lookup",
]


class _NonDiff:
    """Marker for an input a function cannot be differentiated in."""

    def __repr__(self) -> str:
        return "NONDIFF"


NONDIFF: Any = _NonDiff()

Partial = Callable[..., Any] | float | int | None | _NonDiff


@dataclass(frozen=True)
class Rule:
    """A primitive and its partial derivatives, one per input."""

    name: str
    func: Callable[..., Any]
    partials: tuple[Partial, ...]
    #: None when the partials are right for complex arguments too (a holomorphic function, its
    #: partials written with NumPy functions that are themselves holomorphic); otherwise what an
    #: engine calls instead, on the same arguments, when one of them is complex: the function
    #: written with other primitives (``abs(z) = hypot(real(z), imag(z))``), or a refusal.
    on_complex: Callable[..., Any] | None = None
    #: True for a rule given by :func:`register_rule`.  The built-in rules are part of dualad's
    #: source; the compiled engine's disk-cache key covers the registered ones only.
    registered: bool = False

    @property
    def nin(self) -> int:
        return len(self.partials)


RULES: dict[Any, Rule] = {}
ZERO_DERIVATIVE: set[Any] = set()

_LN2 = math.log(2.0)
_LN10 = math.log(10.0)
_DEG = math.pi / 180.0


def _add(
    func: Any,
    *partials: Partial,
    name: str | None = None,
    on_complex: Any = None,
    registered: bool = False,
) -> None:
    name = name or getattr(func, "__name__", repr(func))
    RULES[func] = Rule(name, func, tuple(partials), on_complex, registered)


def is_complex(x: Any) -> bool:
    """True for a complex number or array (or a Dual or traced array of one)."""
    dtype = getattr(x, "dtype", None)
    return isinstance(x, complex) if dtype is None else dtype.kind == "c"


def refuse_complex(name: str) -> Callable[..., Any]:
    """An ``on_complex`` for a function whose rule holds for real arguments only."""

    def refuse(*args: Any) -> Any:
        from .dual import DualError

        raise DualError(
            f"dualad differentiates {name} for real arguments only (its derivative rule does not "
            "hold for complex ones); apply it to the real and imaginary parts (np.real(z), "
            "np.imag(z)) yourself, or register a rule for the complex case"
        )

    return refuse


def _abs_complex(z: Any) -> Any:
    """|z| of complex z: a real function of its real and imaginary parts, differentiated so."""
    return np.hypot(np.real(z), np.imag(z))


def _conj_complex(z: Any) -> Any:
    """conj(z) = re - i im: R-linear, not holomorphic, so written with real and imag."""
    return np.real(z) - 1j * np.imag(z)


def _complex_rule(name: str, func: Any, *partials: Partial) -> Callable[..., Any]:
    """An ``on_complex`` that applies ``func`` with partials written for complex arguments
    (where the real rule's are written with real-only functions such as hypot)."""
    rule = Rule(name, func, partials)

    def apply(*args: Any) -> Any:
        lead = next(a for a in args if hasattr(a, "_apply"))  # the engine of the arguments
        return lead._apply(rule, args)

    return apply


# --- helpers shared by several rules -------------------------------------------------------------


def _pick_first(x1: Any, x2: Any, y: Any) -> Any:
    """Partial of a max/min-like selection in its first argument; ties split it evenly."""
    return np.where(x1 == y, np.where(x2 == y, 0.5, 1.0), 0.0)


def _pick_second(x1: Any, x2: Any, y: Any) -> Any:
    return np.where(x2 == y, np.where(x1 == y, 0.5, 1.0), 0.0)


def _is_plain_number(p: Any) -> bool:
    """True for a Python or NumPy real scalar (the compiled engine, where every p is, says True)."""
    return isinstance(p, (int, float, np.integer, np.floating))


def _power_base_partial(power: Callable[..., Any]) -> Callable[..., Any]:
    """d/dx x**p = p * x**(p-1), exactly 0 when p == 0 (also at x == 0, where 0**-1 is inf).

    For an array (or dual) p the exponent stays p - 1 everywhere, so that the derivative of this
    partial in p is x**(p-1) (1 + p log x) also at p == 0 (1/x there, not x); only the base is
    replaced, by 1, where p == 0 and x == 0.
    """

    def d(x: Any, p: Any, y: Any) -> Any:
        if _is_plain_number(p):  # p - 1 stays an integer for an integer p: x**2 -> 2 * x**1
            return 0.0 if p == 0 else p * power(x, p - 1)
        safe_x = np.where((p == 0) & (x == 0), 1.0, x)
        return p * power(safe_x, p - 1.0)

    return d


def _power_exponent_partial(x: Any, p: Any, y: Any) -> Any:
    """d/dp x**p = x**p log x, taken as 0 at x == 0 (its limit for p > 0)."""
    safe_x = np.where(x == 0, 1.0, x)
    return np.where(x == 0, 0.0, y * np.log(safe_x))


def _quotient_of(x1: Any, x2: Any, y: Any) -> Any:
    """The integer n with y == x1 - n * x2, read off the computed fmod/remainder y.

    Not trunc(x1 / x2) or floor(x1 / x2): the rounded quotient can land on an integer that the
    exact one does not reach (fmod(1.0, 0.1) is 0.0999..., n = 9, but 1.0 / 0.1 rounds to 10.0).
    """
    return np.rint((x1 - y) / x2)


def _logaddexp_partial(exp: Callable[..., Any]) -> Callable[..., Any]:
    """d/dx1 log(exp(x1) + exp(x2)) = 1 / (1 + exp(x2 - x1)), in base e or 2.

    Not exp(x1 - y): y rounds to a multiple of |y| * 2**-53, an error exp then turns into a
    relative one (5e-12 at x1 = 1e5).  The exponent passed to exp is kept <= 0 (no overflow).
    """

    def d(x1: Any, x2: Any, y: Any) -> Any:
        z = x2 - x1
        below = z <= 0
        e = exp(np.where(below, z, -z))
        return np.where(below, 1.0 / (1.0 + e), e / (1.0 + e))

    return d


def _swap(d: Callable[..., Any]) -> Callable[..., Any]:
    return lambda x1, x2, y: d(x2, x1, y)


def _arctan2_partial_1(x1: Any, x2: Any, y: Any) -> Any:
    """x2 / (x1**2 + x2**2), through hypot so that the squares cannot underflow or overflow."""
    h = np.hypot(x1, x2)
    return (x2 / h) / h


def _arctan2_partial_2(x1: Any, x2: Any, y: Any) -> Any:
    h = np.hypot(x1, x2)
    return -(x1 / h) / h


def _tanh_partial(x: Any, y: Any) -> Any:
    """tanh'(x) = sech(x)**2 = 4 e / (1 + e)**2 with e = exp(-2 |x|) <= 1.

    Not 1 - y**2, which cancels for large |x|, nor 1 / cosh(x)**2, whose nested derivatives
    underflow (tanh'' = 0 at x = 300 instead of -2.1e-260) and then give nan (|x| > 355, where
    cosh(x)**2 overflows).  -|x| is written where(x > 0, -x, x) so that each branch is analytic
    and the derivatives at 0 come out right (abs would make the third derivative at 0 vanish).
    """
    e = np.exp(2.0 * np.where(x > 0, -x, x))
    return 4.0 * e / ((1.0 + e) * (1.0 + e))


_SINC_TAYLOR_RADIUS = 1e-2


def _sinc_partial(x: Any, y: Any) -> Any:
    """sinc'(x) = (cos(pi x) - sinc(x)) / x, by its Taylor series near 0 where that cancels.

    The series keeps four terms, so nested derivatives at 0 are exact through the fourth order.
    cos(pi x) is taken of x reduced exactly modulo 2: rounding pi * x itself costs |pi x| * 2**-53
    absolutely (a relative error of 1e-11 in the derivative at x = 1e5, 2e-9 at 1e7).
    """
    small = np.abs(x) < _SINC_TAYLOR_RADIUS
    reduced = x - 2.0 * np.rint(0.5 * x)  # exact, in [-1, 1]; rint has zero derivative
    safe_x = np.where(small, 1.0, x)
    pi2x2 = (math.pi * math.pi) * (x * x)
    series = (
        x
        * (math.pi * math.pi)
        * (-1.0 / 3.0 + pi2x2 * (1.0 / 30.0 + pi2x2 * (-1.0 / 840.0 + pi2x2 / 45360.0)))
    )
    return np.where(small, series, (np.cos(math.pi * reduced) - y) / safe_x)


# --- arithmetic ----------------------------------------------------------------------------------

_add(np.add, 1.0, 1.0)
_add(np.subtract, 1.0, -1.0)
_add(np.multiply, lambda x1, x2, y: x2, lambda x1, x2, y: x1)
_add(np.true_divide, lambda x1, x2, y: 1.0 / x2, lambda x1, x2, y: -y / x2)
_add(np.power, _power_base_partial(np.power), _power_exponent_partial)
_add(np.float_power, _power_base_partial(np.float_power), _power_exponent_partial)
_add(np.negative, -1.0)
_add(np.positive, 1.0)
_add(np.conjugate, 1.0, on_complex=_conj_complex)
_add(np.reciprocal, lambda x, y: -(y * y))
_add(np.square, lambda x, y: 2.0 * x)
_add(np.sqrt, lambda x, y: 0.5 / y)
_add(np.cbrt, lambda x, y: 1.0 / (3.0 * y * y))
_add(np.fmod, 1.0, lambda x1, x2, y: -_quotient_of(x1, x2, y))
_add(np.remainder, 1.0, lambda x1, x2, y: -_quotient_of(x1, x2, y))
_add(np.copysign, lambda x1, x2, y: np.where(np.signbit(x1) == np.signbit(x2), 1.0, -1.0), None)
_add(np.absolute, lambda x, y: np.sign(x), on_complex=_abs_complex)
_add(np.fabs, lambda x, y: np.sign(x))
_add(np.maximum, _pick_first, _pick_second)
_add(np.minimum, _pick_first, _pick_second)
_add(np.fmax, _pick_first, _pick_second)
_add(np.fmin, _pick_first, _pick_second)

# --- exponentials and logarithms -----------------------------------------------------------------

_add(np.exp, lambda x, y: y)
_add(np.exp2, lambda x, y: _LN2 * y)
_add(np.expm1, lambda x, y: np.exp(x))
_add(np.log, lambda x, y: 1.0 / x)
_add(np.log2, lambda x, y: 1.0 / (_LN2 * x))
_add(np.log10, lambda x, y: 1.0 / (_LN10 * x))
_add(np.log1p, lambda x, y: 1.0 / (1.0 + x))
_add(np.logaddexp, _logaddexp_partial(np.exp), _swap(_logaddexp_partial(np.exp)))
_add(np.logaddexp2, _logaddexp_partial(np.exp2), _swap(_logaddexp_partial(np.exp2)))

# --- trigonometric and hyperbolic ----------------------------------------------------------------

_add(np.sin, lambda x, y: np.cos(x))
_add(np.cos, lambda x, y: -np.sin(x))
_add(np.tan, lambda x, y: 1.0 + y * y)
_add(np.arcsin, lambda x, y: 1.0 / np.sqrt((1.0 - x) * (1.0 + x)))
_add(np.arccos, lambda x, y: -1.0 / np.sqrt((1.0 - x) * (1.0 + x)))
_add(np.arctan, lambda x, y: 1.0 / (1.0 + x * x))
_add(np.arctan2, _arctan2_partial_1, _arctan2_partial_2)
_add(np.hypot, lambda x1, x2, y: x1 / y, lambda x1, x2, y: x2 / y)
_add(np.sinh, lambda x, y: np.cosh(x))
_add(np.cosh, lambda x, y: np.sinh(x))
_add(np.tanh, _tanh_partial)
_add(
    np.arcsinh,
    lambda x, y: 1.0 / np.hypot(x, 1.0),
    on_complex=_complex_rule("arcsinh", np.arcsinh, lambda x, y: 1.0 / np.sqrt(1.0 + x * x)),
)
_add(np.arccosh, lambda x, y: 1.0 / (np.sqrt(x - 1.0) * np.sqrt(x + 1.0)))  # no overflow
_add(np.arctanh, lambda x, y: 1.0 / ((1.0 - x) * (1.0 + x)))
_add(np.deg2rad, _DEG)
_add(np.rad2deg, 1.0 / _DEG)
_add(np.radians, _DEG)  # NumPy's other names for deg2rad and rad2deg: separate ufuncs
_add(np.degrees, 1.0 / _DEG)
_add(np.sinc, _sinc_partial)

# Rules that hold for real arguments only, among the functions NumPy also computes for complex ones
# (max and min compare complex numbers lexicographically, sinc's partial reduces x modulo 2).
for _f in (np.maximum, np.minimum, np.fmax, np.fmin, np.sinc):
    _add(_f, *RULES[_f].partials, on_complex=refuse_complex(f"np.{RULES[_f].name}"))

# --- value-only functions: zero derivative, computed on values -----------------------------------

ZERO_DERIVATIVE.update(
    {
        np.sign, np.floor, np.ceil, np.trunc, np.rint, np.floor_divide, np.heaviside,
        np.signbit, np.isnan, np.isinf, np.isfinite,
        np.less, np.less_equal, np.greater, np.greater_equal, np.equal, np.not_equal,
        np.logical_and, np.logical_or, np.logical_xor, np.logical_not,
        np.round, np.around, np.fix, np.isclose, np.allclose, np.array_equal,
        np.argmax, np.argmin, np.argsort, np.argwhere, np.nonzero, np.flatnonzero,
        np.searchsorted, np.shape, np.ndim, np.size, np.count_nonzero,
        np.isreal, np.iscomplex, np.isscalar, np.result_type,
    }
)  # fmt: skip


# --- SciPy's special functions, registered on first use so that importing dualad stays light -----

_scipy_loaded = False


def _load_scipy_rules() -> None:
    global _scipy_loaded
    _scipy_loaded = True
    try:
        from scipy import special as sp
    except ImportError:  # pragma: no cover - scipy is optional
        return
    two_over_sqrt_pi = 2.0 / math.sqrt(math.pi)
    _add(sp.erf, lambda x, y: two_over_sqrt_pi * np.exp(-(x * x)))
    _add(sp.erfc, lambda x, y: -two_over_sqrt_pi * np.exp(-(x * x)))
    _add(sp.expit, lambda x, y: y * sp.expit(-x))  # not y * (1 - y), which cancels for large x
    _add(sp.gammaln, lambda x, y: sp.digamma(x))
    _add(sp.gamma, lambda x, y: y * sp.digamma(x))
    # trigamma, for x > 0
    _add(sp.digamma, lambda x, y: sp.zeta(2.0, x), on_complex=refuse_complex("digamma"))
    _add(sp.zeta, NONDIFF, lambda s, q, y: -s * sp.zeta(s + 1.0, q))
    zeta_ufunc = getattr(getattr(sp, "_ufuncs", None), "_zeta", None)
    if zeta_ufunc is not None:  # sp.zeta is a Python function calling this ufunc: NumPy's
        _add(zeta_ufunc, *RULES[sp.zeta].partials, name="zeta")  # dispatch only sees the ufunc
    ZERO_DERIVATIVE.update({sp.gammasgn} if hasattr(sp, "gammasgn") else set())


def lookup(func: Any) -> Rule | None:
    """The rule for ``func``, or None; SciPy's rules load the first time one is asked for."""
    rule = RULES.get(func)
    if rule is None and not _scipy_loaded and "scipy.special" in sys.modules:
        _load_scipy_rules()
        rule = RULES.get(func)
    return rule


def is_zero_derivative(func: Any) -> bool:
    if func in ZERO_DERIVATIVE:
        return True
    if not _scipy_loaded and "scipy.special" in sys.modules:
        _load_scipy_rules()
        return func in ZERO_DERIVATIVE
    return False


def _positional_arity(func: Callable[..., Any]) -> int | None:
    """Number of positional parameters of ``func``, or None when it takes ``*args`` or is opaque."""
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return None
    kinds = [p.kind for p in params]
    if inspect.Parameter.VAR_POSITIONAL in kinds:
        return None
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(k in positional for k in kinds)


# --- the public extension point ------------------------------------------------------------------

_dispatch_hook: Callable[[Rule, tuple[Any, ...]], Any] | None = None
_carries_derivative: Callable[[Any], bool] = lambda a: False  # noqa: E731 - set by the engine


def register_rule(func: Callable[..., Any], *partials: Partial, name: str | None = None):
    """Give ``func`` a derivative rule that every dualad engine uses.

    Parameters
    ----------
    func
        A NumPy or SciPy ufunc, or a plain Python function of array arguments that works
        elementwise (its output broadcasts like a ufunc's).
    *partials
        One entry per positional input: a callable ``d(*inputs, out)`` giving the partial
        derivative with respect to that input as NumPy code (so that it can itself be
        differentiated), a constant, ``None`` for an input the output does not depend on, or
        :data:`dualad.NONDIFF` for an input the function cannot be differentiated in.
    name
        Shown in error messages; defaults to ``func.__name__``.

    Returns
    -------
    callable
        For a ufunc, the ufunc itself (NumPy routes it to dualad).  For a plain function, a wrapper
        to call instead of it: with dual-number arguments it applies the rule, otherwise it calls
        ``func``.

    Examples
    --------
    >>> import numpy as np, dualad as da
    >>> softplus = da.register_rule(lambda x: np.log1p(np.exp(x)),
    ...                             lambda x, y: 1.0 / (1.0 + np.exp(-x)), name="softplus")
    >>> float(da.derivative(softplus, 0.0))
    0.5
    """
    if not partials:
        raise ValueError("register_rule needs one partial derivative per input of the function")
    if isinstance(func, np.ufunc):
        if func.nin != len(partials):
            raise ValueError(
                f"{func.__name__} takes {func.nin} inputs but {len(partials)} partials were given"
            )
        _add(func, *partials, name=name, registered=True)
        return func

    arity = _positional_arity(func)
    if arity is not None and arity != len(partials):
        label = name or getattr(func, "__name__", repr(func))
        raise ValueError(
            f"{label} takes {arity} positional inputs but {len(partials)} partials were given; "
            "give one per input (None for an input the output does not depend on)"
        )
    raw = func

    def dispatching(*args: Any) -> Any:
        if _dispatch_hook is not None and any(_carries_derivative(a) for a in args):
            return _dispatch_hook(rule, args)
        return raw(*args)

    label = name or getattr(func, "__name__", repr(func))
    dispatching.__name__ = label
    dispatching.__doc__ = getattr(func, "__doc__", None)
    dispatching._dualad_raw = raw  # type: ignore[attr-defined]  # what compiled code computes
    rule = Rule(label, dispatching, tuple(partials), refuse_complex(label), registered=True)
    RULES[raw] = rule
    RULES[dispatching] = rule
    return dispatching
