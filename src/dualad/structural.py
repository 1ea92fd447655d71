"""Structural NumPy functions on Duals: a JVP for each, keyed by the NumPy function.

These operations are linear in the tangent (reshape, sum, indexing, concatenate, einsum in each
operand ...) or have a known linearisation (solve, inv, det, cholesky); none of them needs an entry
in the elementwise rule table.  The direction axis of the partials is always last, so most JVPs
are the same NumPy call on the partials with axes renumbered for the value's dimensions.  Where an
operation is a composition of others (mean, var, prod, clip, diff, max ...) it is written as that
composition, so its derivative follows from rules that already exist.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from typing import Any

import numpy as np

from . import rules
from .dual import (
    Carrier,
    Dual,
    DualError,
    _value_only,
    _write_out,
    label,
    primal,
    top_tag,
)

_FUNCTIONS: dict[Any, Callable[..., Any]] = {}
_CREATION: dict[Any, Callable[..., Any]] = {}
#: The functions of _FUNCTIONS that are compositions of other NumPy calls, engine-independent.
COMPOSITES: dict[Any, Callable[..., Any]] = {}


Register = Callable[..., Callable[[Callable[..., Any]], Callable[..., Any]]]


def registrar(*tables: dict[Any, Callable[..., Any]]) -> Register:
    """``@decorator(np.f, np.g)`` that enters an implementation into ``tables`` for those functions
    (each engine keys its own table by the NumPy function)."""

    def for_functions(*funcs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def register(impl: Callable[..., Any]) -> Callable[..., Any]:
            for table in tables:
                for f in funcs:
                    table[f] = impl
            return impl

        return register

    return for_functions


_implements = registrar(_FUNCTIONS)
#: An implementation written only with NumPy calls on its arguments (no ``.value`` or
#: ``.partials``): it serves Duals, and any other Carrier (reverse mode) reuses it as is.
_composite = registrar(_FUNCTIONS, COMPOSITES)
_creates = registrar(_CREATION)


def _holds_dual(obj: Any) -> bool:
    if isinstance(obj, Carrier):
        return True
    if isinstance(obj, (list, tuple)):
        return any(_holds_dual(o) for o in obj)
    return False


def array_function(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], like: Any) -> Any:
    """Entry point of ``Carrier.__array_function__`` (NEP 18, and NEP 35 for ``like=``).

    ``like`` is the Carrier NumPy dispatched to; its class's ``_functions`` table (for a Dual,
    this module's JVPs) is looked up first, its ``_apply`` applies rules.
    """
    out = kwargs.get("out")
    if isinstance(out, Carrier) and not _holds_dual(args):
        rest = {k: v for k, v in kwargs.items() if k != "out"}
        if not _holds_dual(tuple(rest.values())):  # only out= carries: plain result, written in
            return _write_out(out, func(*args, **rest))
    impl = like._functions.get(func)
    if impl is not None:
        if func in _REAL_LINALG and any(rules.is_complex(a) for a in args):
            raise DualError(
                f"dualad differentiates {label(func)} for real matrices only; complex input is "
                "not supported (np.linalg.solve, inv and det take complex matrices)"
            )
        return impl(*args, **kwargs)
    impl = _CREATION.get(func)
    if impl is not None:
        return impl(like, *args, **kwargs)
    rule = rules.lookup(func)
    if rule is not None:
        if kwargs:
            raise DualError(
                f"{rule.name} with keyword arguments is not supported on {like._plural}"
            )
        return like._apply(rule, args)
    if rules.is_zero_derivative(func):
        return _value_only(func, args, kwargs)
    raise DualError(
        f"dualad has no derivative for {label(func)}. Write it with supported NumPy "
        "operations, apply it to da.primal(x) if its derivative is not needed, or, if it acts "
        f"elementwise, register a rule with da.register_rule({label(func)}, "
        "<partial for each input>)."
    )


_UFUNC_REDUCTIONS = {
    np.add: np.sum,
    np.multiply: np.prod,
    np.maximum: np.max,
    np.fmax: np.max,
    np.minimum: np.min,
    np.fmin: np.min,
}


def ufunc_method(ufunc: np.ufunc, method: str, inputs: tuple[Any, ...], kwargs: dict) -> Any:
    """``ufunc.reduce``, ``.accumulate`` and ``.outer`` on Duals."""
    name = f"np.{ufunc.__name__}.{method}"
    if method == "reduce" and ufunc in _UFUNC_REDUCTIONS:
        if kwargs.pop("initial", np._NoValue) is not np._NoValue or "where" in kwargs:
            raise DualError(f"{name} with initial= or where= is not supported on Duals")
        kwargs.pop("dtype", None)
        return _UFUNC_REDUCTIONS[ufunc](inputs[0], axis=kwargs.pop("axis", 0), **kwargs)
    if method == "accumulate" and ufunc is np.add:
        kwargs.pop("dtype", None)
        return np.cumsum(inputs[0], axis=kwargs.pop("axis", 0))
    if method == "outer" and not kwargs and len(inputs) == 2:
        a, b = inputs
        a_expanded = np.reshape(a, np.shape(a) + (1,) * np.ndim(b))
        return ufunc(a_expanded, b)
    raise DualError(
        f"{name} is not supported on Duals; write it with supported operations "
        "(e.g. np.sum, np.cumsum, broadcasting) or register a rule with da.register_rule"
    )


# --- small helpers -------------------------------------------------------------------------------


def _axis(axis: int, ndim: int) -> int:
    if not -ndim <= axis < max(ndim, 1):
        raise np.exceptions.AxisError(axis, ndim)
    return axis % ndim if ndim else 0


def _axes(axis: Any, ndim: int) -> tuple[int, ...]:
    """Axis argument (None, int or tuple) as non-negative value axes."""
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (tuple, list)):
        return tuple(_axis(a, ndim) for a in axis)
    return (_axis(axis, ndim),)


def _shape_tuple(shape: Any) -> tuple[int, ...]:
    """A shape argument (an int or a sequence) as a tuple."""
    return tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)


def _joined(arrays: Any, axis: Any) -> tuple[list[Any], int]:
    """np.concatenate's arrays and axis, with axis=None meaning: ravel each, join along 0."""
    arrays = list(arrays)
    if axis is None:
        return [np.ravel(a) for a in arrays], 0
    return arrays, axis


def _parts(a: Any, tag: int, k: int) -> tuple[Any, Any]:
    """(value, partials) of ``a`` at ``tag``; constants get zero partials."""
    if isinstance(a, Dual) and a.tag == tag:
        return a.value, a.partials
    value = a if isinstance(a, Dual) else np.asarray(a)
    return value, np.zeros(np.shape(value) + (k,), dtype=np.result_type(primal(value), float))


def _k(args: Any, tag: int) -> int:
    return next(a for a in args if isinstance(a, Dual) and a.tag == tag).nderiv


def _unary(a: Dual, value_fn: Callable[[Any], Any], partials_fn: Callable[[Any, Any], Any]) -> Dual:
    """A linear operation: ``value_fn`` on the value, ``partials_fn(partials, new_value)``."""
    value = value_fn(a.value)
    return Dual._make(a.tag, value, partials_fn(a.partials, value))


def _reject(name: str, **given: Any) -> None:
    for key, val in given.items():
        if val is not None and val is not np._NoValue and val is not False:
            raise DualError(f"{name}(..., {key}=...) is not supported on Duals")


# --- shape and layout ----------------------------------------------------------------------------


@_implements(np.reshape)
def _reshape(a: Dual, shape: Any = None, order: str = "C", *, newshape: Any = None, **kw: Any):
    shape = newshape if shape is None else shape
    if order != "C":
        raise DualError("np.reshape on Duals supports order='C' only")
    return _unary(
        a, lambda v: np.reshape(v, shape), lambda p, v: np.reshape(p, np.shape(v) + p.shape[-1:])
    )


@_composite(np.ravel)
def _ravel(a: Dual, order: str = "C") -> Dual:
    return np.reshape(a, (-1,), order=order)


@_implements(np.transpose)
def _transpose(a: Dual, axes: Any = None) -> Dual:
    nd = a.ndim
    axes = tuple(range(nd))[::-1] if axes is None else _axes(axes, nd)
    return _unary(a, lambda v: np.transpose(v, axes), lambda p, v: np.transpose(p, axes + (nd,)))


@_implements(np.swapaxes)
def _swapaxes(a: Dual, axis1: int, axis2: int) -> Dual:
    i, j = _axis(axis1, a.ndim), _axis(axis2, a.ndim)
    return _unary(a, lambda v: np.swapaxes(v, i, j), lambda p, v: np.swapaxes(p, i, j))


@_implements(np.moveaxis)
def _moveaxis(a: Dual, source: Any, destination: Any) -> Dual:
    src, dst = _axes(source, a.ndim), _axes(destination, a.ndim)
    return _unary(a, lambda v: np.moveaxis(v, src, dst), lambda p, v: np.moveaxis(p, src, dst))


