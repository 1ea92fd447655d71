"""The NumPy engine: an array-backed dual number.

A :class:`Dual` holds ``value`` (shape ``S``) and ``partials`` (shape ``S + (k,)``, one column per
direction, the direction axis last) so that a chunk of directions moves through each NumPy call as
one vectorised operation.  Elementwise primitives are applied through the rule table in
:mod:`dualad.rules`; structural NumPy functions go through :mod:`dualad.structural`.

Tags make nested differentiation safe.  Every differentiation call seeds its input with a fresh,
larger tag; an operation on Duals of different tags treats the lower-tagged ones as constants of
the higher tag, so the result is a Dual of the highest tag whose value and partials may themselves
be Duals of lower tags.  The newest tag is always the outermost layer.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np

from . import rules
from .rules import NONDIFF, Rule

__all__ = ["Carrier", "Dual", "primal", "tangent", "DualError"]


class DualError(TypeError):
    """An operation that would silently lose or corrupt a derivative."""


class ReverseModeUnsupported(DualError):
    """What reverse mode cannot differentiate (yet); ``mode="auto"`` then uses forward mode."""


def mixed_modes() -> ReverseModeUnsupported:
    return ReverseModeUnsupported(
        "forward-mode Duals and reverse-mode values met in one computation (a derivative taken "
        "inside another one across modes); dualad does not nest reverse mode: pass "
        "mode='forward' to the derivative calls involved (mode='auto' does so by itself)"
    )


_LOST = (
    "{what} would drop the derivative it carries. Use da.primal(x) to take the value when that is "
    "intended{hint}."
)
_ARRAY_HINT = (
    "; to build arrays that can hold Duals, allocate with np.zeros_like(x) or np.zeros(n, like=x) "
    "and combine Duals with np.stack / np.concatenate (or np.array([...], like=x))"
)


def _lost(what: str, hint: str = "") -> DualError:
    return DualError(_LOST.format(what=what, hint=hint))


def with_assignment_error(error: Exception, assignment: Exception) -> Exception:
    """``error`` (of a float conversion) carrying what to say if it came from an element write.

    NumPy turns a failed float conversion in ``out[i] = y`` (``out`` a plain float array) into
    its own ``ValueError: setting an array element with a sequence``, with ``error`` as cause;
    :func:`assignment_error` finds ``assignment`` there at the differentiation boundary.
    """
    error.dualad_assignment = assignment  # type: ignore[attr-defined]
    return error


def assignment_error(error: BaseException) -> Exception | None:
    """dualad's error for NumPy's ValueError of an element write of a Dual (or Tracer), or None."""
    if isinstance(error, ValueError):
        return getattr(error.__cause__, "dualad_assignment", None)
    return None


@contextlib.contextmanager
def user_code() -> Iterator[None]:
    """Run the user's function: NumPy's raw error for writing a Dual into a plain float array
    becomes dualad's, which says what to do (NumPy's own stays attached as the cause)."""
    try:
        yield
    except ValueError as error:
        ours = assignment_error(error)
        if ours is None:
            raise
        raise ours from error


def _no_rule(name: str) -> DualError:
    return DualError(
        f"dualad has no derivative rule for {name}. Register one with "
        f"da.register_rule({name}, <partial for each input>), or apply it to da.primal(x) if its "
        "derivative is not needed."
    )


class Carrier:
    """What every array-like value that carries derivative information shows NumPy code.

    :class:`Dual` (forward mode) and ``reverse.Tracer`` (reverse mode) share it: the ndarray
    methods, which are NumPy calls on ``self`` and so dispatch back to the subclass's
    ``__array_function__``; the Python operators, which apply the rule table through the
    subclass's ``_apply(rule, args)``; comparisons, which act on values; and the conversions that
    would drop the derivative, which raise.  A subclass holds its value in ``_value``.
    """

    __slots__ = ()
    __array_priority__ = 1000
    __hash__ = None  # type: ignore[assignment]  # mutable, like ndarray
    _label = "a Dual"  # how error messages name the value ...
    _plural = "Duals"  # ... and several of them
    _functions: dict[Any, Any] = {}  # NumPy function -> implementation for this kind of Carrier
    _value: Any

    @staticmethod
    def _apply(rule: Rule, args: tuple[Any, ...]) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    # --- NumPy protocols (NEP 13, NEP 18) -------------------------------------------------------
    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        if not kwargs and method == "__call__":  # the hot path: np.sin(x), np.add(x, y) ...
            rule = rules.RULES.get(ufunc)
            if rule is not None:
                return self._apply(rule, inputs)
        out = kwargs.pop("out", None)
        if method == "__call__" and ufunc in structural.LINEAR_UFUNCS:
            result = structural.LINEAR_UFUNCS[ufunc](*inputs, **kwargs)  # matmul, vecdot: bilinear
        elif method == "__call__":
            where = kwargs.pop("where", True)
            if where is not True:
                raise DualError(
                    f"np.{ufunc.__name__}(..., where=...) is not supported on {self._plural}"
                )
            kwargs.pop("dtype", None)
            kwargs.pop("casting", None)
            kwargs.pop("order", None)
            if kwargs:
                raise DualError(
                    f"np.{ufunc.__name__} keyword(s) {sorted(kwargs)} are not supported on "
                    f"{self._plural}"
                )
            result = call_ufunc(ufunc, inputs, self._apply)
        else:
            result = structural.ufunc_method(ufunc, method, inputs, kwargs)
        if out is None:
            return result
        return _write_out(out[0] if isinstance(out, tuple) else out, result)

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        return structural.array_function(func, args, kwargs, self)

    def __reduce_ex__(self, protocol: Any) -> Any:
        if type(self).__reduce__ is not object.__reduce__:  # the subclass says how (Dual)
            return self.__reduce__()
        raise DualError(
            f"{self._label} cannot be pickled or copied with the copy module: it exists only "
            "while its da.* call runs. Use np.copy(x) for a copy, or da.primal(x) for the value."
        )

    # --- array attributes ------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self._value.shape

    @property
    def ndim(self) -> int:
        return self._value.ndim

    @property
    def size(self) -> int:
        return self._value.size

    @property
    def dtype(self) -> np.dtype:
        return _dtype_of(self._value)

    @property
    def real(self) -> Any:
        return np.real(self)

    @property
    def imag(self) -> Any:
        return np.imag(self)

    def conj(self) -> Any:
        return np.conjugate(self)

    conjugate = conj

    @property
    def T(self) -> Any:
        return np.transpose(self)

    @property
    def mT(self) -> Any:
        """The matrix transpose of a stack of matrices (the last two axes), as ndarray.mT."""
        return np.swapaxes(self, -1, -2)

    def __len__(self) -> int:
        return len(self._value)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    # --- conversions that would lose the derivative ---------------------------------------------
    def __float__(self) -> float:
        raise with_assignment_error(
            _lost(
                f"Converting {self._label} to float (float(x), math.* functions, or a float slot)"
            ),
            _lost(
                f"Writing {self._label} into an element of a plain float array (out[i] = y)",
                _ARRAY_HINT,
            ),
        )

    def __int__(self) -> int:
        raise _lost(f"Converting {self._label} to int")

    def __complex__(self) -> complex:
        raise _lost(f"Converting {self._label} to complex")

    def __index__(self) -> int:
        raise _lost(f"Using {self._label} as an index")

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise _lost(
            f"Converting {self._label} to a NumPy array (np.asarray, np.array, or assigning it "
            "into a plain float array)",
            _ARRAY_HINT,
        )

    def __round__(self, ndigits: int | None = None) -> Any:
        return round(primal(self).item(), ndigits)  # a value-only operation, like floor

    def __bool__(self) -> bool:
        return bool(primal(self))

    def item(self, *args: Any) -> Any:
        raise _lost(f"{type(self).__name__}.item()")

    def tolist(self) -> Any:
        raise _lost(f"{type(self).__name__}.tolist()")

    # --- value-returning methods -----------------------------------------------------------------
    def reshape(self, *shape: Any, order: str = "C") -> Any:
        if len(shape) == 1:
            shape = shape[0]
        return np.reshape(self, shape, order=order)

    def ravel(self, order: str = "C") -> Any:
        return np.ravel(self, order=order)

    def flatten(self, order: str = "C") -> Any:
        return np.ravel(self, order=order).copy()

    def transpose(self, *axes: Any) -> Any:
        if len(axes) == 1 and (axes[0] is None or isinstance(axes[0], (tuple, list))):
            axes = axes[0]
        return np.transpose(self, axes or None)

    def swapaxes(self, a: int, b: int) -> Any:
        return np.swapaxes(self, a, b)

    def squeeze(self, axis: Any = None) -> Any:
        return np.squeeze(self, axis=axis)

    def sum(self, axis: Any = None, keepdims: bool = False, **kw: Any) -> Any:
        return np.sum(self, axis=axis, keepdims=keepdims, **kw)

    def mean(self, axis: Any = None, keepdims: bool = False, **kw: Any) -> Any:
        return np.mean(self, axis=axis, keepdims=keepdims, **kw)

    def var(self, axis: Any = None, ddof: int = 0, keepdims: bool = False) -> Any:
        return np.var(self, axis=axis, ddof=ddof, keepdims=keepdims)

    def std(self, axis: Any = None, ddof: int = 0, keepdims: bool = False) -> Any:
        return np.std(self, axis=axis, ddof=ddof, keepdims=keepdims)

    def prod(self, axis: Any = None, keepdims: bool = False) -> Any:
        return np.prod(self, axis=axis, keepdims=keepdims)

    def cumsum(self, axis: Any = None) -> Any:
        return np.cumsum(self, axis=axis)

    def max(self, axis: Any = None, keepdims: bool = False) -> Any:
        return np.max(self, axis=axis, keepdims=keepdims)

    def min(self, axis: Any = None, keepdims: bool = False) -> Any:
        return np.min(self, axis=axis, keepdims=keepdims)

    def argmax(self, axis: Any = None) -> Any:
        return np.argmax(primal(self), axis=axis)

    def argmin(self, axis: Any = None) -> Any:
        return np.argmin(primal(self), axis=axis)

    def clip(self, a_min: Any = None, a_max: Any = None) -> Any:
        return np.clip(self, a_min, a_max)

    def dot(self, other: Any) -> Any:
        return np.dot(self, other)

    def diagonal(self, offset: int = 0, axis1: int = 0, axis2: int = 1) -> Any:
        return np.diagonal(self, offset, axis1, axis2)

    def trace(self, offset: int = 0, axis1: int = 0, axis2: int = 1) -> Any:
        return np.trace(self, offset, axis1, axis2)

    # --- Python operators ------------------------------------------------------------------------
    def __add__(self, other: Any) -> Any:
        return self._apply(_R_ADD, (self, other))

    def __radd__(self, other: Any) -> Any:
        return self._apply(_R_ADD, (other, self))

    def __sub__(self, other: Any) -> Any:
        return self._apply(_R_SUB, (self, other))

    def __rsub__(self, other: Any) -> Any:
        return self._apply(_R_SUB, (other, self))

    def __mul__(self, other: Any) -> Any:
        return self._apply(_R_MUL, (self, other))

    def __rmul__(self, other: Any) -> Any:
        return self._apply(_R_MUL, (other, self))

    def __truediv__(self, other: Any) -> Any:
        return self._apply(_R_DIV, (self, other))

    def __rtruediv__(self, other: Any) -> Any:
        return self._apply(_R_DIV, (other, self))

    def __pow__(self, other: Any) -> Any:
        return self._apply(_R_POW, (self, other))

    def __rpow__(self, other: Any) -> Any:
        return self._apply(_R_POW, (other, self))

    def __mod__(self, other: Any) -> Any:
        return self._apply(_R_MOD, (self, other))

    def __rmod__(self, other: Any) -> Any:
        return self._apply(_R_MOD, (other, self))

    def __floordiv__(self, other: Any) -> Any:
        return np.floor_divide(self, other)

    def __rfloordiv__(self, other: Any) -> Any:
        return np.floor_divide(other, self)

    def __matmul__(self, other: Any) -> Any:
        return np.matmul(self, other)

    def __rmatmul__(self, other: Any) -> Any:
        return np.matmul(other, self)

    def __neg__(self) -> Any:
        return self._apply(_R_NEG, (self,))

    def __pos__(self) -> Any:
        return self._apply(_R_POS, (self,))  # a new value, as +a is a new array in NumPy

    def __abs__(self) -> Any:
        return self._apply(_R_ABS, (self,))

    def _inplace(self, result: Any) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def __iadd__(self, other: Any) -> Any:
        return self._inplace(self + other)

    def __isub__(self, other: Any) -> Any:
        return self._inplace(self - other)

    def __imul__(self, other: Any) -> Any:
        return self._inplace(self * other)

    def __itruediv__(self, other: Any) -> Any:
        return self._inplace(self / other)

    def __ipow__(self, other: Any) -> Any:
        return self._inplace(self**other)

    def __imatmul__(self, other: Any) -> Any:
        return self._inplace(self @ other)

    # comparisons act on values and return plain boolean arrays
    def __lt__(self, other: Any) -> Any:
        return primal(self) < primal(other)

    def __le__(self, other: Any) -> Any:
        return primal(self) <= primal(other)

    def __gt__(self, other: Any) -> Any:
        return primal(self) > primal(other)

    def __ge__(self, other: Any) -> Any:
        return primal(self) >= primal(other)

    def __eq__(self, other: Any) -> Any:  # type: ignore[override]
        return primal(self) == primal(other)

    def __ne__(self, other: Any) -> Any:  # type: ignore[override]
        return primal(self) != primal(other)


class Dual(Carrier):
    """A dual number (or array of them): a value with its directional derivatives.

    Parameters
    ----------
    value
        The primal value, shape ``S``.
    partials
        Derivatives along ``k`` directions, shape ``S + (k,)``.  Defaults to one zero direction.
    tag
        Which differentiation this Dual belongs to; differentiation calls choose it for you.
    """

    __slots__ = ("_value", "_partials", "_tag")

    def __init__(self, value: Any, partials: Any = None, tag: int = 0) -> None:
        value = _as_float_array(value)
        if partials is None:
            partials = np.zeros(np.shape(value) + (1,), dtype=_dtype_of(value))
        elif not isinstance(partials, Dual):
            partials = np.asarray(partials, dtype=_dtype_of(value))
        if np.shape(partials)[:-1] != np.shape(value) or np.ndim(partials) == 0:
            raise ValueError(
                f"partials must have shape value.shape + (k,) = {np.shape(value)} + (k,); "
                f"got value shape {np.shape(value)} and partials shape {np.shape(partials)}"
            )
        self._value = value
        self._partials = partials
        self._tag = int(tag)

    @classmethod
    def _make(cls, tag: int, value: Any, partials: Any) -> Dual:
        """Internal constructor with no checks (the engine guarantees the invariants)."""
        d = object.__new__(cls)
        d._value = value
        d._partials = partials
        d._tag = tag
        return d

    # --- parts -----------------------------------------------------------------------------------
    @property
    def value(self) -> Any:
        """The value, one layer down (a Dual of a lower tag when nested)."""
        return self._value

    @property
    def partials(self) -> Any:
        """Derivatives along the directions, shape ``value.shape + (k,)``."""
        return self._partials

    @property
    def tag(self) -> int:
        return self._tag

    @property
    def nderiv(self) -> int:
        """Number of directions ``k`` carried."""
        return self._partials.shape[-1]

    def _zeros(self, shape: tuple[int, ...], dtype: np.dtype) -> Dual:
        """Constant zeros of this Dual's differentiation (what np.zeros_like(x) makes), with
        every inner layer of a nested Dual in its value and partials: writing a nested value
        into a view of them then lifts nothing (a lift copies, and the view's writes would no
        longer reach the array it views: a Hessian of ``row = out[1:]; row += x[:-1]`` was 0)."""
        inner = self._value
        if isinstance(inner, Dual):
            partials = inner._zeros(shape + (self.nderiv,), dtype)
            return Dual._make(self._tag, inner._zeros(shape, dtype), partials)
        return Dual._make(
            self._tag, np.zeros(shape, dtype), np.zeros(shape + (self.nderiv,), dtype)
        )

    def __repr__(self) -> str:
        return f"Dual(value={self._value!r}, partials={self._partials!r}, tag={self._tag})"

    def copy(self) -> Dual:
        return Dual._make(self._tag, self._value.copy(), self._partials.copy())

    # --- copying and pickling --------------------------------------------------------------------
    def __copy__(self) -> Dual:
        return Dual._make(self._tag, self._value, self._partials)

    def __deepcopy__(self, memo: dict[int, Any]) -> Dual:
        import copy

        return Dual._make(
            self._tag, copy.deepcopy(self._value, memo), copy.deepcopy(self._partials, memo)
        )

    def __reduce__(self) -> tuple[Any, ...]:
        """A Dual you built (tag 0) pickles; one of a running da.* call does not: in another
        process its tag could name that process's own differentiation, and mix with it."""
        layer: Any = self
        while isinstance(layer, Dual):
            if layer._tag != 0 or (isinstance(layer._partials, Dual) and layer._partials._tag):
                raise DualError(
                    "a Dual of a running differentiation cannot be pickled: its derivative "
                    "belongs to this da.* call, in this process. Send da.primal(x) (the value) "
                    "to another process, or the derivative the call returns."
                )
            layer = layer._value
        return (Dual, (self._value, self._partials))

    def astype(self, dtype: Any, copy: bool = True) -> Dual:
        dtype = np.dtype(dtype)
        if dtype.kind not in "fc" or (dtype.kind == "f" and _dtype_of(self).kind == "c"):
            raise _lost(f"Casting a Dual of dtype {_dtype_of(self)} to {dtype}")
        return Dual._make(
            self._tag, self._value.astype(dtype, copy=copy), self._partials.astype(dtype, copy=copy)
        )

    # --- indexing --------------------------------------------------------------------------------
    def __getitem__(self, index: Any) -> Dual:
        if index.__class__ is not int and index.__class__ is not slice:  # those need no rewrite
            index = _normalize_index(index, self._value.ndim)
        return Dual._make(self._tag, self._value[index], self._partials[index])

    def __setitem__(self, index: Any, item: Any) -> None:
        index = _normalize_index(index, self._value.ndim)
        if isinstance(primal(self._value), np.generic):
            # A scalar taken out of an array by x[i]: its partials may still view x's partials,
            # which a write must not change (x[i] is a copy in NumPy).
            self._partials = self._partials.copy()
        if isinstance(item, Dual) and item._tag > self._tag:
            # The item carries a newer differentiation: lift self to that tag in place.
            self._value = Dual._make(self._tag, self._value, self._partials)
            self._partials = _zeros_like_partials(self._value, item._partials)
            self._tag = item._tag
        if isinstance(item, Dual) and item._tag == self._tag:
            _check_k(self, item)
            self._value = _assign(self._value, index, item._value)
            self._partials = _assign(self._partials, index, item._partials)
        else:
            self._value = _assign(self._value, index, item)
            self._partials = _assign(self._partials, index, 0.0)

    def _inplace(self, result: Any) -> Dual:
        if isinstance(primal(self._value), np.generic) and isinstance(result, Dual):
            # A scalar is never a view of anything: rebinding its parts is the whole update.
            if result._tag >= self._tag and np.ndim(result._value) == 0:
                self._value, self._partials = result._value, result._partials
                self._tag = result._tag
                return self
        if np.shape(result) != self.shape:
            raise ValueError(
                f"in-place operation would change the shape {self.shape} to {np.shape(result)}"
            )
        self[...] = result
        return self


