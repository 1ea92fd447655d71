"""DualArray shapes inside compiled code: reshape, ravel, ``.T``, concatenate, stack, copy and
``np.where``.

Each one applies Numba's own array function to the value array and the partials array alike;
the direction axis stays last (``.T`` of a matrix swaps the first two axes of the partials only).
A float array among the operands of ``np.concatenate`` or ``np.stack`` joins with zero partials.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
from numba import types
from numba.extending import overload_attribute, overload_method

from .arrayops import applies, elementwise_impl
from .dualtypes import DualArrayType, DualType, generate, overload_first, tuple_source
from .reductions import flat
from .scalars import refuse

_REAL = (types.Float, types.Integer, types.Boolean)


def _gen(source: str, **names: Any) -> Any:
    return generate(source, label="array shape", **names)


def _reshape_impl(a: DualArrayType, signature: str, shape: str) -> Any:
    return _gen(
        f"def impl({signature}):\n"
        f"    v = np.ascontiguousarray(a.value).reshape({shape})\n"
        f"    p = np.ascontiguousarray(a.partials).reshape(v.shape + ({a.K},))\n"
        f"    return make_dual_array(v, p, {a.K})\n",
        as_shape=as_shape,
    )


def as_shape(shape):  # noqa: ANN001, ANN201 - compiled-code helper, typed by the overload below
    """The shape tuple of ``a.reshape(*shape)``: ``shape`` itself for ``a.reshape(2, 3)``, its
    one item for ``a.reshape((2, 3))``."""


@overload_first(as_shape)
def _as_shape(shape):  # noqa: ANN001
    # a plain tuple, item by item: Numba's own reshape cannot lower a star-argument tuple
    inner, n = (
        ("shape[0]", len(shape[0]))
        if isinstance(shape[0], types.BaseTuple)
        else ("shape", len(shape))
    )
    return _gen(
        f"def impl(shape):\n    return {tuple_source([f'{inner}[{i}]' for i in range(n)])}\n"
    )


@overload_method(DualArrayType, "reshape")
def _reshape_method(a, *shape):  # noqa: ANN001
    # Numba types the call twice, with the integers as given and folded into one tuple, so
    # (UniTuple(int64, 2),) may mean reshape(2, 3) or reshape((2, 3)): the implementation tells
    # them apart on its own star argument (as_shape), where they differ.
    if shape and all(isinstance(s, (types.Integer, types.BaseTuple)) for s in shape):
        return _reshape_impl(a, "a, *shape", "as_shape(shape)")
    return None


@overload_first(np.reshape)
def _reshape(a, shape):  # noqa: ANN001
    if not isinstance(a, DualArrayType):
        return None
    return _reshape_impl(a, "a, shape", "shape")


overload_method(DualArrayType, "ravel")(lambda a: lambda a: flat(a))
overload_first(np.ravel)(lambda a: (lambda a: flat(a)) if isinstance(a, DualArrayType) else None)


@overload_method(DualArrayType, "flatten")
def _flatten(a):  # noqa: ANN001
    return lambda a: flat(a).copy()


def _transpose_impl(a):  # noqa: ANN001, ANN202 - a typer: Numba compares its signature
    if not isinstance(a, DualArrayType):
        return None
    if a.ndim == 1:
        return lambda a: a
    if a.ndim != 2:
        refuse(".T / np.transpose of a DualArray of more than 2 dimensions is not supported")
    return _gen(
        "def impl(a):\n"
        f"    return make_dual_array(a.value.T, np.transpose(a.partials, (1, 0, 2)), {a.K})\n"
    )


overload_attribute(DualArrayType, "T")(_transpose_impl)
overload_method(DualArrayType, "transpose")(_transpose_impl)
overload_first(np.transpose)(_transpose_impl)


def _copy(a):  # noqa: ANN001
    if not isinstance(a, DualArrayType):
        return None
    return _gen(
        f"def impl(a):\n    return make_dual_array(a.value.copy(), a.partials.copy(), {a.K})\n"
    )


overload_first(np.copy)(_copy)
overload_first(np.ascontiguousarray)(_copy)


def _joined(arrays: Any) -> tuple[int, list[str], list[str]] | None:
    """K and the sources of each operand's values and partials, when a DualArray takes part."""
    if not isinstance(arrays, types.BaseTuple) or not any(
        isinstance(t, DualArrayType) for t in arrays
    ):
        return None
    K = next(t.K for t in arrays if isinstance(t, DualArrayType))
    values, partials = [], []
    for i, t in enumerate(arrays):
        if isinstance(t, DualArrayType):
            if t.K != K:
                return None
            values.append(f"arrays[{i}].value")
            partials.append(f"arrays[{i}].partials")
        elif isinstance(t, types.Array):
            values.append(f"arrays[{i}]")
            partials.append(f"np.zeros(arrays[{i}].shape + ({K},))")
        else:
            return None
    return K, values, partials


