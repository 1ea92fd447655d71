"""DualArray inside compiled code: indexing, assignment, ``len``/``shape``, and allocation.

An element read ``x[i, j]`` builds a Dual from ``value[i, j]`` and ``partials[i, j, 0..K-1]``
(unrolled, no temporary view); any other basic index (a row, a slice) applies Numba's own
indexing to both arrays, which stay in step because the direction axis is last.  Allocation
follows ``x``: ``np.empty_like(x)``, ``np.zeros_like(x)``, or ``np.zeros(m, dtype=x.dtype)``,
where ``x.dtype`` of a DualArray is a marker meaning "Duals like x".
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
from numba import types
from numba.core import cgutils
from numba.core.imputils import (
    RefType,
    impl_ret_new_ref,
    iternext_impl,
    lower_builtin,
    lower_getattr,
)
from numba.core.typing.templates import AttributeTemplate, infer_getattr
from numba.extending import intrinsic, overload_method

from ..dual import primal
from ..transforms import stop_gradient
from .dualtypes import (
    DualArrayIteratorType,
    DualArrayType,
    DualDtypeType,
    DualType,
    dual_array_ir,
    generate,
    lower_directly,
    overload_first,
    tuple_source,
)
from .scalars import refuse


def _element_indices(array: DualArrayType, index: Any) -> list[str] | None:
    """Source for the integer indices of one element, or None when ``index`` is not one."""
    if isinstance(index, types.Integer) and array.ndim == 1:
        return ["idx"]
    if isinstance(index, types.BaseTuple) and len(index) == array.ndim:
        if all(isinstance(t, types.Integer) for t in index):
            return [f"idx[{d}]" for d in range(array.ndim)]
    return None


def _item_pointers(context, builder, array_type, array, index_type, index, trailing):  # noqa: ANN001, ANN202
    """Pointers to ``array[index + t]`` for each tuple ``t`` of constant trailing indices in
    ``trailing``, indexed as Numba indexes (negative indices wrap; bounds checked when Numba
    checks bounds); the index is fixed once for all of them."""
    from numba.np.arrayobj import fix_integer_index, make_array

    ary = make_array(array_type)(context, builder, array)
    shapes = cgutils.unpack_tuple(builder, ary.shape, count=array_type.ndim)
    strides = cgutils.unpack_tuple(builder, ary.strides, count=array_type.ndim)
    if isinstance(index_type, types.BaseTuple):
        types_, values = list(index_type), cgutils.unpack_tuple(builder, index, len(index_type))
    else:
        types_, values = [index_type], [index]
    lead = [
        fix_integer_index(context, builder, t, v, shapes[d])
        for d, (t, v) in enumerate(zip(types_, values))
    ]
    return [
        cgutils.get_item_pointer2(
            context, builder, ary.data, shapes, strides, array_type.layout,
            lead + [context.get_constant(types.intp, k) for k in t], wraparound=False,
            boundscheck=context.enable_boundscheck,
        )
        for t in trailing
    ]  # fmt: skip


def _entry_pointers(context, builder, array_type, array, index_type, index, K):  # noqa: ANN001, ANN202
    """Pointers to ``array[index + (k,)]`` for k < K: the K partials of one entry."""
    trailing = [(k,) for k in range(K)]
    return _item_pointers(context, builder, array_type, array, index_type, index, trailing)


def _value_pointer(context, builder, array_type, array, index_type, index):  # noqa: ANN001, ANN202
    """Pointer to ``array[index]``, one element."""
    return _item_pointers(context, builder, array_type, array, index_type, index, [()])[0]


def _element_of(a: Any, idx: Any) -> bool:
    """True for one element of a DualArray of floats, ``a[i]`` or ``a[i, j]``."""
    return (
        isinstance(a, DualArrayType)
        and _element_indices(a, idx) is not None
        and a.value_type.dtype == types.float64
        and a.partials_type.dtype == types.float64
    )


@lower_directly(operator.getitem)
def _read_element(typingctx, a, idx):  # noqa: ANN001, ANN202
    """``a[i]``: a Dual of ``value[i]`` and ``partials[i, 0..K-1]``, read in the caller (an
    overload implementation would be compiled per array type, 40-60 ms of a first call)."""
    if not _element_of(a, idx):
        return None
    result = DualType(a.K)

    def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
        array_type, index_type = sig.args
        arr = cgutils.create_struct_proxy(array_type)(context, builder, value=args[0])
        value = _value_pointer(
            context, builder, array_type.value_type, arr.value, index_type, args[1]
        )
        pointers = _entry_pointers(
            context, builder, array_type.partials_type, arr.partials, index_type, args[1], a.K
        )
        dual = cgutils.create_struct_proxy(result)(context, builder)
        dual.value = builder.load(value)
        items = [builder.load(pointer) for pointer in pointers]
        dual.partials = context.make_tuple(builder, result.partials_type, items)
        return dual._getvalue()

    return result(a, idx), codegen


@lower_directly(operator.setitem)
def _write_element(typingctx, a, idx, val):  # noqa: ANN001, ANN202
    """``a[i] = v`` for a Dual of floats with a's K, or a real number (zero partials), written
    in the caller (see :func:`_read_element`); other writes, and refusals, by the overload."""
    if not _element_of(a, idx) or not a.value_type.mutable or not a.partials_type.mutable:
        return None
    dual = isinstance(val, DualType)
    if dual and (val.K != a.K or val.base != types.float64):
        return None
    if not dual and not isinstance(val, (types.Float, types.Integer, types.Boolean)):
        return None

    def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
        array_type, index_type, val_type = sig.args
        arr = cgutils.create_struct_proxy(array_type)(context, builder, value=args[0])
        value = _value_pointer(
            context, builder, array_type.value_type, arr.value, index_type, args[1]
        )
        pointers = _entry_pointers(
            context, builder, array_type.partials_type, arr.partials, index_type, args[1], a.K
        )
        if dual:
            given = cgutils.create_struct_proxy(val_type)(context, builder, value=args[2])
            builder.store(given.value, value)
            items = [builder.extract_value(given.partials, k) for k in range(a.K)]
        else:
            builder.store(context.cast(builder, args[2], val_type, types.float64), value)
            items = [context.get_constant(types.float64, 0.0)] * a.K
        for item, pointer in zip(items, pointers):
            builder.store(item, pointer)
        return context.get_dummy_value()

    return types.none(a, idx, val), codegen


def _is_entry_index(array: Any, index: Any) -> bool:
    if not isinstance(array, types.Array) or array.ndim < 1:
        return False
    if isinstance(index, types.Integer):
        return array.ndim == 2
    return (
        isinstance(index, types.BaseTuple)
        and len(index) == array.ndim - 1
        and all(isinstance(t, types.Integer) for t in index)
    )


@intrinsic
def partials_at(typingctx, partials, index, k_marker):  # noqa: ANN001
    """The K partials of one entry, ``partials[index + (k,)]`` for k < K, as a tuple.

    One intrinsic rather than K indexing expressions, each of which Numba would type and lower
    in every generated getitem (compiled per array type and K)."""
    if not _is_entry_index(partials, index) or not isinstance(k_marker, types.IntegerLiteral):
        return None
    K = k_marker.literal_value
    result = types.UniTuple(partials.dtype, K)

    def codegen(context, builder, sig, args):  # noqa: ANN001
        pointers = _entry_pointers(context, builder, sig.args[0], args[0], sig.args[1], args[1], K)
        items = [builder.load(pointer) for pointer in pointers]
        return context.make_tuple(builder, result, items)

    return result(partials, index, k_marker), codegen


@intrinsic
def set_partials_at(typingctx, partials, index, values):  # noqa: ANN001
    """``partials[index + (k,)] = values[k]`` for each k of the tuple ``values`` (see
    :func:`partials_at`)."""
    if not _is_entry_index(partials, index) or not partials.mutable:
        return None
    if not isinstance(values, types.BaseTuple) or not all(
        isinstance(t, (types.Float, types.Integer, types.Boolean)) for t in values
    ):
        return None

    def codegen(context, builder, sig, args):  # noqa: ANN001
        K = len(sig.args[2])
        pointers = _entry_pointers(context, builder, sig.args[0], args[0], sig.args[1], args[1], K)
        dtype = sig.args[0].dtype
        for k, pointer in enumerate(pointers):
            item = builder.extract_value(args[2], k)
            builder.store(context.cast(builder, item, sig.args[2][k], dtype), pointer)
        return context.get_dummy_value()

    return types.none(partials, index, values), codegen


def _element_partials(array: DualArrayType, index: Any) -> tuple[str, list[str]] | None:
    at = _element_indices(array, index)
    if at is None:
        return None
    lead = ", ".join(at)
    return lead, [f"a.partials[{lead}, {k}]" for k in range(array.K)]


@overload_first(operator.getitem)
def _getitem(a, idx):  # noqa: ANN001
    if not isinstance(a, DualArrayType):
        return None
    element = _element_partials(a, idx)
    if element is not None and a.partials_type.dtype == types.float64:
        lead, _ = element
        return generate(
            f"def impl(a, idx):\n    p = partials_at(a.partials, idx, {a.K})\n"
            f"    return make_dual(a.value[{lead}], p)\n",
            partials_at=partials_at,
        )
    if element is not None:
        lead, parts = element
        reads = "".join(f"    e{k} = {part}\n" for k, part in enumerate(parts))
        names = tuple_source([f"e{k}" for k in range(a.K)])
        return generate(
            f"def impl(a, idx):\n{reads}    return make_dual(a.value[{lead}], {names})\n"
        )
    return generate(
        f"def impl(a, idx):\n    return make_dual_array(a.value[idx], a.partials[idx], {a.K})\n"
    )


_LOST_IN_FLOAT_ARRAY = (
    "writing a Dual into a float array would drop its derivative. Allocate the array from the "
    "input instead: np.empty_like(x), np.zeros_like(x), or np.zeros(m, dtype=x.dtype) / "
    "np.empty(m, x.dtype), which hold Duals when x does and floats otherwise; or, to leave the "
    "function unchanged, differentiate dualad.numba.promote(f)."
)


_WRITE_INTO_INPUT = (
    "the function writes into its input array. In compiled code the input is read-only (its "
    "buffers are shared between passes, as JAX's arrays are immutable); copy it first, "
    "x = x.copy(), or write into a new array from np.empty_like(x)."
)


@overload_first(operator.setitem)
def _setitem(a, idx, val):  # noqa: ANN001
    if isinstance(a, types.Array) and isinstance(val, (DualType, DualArrayType)):
        refuse(_LOST_IN_FLOAT_ARRAY)
    if not isinstance(a, DualArrayType):
        return None
    if not a.value_type.mutable:
        refuse(_WRITE_INTO_INPUT)
    element = _element_partials(a, idx)
    if element is not None:
        lead, _ = element
        if isinstance(val, DualType) and val.K == a.K and val.base == types.float64:
            return generate(
                f"def impl(a, idx, val):\n    a.value[{lead}] = val.value\n"
                "    set_partials_at(a.partials, idx, val.partials)\n",
                set_partials_at=set_partials_at,
            )
        if isinstance(val, DualType):
            stores = [f"    a.partials[{lead}, {k}] = p[{k}]\n" for k in range(a.K)]
            return generate(
                f"def impl(a, idx, val):\n    a.value[{lead}] = val.value\n"
                "    p = val.partials\n" + "".join(stores)
            )
        if isinstance(val, (types.Float, types.Integer, types.Boolean)):
            zeros = tuple_source(["0.0"] * a.K)
            return generate(
                f"def impl(a, idx, val):\n    a.value[{lead}] = val\n"
                f"    set_partials_at(a.partials, idx, {zeros})\n",
                set_partials_at=set_partials_at,
            )
        return None
    if isinstance(val, DualArrayType):

        def impl(a, idx, val):  # noqa: ANN001, ANN202
            a.value[idx] = val.value
            a.partials[idx] = val.partials

        return impl
    if isinstance(val, DualType):
        stores = [f"    part[..., {k}] = p[{k}]\n" for k in range(a.K)]
        return generate(
            "def impl(a, idx, val):\n    a.value[idx] = val.value\n    part = a.partials[idx]\n"
            "    p = val.partials\n" + "".join(stores)
        )
    if isinstance(val, (types.Float, types.Integer, types.Boolean, types.Array)):

        def impl(a, idx, val):  # noqa: ANN001, ANN202
            a.value[idx] = val
            a.partials[idx] = 0.0

        return impl
    return None


# --- iteration over the first axis: ``for xi in x``, ``a, b, c = x`` ----------------------------


@lower_builtin("getiter", DualArrayType)
def getiter_first_axis(context, builder, sig, args):  # noqa: ANN001, ANN201
    """``iter(a)`` of a DualArray (or of an AdjArray, see adjoint.py): index 0 and a reference."""
    iterator = context.make_helper(builder, sig.return_type)
    iterator.index = cgutils.alloca_once_value(builder, context.get_constant(types.intp, 0))
    iterator.array = args[0]
    context.nrt.incref(builder, sig.args[0], args[0])
    return impl_ret_new_ref(context, builder, sig.return_type, iterator._getvalue())


@lower_builtin("iternext", DualArrayIteratorType)
@iternext_impl(RefType.NEW)
def _iternext(context, builder, sig, args, result):  # noqa: ANN001, ANN202
    iterator_type = sig.args[0]
    array_type = iterator_type.array_type
    iterator = context.make_helper(builder, iterator_type, value=args[0])
    size = context.compile_internal(
        builder, lambda a: len(a.value), types.intp(array_type), [iterator.array]
    )
    index = builder.load(iterator.index)
    valid = builder.icmp_signed("<", index, size)
    result.set_valid(valid)
    with builder.if_then(valid):
        row = context.compile_internal(
            builder,
            lambda a, i: a[i],
            iterator_type.yield_type(array_type, types.intp),
            [iterator.array, index],
        )
        result.yield_(row)
        builder.store(cgutils.increment_index(builder, index), iterator.index)


# len, shape, size, ndim and dtype are typed and lowered directly (as Numba's own array
# attributes are): overloads would be compiled as functions of their own per array type.


@lower_directly(len)
def _len(typingctx, a):  # noqa: ANN001, ANN202
    if not isinstance(a, DualArrayType):
        return None

    def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
        value_type = sig.args[0].value_type
        arr = cgutils.create_struct_proxy(sig.args[0])(context, builder, value=args[0])
        return context.get_function(len, types.intp(value_type))(builder, [arr.value])

    return types.intp(a), codegen


@infer_getattr
class _DualArrayAttributes(AttributeTemplate):
    key = DualArrayType

    def generic_resolve(self, a, attr):  # noqa: ANN001, ANN201
        if attr in ("shape", "size", "ndim"):
            return self.context.resolve_getattr(a.value_type, attr)
        if attr == "dtype":
            return DualDtypeType(a.K)
        return None


def _value_attribute(context, builder, typ, value, attr):  # noqa: ANN001, ANN202
    arr = cgutils.create_struct_proxy(typ)(context, builder, value=value)
    impl = context.get_getattr(typ.value_type, attr)
    return impl(context, builder, typ.value_type, arr.value, attr)


for _name in ("shape", "size", "ndim"):
    lower_getattr(DualArrayType, _name)(
        lambda context, builder, typ, value, attr=_name: _value_attribute(
            context, builder, typ, value, attr
        )
    )


@lower_getattr(DualArrayType, "dtype")
def _dtype(context, builder, typ, value):  # noqa: ANN001, ANN202
    return context.get_dummy_value()


@overload_method(DualArrayType, "copy")
def _copy(a):  # noqa: ANN001
    return generate(
        f"def impl(a):\n    return make_dual_array(a.value.copy(), a.partials.copy(), {a.K})\n"
    )


def _new_dual_array(signature: str, values: str, partials: str, K: int) -> Any:
    """An implementation ``impl(signature)`` returning a DualArray of the ``values`` source (an
    array expression) with partials like ``np.<partials>(values.shape + (K,))``."""
    zeroed = partials == "zeros"
    return generate(
        f"def impl({signature}):\n    v = {values}\n"
        f"    return make_dual_array(v, new_array(v.shape + ({K},), {zeroed}), {K})\n"
    )


def _like(fill: str):
    def typer(a):  # noqa: ANN001
        if not isinstance(a, DualArrayType):
            return None
        if fill != "ones":  # values and partials in one block (empty values, empty partials)
            zeroed = fill == "zeros"
            return generate(
                f"def impl(a):\n    return new_dual_array(a.value.shape, {a.K}, {zeroed})\n"
            )
        return _new_dual_array("a", f"np.{fill}_like(a.value)", "zeros", a.K)

    return typer


def _new_directly(fill: str):
    """A plan (see :func:`lower_directly`) for ``np.empty(shape, x.dtype)`` and ``np.zeros``
    with a DualArray's dtype: the allocation lowered in the caller."""

    def plan(typingctx, shape, dtype=None):  # noqa: ANN001, ANN202
        if not isinstance(dtype, DualDtypeType):
            return None
        if isinstance(shape, types.Integer):
            ndim = 1
        elif isinstance(shape, types.BaseTuple) and all(
            isinstance(t, types.Integer) for t in shape
        ):
            ndim = len(shape)
        else:
            return None
        result = DualArrayType(
            types.Array(types.float64, ndim, "C"), types.Array(types.float64, ndim + 1, "C"),
            dtype.K,
        )  # fmt: skip

        def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
            new = dual_array_ir(context, builder, result, sig.args[0], args[0], fill == "zeros")
            return impl_ret_new_ref(context, builder, result, new)

        return result(shape, dtype), codegen

    return plan