_R_ADD = rules.RULES[np.add]
_R_SUB = rules.RULES[np.subtract]
_R_MUL = rules.RULES[np.multiply]
_R_DIV = rules.RULES[np.true_divide]
_R_POW = rules.RULES[np.power]
_R_MOD = rules.RULES[np.remainder]
_R_ABS = rules.RULES[np.absolute]
_R_NEG = rules.RULES[np.negative]
_R_POS = rules.RULES[np.positive]


# --- reading the parts ---------------------------------------------------------------------------


def primal(x: Any) -> Any:
    """The plain value of ``x`` with every layer of derivative removed (``x`` itself if plain)."""
    while isinstance(x, Carrier):
        x = x._value
    return x


def tangent(x: Any) -> Any:
    """The partials of the outermost layer of ``x``, shape ``x.shape + (k,)``.

    For a plain value, zeros of shape ``np.shape(x) + (1,)``: nothing depends on any direction.
    """
    if isinstance(x, Dual):
        return x._partials
    return np.zeros(np.shape(x) + (1,))


# --- the elementwise engine ----------------------------------------------------------------------


def _dtype_of(value: Any) -> np.dtype:
    return primal(value).dtype


def _as_float_array(value: Any) -> Any:
    if isinstance(value, Carrier):
        return value
    if isinstance(value, np.ma.MaskedArray) and np.ma.is_masked(value):
        raise TypeError(
            "dualad differentiates plain arrays, and would ignore the mask of this masked array; "
            "pass np.ma.getdata(x) to differentiate every entry, or x.compressed() for the "
            "unmasked ones only"
        )
    arr = np.asarray(value)
    if arr.dtype.kind == "c":
        return arr
    if arr.dtype.kind in "biu":
        return arr.astype(np.float64)
    if arr.dtype.kind != "f":
        got = f"dtype {arr.dtype}" if value is not None else "None"
        if arr.dtype.kind == "O" and value is not None and not isinstance(value, np.ndarray):
            got = f"a {type(value).__name__}"
        raise TypeError(
            f"dualad differentiates floating-point (real or complex) numbers, not {got}; pass a "
            "number or an array of them (e.g. np.asarray(x, dtype=float))"
        )
    return arr