@overload_first(np.concatenate)
def _concatenate(arrays, axis=0):  # noqa: ANN001
    joined = _joined(arrays)
    if joined is None:
        return None
    K, values, partials = joined
    ndim = next(t.ndim for t in arrays if isinstance(t, DualArrayType))
    return _gen(
        "def impl(arrays, axis=0):\n"
        f"    ax = axis if axis >= 0 else axis + {ndim}\n"
        f"    v = np.concatenate({tuple_source(values)}, axis=ax)\n"
        f"    p = np.concatenate({tuple_source(partials)}, axis=ax)\n"
        f"    return make_dual_array(v, p, {K})\n"
    )


def _stack_typer():
    def typer(arrays, axis=0):  # noqa: ANN001, ANN202
        joined = _joined(arrays)
        if joined is None:
            return None
        K, _, _ = joined
        if not isinstance(axis, (int, types.IntegerLiteral, types.Omitted)) and axis is not None:
            refuse("np.stack of DualArrays takes a constant axis (0 or -1) in compiled code")
        literal = getattr(axis, "literal_value", getattr(axis, "value", axis))
        last = literal == -1 or (literal == 1 and all(t.ndim == 1 for t in arrays))
        if literal not in (0, None) and not last:
            refuse("np.stack of DualArrays takes axis 0 or -1 (1-D operands) in compiled code")
        first = next(i for i, t in enumerate(arrays) if isinstance(t, (DualArrayType, types.Array)))
        n = len(arrays)
        stores = "".join(f"    out[{i}] = arrays[{i}]\n" for i in range(n))
        shape = f"({n},) + arrays[{first}].shape"
        body = (
            "def impl(arrays, axis=0):\n"
            f"    out = make_dual_array(np.empty({shape}), np.empty({shape} + ({K},)), {K})\n"
            + stores
        )
        if last:
            return _gen(body + "    return out.T\n")
        return _gen(body + "    return out\n")

    return typer


overload_first(np.stack)(_stack_typer())


@numba.njit
def _pick(c, a, b):  # noqa: ANN001, ANN202
    return a if c else b


@overload_first(np.where)
def _where(condition, x, y):  # noqa: ANN001
    if isinstance(condition, (DualType, DualArrayType)):
        return lambda condition, x, y: np.where(condition.value, x, y)
    argtypes = (condition, x, y)
    if isinstance(condition, types.Array) or any(
        isinstance(t, (DualArrayType, types.Array)) for t in (x, y)
    ):
        if applies(argtypes):
            return elementwise_impl(_pick, argtypes, params="condition, x, y")
        return None
    if isinstance(condition, _REAL) and any(isinstance(t, DualType) for t in (x, y)):
        if all(isinstance(t, (DualType, *_REAL)) for t in (x, y)):
            return lambda condition, x, y: x if condition else y
    return None


# --- np.roll, np.diff, np.cross, np.clip, np.interp ----------------------------------------------


@overload_first(np.roll)
def _roll(a, shift):  # noqa: ANN001
    if not isinstance(a, DualArrayType):
        return None

    def impl(a, shift):  # noqa: ANN001, ANN202
        f = flat(a)
        n = f.size
        out = np.empty_like(f)
        for i in range(n):
            out[(i + shift) % n] = f[i]
        return out.reshape(a.shape)

    return impl


@overload_first(np.diff)
def _diff(a, n=1):  # noqa: ANN001
    if not isinstance(a, DualArrayType):
        return None
    if not isinstance(n, (types.Omitted, int)) and n is not None:
        if not (isinstance(n, types.IntegerLiteral) and n.literal_value == 1):
            refuse("np.diff of a DualArray takes n=1 in compiled code; apply it n times")
    if a.ndim == 1:
        return lambda a, n=1: a[1:] - a[:-1]
    if a.ndim == 2:
        return lambda a, n=1: a[:, 1:] - a[:, :-1]
    refuse("np.diff of a DualArray of more than 2 dimensions is not supported in compiled code")