@_implements(np.squeeze)
def _squeeze(a: Dual, axis: Any = None) -> Dual:
    axes = (
        tuple(i for i, n in enumerate(a.shape) if n == 1) if axis is None else _axes(axis, a.ndim)
    )
    return _unary(a, lambda v: np.squeeze(v, axes), lambda p, v: np.squeeze(p, axes))


@_implements(np.expand_dims)
def _expand_dims(a: Dual, axis: Any) -> Dual:
    n_new = len(axis) if isinstance(axis, (tuple, list)) else 1
    axes = _axes(axis, a.ndim + n_new)
    return _unary(a, lambda v: np.expand_dims(v, axes), lambda p, v: np.expand_dims(p, axes))


@_composite(np.atleast_1d)
def _atleast_1d(*arys: Any) -> Any:
    out = [np.reshape(a, (1,)) if np.ndim(a) == 0 else a for a in arys]
    return out[0] if len(out) == 1 else out


@_composite(np.atleast_2d)
def _atleast_2d(*arys: Any) -> Any:
    out = [
        np.reshape(a, (1,) * (2 - np.ndim(a)) + np.shape(a)) if np.ndim(a) < 2 else a for a in arys
    ]
    return out[0] if len(out) == 1 else out


@_composite(np.atleast_3d)
def _atleast_3d(*arys: Any) -> Any:
    out = []
    for a in arys:
        shape = np.shape(a)
        if len(shape) == 0:
            a = np.reshape(a, (1, 1, 1))
        elif len(shape) == 1:
            a = np.reshape(a, (1,) + shape + (1,))
        elif len(shape) == 2:
            a = np.reshape(a, shape + (1,))
        out.append(a)
    return out[0] if len(out) == 1 else out


def _gather(a: Any, func: Any, *args: Any, **kw: Any) -> Any:
    """A function that only moves or repeats entries (tile, rot90, pad's edge and wrap ...).

    NumPy's own answer on the entries' flat indices says which entry lands where, and np.take
    carries values and derivatives there: the JVP and the transpose are np.take's.
    """
    a = a if isinstance(a, Carrier) else np.asarray(a)
    where = func(np.arange(np.size(a)).reshape(np.shape(a)), *args, **kw)
    return np.take(np.ravel(a), where)


@_composite(np.tile)
def _tile(A: Any, reps: Any) -> Any:
    return _gather(A, np.tile, reps)


@_composite(np.rot90)
def _rot90(m: Any, k: int = 1, axes: Any = (0, 1)) -> Any:
    return _gather(m, np.rot90, k, axes)


@_composite(np.rollaxis)
def _rollaxis(a: Any, axis: int, start: int = 0) -> Any:
    return _gather(a, np.rollaxis, axis, start)


_PAD_MODES = ("constant", "edge", "wrap", "reflect", "symmetric")


@_composite(np.pad)
def _pad(array: Any, pad_width: Any, mode: Any = "constant", **kw: Any) -> Any:
    """np.pad for the modes that copy entries or fill constants (``_PAD_MODES``)."""
    if mode not in _PAD_MODES:
        raise DualError(
            f"np.pad(mode={mode!r}) is not supported on Duals; supported modes are {_PAD_MODES}"
        )
    if kw.get("reflect_type", "even") != "even":  # odd reflection is 2 * edge - x: not a copy
        raise DualError("np.pad on Duals supports reflect_type='even' only")
    if mode != "constant":
        return _gather(array, np.pad, pad_width, mode, **kw)
    fill = kw.get("constant_values", 0)
    if _holds_dual(fill) or isinstance(fill, Carrier):
        raise DualError("np.pad on Duals takes constant_values as plain numbers")
    shape = np.shape(array)
    where = np.pad(np.arange(1, np.size(array) + 1).reshape(shape), pad_width, "constant") - 1
    filled = np.pad(np.zeros(shape, dtype=primal(array).dtype), pad_width, "constant", **kw)
    return np.where(where >= 0, np.take(np.ravel(array), np.maximum(where, 0)), filled)


def _triangle(keep: Any) -> Callable[..., Any]:
    def impl(m: Any, k: int = 0) -> Any:
        shape = np.shape(m)
        if len(shape) < 2:  # NumPy broadcasts a vector to a square first
            m = np.broadcast_to(m, shape * 2 if shape else (1, 1))
            shape = np.shape(m)
        mask = keep(np.ones(shape[-2:], dtype=bool), k)
        return np.where(mask, m, np.zeros((), dtype=primal(m).dtype))

    return impl


_composite(np.tril)(_triangle(np.tril))
_composite(np.triu)(_triangle(np.triu))


@_composite(np.kron)
def _kron(a: Any, b: Any) -> Any:
    """Every product a[i] b[j], interleaved axis by axis and merged, as NumPy lays it out."""
    sa, sb = np.shape(a), np.shape(b)
    nd = max(len(sa), len(sb))
    sa, sb = (1,) * (nd - len(sa)) + sa, (1,) * (nd - len(sb)) + sb
    a_spread = np.reshape(a, tuple(n for d in sa for n in (d, 1)))
    b_spread = np.reshape(b, tuple(n for d in sb for n in (1, d)))
    return np.reshape(a_spread * b_spread, tuple(p * q for p, q in zip(sa, sb)))


@_composite(np.partition)
def _partition(a: Any, kth: Any, axis: Any = -1, kind: str = "introselect", order: Any = None):
    if axis is None:
        a, axis = np.ravel(a), 0
    return np.take_along_axis(a, np.argpartition(primal(a), kth, axis=axis), axis=axis)


@_composite(np.column_stack)
def _column_stack(tup: Any) -> Any:
    return np.concatenate([np.reshape(a, (-1, 1)) if np.ndim(a) < 2 else a for a in tup], axis=1)


@_composite(np.dstack)
def _dstack(tup: Any) -> Any:
    arrs = np.atleast_3d(*tup)
    return np.concatenate(arrs if isinstance(arrs, list) else [arrs], axis=2)


@_composite(np.append)
def _append(arr: Any, values: Any, axis: Any = None) -> Any:
    if axis is None:
        return np.concatenate([np.ravel(arr), np.ravel(values)], axis=0)
    return np.concatenate([arr, values], axis=axis)


def _split_along(name: str, axis_of: Callable[[int], int], least: int) -> Callable[..., Any]:
    def impl(ary: Any, indices_or_sections: Any) -> Any:
        if np.ndim(ary) < least:
            raise ValueError(f"{name} only works on arrays of {least} or more dimensions")
        return np.split(ary, indices_or_sections, axis=axis_of(np.ndim(ary)))

    return impl


_composite(np.vsplit)(_split_along("vsplit", lambda nd: 0, 2))
_composite(np.hsplit)(_split_along("hsplit", lambda nd: 1 if nd > 1 else 0, 1))
_composite(np.dsplit)(_split_along("dsplit", lambda nd: 2, 3))


@_composite(np.select)
def _select(condlist: Any, choicelist: Any, default: Any = 0) -> Any:
    """The first choice whose condition holds, as nested np.where from the last one back."""
    if len(condlist) != len(choicelist):
        raise ValueError("list of cases must be same length as list of conditions")
    result = default
    for cond, choice in zip(reversed(list(condlist)), reversed(list(choicelist))):
        result = np.where(primal(cond), choice, result)
    return result


@_composite(np.nan_to_num)
def _nan_to_num(
    x: Any, copy: bool = True, nan: float = 0.0, posinf: Any = None, neginf: Any = None
) -> Any:
    """Finite entries keep their derivative; replaced ones are constants (zero derivative)."""
    plain = primal(x)
    replaced = np.nan_to_num(plain, nan=nan, posinf=posinf, neginf=neginf)
    return np.where(np.isfinite(plain), x, replaced)


@_composite(np.linspace)
def _linspace(
    start: Any,
    stop: Any,
    num: int = 50,
    endpoint: bool = True,
    retstep: bool = False,
    dtype: Any = None,
    axis: int = 0,
    **kw: Any,
) -> Any:
    """Samples affine in the endpoints: NumPy's values, plus each endpoint's weight times the
    endpoint's derivative part (exact to every order, since the map is affine)."""
    if not _float_kind(dtype):
        raise DualError("np.linspace on Duals needs a floating dtype")
    s0, s1 = primal(start), primal(stop)
    base, step = np.linspace(s0, s1, num, endpoint, True, dtype, axis)
    t = np.linspace(0.0, 1.0, num, endpoint=endpoint)
    nd = np.ndim(np.broadcast_arrays(s0, s1)[0])
    t = np.reshape(t, (num,) + (1,) * nd)
    moved = (start - s0) * (1.0 - t) + (stop - s1) * t
    result = np.moveaxis(moved, 0, axis) + base
    if not retstep:
        return result
    return result, step + ((stop - s1) - (start - s0)) / max(num - 1 if endpoint else num, 1)