def check_output(y: Any) -> None:
    """Refuse an output of ``f`` that no derivative can be read from (None, a string, a dict)."""
    if y is None or isinstance(y, (str, bytes)):
        raise TypeError(
            f"f returned {'None' if y is None else type(y).__name__ + ' ' + repr(y)[:40]}; "
            "dualad differentiates functions that return a number or an array (or a list or "
            "tuple of them). Check that f ends with a return statement."
        )
    if isinstance(y, (dict, set, frozenset)):
        raise TypeError(
            f"f returned a {type(y).__name__}; dualad differentiates functions that return a "
            "number or an array (or a list or tuple of them): return np.stack([...]) of the "
            "entries, or differentiate each entry separately"
        )


def top_tag(args: Any) -> int:
    tag = -1
    for a in args:
        if isinstance(a, Dual) and a._tag > tag:
            tag = a._tag
    return tag


def _check_k(a: Dual, b: Dual) -> None:
    if a._partials.shape[-1] != b._partials.shape[-1]:
        raise ValueError(
            f"Duals of one differentiation carry different numbers of directions "
            f"({a._partials.shape[-1]} and {b._partials.shape[-1]})"
        )


def _scale(d: Any, p: Any, tag: int = 0) -> Any:
    """Partial derivative ``d`` (shape broadcastable to the output) times partials ``p``.

    Never returns ``p`` itself: outputs own their partials, so writing into one cannot change
    another (``y = x + 1; y[0] = 0`` leaves x alone, as in NumPy).
    """
    cls = d.__class__
    if cls is float or cls is int or cls is complex:
        if d == 1:
            return p.copy()
        if d == -1:
            return -p
        return d * p
    if cls is Dual:  # a local derivative that is itself differentiated (nested Duals)
        if not _finite(d):
            # inf * 0 in this product is the chain rule's, not f's: NumPy would not warn for f
            with np.errstate(invalid="ignore"):
                if p.__class__ is np.ndarray:
                    # a constant zero tangent contributes an exact zero at every order, as below
                    return np.where(p == 0, 0.0, d[..., None] * p)
                return d[..., None] * p
        return d[..., None] * p
    if cls is not np.ndarray and isinstance(d, Carrier):  # a reverse-mode value (a Tracer)
        if d._tape.level > tag:  # its trace began inside this differentiation: not supported
            raise mixed_modes()
        return d[..., None] * p  # forward inside reverse: the tape records this product
    if d.ndim == 0 and d.dtype.kind != "c":  # (a complex one takes the array test below)
        return d * p if math.isfinite(d) else _zero_tangent_stays_zero(d, p)
    if _finite_array(d):
        return d[..., None] * p
    return _zero_tangent_stays_zero(d[..., None], p)