def _like_directly(fill: str):
    """A plan for ``np.empty_like(x)`` and ``np.zeros_like(x)`` of a DualArray ``x``."""

    def plan(typingctx, a):  # noqa: ANN001, ANN202
        if not isinstance(a, DualArrayType):
            return None
        ndim = a.ndim
        result = DualArrayType(
            types.Array(types.float64, ndim, "C"), types.Array(types.float64, ndim + 1, "C"),
            a.K,
        )  # fmt: skip

        def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
            shape = _value_attribute(context, builder, sig.args[0], args[0], "shape")
            shape_type = types.UniTuple(types.intp, ndim)
            new = dual_array_ir(context, builder, result, shape_type, shape, fill == "zeros")
            return impl_ret_new_ref(context, builder, result, new)

        return result(a), codegen

    return plan


lower_directly(np.empty)(_new_directly("empty"))
lower_directly(np.zeros)(_new_directly("zeros"))
lower_directly(np.empty_like)(_like_directly("empty"))
lower_directly(np.zeros_like)(_like_directly("zeros"))
overload_first(np.empty_like)(_like("empty"))
overload_first(np.zeros_like)(_like("zeros"))
overload_first(np.ones_like)(_like("ones"))


def _allocate(fill: str):
    def typer(shape, dtype=None):  # noqa: ANN001
        if not isinstance(dtype, DualDtypeType):
            return None
        lead = "(shape,)" if isinstance(shape, types.Integer) else "shape"
        if fill != "ones":  # values and partials in one block
            return generate(
                "def impl(shape, dtype=None):\n"
                f"    return new_dual_array({lead}, {dtype.K}, {fill == 'zeros'})\n"
            )
        return _new_dual_array("shape, dtype=None", f"np.ones({lead})", "zeros", dtype.K)

    return typer