@_composite(np.gradient)
def _gradient(f: Any, *varargs: Any, axis: Any = None, edge_order: int = 1) -> Any:
    """np.gradient is linear in f: NumPy's values, plus the same difference matrix (NumPy's own
    coefficients, read off np.gradient of the identity) applied to f's derivative part."""
    if any(isinstance(v, Carrier) for v in varargs):
        raise DualError("np.gradient on Duals differentiates in f only (plain spacing)")
    plain = primal(f)
    values = np.gradient(plain, *varargs, axis=axis, edge_order=edge_order)
    axes = _axes(axis, np.ndim(plain))
    single = len(axes) == 1 and not isinstance(values, (tuple, list))
    values = [values] if single else list(values)
    spacing = list(varargs) * len(axes) if len(varargs) == 1 else list(varargs)
    moving = f - plain
    out = []
    for i, ax in enumerate(axes):
        n = np.shape(plain)[ax]
        h = (spacing[i],) if spacing else ()
        matrix = np.gradient(np.eye(n), *h, axis=0, edge_order=edge_order)
        applied = np.moveaxis(np.tensordot(matrix, moving, axes=([1], [ax])), 0, ax)
        out.append(values[i] + applied)
    return out[0] if single else tuple(out)


@_implements(np.broadcast_to)
def _broadcast_to(array: Dual, shape: Any, subok: bool = False) -> Dual:
    shape = _shape_tuple(shape)
    return _unary(
        array,
        lambda v: np.broadcast_to(v, shape),
        lambda p, v: np.broadcast_to(p, shape + p.shape[-1:]),
    )


@_implements(np.copy)
def _copy(a: Dual, order: str = "K", subok: bool = False) -> Dual:
    return a.copy()


@_implements(np.concatenate)
def _concatenate(arrays: Any, axis: Any = 0, out: Any = None, **kw: Any) -> Any:
    arrays, axis = _joined(arrays, axis)
    tag = top_tag(arrays)
    k = _k(arrays, tag)
    parts = [_parts(a, tag, k) for a in arrays]
    ax = _axis(axis, np.ndim(parts[0][0]))
    value = np.concatenate([v for v, _ in parts], axis=ax)
    result = Dual._make(tag, value, np.concatenate([p for _, p in parts], axis=ax))
    return result if out is None else _write_out(out, result)


@_implements(np.stack)
def _stack(arrays: Any, axis: int = 0, out: Any = None, **kw: Any) -> Any:
    arrays = list(arrays)
    tag = top_tag(arrays)
    k = _k(arrays, tag)
    parts = [_parts(a, tag, k) for a in arrays]
    ax = _axis(axis, np.ndim(parts[0][0]) + 1)
    result = Dual._make(
        tag, np.stack([v for v, _ in parts], axis=ax), np.stack([p for _, p in parts], axis=ax)
    )
    return result if out is None else _write_out(out, result)


@_composite(np.hstack)
def _hstack(tup: Any, **kw: Any) -> Any:
    arrs = [np.atleast_1d(a) for a in tup]
    return np.concatenate(arrs, axis=0 if np.ndim(arrs[0]) == 1 else 1)


@_composite(np.vstack)
def _vstack(tup: Any, **kw: Any) -> Any:
    return np.concatenate([np.atleast_2d(a) for a in tup], axis=0)


def _splitter(func: Any) -> Callable[..., list[Any]]:
    """np.split / np.array_split as slices, with NumPy's own boundaries read off an index array
    (np.split refuses sections that do not divide the axis; np.array_split accepts them)."""

    def impl(ary: Any, indices_or_sections: Any, axis: int = 0) -> list[Any]:
        ax = _axis(axis, np.ndim(ary))
        lead = (slice(None),) * ax
        pieces = func(np.arange(np.shape(ary)[ax]), indices_or_sections)
        return [ary[lead + (slice(p[0], p[-1] + 1) if len(p) else slice(0, 0),)] for p in pieces]

    return impl


_composite(np.split)(_splitter(np.split))
_composite(np.array_split)(_splitter(np.array_split))


def where_condition(condition: Any, x: Any, y: Any) -> Any:
    """np.where's condition as booleans for the three-argument form, else an error."""
    if x is None or y is None:
        raise ValueError("np.where: either both or neither of x and y should be given")
    return np.asarray(primal(condition), dtype=bool)


@_implements(np.where)
def _where(condition: Any, x: Any = None, y: Any = None) -> Any:
    if x is None and y is None:
        return np.where(primal(condition))
    cond = where_condition(condition, x, y)
    tag = top_tag((x, y))
    if tag < 0:
        return np.where(cond, x, y)
    k = _k((x, y), tag)
    (vx, px), (vy, py) = _parts(x, tag, k), _parts(y, tag, k)
    value = np.where(cond, vx, vy)
    partials = np.where(cond[..., None], px, py)
    return Dual._make(tag, value, partials)


@_implements(np.roll)
def _roll(a: Dual, shift: Any, axis: Any = None) -> Dual:
    if axis is None:
        return np.reshape(np.roll(np.ravel(a), shift, axis=0), a.shape)
    axes = _axes(axis, a.ndim)
    return _unary(a, lambda v: np.roll(v, shift, axes), lambda p, v: np.roll(p, shift, axes))


@_implements(np.flip)
def _flip(m: Dual, axis: Any = None) -> Dual:
    axes = _axes(axis, m.ndim)
    return _unary(m, lambda v: np.flip(v, axes), lambda p, v: np.flip(p, axes))


@_composite(np.fliplr)
def _fliplr(m: Any) -> Any:
    return np.flip(m, 1)


@_composite(np.flipud)
def _flipud(m: Any) -> Any:
    return np.flip(m, 0)


@_implements(np.take)
def _take(a: Dual, indices: Any, axis: Any = None, out: Any = None, mode: str = "raise") -> Dual:
    if axis is None:
        a, axis = np.ravel(a), 0
    ax = _axis(axis, a.ndim)
    idx = primal(indices)
    result = _unary(
        a, lambda v: np.take(v, idx, ax, mode=mode), lambda p, v: np.take(p, idx, ax, mode=mode)
    )
    return result if out is None else _write_out(out, result)


@_implements(np.take_along_axis)
def _take_along_axis(arr: Dual, indices: Any, axis: Any = -1) -> Dual:
    if axis is None:
        arr, axis = np.ravel(arr), 0
    ax = _axis(axis, arr.ndim)
    idx = np.asarray(primal(indices))
    return _unary(
        arr,
        lambda v: np.take_along_axis(v, idx, ax),
        lambda p, v: np.take_along_axis(p, idx[..., None], ax),
    )


@_implements(np.repeat)
def _repeat(a: Dual, repeats: Any, axis: Any = None) -> Dual:
    if axis is None:
        a, axis = np.ravel(a), 0
    ax = _axis(axis, a.ndim)
    return _unary(a, lambda v: np.repeat(v, repeats, ax), lambda p, v: np.repeat(p, repeats, ax))


@_composite(np.sort)
def _sort(a: Dual, axis: Any = -1, kind: Any = None, order: Any = None, **kw: Any) -> Dual:
    if axis is None:
        a, axis = np.ravel(a), 0
    return np.take_along_axis(a, np.argsort(primal(a), axis=axis, kind=kind), axis=axis)


@_implements(np.diagonal)
def _diagonal(a: Dual, offset: int = 0, axis1: int = 0, axis2: int = 1) -> Dual:
    i, j = _axis(axis1, a.ndim), _axis(axis2, a.ndim)
    return _unary(
        a,
        lambda v: np.diagonal(v, offset, i, j),
        lambda p, v: np.moveaxis(np.diagonal(p, offset, i, j), -1, -2),
    )


@_composite(np.diag)
def _diag(v: Dual, k: int = 0) -> Dual:
    if v.ndim == 2:
        return np.diagonal(v, k)
    if v.ndim != 1:
        raise ValueError(f"np.diag needs a 1-D or 2-D input; got shape {v.shape}")
    n = v.shape[0] + abs(k)
    rows = np.arange(v.shape[0]) + max(-k, 0)
    cols = np.arange(v.shape[0]) + max(k, 0)
    out = np.zeros((n, n), like=v)
    out[rows, cols] = v
    return out


@_composite(np.trace)
def _trace(
    a: Dual, offset: int = 0, axis1: int = 0, axis2: int = 1, dtype: Any = None, out: Any = None
):
    return np.sum(np.diagonal(a, offset, axis1, axis2), axis=-1, out=out)


# --- reductions ----------------------------------------------------------------------------------


@_implements(np.sum)
def _sum(
    a: Dual, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False, **kw
):
    where = kw.pop("where", True)
    _reject("np.sum", **kw)
    if where is not True:  # the masked-out entries count as zeros
        a = np.where(primal(where), a, 0.0)
    axes = _axes(axis, a.ndim)
    result = _unary(
        a,
        lambda v: np.sum(v, axis=axes, keepdims=keepdims),
        lambda p, v: np.sum(p, axis=axes, keepdims=keepdims),
    )
    return result if out is None else _write_out(out, result)


@_composite(np.nansum)
def _nansum(a: Dual, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False):
    result = np.sum(np.where(np.isnan(primal(a)), 0.0, a), axis=axis, keepdims=keepdims)
    return result if out is None else _write_out(out, result)