def _finite_array(a: np.ndarray) -> bool:
    """True when every entry of ``a`` is finite, in one cheap pass over ``a`` (not over d * p).

    The sum of squares is inf or NaN exactly when an entry is (or it overflows past 1e154, which
    only sends the caller to its careful path); unlike a plain sum, inf - inf raises no NumPy
    warning here, so an infinite input warns only where NumPy itself would.
    """
    return math.isfinite(np.vdot(a, a).real)


def _finite(d: Dual) -> bool:
    """True when the value and partials of ``d`` (all nesting levels) are finite."""
    while d.__class__ is Dual:
        if not _finite_array(primal(d._partials)):
            return False
        if d._partials.__class__ is Dual and not _finite(d._partials):
            return False
        d = d._value
    return _finite_array(d)


#: Partials of at least this many entries combine in one compiled pass (dualad.numba.kernels)
#: instead of NumPy's passes with temporaries; below it NumPy's lower call cost wins.
FUSED_MIN_ENTRIES = 1 << 16
_kernels: Any = None


def _fused(terms: list[tuple[Any, Any]], y: Any) -> Any:
    """The tangent sum by a fused kernel, or None when a term is not plain float64 data."""
    global _kernels
    if len(terms) > 2 or y.__class__ is not np.ndarray:
        return None
    shape = terms[0][1].shape
    rows = []
    for d, p in terms:
        if p.__class__ is not np.ndarray or p.dtype != np.float64 or p.shape != shape:
            return None
        if not p.flags.c_contiguous:
            return None
        if d.__class__ is not np.ndarray:
            if d.__class__ is Dual or np.ndim(d) != 0:
                return None
            d = np.full(shape[:-1], d, dtype=np.float64)
        elif d.shape != shape[:-1] or d.dtype != np.float64:
            return None
        rows.append((np.ascontiguousarray(d).reshape(-1), p.reshape(-1, shape[-1])))
    if _kernels is None:
        from .numba import kernels

        _kernels = kernels
    if len(rows) == 1:
        return _kernels.scaled(*rows[0]).reshape(shape)
    return _kernels.combined(*rows[0], *rows[1]).reshape(shape)