overload_first(np.empty)(_allocate("empty"))
overload_first(np.zeros)(_allocate("zeros"))
overload_first(np.ones)(_allocate("ones"))


def _primal(x):  # noqa: ANN001
    """The plain value: every layer of a nested Dual removed (its inner partials are
    derivatives too, so stop_gradient of the outer layer alone left a wrong second derivative)."""
    if isinstance(x, (DualType, DualArrayType)):
        return lambda x: primal(x.value)
    if isinstance(x, (types.Number, types.Boolean, types.Array)):
        return lambda x: x
    return None


overload_first(primal)(_primal)
overload_first(stop_gradient)(_primal)


# --- np.array of Duals: ``np.array([dx, dy, dz])`` in an ODE right-hand side -------------------


def _dual_items(obj: Any) -> int | None:
    """K when ``obj`` is a list or tuple of Duals (and real numbers), else None."""
    if isinstance(obj, types.List):
        items = [obj.dtype]
    elif isinstance(obj, types.BaseTuple):
        items = list(obj)
    else:
        return None
    duals = [t for t in items if isinstance(t, DualType)]
    if not duals or not all(isinstance(t, (DualType, *_REAL)) for t in items):
        return None
    if any(t != duals[0] for t in duals):
        return None
    return duals[0].K


_REAL = (types.Float, types.Integer, types.Boolean)


@overload_first(np.array)
def _array(obj, dtype=None):  # noqa: ANN001
    K = _dual_items(obj)
    if K is None:
        return None
    if not (dtype is None or isinstance(dtype, (types.NoneType, types.Omitted, DualDtypeType))):
        number = getattr(dtype, "instance_type", getattr(dtype, "dtype", None))
        if number != types.float64:
            refuse(
                "np.array of Duals with a dtype other than float64 would drop their derivative; "
                "leave the dtype out"
            )
    if isinstance(obj, types.List):
        return generate(
            "def impl(obj, dtype=None):\n    n = len(obj)\n"
            f"    out = new_dual_array(n, {K}, False)\n"
            "    for i in range(n):\n        out[i] = obj[i]\n    return out\n"
        )
    stores = "".join(f"    out[{i}] = obj[{i}]\n" for i in range(len(obj)))
    return generate(
        f"def impl(obj, dtype=None):\n    n = {len(obj)}\n"
        f"    out = new_dual_array(n, {K}, False)\n"
        + stores + "    return out\n"
    )  # fmt: skip