@_composite(np.polyval)
def _polyval(p: Any, x: Any) -> Any:
    """Horner's rule: differentiable in the coefficients and in x."""
    y = np.zeros_like(x) if np.ndim(p) else x * 0.0
    for c in p:
        y = y * x + c
    return y


@_composite(np.cross)
def _cross(a: Any, b: Any, axisa: int = -1, axisb: int = -1, axisc: int = -1, axis: Any = None):
    """Cross product of 2- or 3-vectors along any axes, as NumPy's products of components
    (a 2-vector has a zero third component; two 2-vectors give the scalar z component)."""
    if axis is not None:
        axisa = axisb = axisc = axis
    a, b = (v if isinstance(v, Carrier) else np.asarray(v) for v in (a, b))
    a = np.moveaxis(a, _axis(axisa, np.ndim(a)), -1)
    b = np.moveaxis(b, _axis(axisb, np.ndim(b)), -1)
    na, nb = np.shape(a)[-1], np.shape(b)[-1]
    if na not in (2, 3) or nb not in (2, 3):
        raise ValueError("incompatible dimensions for cross product (dimension must be 2 or 3)")
    a0, a1, b0, b1 = a[..., 0], a[..., 1], b[..., 0], b[..., 1]
    z = a0 * b1 - a1 * b0
    if na == 2 and nb == 2:
        return z
    if na == 2:
        b2 = b[..., 2]
        x, y = a1 * b2, -(a0 * b2)
    elif nb == 2:
        a2 = a[..., 2]
        x, y = -(a2 * b1), a2 * b0
    else:
        a2, b2 = a[..., 2], b[..., 2]
        x, y = a1 * b2 - a2 * b1, a2 * b0 - a0 * b2
    result = np.stack([x, y, z], axis=-1)
    return np.moveaxis(result, -1, _axis(axisc, np.ndim(result)))


@_composite(np.interp)
def _interp(x: Any, xp: Any, fp: Any, left: Any = None, right: Any = None, period: Any = None):
    """Piecewise-linear interpolation, differentiated in x and in the values fp (the sample
    points xp are constant): the segment's line through its two ends, constant beyond the table
    as np.interp extends it.  The value is np.interp's own."""
    if any(isinstance(a, Carrier) for a in (xp, left, right)) or period is not None:
        raise DualError(
            "np.interp on Duals differentiates in x and fp only (constant xp, left and right; "
            "no period)"
        )
    xp = np.asarray(xp, dtype=float)
    if not isinstance(fp, Carrier):
        fp = np.asarray(fp, dtype=float)
    xv = primal(x)
    value = np.interp(xv, xp, primal(fp), left, right)
    i = np.clip(np.searchsorted(xp, xv, side="right") - 1, 0, len(xp) - 2)
    line = fp[i] + (x - xp[i]) / (xp[i + 1] - xp[i]) * (fp[i + 1] - fp[i])
    ends = np.where(xv < xp[0], fp[0] * float(left is None), fp[-1] * float(right is None))
    tangent = np.where((xv < xp[0]) | (xv > xp[-1]), ends, line)
    return value + (tangent - primal(tangent))


def _count(a: Any, axis: Any) -> int:
    shape = np.shape(a)
    return int(np.prod([shape[i] for i in _axes(axis, len(shape))]))


@_composite(np.mean)
def _mean(
    a: Dual, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False, **kw
):
    _reject("np.mean", **kw)
    result = np.sum(a, axis=axis, keepdims=keepdims) / _count(a, axis)
    return result if out is None else _write_out(out, result)


@_composite(np.var)
def _var(
    a: Dual,
    axis: Any = None,
    dtype: Any = None,
    out: Any = None,
    ddof: float = 0,
    keepdims: bool = False,
    **kw,
):
    _reject("np.var", **kw)
    centred = a - np.mean(a, axis=axis, keepdims=True)
    if rules.is_complex(centred):  # NumPy's var of complex: the mean of |x - mean|**2
        squares = np.real(centred) ** 2 + np.imag(centred) ** 2
    else:
        squares = centred * centred
    result = np.sum(squares, axis=axis, keepdims=keepdims) / (_count(a, axis) - ddof)
    return result if out is None else _write_out(out, result)


@_composite(np.std)
def _std(
    a: Dual,
    axis: Any = None,
    dtype: Any = None,
    out: Any = None,
    ddof: float = 0,
    keepdims: bool = False,
    **kw,
):
    var = _var(a, axis=axis, ddof=ddof, keepdims=keepdims, **kw)
    # sqrt has an infinite slope at a zero variance (one element, an axis of length 1, equal
    # entries): there the derivative taken is 0, in both modes, and sqrt never sees the zero
    zero = primal(var) == 0
    result = np.where(zero, 0.0 * var, np.sqrt(np.where(zero, 1.0, var)))
    return result if out is None else _write_out(out, result)


@_implements(np.cumsum)
def _cumsum(a: Dual, axis: Any = None, dtype: Any = None, out: Any = None) -> Dual:
    if axis is None:
        a, axis = np.ravel(a), 0
    ax = _axis(axis, a.ndim)
    result = _unary(a, lambda v: np.cumsum(v, axis=ax), lambda p, v: np.cumsum(p, axis=ax))
    return result if out is None else _write_out(out, result)


def _reduce_axes_last(a: Any, axis: Any) -> tuple[Any, tuple[int, ...]]:
    """Move the reduced axes of ``a`` to the end and merge them into one; return it and the axes."""
    axes = _axes(axis, np.ndim(a))
    moved = np.moveaxis(a, axes, tuple(range(np.ndim(a) - len(axes), np.ndim(a))))
    rest = np.shape(moved)[: np.ndim(a) - len(axes)]
    # the merged length spelled out, not -1, which is ambiguous at size 0
    return np.reshape(moved, rest + (_count(a, axes),)), axes


def _keep(result: Any, axes: tuple[int, ...], keepdims: bool) -> Any:
    return np.expand_dims(result, axes) if keepdims and axes else result


def _extreme(pick: Callable[..., Any]) -> Callable[..., Any]:
    """max/min: the derivative of the selected element (the first one on ties, as NumPy picks)."""

    def impl(a: Dual, axis: Any = None, out: Any = None, keepdims: bool = False, **kw: Any) -> Any:
        _reject("np.max/np.min", **kw)
        flat, axes = _reduce_axes_last(a, axis)
        if np.shape(flat)[-1] == 0:
            raise ValueError("zero-size array to reduction operation which has no identity")
        index = pick(primal(flat), axis=-1)[..., None]
        result = _keep(np.take_along_axis(flat, index, axis=-1)[..., 0], axes, keepdims)
        return result if out is None else _write_out(out, result)

    return impl


_composite(np.max, np.amax)(_extreme(np.argmax))
_composite(np.min, np.amin)(_extreme(np.argmin))


@_composite(np.prod)
def _prod(
    a: Dual, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False, **kw
):
    """Product by pairwise multiplication: exact derivatives even where some factors are zero."""
    _reject("np.prod", **kw)
    x, axes = _reduce_axes_last(a, axis)
    if np.shape(x)[-1] == 0:  # the empty product: 1, constant
        x = np.ones(np.shape(x)[:-1] + (1,), like=x)
    while np.shape(x)[-1] > 1:
        n = np.shape(x)[-1]
        paired = x[..., 0 : n - 1 : 2] * x[..., 1:n:2]
        x = np.concatenate([paired, x[..., n - 1 :]], axis=-1) if n % 2 else paired
    result = _keep(x[..., 0], axes, keepdims)
    return result if out is None else _write_out(out, result)


@_composite(np.clip)
def _clip(
    a: Any,
    a_min: Any = np._NoValue,
    a_max: Any = np._NoValue,
    out: Any = None,
    *,
    min: Any = None,
    max: Any = None,
    **kw,
):
    lo = min if a_min is np._NoValue else a_min
    hi = max if a_max is np._NoValue else a_max
    result = a
    if lo is not None:
        result = np.maximum(result, lo)
    if hi is not None:
        result = np.minimum(result, hi)
    return result if out is None else _write_out(out, result)


@_composite(np.diff)
def _diff(
    a: Any, n: int = 1, axis: int = -1, prepend: Any = np._NoValue, append: Any = np._NoValue
):
    ax = _axis(axis, np.ndim(a))
    pieces = [a]
    if prepend is not np._NoValue:
        pieces.insert(
            0,
            np.broadcast_to(prepend, _with(np.shape(a), ax, 1))
            if np.ndim(prepend) == 0
            else prepend,
        )
    if append is not np._NoValue:
        pieces.append(
            np.broadcast_to(append, _with(np.shape(a), ax, 1)) if np.ndim(append) == 0 else append
        )
    if len(pieces) > 1:
        a = np.concatenate(pieces, axis=ax)
    lead = (slice(None),) * ax
    for _ in range(n):
        a = a[lead + (slice(1, None),)] - a[lead + (slice(None, -1),)]
    return a