def _zero_tangent_stays_zero(d: Any, p: Any) -> Any:
    """``d * p``, but 0 where ``p == 0`` even if ``d`` is infinite or NaN.

    A zero tangent means the input does not move along that direction, so it contributes nothing
    there, whatever its local derivative: the gradient of sum(sqrt(x)) at (0, 1) is (inf, 0.5),
    not (inf, nan).
    """
    with np.errstate(invalid="ignore"):
        return np.where(p == 0, 0.0, d * p)


_SCALAR_RESULT = (np.ndarray, np.generic, Carrier)


def apply_rule(rule: Rule, args: tuple[Any, ...]) -> Any:
    """Apply an elementwise rule to arguments of which at least one may be a Dual.

    The hot path of the engine: written for speed on small (even 0-d) arguments.
    """
    tag = -1
    for a in args:
        if a.__class__ is Dual and a._tag > tag:
            tag = a._tag
    if tag < 0:
        return rule.func(*args)
    vals = [a._value if a.__class__ is Dual and a._tag == tag else a for a in args]
    if rule.on_complex is not None and any(rules.is_complex(v) for v in vals):
        return rule.on_complex(*args)  # not holomorphic: written with real and imag instead
    y = rule.func(*vals)
    if not isinstance(y, _SCALAR_RESULT):
        y = np.asarray(y)
    tangent_sum = None
    k = 0
    terms = []
    for a, partial in zip(args, rule.partials):
        if a.__class__ is not Dual or a._tag != tag or partial is None:
            continue
        if partial is NONDIFF:
            raise DualError(f"{rule.name} is not differentiable in this argument")
        p = a._partials
        k = p.shape[-1]
        terms.append((partial(*vals, y) if callable(partial) else partial, p))
    if terms and terms[0][1].size >= FUSED_MIN_ENTRIES:
        tangent_sum = _fused(terms, y)
    if tangent_sum is None:
        for d, p in terms:
            contribution = _scale(d, p, tag)
            tangent_sum = contribution if tangent_sum is None else tangent_sum + contribution
    if tangent_sum is None:  # every Dual argument enters through a zero partial
        k = next(a._partials.shape[-1] for a in args if a.__class__ is Dual and a._tag == tag)
        tangent_sum = np.zeros(np.shape(y) + (k,), dtype=_dtype_of(y))
    elif tangent_sum.shape[:-1] != y.shape:  # a Dual broadcast against a larger constant
        tangent_sum = np.broadcast_to(tangent_sum, y.shape + (k,))
        if tangent_sum.__class__ is not Dual:
            tangent_sum = tangent_sum.copy()
    return Dual._make(tag, y, tangent_sum)