@overload_first(np.cross)
def _cross(a, b):  # noqa: ANN001
    kinds = (DualArrayType, types.Array)
    if not (isinstance(a, kinds) and isinstance(b, kinds)) or not applies((a, b)):
        return None
    if a.ndim != 1 or b.ndim != 1:
        refuse("np.cross of DualArrays takes two 3-vectors (1-D) in compiled code; loop over rows")
    K = a.K if isinstance(a, DualArrayType) else b.K
    return _gen(
        "def impl(a, b):\n"
        "    if a.shape[0] != 3 or b.shape[0] != 3:\n"
        "        raise ValueError('np.cross of DualArrays takes 3-vectors (dualad)')\n"
        f"    out = make_dual_array(np.empty(3), np.empty((3, {K})), {K})\n"
        "    out[0] = a[1] * b[2] - a[2] * b[1]\n"
        "    out[1] = a[2] * b[0] - a[0] * b[2]\n"
        "    out[2] = a[0] * b[1] - a[1] * b[0]\n"
        "    return out\n"
    )


@numba.njit
def _clip_one(x, lo, hi):  # noqa: ANN001, ANN202
    """x clipped to [lo, hi]: the bound (its own derivative) outside, x inside."""
    y = x
    if x < lo:
        y = lo
    if y > hi:
        y = hi
    return y


@overload_first(np.clip)
def _clip(a, a_min, a_max):  # noqa: ANN001
    argtypes = (a, a_min, a_max)
    if not applies(argtypes):
        if isinstance(a, DualType) and all(isinstance(t, (DualType, *_REAL)) for t in argtypes):
            return lambda a, a_min, a_max: _clip_one(a, a_min, a_max)
        return None
    return elementwise_impl(_clip_one, argtypes, params="a, a_min, a_max")


@numba.njit
def interp_one(xi, xv, xp, fp):  # noqa: ANN001, ANN201
    """fp linearly interpolated at xi (whose value is xv) between the points xp, constant
    beyond them, as np.interp."""
    n = xp.size
    if xv <= xp[0]:
        return fp[0] + 0.0 * xi
    if xv >= xp[n - 1]:
        return fp[n - 1] + 0.0 * xi
    j = np.searchsorted(xp, xv, side="right") - 1
    t = (xi - xp[j]) / (xp[j + 1] - xp[j])
    return fp[j] + t * (fp[j + 1] - fp[j])


@overload_first(np.interp)
def _interp(x, xp, fp):  # noqa: ANN001
    dual = (DualType, DualArrayType)
    if not any(isinstance(t, dual) for t in (x, xp, fp)):
        return None
    if isinstance(xp, dual):
        refuse(
            "np.interp with Duals in xp (the sample points) is not supported (on either "
            "engine): differentiate with respect to x or fp"
        )
    if not isinstance(xp, types.Array) or not isinstance(fp, (DualArrayType, types.Array)):
        return None
    K = next(t.K for t in (x, fp) if isinstance(t, dual))
    xv = "x.value" if isinstance(x, dual) else "x"
    if isinstance(x, (DualType, *_REAL)):
        return _gen(
            f"def impl(x, xp, fp):\n    return interp_one(x, {xv}, xp, fp)\n",
            interp_one=interp_one,
        )
    if not isinstance(x, (DualArrayType, types.Array)) or x.ndim != 1:
        refuse("np.interp of DualArrays takes a scalar or 1-D x in compiled code; x.ravel() it")
    return _gen(
        "def impl(x, xp, fp):\n"
        f"    xvs = {xv}\n"
        "    n = xvs.shape[0]\n"
        f"    out = make_dual_array(np.empty(n), np.empty((n, {K})), {K})\n"
        "    for i in range(n):\n"
        "        out[i] = interp_one(x[i], xvs[i], xp, fp)\n"
        "    return out\n",
        interp_one=interp_one,
    )


@overload_first(np.asarray)
def _asarray(a, dtype=None):  # noqa: ANN001
    """``np.asarray(x)`` at the top of a library function: the DualArray itself."""
    if not isinstance(a, DualArrayType):
        return None
    if not (_is_float64_or_none(dtype)):
        refuse("np.asarray of a DualArray with a dtype other than float64 would drop derivatives")
    return lambda a, dtype=None: a


@overload_method(DualArrayType, "astype")
def _astype(a, dtype):  # noqa: ANN001
    if not _is_float64_or_none(dtype):
        refuse(".astype of a DualArray to a dtype other than float64 would drop its derivative")
    return lambda a, dtype: a.copy()


def _is_float64_or_none(dtype: Any) -> bool:
    if dtype is None or isinstance(dtype, (types.NoneType, types.Omitted)):
        return True
    if isinstance(dtype, types.NumberClass):
        return dtype.instance_type == types.float64
    return isinstance(dtype, types.DTypeSpec) and dtype.dtype == types.float64