def _with(shape: tuple[int, ...], axis: int, n: int) -> tuple[int, ...]:
    return shape[:axis] + (n,) + shape[axis + 1 :]


# --- products: every bilinear operation is an einsum ---------------------------------------------


def _einsum_explicit(subscripts: str) -> tuple[list[str], str]:
    subscripts = subscripts.replace(" ", "")
    if "->" in subscripts:
        ins, out = subscripts.split("->")
        return ins.split(","), out
    ins = subscripts.split(",")
    letters = "".join(ins).replace(".", "")
    out = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    return ins, ("..." if "..." in subscripts else "") + out


_SUBLIST_LETTERS = string.ascii_uppercase + string.ascii_lowercase  # NumPy's order of labels


def einsum_subscripts(subscripts: Any, operands: tuple[Any, ...]) -> tuple[str, tuple[Any, ...]]:
    """np.einsum's arguments as (subscripts string, operands), from either of NumPy's forms.

    The sublist form ``einsum(a, [0, 1], b, [1, 2], [0, 2])`` labels axes by integers (and
    ``...``); it is spelled as the string form with the letters NumPy itself uses for them.
    """
    if isinstance(subscripts, str):
        return subscripts, operands
    args = (subscripts,) + tuple(operands)

    def spell(sublist: Any) -> str:
        try:
            return "".join("..." if i is Ellipsis else _SUBLIST_LETTERS[int(i)] for i in sublist)
        except (TypeError, ValueError, IndexError):
            raise DualError(
                "np.einsum on Duals takes subscripts as a string ('ij,jk->ik') or as sublists "
                "of integers 0-51 and Ellipsis (einsum(a, [0, 1], b, [1, 2]))"
            ) from None

    ops, specs = args[0::2][: len(args) // 2], [spell(s) for s in args[1::2]]
    spec = ",".join(specs)
    if len(args) % 2:
        spec += "->" + spell(args[-1])
    return spec, tuple(ops)


def _einsum_optimize(operands: Any) -> Any:
    return "greedy" if max(np.size(primal(o)) for o in operands) > 512 else False


@_implements(np.einsum)
def _einsum(
    subscripts: Any, *operands: Any, out: Any = None, optimize: Any = False, **kw: Any
) -> Any:
    subscripts, operands = einsum_subscripts(subscripts, operands)
    specs, out_spec = _einsum_explicit(subscripts)
    tag = top_tag(operands)
    direction = next(c for c in string.ascii_letters if c not in subscripts)
    values = [o.value if isinstance(o, Dual) and o.tag == tag else o for o in operands]
    expr = ",".join(specs) + "->" + out_spec
    value = np.einsum(expr, *values, optimize=_einsum_optimize(values))
    tangent = None
    for i, o in enumerate(operands):
        if not (isinstance(o, Dual) and o.tag == tag):
            continue
        these_specs = specs[:i] + [specs[i] + direction] + specs[i + 1 :]
        these_ops = values[:i] + [o.partials] + values[i + 1 :]
        term = np.einsum(
            ",".join(these_specs) + "->" + out_spec + direction,
            *these_ops,
            optimize=_einsum_optimize(these_ops),
        )
        tangent = term if tangent is None else tangent + term
    result = Dual._make(tag, value, tangent)
    return result if out is None else _write_out(out, result)


def _letters(n: int, start: int = 0) -> str:
    return string.ascii_lowercase[start : start + n]


@_composite(np.matmul)
def _matmul(a: Any, b: Any, out: Any = None, **kw: Any) -> Any:
    for key in ("dtype", "casting", "order", "subok"):
        kw.pop(key, None)
    if kw:
        raise DualError(f"np.matmul keyword(s) {sorted(kw)} are not supported on Duals")
    na, nb = np.ndim(a), np.ndim(b)
    if na == 0 or nb == 0:
        raise ValueError("matmul: an input is a scalar (0-d); use * for scalars")
    sa = "...ij" if na >= 2 else "j"
    sb = "...jk" if nb >= 2 else "j"
    so = ("...i" if na >= 2 else "...") + ("k" if nb >= 2 else "")
    if na < 2 and nb < 2:
        so = ""
    result = np.einsum(f"{sa},{sb}->{so}", a, b)
    return result if out is None else _write_out(out, result)


LINEAR_UFUNCS: dict[Any, Callable[..., Any]] = {np.matmul: _matmul}
if hasattr(np, "vecdot"):  # ufuncs since NumPy 2.0 / 2.2

    def _vecdot(x1: Any, x2: Any, axis: int = -1) -> Any:
        return np.sum(np.moveaxis(x1, axis, -1) * np.moveaxis(x2, axis, -1), axis=-1)

    LINEAR_UFUNCS[np.vecdot] = _vecdot
    _FUNCTIONS[np.vecdot] = COMPOSITES[np.vecdot] = _vecdot


@_composite(np.dot)
def _dot(a: Any, b: Any, out: Any = None) -> Any:
    na, nb = np.ndim(a), np.ndim(b)
    if na == 0 or nb == 0:
        result = np.multiply(a, b)
    else:
        sa = _letters(na)
        sb = _letters(nb, na)
        sb = sb[:-2] + sa[-1] + sb[-1] if nb >= 2 else sa[-1]
        so = sa[:-1] + sb.replace(sa[-1], "")
        result = np.einsum(f"{sa},{sb}->{so}", a, b)
    return result if out is None else _write_out(out, result)


@_composite(np.vdot)
def _vdot(a: Any, b: Any) -> Any:
    a = np.conj(a) if rules.is_complex(a) else a  # vdot conjugates its first argument
    return np.einsum("i,i->", np.ravel(a), np.ravel(b))


@_composite(np.inner)
def _inner(a: Any, b: Any) -> Any:
    na, nb = np.ndim(a), np.ndim(b)
    if na == 0 or nb == 0:
        return np.multiply(a, b)
    sa = _letters(na)
    sb = _letters(nb - 1, na) + sa[-1]
    return np.einsum(f"{sa},{sb}->{sa[:-1] + sb[:-1]}", a, b)


@_composite(np.outer)
def _outer(a: Any, b: Any, out: Any = None) -> Any:
    result = np.einsum("i,j->ij", np.ravel(a), np.ravel(b))
    return result if out is None else _write_out(out, result)


@_composite(np.tensordot)
def _tensordot(a: Any, b: Any, axes: Any = 2) -> Any:
    na, nb = np.ndim(a), np.ndim(b)
    if isinstance(axes, int):
        axes_a, axes_b = list(range(na - axes, na)), list(range(axes))
    else:
        axes_a, axes_b = axes
        axes_a = [axes_a] if isinstance(axes_a, int) else list(axes_a)
        axes_b = [axes_b] if isinstance(axes_b, int) else list(axes_b)
    axes_a = [_axis(i, na) for i in axes_a]
    axes_b = [_axis(i, nb) for i in axes_b]
    sa = list(_letters(na))
    sb = list(_letters(nb, na))
    for i, j in zip(axes_a, axes_b):
        sb[j] = sa[i]
    so = [c for i, c in enumerate(sa) if i not in axes_a] + [
        c for j, c in enumerate(sb) if j not in axes_b
    ]
    return np.einsum(f"{''.join(sa)},{''.join(sb)}->{''.join(so)}", a, b)


# --- linear algebra ------------------------------------------------------------------------------


@_composite(np.linalg.norm)
def _norm(x: Any, ord: Any = None, axis: Any = None, keepdims: bool = False) -> Any:
    matrix = (axis is None and np.ndim(x) == 2) or (
        isinstance(axis, (tuple, list)) and len(axis) == 2
    )
    if ord in (None, "fro") or (ord == 2 and not matrix):
        if ord == "fro" and not matrix:
            raise ValueError("ord='fro' is for matrices")
        squares = np.real(x) ** 2 + np.imag(x) ** 2 if rules.is_complex(x) else x * x
        return np.sqrt(np.sum(squares, axis=axis, keepdims=keepdims))
    if matrix:
        return _matrix_norm(x, ord, (0, 1) if axis is None else tuple(axis), keepdims)
    if ord == np.inf:
        return np.max(np.abs(x), axis=axis, keepdims=keepdims)
    if ord == -np.inf:
        return np.min(np.abs(x), axis=axis, keepdims=keepdims)
    if ord == 1:
        return np.sum(np.abs(x), axis=axis, keepdims=keepdims)
    if ord == 0:  # the number of non-zero entries: piecewise constant
        return np.sum(primal(x) != 0, axis=axis, keepdims=keepdims).astype(float)
    return np.sum(np.abs(x) ** ord, axis=axis, keepdims=keepdims) ** (1.0 / ord)


def _matrix_norm(x: Any, ord: Any, axes: tuple[int, ...], keepdims: bool) -> Any:
    """Matrix norms: of the singular values ('nuc', 2, -2) or of column / row sums (1, inf)."""
    row, col = (_axis(a, np.ndim(x)) for a in axes)
    if ord in ("nuc", 2, -2):
        s = np.linalg.svd(np.moveaxis(x, (row, col), (-2, -1)), compute_uv=False)
        result = {"nuc": np.sum, 2: np.max, -2: np.min}[ord](s, axis=-1)
    elif ord in (1, -1, np.inf, -np.inf):
        if ord in (np.inf, -np.inf):
            row, col = col, row
        sums = np.sum(np.abs(x), axis=row)
        result = (np.max if ord > 0 else np.min)(sums, axis=col - 1 if col > row else col)
    else:
        raise ValueError(f"invalid norm order {ord!r} for matrices")
    return np.expand_dims(result, tuple(sorted((row, col)))) if keepdims else result


def _linalg_parts(*args: Any) -> tuple[int, list[tuple[Any, Any]]]:
    """(tag, [(value, partials or None)]) for linear-algebra JVPs."""
    tag = top_tag(args)
    return tag, [
        (a.value, a.partials) if isinstance(a, Dual) and a.tag == tag else (a, None) for a in args
    ]


@_implements(np.linalg.solve)
def _solve(a: Any, b: Any) -> Dual:
    tag, ((A, dA), (B, dB)) = _linalg_parts(a, b)
    X = np.linalg.solve(A, B)
    vector = np.ndim(B) == 1
    rhs = dB
    if dA is not None:
        dAX = np.einsum("...ijK,...j->...iK" if vector else "...ijK,...jm->...imK", dA, X)
        rhs = -dAX if rhs is None else rhs - dAX
    if vector:
        dX = np.linalg.solve(A, rhs)
    else:
        shape = np.shape(rhs)
        dX = np.reshape(np.linalg.solve(A, np.reshape(rhs, shape[:-2] + (-1,))), shape)
    return Dual._make(tag, X, dX)


@_implements(np.linalg.inv)
def _inv(a: Dual) -> Dual:
    Y = np.linalg.inv(a.value)
    return Dual._make(a.tag, Y, -np.einsum("...ij,...jlK,...lm->...imK", Y, a.partials, Y))


def _dlogdet(a: Dual) -> Any:
    """d log|det A| = trace(A^-1 dA), one entry per direction."""
    return np.einsum("...ji,...ijK->...K", np.linalg.inv(a.value), a.partials)


def _adjugate(A: np.ndarray) -> np.ndarray:
    """adj(A) = det(A) A^-1, from the SVD so that it stays exact where A is singular."""
    if np.iscomplexobj(A):  # (the SVD route below is written for real A)
        return np.linalg.det(A)[..., None, None] * np.linalg.inv(A)
    U, s, Vt = np.linalg.svd(A)
    n = s.shape[-1]
    others = np.prod(np.where(np.eye(n, dtype=bool), 1.0, s[..., None, :]), axis=-1)
    sign = np.linalg.det(U) * np.linalg.det(Vt)
    return sign[..., None, None] * np.einsum("...ji,...j,...kj->...ik", Vt, others, U)


@_implements(np.linalg.det)
def _det(a: Dual) -> Dual:
    """d det A = trace(adj(A) dA): defined at singular matrices too, unlike det(A) A^-1."""
    d = np.linalg.det(a.value)
    if isinstance(a.value, np.ndarray) and np.isfinite(a.value).all():
        adj = _adjugate(a.value)
        return Dual._make(a.tag, d, np.einsum("...ji,...ijK->...K", adj, a.partials))
    return Dual._make(a.tag, d, d[..., None] * _dlogdet(a))  # nested, or NaN/inf entries


try:  # NumPy >= 2.0 returns a named tuple (sign, logabsdet)
    from numpy.linalg._linalg import SlogdetResult as _SlogdetResult
except ImportError:  # pragma: no cover - older NumPy
    from collections import namedtuple

    _SlogdetResult = namedtuple("SlogdetResult", ["sign", "logabsdet"])


@_implements(np.linalg.slogdet)
def _slogdet(a: Dual) -> Any:
    sign, logabs = np.linalg.slogdet(a.value)
    return _SlogdetResult(primal(sign), Dual._make(a.tag, logabs, _dlogdet(a)))


@_implements(np.linalg.cholesky)
def _cholesky(a: Dual, /, *, upper: bool = False) -> Dual:
    """L L^T = A from the lower triangle of A (the upper one when ``upper``), as NumPy reads it.

    The other triangle is ignored by NumPy, so the tangent is the symmetric matrix built from the
    triangle that is read: the derivative in the ignored entries is zero, as NumPy's is.
    """
    if upper:  # U = L^T where L L^T is the matrix whose lower triangle is A's upper one
        return np.swapaxes(_cholesky(np.swapaxes(a, -1, -2)), -1, -2)
    L = np.linalg.cholesky(a.value)
    Linv = np.linalg.inv(L)
    n = np.shape(L)[-1]
    strict_lower = np.tril(np.ones((n, n)), -1)[..., None]
    dA = a.partials * (strict_lower + np.eye(n)[..., None])
    dA = dA + np.swapaxes(a.partials * strict_lower, -2, -3)
    half_lower = strict_lower + 0.5 * np.eye(n)[..., None]
    X = np.einsum("...ij,...jlK,...ml->...imK", Linv, dA, Linv)
    dL = np.einsum("...ij,...jmK->...imK", L, X * half_lower)
    return Dual._make(a.tag, L, dL)


# Decompositions.  Each one's tangent map is written once, as NumPy code linear in the tangent
# dA (direction axis last), of the decomposition's values: the forward JVP applies it to the
# partials, and reverse mode transposes it by tracing it (transposes._linearized).

try:  # NumPy >= 2.0 names the parts of its decompositions
    from numpy.linalg._linalg import EighResult, EigResult, QRResult, SVDResult
except ImportError:  # pragma: no cover - older NumPy
    from collections import namedtuple

    EighResult = namedtuple("EighResult", ["eigenvalues", "eigenvectors"])
    EigResult = namedtuple("EigResult", ["eigenvalues", "eigenvectors"])
    QRResult = namedtuple("QRResult", ["Q", "R"])
    SVDResult = namedtuple("SVDResult", ["U", "S", "Vh"])


def _mT(x: Any) -> Any:
    """Swap the two matrix axes of a tangent (axes -3 and -2; the direction axis stays last)."""
    return np.swapaxes(x, -2, -3)


def _off_diagonal_inverse(gap: Any) -> Any:
    """1 / gap off the diagonal and 0 on it (gap[..., i, j] = x_j - x_i)."""
    n = np.shape(gap)[-1]
    eye = np.eye(n, dtype=bool)
    return np.where(eye, 0.0, 1.0 / np.where(eye, 1.0, gap))


def _read_triangle(dA: Any, UPLO: str) -> Any:
    """The symmetric tangent NumPy's eigh sees: the triangle UPLO of dA, mirrored."""
    n = np.shape(dA)[-2]
    strict = np.tril(np.ones((n, n)), -1)
    strict = (strict if UPLO.upper() == "L" else strict.T)[..., None]
    below = dA * strict
    return dA * np.eye(n)[..., None] + below + _mT(below)


def eigh_tangent(w: Any, V: Any, dA: Any, UPLO: str = "L") -> tuple[Any, Any]:
    """dw = diag(V^T dA V), dV = V (F * V^T dA V), F_ij = 1 / (w_j - w_i) off the diagonal."""
    M = np.einsum("...ji,...jlK,...lm->...imK", V, _read_triangle(dA, UPLO), V)
    dw = np.einsum("...iiK->...iK", M)
    F = _off_diagonal_inverse(w[..., None, :] - w[..., :, None])
    return dw, np.einsum("...ij,...jmK->...imK", V, F[..., None] * M)


@_implements(np.linalg.eigh)
def _eigh(a: Dual, UPLO: str = "L") -> Any:
    """Symmetric eigenproblem from the triangle NumPy reads; eigenvalues must be distinct for
    the eigenvectors' derivative (it is infinite at a repeated eigenvalue)."""
    w, V = np.linalg.eigh(a.value, UPLO)
    dw, dV = eigh_tangent(w, V, a.partials, UPLO)
    return EighResult(Dual._make(a.tag, w, dw), Dual._make(a.tag, V, dV))


@_composite(np.linalg.eigvalsh)
def _eigvalsh(a: Any, UPLO: str = "L") -> Any:
    return np.linalg.eigh(a, UPLO)[0]


def real_eig(A: Any) -> tuple[Any, Any]:
    """np.linalg.eig of real input whose eigenvalues are real, else a DualError."""
    w, V = np.linalg.eig(A)
    if np.iscomplexobj(primal(w)):
        raise DualError(
            "np.linalg.eig of this matrix has complex eigenvalues, and dualad does not support "
            "complex numbers yet; for a symmetric matrix use np.linalg.eigh"
        )
    return w, V


def eig_tangent(w: Any, V: Any, dA: Any) -> tuple[Any, Any]:
    """dw = diag(V^-1 dA V); dV = V (F * V^-1 dA V), then each column kept at unit length
    (NumPy normalises them): dv_j -= v_j (v_j . dv_j)."""
    M = np.einsum("...ij,...jlK,...lm->...imK", np.linalg.inv(V), dA, V)
    dw = np.einsum("...iiK->...iK", M)
    F = _off_diagonal_inverse(w[..., None, :] - w[..., :, None])
    dV = np.einsum("...ij,...jmK->...imK", V, F[..., None] * M)
    return dw, dV - V[..., None] * np.einsum("...ij,...ijK->...jK", V, dV)[..., None, :, :]


@_implements(np.linalg.eig)
def _eig(a: Dual) -> Any:
    w, V = real_eig(a.value)
    dw, dV = eig_tangent(w, V, a.partials)
    return EigResult(Dual._make(a.tag, w, dw), Dual._make(a.tag, V, dV))


@_composite(np.linalg.eigvals)
def _eigvals(a: Any) -> Any:
    return np.linalg.eig(a)[0]


def svd_check(shape: tuple[int, ...], full_matrices: bool, hermitian: bool) -> None:
    if hermitian:
        raise DualError("np.linalg.svd(..., hermitian=True) is not supported on Duals")
    if full_matrices and shape[-1] != shape[-2]:
        raise DualError(
            f"np.linalg.svd of a {shape[-2]}x{shape[-1]} matrix with full_matrices=True has "
            "columns that no derivative determines; pass full_matrices=False (or "
            "compute_uv=False for the singular values alone)"
        )


def svd_tangent(U: Any, s: Any, Vh: Any, dA: Any, compute_uv: bool = True) -> tuple[Any, ...]:
    """The reduced SVD's tangents (dU, ds, dVh); ds = diag(U^T dA V).

    dU = U (F * (dP S + S dP^T)) + (I - U U^T) dA V / S, and dV alike with A^T, where
    dP = U^T dA V and F_ij = 1 / (s_j^2 - s_i^2) off the diagonal.
    """
    V = np.swapaxes(Vh, -1, -2)
    dP = np.einsum("...ji,...jlK,...lm->...imK", U, dA, V)
    ds = np.einsum("...iiK->...iK", dP)
    if not compute_uv:
        return (ds,)
    s2 = s * s
    F = _off_diagonal_inverse(s2[..., None, :] - s2[..., :, None])[..., None]
    cols, rows = s[..., None, :, None], s[..., :, None, None]  # X S and S X
    dU = np.einsum("...ij,...jmK->...imK", U, F * (dP * cols + rows * _mT(dP)))
    dU = (
        dU
        + (np.einsum("...ijK,...jm->...imK", dA, V) - np.einsum("...ij,...jmK->...imK", U, dP))
        / cols
    )
    dV = np.einsum("...ij,...jmK->...imK", V, F * (rows * dP + _mT(dP) * cols))
    dV = (
        dV
        + (np.einsum("...jiK,...jm->...imK", dA, U) - np.einsum("...ij,...mjK->...imK", V, dP))
        / cols
    )
    return dU, ds, _mT(dV)


@_implements(np.linalg.svd)
def _svd(a: Dual, full_matrices: bool = True, compute_uv: bool = True, hermitian: bool = False):
    """Singular values, and vectors for distinct non-zero singular values (reduced form)."""
    svd_check(a.shape, full_matrices and compute_uv, hermitian)
    U, s, Vh = np.linalg.svd(a.value, full_matrices=False)
    tangents = svd_tangent(U, s, Vh, a.partials, compute_uv)
    if not compute_uv:
        return Dual._make(a.tag, s, tangents[0])
    dU, ds, dVh = tangents
    return SVDResult(Dual._make(a.tag, U, dU), Dual._make(a.tag, s, ds), Dual._make(a.tag, Vh, dVh))


def pinv_tangent(A: Any, P: Any, dA: Any) -> Any:
    """dP = -P dA P + P P^T dA^T (I - A P) + (I - P A) dA^T P^T P (constant rank)."""
    first = -np.einsum("...ij,...jlK,...lm->...imK", P, dA, P)
    PPt = np.einsum("...ij,...kj->...ik", P, P)
    left = np.eye(np.shape(A)[-2]) - np.einsum("...ij,...jk->...ik", A, P)
    right = np.eye(np.shape(A)[-1]) - np.einsum("...ij,...jk->...ik", P, A)
    PtP = np.einsum("...ji,...jk->...ik", P, P)
    second = np.einsum("...ij,...ljK,...lm->...imK", PPt, dA, left)
    third = np.einsum("...ij,...ljK,...lm->...imK", right, dA, PtP)
    return first + second + third


@_implements(np.linalg.pinv)
def _pinv(a: Dual, rcond: Any = None, hermitian: bool = False, **kw: Any) -> Dual:
    """Moore-Penrose inverse, NumPy's value; the derivative holds where the rank is constant."""
    if hermitian:
        raise DualError("np.linalg.pinv(..., hermitian=True) is not supported on Duals")
    options = {} if rcond is None else {"rcond": rcond}
    P = np.linalg.pinv(a.value, **options, **kw)
    return Dual._make(a.tag, P, pinv_tangent(a.value, P, a.partials))


def qr_check(shape: tuple[int, ...], mode: str) -> None:
    if mode not in ("reduced", "r", "complete"):
        raise DualError(f"np.linalg.qr(mode={mode!r}) is not supported on Duals")
    if shape[-2] < shape[-1] or (mode == "complete" and shape[-2] != shape[-1]):
        raise DualError(
            f"np.linalg.qr on Duals needs rows >= columns (and mode='reduced' or 'r' when rows > "
            f"columns); got a {shape[-2]}x{shape[-1]} matrix with mode={mode!r}"
        )


def qr_tangent(Q: Any, R: Any, dA: Any) -> tuple[Any, Any]:
    """X = Q^T dA R^-1 and W = X - (strict lower of X minus its transpose): dR = W R and
    dQ = dA R^-1 - Q W (Q^T dQ is then skew, dR upper triangular)."""
    Rinv = np.linalg.inv(R)
    dARinv = np.einsum("...ijK,...jm->...imK", dA, Rinv)
    X = np.einsum("...ji,...jmK->...imK", Q, dARinv)
    n = np.shape(R)[-1]
    strict = np.tril(np.ones((n, n)), -1)[..., None]
    W = X - X * strict + _mT(X * strict)
    dR = np.einsum("...ijK,...jm->...imK", W, R)
    return dARinv - np.einsum("...ij,...jmK->...imK", Q, W), dR


@_implements(np.linalg.qr)
def _qr(a: Dual, mode: str = "reduced") -> Any:
    qr_check(a.shape, mode)
    Q, R = np.linalg.qr(a.value, mode="reduced")
    dQ, dR = qr_tangent(Q, R, a.partials)
    if mode == "r":
        return Dual._make(a.tag, R, dR)
    return QRResult(Dual._make(a.tag, Q, dQ), Dual._make(a.tag, R, dR))


@_composite(np.linalg.matrix_power)
def _matrix_power(a: Any, n: int) -> Any:
    """Repeated squaring, as NumPy does; a negative power inverts first."""
    n = int(n)
    if n == 0:
        return np.zeros_like(a) + np.broadcast_to(np.eye(np.shape(a)[-1]), np.shape(a))
    if n < 0:
        a, n = np.linalg.inv(a), -n
    result = None
    while n:
        if n & 1:
            result = a if result is None else np.matmul(result, a)
        n >>= 1
        if n:
            a = np.matmul(a, a)
    return result


# --- creation: *_like and NEP 35 like= -----------------------------------------------------------


def _float_kind(dtype: Any) -> bool:
    return dtype is None or np.dtype(dtype).kind in "fc"


def _zeros_dual(like: Carrier, shape: Any, dtype: Any) -> Carrier:
    """Constant zeros of ``like``'s kind (and differentiation), so that they can hold its values."""
    shape = tuple(shape) if isinstance(shape, (tuple, list)) else (int(shape),)
    dtype = like.dtype if dtype is None else np.dtype(dtype)
    return like._zeros(shape, dtype)


def _creation_args(
    fill: Any, args: tuple[Any, ...], kw: dict[str, Any], dtype: Any, name: str
) -> tuple[Any, Any]:
    """(fill value, dtype) of np.zeros/ones/full/empty and their *_like forms.

    ``fill`` is the fixed fill of zeros/ones/empty, or None for full, whose fill value comes by
    position or keyword; a positional argument after it is the dtype.
    """
    if fill is None:
        if "fill_value" in kw:
            fill = kw.pop("fill_value")
        elif not args:
            raise TypeError(f"{name}() missing required argument 'fill_value'")
        else:
            fill, args = args[0], args[1:]
    if args:
        dtype = args[0]
    kw.pop("order", None)  # memory layout: invisible to a Dual
    kw.pop("device", None)
    if kw:
        raise DualError(f"{name} keyword(s) {sorted(kw)} are not supported on Duals")
    return fill, dtype


def _make_like(fill: Any) -> Callable[..., Any]:
    def impl(
        a: Any,
        *args: Any,
        dtype: Any = None,
        order: Any = "K",
        subok: bool = True,
        shape: Any = None,
        **kw: Any,
    ):
        fill_value, dtype = _creation_args(fill, args, kw, dtype, "np.*_like")
        return _filled(a, np.shape(a) if shape is None else shape, fill_value, dtype)

    return impl


def _filled(like: Carrier, shape: Any, fill_value: Any, dtype: Any) -> Any:
    """A Dual of ``like``'s differentiation filled with ``fill_value``; plain for non-floats."""
    if not _float_kind(dtype):
        return np.full(shape, primal(fill_value), dtype=dtype)
    out = _zeros_dual(like, shape, dtype)
    if not (np.ndim(fill_value) == 0 and not isinstance(fill_value, Carrier) and fill_value == 0):
        out[...] = fill_value
    return out


_composite(np.zeros_like, np.empty_like)(_make_like(0.0))
_composite(np.ones_like)(_make_like(1.0))
_composite(np.full_like)(_make_like(None))


def _make_creation(fill: Any) -> Callable[..., Any]:
    def impl(like: Dual, shape: Any, *args: Any, dtype: Any = None, **kw: Any) -> Any:
        fill_value, dtype = _creation_args(fill, args, kw, dtype, "np.zeros/ones/full/empty")
        return _filled(like, shape, fill_value, dtype)

    return impl


_CREATION[np.zeros] = _CREATION[np.empty] = _make_creation(0.0)
_CREATION[np.ones] = _make_creation(1.0)
_CREATION[np.full] = _make_creation(None)


@_creates(np.array, np.asarray, np.asanyarray)
def _array(like: Dual, obj: Any, dtype: Any = None, *args: Any, **kw: Any) -> Any:
    """``np.array([...], like=x)``: nested sequences holding Duals become one stacked Dual."""
    if isinstance(obj, Carrier):
        return obj
    if isinstance(obj, (list, tuple)):
        items = [_array(like, o, dtype) for o in obj]
        if any(isinstance(i, Carrier) for i in items):
            return np.stack(items)
    value = np.asarray(obj, dtype=dtype)
    if value.dtype.kind not in "fc":
        return value  # integers, booleans: indices and masks, never differentiated
    out = _zeros_dual(like, value.shape, np.result_type(value.dtype, like.dtype))
    out[...] = value
    return out


# --- complex numbers -----------------------------------------------------------------------------
# The convention (README, "Complex numbers"): a tangent of complex z is a complex number, and a
# cotangent c pairs with a tangent t as Re(c * t), without conjugation (JAX's).  Holomorphic
# functions then need no rule of their own, and np.real and np.imag are the only primitives that
# are merely R-linear: conj, abs and angle are written with them.


@_implements(np.real)
def _real(val: Any) -> Any:
    if not rules.is_complex(val):
        return val  # NumPy returns the real array itself
    return _unary(val, np.real, lambda p, v: np.real(p))


@_implements(np.imag)
def _imag(val: Any) -> Any:
    if not rules.is_complex(val):
        return np.zeros(np.shape(val), dtype=_dtype_of_value(val))  # a constant
    return _unary(val, np.imag, lambda p, v: np.imag(p))


def _dtype_of_value(val: Any) -> Any:
    return primal(val).dtype


@_composite(np.angle)
def _angle(z: Any, deg: bool = False) -> Any:
    if not rules.is_complex(z):  # 0 or pi: piecewise constant
        return np.angle(primal(z), deg)
    angle = np.arctan2(np.imag(z), np.real(z))
    return angle * (180.0 / np.pi) if deg else angle


@_composite(np.iscomplexobj)
def _iscomplexobj(x: Any) -> bool:
    return rules.is_complex(x)


@_composite(np.isrealobj)
def _isrealobj(x: Any) -> bool:
    return not rules.is_complex(x)


#: numpy.linalg functions whose derivatives here are for real matrices only.
_REAL_LINALG = {
    np.linalg.eigh, np.linalg.eigvalsh, np.linalg.eig, np.linalg.svd, np.linalg.qr,
    np.linalg.cholesky, np.linalg.pinv, np.linalg.slogdet, np.linalg.matrix_power,
}  # fmt: skip


# --- discrete Fourier transforms: linear, so the tangent is the same transform -------------------

#: np.fft function -> (the n-dimensional function it is a case of, its default axes, real input)
FFTS: dict[Any, tuple[Any, Any, bool]] = {
    np.fft.fft: (np.fft.fftn, (-1,), False),
    np.fft.ifft: (np.fft.ifftn, (-1,), False),
    np.fft.fft2: (np.fft.fftn, (-2, -1), False),
    np.fft.ifft2: (np.fft.ifftn, (-2, -1), False),
    np.fft.fftn: (np.fft.fftn, None, False),
    np.fft.ifftn: (np.fft.ifftn, None, False),
    np.fft.rfft: (np.fft.rfft, (-1,), True),
    np.fft.irfft: (np.fft.irfft, (-1,), False),
}


def fft_call(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], ndim: int) -> Any:
    """(the transform as a function of an array, its axes made non-negative, its norm), for an
    np.fft function of FFTS called as ``func(a, *args, **kwargs)`` on an array of ``ndim`` axes."""
    nd_func, default_axes, _ = FFTS[func]
    one_axis = default_axes is not None and len(default_axes) == 1
    names = ("n", "axis", "norm") if one_axis else ("s", "axes", "norm")
    bound = dict(zip(names, args))
    bound.update(kwargs)
    size, axes, norm = (bound.get(name) for name in names)
    if names[1] == "axis":
        axes = default_axes if axes is None else (axes,)
        size = None if size is None else (size,)
    elif axes is None:
        axes = default_axes or tuple(range(-len(size) if size else -ndim, 0))
    axes = tuple(_axis(a, ndim) for a in axes)
    if func in (np.fft.rfft, np.fft.irfft):
        n = None if size is None else size[0]
        return (lambda v: func(v, n, axes[0], norm)), axes, norm
    return (lambda v: nd_func(v, size, axes, norm)), axes, norm