Dual._apply = staticmethod(apply_rule)  # the operators of Carrier apply rules through it


def _value_only(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if func is np.sign and any(rules.is_complex(a) for a in args):  # z / |z|: not constant
        raise DualError(
            "np.sign of a complex number is z / |z|, which is not piecewise constant; dualad "
            "treats np.sign as a value-only function of real numbers. Write z / np.abs(z)"
        )
    return func(*[primal(a) for a in args], **{k: primal(v) for k, v in kwargs.items()})


def call_ufunc(ufunc: Any, inputs: tuple[Any, ...], apply: Any = None) -> Any:
    """A ufunc on Carriers: its rule applied by the engine's ``apply``, values only, or an error."""
    rule = rules.lookup(ufunc)
    if rule is not None:
        return (apply or apply_rule)(rule, inputs)
    if rules.is_zero_derivative(ufunc):
        return _value_only(ufunc, inputs, {})
    raise _no_rule(label(ufunc))


def label(func: Any) -> str:
    """How users spell a NumPy or SciPy function: ``np.spacing``, ``np.linalg.lstsq``,
    ``scipy.special.i0e`` (ufuncs carry no module, so they are looked up)."""
    name = getattr(func, "__name__", repr(func))
    if getattr(np, name, None) is func:
        return f"np.{name}"
    if isinstance(func, np.ufunc):
        special = sys.modules.get("scipy.special")
        if special is not None and getattr(special, name.lstrip("_"), None) is not None:
            return f"scipy.special.{name.lstrip('_')}"
        return name
    module = getattr(func, "__module__", None) or "numpy"
    module = "np" if module == "numpy" else module.replace("numpy.", "np.")
    return f"{module}.{name}"


def _write_out(out: Any, result: Any) -> Any:
    if isinstance(out, Carrier):
        out[...] = result
        return out
    if isinstance(result, Carrier):
        raise _lost(f"Writing {result._label} into a plain array via out=", _ARRAY_HINT)
    np.copyto(out, result)
    return out


# --- indexing helpers ----------------------------------------------------------------------------


def _normalize_index(index: Any, ndim: int) -> Any:
    """Rewrite an index so it addresses only the value axes, leaving the direction axis last.

    Ellipses are spelled out as slices; Duals used as indices are rejected.
    """
    if not isinstance(index, tuple):
        index = (index,)
    consumed = 0
    has_ellipsis = False
    out = []
    for item in index:
        if item is Ellipsis:
            has_ellipsis = True
        elif item is None:
            pass
        elif isinstance(item, Carrier):
            raise _lost(f"Using {item._label} as an index")
        elif isinstance(item, (np.ndarray, list)):
            arr = np.asarray(item)
            consumed += arr.ndim if arr.dtype == bool else 1
            item = arr
        else:
            consumed += 1
        out.append(item)
    if has_ellipsis:
        i = next(j for j, it in enumerate(out) if it is Ellipsis)
        out[i : i + 1] = [slice(None)] * max(ndim - consumed, 0)
        if Ellipsis in [it for it in out if it is Ellipsis]:
            raise IndexError("an index can only have a single ellipsis ('...')")
    elif consumed > ndim:
        raise IndexError(
            f"too many indices for a Dual of shape with {ndim} dimension(s): {consumed} were given"
        )
    return tuple(out)


def _zeros_like_partials(value: Any, like_partials: Any) -> Any:
    return np.zeros(np.shape(value) + (like_partials.shape[-1],), dtype=_dtype_of(value))


def _assign(container: Any, index: Any, item: Any) -> Any:
    """``container[index] = item``, lifting a plain container to a Dual when the item is one."""
    if not isinstance(container, (Dual, np.ndarray)):
        container = np.array(container)  # a NumPy scalar left by integer indexing
    if (
        isinstance(item, Carrier)
        and not isinstance(item, Dual)
        and not isinstance(container, Carrier)
    ):  # a reverse-mode value inside a Dual (reverse over forward): the container is traced too
        lifted = item._zeros(container.shape, np.result_type(container.dtype, item.dtype))
        lifted[...] = container
        lifted[index] = item
        return lifted
    if isinstance(container, Dual) or not isinstance(item, Dual):
        if not isinstance(container, Dual) and not container.flags.writeable:
            container = container.copy()
        container[index] = item
        return container
    lifted = Dual._make(
        item._tag, container.copy(), _zeros_like_partials(container, item._partials)
    )
    lifted[index] = item
    return lifted


from . import structural  # noqa: E402  (structural builds on the names above)