def _fft(func: Any) -> Callable[..., Any]:
    def impl(a: Any, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(a, Dual):
            return func(a, *args, **kwargs)
        if FFTS[func][2] and rules.is_complex(a):
            raise TypeError(f"{label(func)} takes real input; got complex")
        transform, _, _ = fft_call(func, args, kwargs, a.ndim)
        # the axes are the value's, counted from the front: the direction axis stays out of it
        return Dual._make(a.tag, transform(a.value), transform(a.partials))

    return impl


for _fft_func in FFTS:
    _FUNCTIONS[_fft_func] = _fft(_fft_func)


def _real_nd_axes(a: Any, s: Any, axes: Any, default: Any) -> tuple[Any, tuple[int, ...]]:
    if axes is None:
        axes = default if default is not None else tuple(range(-(len(s) if s else np.ndim(a)), 0))
    return (None if s is None else tuple(s)), tuple(axes)


@_composite(np.fft.rfftn)
def _rfftn(a: Any, s: Any = None, axes: Any = None, norm: Any = None, out: Any = None) -> Any:
    """rfft along the last axis, then fftn along the others (as NumPy computes it)."""
    s, axes = _real_nd_axes(a, s, axes, None)
    half = np.fft.rfft(a, None if s is None else s[-1], axes[-1], norm)
    if len(axes) == 1:
        return half
    return np.fft.fftn(half, None if s is None else s[:-1], axes[:-1], norm)


@_composite(np.fft.rfft2)
def _rfft2(a: Any, s: Any = None, axes: Any = (-2, -1), norm: Any = None, out: Any = None):
    return _rfftn(a, s, axes, norm)


@_composite(np.fft.irfftn)
def _irfftn(a: Any, s: Any = None, axes: Any = None, norm: Any = None, out: Any = None) -> Any:
    """ifftn along all axes but the last, then irfft along the last (as NumPy computes it)."""
    s, axes = _real_nd_axes(a, s, axes, None)
    if len(axes) > 1:
        a = np.fft.ifftn(a, None if s is None else s[:-1], axes[:-1], norm)
    return np.fft.irfft(a, None if s is None else s[-1], axes[-1], norm)


@_composite(np.fft.irfft2)
def _irfft2(a: Any, s: Any = None, axes: Any = (-2, -1), norm: Any = None, out: Any = None):
    return _irfftn(a, s, axes, norm)


def _shift(sign: int) -> Callable[..., Any]:
    def shift(x: Any, axes: Any = None) -> Any:
        axes = _axes(axes, np.ndim(x))
        n = [np.shape(x)[ax] for ax in axes]
        return np.roll(x, [sign * (k // 2) for k in n], axes)

    return shift


_FUNCTIONS[np.fft.fftshift] = COMPOSITES[np.fft.fftshift] = _shift(1)
_FUNCTIONS[np.fft.ifftshift] = COMPOSITES[np.fft.ifftshift] = _shift(-1)


@_composite(np.real_if_close)
def _real_if_close(a: Any, tol: float = 100) -> Any:
    if rules.is_complex(a) and np.all(np.abs(np.imag(primal(a))) < tol * np.finfo(float).eps):
        return np.real(a)
    return a


Dual._functions = _FUNCTIONS  # what Carrier.__array_function__ looks up for a Dual
