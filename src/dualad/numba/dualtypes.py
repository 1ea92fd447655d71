"""Numba types for dual numbers: a Dual scalar and a DualArray, with their data layout.

A ``Dual[K]`` is a struct of a float64 value and a K-tuple of float64 partials.  K is part of the
type, so every loop over the partials is unrolled at compile time and LLVM keeps them in
registers.  A ``DualArray`` is a struct of two arrays: values of shape ``S`` and partials of shape
``S + (K,)`` (the direction axis last, as in the NumPy engine).

A Dual unifies with any real number, so ``s = 0.0; s += x[i]`` types: the float is widened to a
Dual with zero partials.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import numpy as np
from numba import types
from numba.core import cgutils, errors
from numba.core.imputils import lower_builtin
from numba.core.typing.templates import AbstractTemplate, infer_global
from numba.extending import (
    intrinsic,
    lower_cast,
    make_attribute_wrapper,
    models,
    overload,
    register_model,
)

_REAL = (types.Float, types.Integer, types.Boolean)

#: Numba options of the functions dualad compiles to be called only from compiled code (the
#: overloads, the rules' partials, the drivers' helpers): no C-callable wrapper, which Numba
#: would otherwise generate, optimise and turn into machine code for each of them.
HELPER_OPTIONS = {"no_cfunc_wrapper": True}

#: Options of a dispatcher that only compiled code calls (the user's function compiled for Duals,
#: the rules' partials): without the CPython wrapper too, whose generation, optimisation and
#: machine code were about a tenth of a first call.  Calling such a dispatcher from Python would
#: jump to a null address: it must never be handed to the user.
CALLED_FROM_COMPILED_CODE = {**HELPER_OPTIONS, "no_cpython_wrapper": True}

#: The options of the scalar operations (a Dual's and an adjoint number's arithmetic, math and
#: ufuncs on numbers, the rules' partials): also always inlined into their caller.  LLVM's own
#: heuristic left a Dual(8) power or an adjoint node (a few hundred instructions) as calls that
#: pass their Duals through the stack: the forward-over-reverse Hessian of the loop Rosenbrock
#: at n = 100 took 1.5x longer, with the same first-call compile time.
SCALAR_OPTIONS = {**HELPER_OPTIONS, "forceinline": True}


def overload_first(func):  # noqa: ANN001, ANN201
    """``numba.extending.overload`` for the CPU target, so that Numba tries it before its own
    generic templates: np.empty_like's would otherwise accept a DualArray and make a 0-d array
    of it, depending on which template Numba happened to register first."""
    return overload(func, target="cpu", jit_options=HELPER_OPTIONS)


def overload_scalar(func, prefer_literal: bool = False):  # noqa: ANN001, ANN201
    """:func:`overload_first` for an operation on numbers, inlined (see SCALAR_OPTIONS); with
    ``prefer_literal``, typed first with the literal types of constant arguments (``x ** 2``)."""
    return overload(func, target="cpu", jit_options=SCALAR_OPTIONS, prefer_literal=prefer_literal)


def numpy_ufuncs() -> list[np.ufunc]:
    """NumPy's ufuncs, by name.  From the module's own namespace: ``getattr`` over ``dir(np)``
    imports NumPy's lazily loaded submodules (f2py, testing, random, fft, ...), 168 modules and
    0.2 s of a first call."""
    return [u for _, u in sorted(vars(np).items()) if isinstance(u, np.ufunc)]


def lower_directly(func, prefer_literal: bool = False, by_types: bool = True):  # noqa: ANN001, ANN201
    """Register ``plan(typingctx, *argtypes) -> (signature, codegen) | None`` for calls of ``func``:
    a call it plans is typed by the signature and lowered by ``codegen`` inside the caller, as
    an ``@intrinsic`` is, with no function of its own to compile.

    An ``@overload`` implementation is a function of its own: Numba types it, lowers it,
    optimises it and makes machine code of it (40-60 ms of a first call even for ``x * y`` on
    Duals) before the caller inlines it.  A plan returning None leaves the call to the
    templates registered after it (the overload of the general case).  Register the plan
    before that overload: Numba tries templates of one target in the order registered.
    With ``by_types`` the plan depends on the argument types alone and is asked once per types
    (else every typing of ``a[i]`` would register another lowering); a plan that reads the rule
    table, which may change, says False and keeps its own record.
    """

    def register(plan):  # noqa: ANN001, ANN202
        lowered: set[Any] = set()
        planned: dict[tuple[Any, ...], Any] = {}  # knowledge about types, as Numba's caches
        pysig = inspect.signature(plan)
        pysig = pysig.replace(parameters=list(pysig.parameters.values())[1:])  # no typingctx
        starred = any(p.kind == p.VAR_POSITIONAL for p in pysig.parameters.values())

        def generic(self, args, kws):  # noqa: ANN001, ANN202
            if starred:  # a plan of any number of arguments: positional ones only
                if kws:
                    return None
                given = tuple(args)
            else:
                try:  # keyword arguments in the plan's order, as the call passes them
                    given = tuple(pysig.bind(*args, **kws).args)
                except TypeError:
                    return None
            if by_types and given in planned:
                found = planned[given]
            else:
                found = plan(self.context, *given)
                if by_types:
                    planned[given] = found
            if found is None:
                return None
            sig, codegen = found
            if codegen not in lowered:  # a plan gives the same codegen for the same types
                lowered.add(codegen)
                lower_builtin(codegen, *sig.args)(codegen)
            self._codegen = codegen
            return sig if starred else sig.replace(pysig=pysig)

        def get_impl_key(self, sig):  # noqa: ANN001, ANN202
            return self._codegen

        name = f"Direct_{getattr(func, '__name__', 'func')}"
        template = type(name, (AbstractTemplate,), {
            "key": func, "metadata": {"target": "cpu"}, "prefer_literal": prefer_literal,
            "generic": generic, "get_impl_key": get_impl_key,
        })  # fmt: skip
        infer_global(func, types.Function(template))
        return plan

    return register


class DualType(types.Type):
    """A dual number with K partials, inside compiled code.

    ``base`` is the type of its value and of each partial: float64, or a Dual type for a nested
    (second-order) dual number, whose outer partials are Duals of the inner directions.  The
    generated overloads work at every level: an inner value is computed by the inner overloads.
    """

    def __init__(self, K: int, base: Any = types.float64) -> None:
        self.K, self.base = K, base
        self.partials_type = types.UniTuple(base, K)
        nested = "" if base == types.float64 else f", of {base}"
        super().__init__(name=f"Dual(K={K}{nested})")

    def unify(self, typingctx, other):  # noqa: ANN001 - numba's protocol
        if isinstance(other, _REAL) or other == self.base:
            return self
        return None

    def can_convert_from(self, typingctx, other):  # noqa: ANN001 - numba's protocol
        if other == self.base and isinstance(other, DualType):
            return types.Conversion.safe
        return None


class DualArrayType(types.IterableType):
    """An array of dual numbers: a value array and a partials array with one more axis.

    The two array types are part of the type (a slice may be strided while the original is
    contiguous), so indexing reuses Numba's own array indexing on each.  It iterates over its
    first axis, as an array does (``for xi in x``, ``a, b = x``).
    """

    def __init__(self, value_type: types.Array, partials_type: types.Array, K: int) -> None:
        self.value_type, self.partials_type, self.K = value_type, partials_type, K
        self.ndim = value_type.ndim
        # Numba lowers ``a += b`` on an immutable type as ``a = a + b``: a view's update (``b =
        # a[:3]; b += x``) would not reach ``a``, nor would a shape that does not fit be refused
        self.mutable = value_type.mutable
        super().__init__(name=f"DualArray({value_type}, {partials_type}, K={K})")

    @property
    def iterator_type(self) -> DualArrayIteratorType:
        return DualArrayIteratorType(self)

    def row_type(self) -> Any:
        """The type of ``a[i]`` for an integer i: a Dual, or a DualArray of one less axis."""
        if self.ndim == 1:
            return DualType(self.K)

        def row(t: types.Array) -> types.Array:
            return t.copy(ndim=t.ndim - 1, layout="C" if t.layout == "C" else "A")

        return DualArrayType(row(self.value_type), row(self.partials_type), self.K)


class DualArrayIteratorType(types.SimpleIteratorType):
    """The iterator over a DualArray's (or an AdjArray's) first axis."""

    def __init__(self, array_type: DualArrayType) -> None:
        self.array_type = array_type
        super().__init__(f"iter({array_type})", array_type.row_type())


class DualDtypeType(types.Dummy):
    """What ``x.dtype`` is for a DualArray: tells ``np.zeros(m, dtype=x.dtype)`` to make Duals."""

    def __init__(self, K: int) -> None:
        self.K = K
        super().__init__(name=f"DualDtype(K={K})")


@register_model(DualType)
class _DualModel(models.StructModel):
    def __init__(self, dmm, fe_type):  # noqa: ANN001
        members = [("value", fe_type.base), ("partials", fe_type.partials_type)]
        super().__init__(dmm, fe_type, members)


@register_model(DualArrayType)
class _DualArrayModel(models.StructModel):
    def __init__(self, dmm, fe_type):  # noqa: ANN001
        members = [("value", fe_type.value_type), ("partials", fe_type.partials_type)]
        super().__init__(dmm, fe_type, members)


@register_model(DualArrayIteratorType)
class _DualArrayIteratorModel(models.StructModel):
    def __init__(self, dmm, fe_type):  # noqa: ANN001
        members = [("index", types.EphemeralPointer(types.intp)), ("array", fe_type.array_type)]
        super().__init__(dmm, fe_type, members)


register_model(DualDtypeType)(models.OpaqueModel)

make_attribute_wrapper(DualType, "value", "value")
make_attribute_wrapper(DualType, "partials", "partials")
make_attribute_wrapper(DualArrayType, "value", "value")
make_attribute_wrapper(DualArrayType, "partials", "partials")


def generate(source: str, name: str = "impl", label: str = "generated", **names: Any) -> Any:
    """The function ``name`` defined by Python ``source`` (an overload's implementation written
    for one type, e.g. with K unrolled), seeing ``make_dual``, ``make_dual_array``, ``np``,
    ``math``, ``new_array``, ``new_dual_array`` and ``names``.  Its file is ``<dualad label>``,
    which error locations skip."""
    env = {"make_dual": make_dual, "make_dual_array": make_dual_array, "np": np, "math": math}
    env["new_array"] = new_array
    env["new_dual_array"] = new_dual_array
    env["__name__"] = __name__  # an importable module: Numba's disk cache rebuilds from it
    env.update(names)
    exec(compile(source, f"<dualad {label}>", "exec"), env)  # noqa: S102
    return env[name]


def tuple_source(names: list[str]) -> str:
    """Python source of a tuple display of ``names`` (simple names only, see the rule impls)."""
    return "(" + ", ".join(names) + ("," if len(names) == 1 else "") + ")"


def _k_of(marker) -> int | None:  # noqa: ANN001
    """K from a compile-time marker: an integer literal or a tuple of K entries."""
    if isinstance(marker, types.IntegerLiteral):
        return marker.literal_value
    if isinstance(marker, types.BaseTuple):
        return len(marker)
    return None


def _base_of(value: Any, partials: Any) -> Any:
    """The base type of a Dual made of ``value`` and ``partials``: float64, or the Dual type
    that the value or a partial is (a nested Dual), or None when they do not fit together."""
    found = [t for t in (value, *partials) if isinstance(t, DualType)]
    if not found:
        return types.float64 if isinstance(value, _REAL) else None
    if any(t != found[0] for t in found) or not all(
        isinstance(t, (DualType, *_REAL)) for t in (value, *partials)
    ):
        return None
    return found[0]


@intrinsic
def make_dual(typingctx, value, partials):  # noqa: ANN001
    """A Dual from a value and a K-tuple of partials: reals (cast to float64), or Duals of one
    type (a nested Dual; reals among them are cast to that type)."""
    if not isinstance(partials, types.BaseTuple):
        return None
    base = _base_of(value, partials)
    if base is None:
        return None
    result = DualType(len(partials), base)

    def codegen(context, builder, sig, args):  # noqa: ANN001
        dual = cgutils.create_struct_proxy(result)(context, builder)
        dual.value = context.cast(builder, args[0], sig.args[0], base)
        items = [
            context.cast(builder, builder.extract_value(args[1], k), sig.args[1][k], base)
            for k in range(len(partials))
        ]
        dual.partials = context.make_tuple(builder, result.partials_type, items)
        return dual._getvalue()

    return result(value, partials), codegen


@intrinsic
def make_dual_array(typingctx, value, partials, k_marker):  # noqa: ANN001
    """A DualArray from float64 arrays of shapes S and S + (K,); K from ``k_marker``."""
    K = _k_of(k_marker)
    if K is None or not isinstance(value, types.Array) or not isinstance(partials, types.Array):
        return None
    if partials.ndim != value.ndim + 1:
        return None
    result = DualArrayType(value, partials, K)

    def codegen(context, builder, sig, args):  # noqa: ANN001
        arr = cgutils.create_struct_proxy(result)(context, builder)
        arr.value = args[0]
        arr.partials = args[1]
        context.nrt.incref(builder, sig.args[0], args[0])
        context.nrt.incref(builder, sig.args[1], args[1])
        return arr._getvalue()

    return result(value, partials, k_marker), codegen


def _allocation(shape: Any, zeroed: Any) -> tuple[int, bool] | None:
    """The ndim of an allocation's ``shape`` type (an integer or a tuple of integers) and the
    literal ``zeroed`` flag, or None when they are not such types."""
    if isinstance(shape, types.Integer):
        ndim = 1
    elif isinstance(shape, types.BaseTuple) and all(isinstance(s, types.Integer) for s in shape):
        ndim = len(shape)
    else:
        return None
    if not isinstance(zeroed, (types.BooleanLiteral, types.IntegerLiteral)):
        return None
    return ndim, bool(zeroed.literal_value)


@intrinsic
def new_array(typingctx, shape, zeroed):  # noqa: ANN001
    """A new C-contiguous float64 array of ``shape`` (an integer or a tuple of integers), filled
    with zeros when the literal ``zeroed`` is true.

    What ``np.empty(shape)`` and ``np.zeros(shape)`` make, lowered in place: Numba compiles its
    own overloads of those as separate functions, once per type of ``shape``, each optimised and
    turned into machine code on its own, a noticeable part of a first call.
    """
    allocation = _allocation(shape, zeroed)
    if allocation is None:
        return None
    ndim, fill = allocation
    result = types.Array(types.float64, ndim, "C")

    def codegen(context, builder, sig, args):  # noqa: ANN001
        from numba.np.arrayobj import _empty_nd_impl, _parse_shape

        array = _empty_nd_impl(
            context, builder, result, _parse_shape(context, builder, sig.args[0], args[0])
        )
        if fill:
            cgutils.memset(builder, array.data, builder.mul(array.itemsize, array.nitems), 0)
        return array._getvalue()

    return result(shape, zeroed), codegen


@intrinsic
def new_dual_array(typingctx, shape, k_marker, zeroed):  # noqa: ANN001
    """A new DualArray of ``shape`` with K partials (K from ``k_marker``), its values and
    partials C-contiguous in one allocation (zeros when the literal ``zeroed`` is true).

    One block rather than two arrays: an array operation inside a loop (``d = x[i] - x[j]`` in a
    pair loop) paid for each allocation and its release, about half its time at K = 8.  Both
    arrays hold a reference to the block, so either may outlive the DualArray.
    """
    K = _k_of(k_marker)
    if K is None:
        return None
    allocation = _allocation(shape, zeroed)
    if allocation is None:
        return None
    ndim, fill = allocation
    value_type = types.Array(types.float64, ndim, "C")
    result = DualArrayType(value_type, types.Array(types.float64, ndim + 1, "C"), K)

    def codegen(context, builder, sig, args):  # noqa: ANN001
        return dual_array_ir(context, builder, result, sig.args[0], args[0], fill)

    return result(shape, k_marker, zeroed), codegen


def dual_array_ir(context, builder, result, shape_type, shape, fill):  # noqa: ANN001, ANN201
    """LLVM IR of a new DualArray of type ``result`` (see :func:`new_dual_array`) of ``shape``
    (an integer or a tuple of integers), filled with zeros when ``fill``."""
    from numba.np.arrayobj import _parse_shape

    extents = list(_parse_shape(context, builder, shape_type, shape))
    return allocate_dual_array(context, builder, result, extents, fill)


def allocate_dual_array(context, builder, result, extents, fill):  # noqa: ANN001, ANN201
    """Code making a new DualArray of type ``result`` (C-contiguous float64 arrays) of the
    shape ``extents`` (LLVM integers) in one block, filled with zeros when ``fill``; its
    reference count is the two arrays' (see :func:`new_dual_array`)."""
    from numba.np.arrayobj import make_array, populate_array

    K = result.K
    intp = context.get_value_type(types.intp)
    itemsize = context.get_constant(types.intp, 8)
    count = context.get_constant(types.intp, 1)
    overflow = cgutils.false_bit
    for extent in [*extents, context.get_constant(types.intp, K + 1), itemsize]:
        product = builder.smul_with_overflow(count, extent)
        count = builder.extract_value(product, 0)
        overflow = builder.or_(overflow, builder.extract_value(product, 1))
    with builder.if_then(overflow, likely=False):
        context.call_conv.return_user_exc(
            builder, ValueError, ("array is too big (dualad: a DualArray allocation)",)
        )
    meminfo = context.nrt.meminfo_alloc_aligned(builder, count, 32)
    data = builder.bitcast(context.nrt.meminfo_data(builder, meminfo),
                           context.get_data_type(types.float64).as_pointer())  # fmt: skip
    if fill:
        cgutils.memset(builder, data, count, 0)
    nitems = context.get_constant(types.intp, 1)
    for extent in extents:
        nitems = builder.mul(nitems, extent)
    # two owners; a plain store, not an atomic increment: no other thread sees it yet
    refct = builder.bitcast(meminfo, intp.as_pointer())
    builder.store(context.get_constant(types.intp, 2), refct)
    arrays = []
    for array_type, start, dims in (
        (result.value_type, data, extents),
        (result.partials_type, builder.gep(data, [nitems]),
         [*extents, context.get_constant(types.intp, K)]),
    ):  # fmt: skip
        strides = [itemsize] if dims else []  # a 0-d value array has no strides
        for extent in reversed(dims[1:]):
            strides.append(builder.mul(strides[-1], extent))
        ary = make_array(array_type)(context, builder)
        populate_array(
            ary, data=start, shape=cgutils.pack_array(builder, dims, ty=intp),
            strides=cgutils.pack_array(builder, list(reversed(strides)), ty=intp),
            itemsize=itemsize, meminfo=meminfo,
        )  # fmt: skip
        arrays.append(ary._getvalue())
    out = cgutils.create_struct_proxy(result)(context, builder)
    out.value, out.partials = arrays
    return out._getvalue()


@intrinsic
def readonly(typingctx, array):  # noqa: ANN001
    """The same array, typed read-only: Numba then refuses writes into it at compile time."""
    if not isinstance(array, types.Array):
        return None
    result = array.copy(readonly=True)

    def codegen(context, builder, sig, args):  # noqa: ANN001
        context.nrt.incref(builder, sig.args[0], args[0])
        return args[0]

    return result(array), codegen


@intrinsic
def borrowed(typingctx, array):  # noqa: ANN001
    """The same array, typed read-only and holding no reference (a null meminfo).

    For a driver's input only, which the driver holds for the whole call of f: a view of it
    (``x[i]`` in a pair loop) then costs no atomic reference counts, which Numba cannot prune
    across an operation that may raise.  f's output never outlives the driver as a view of
    it: a read-only output is copied (see ``out_value``, ``out_tangent``, ``first_pass``).
    """
    if not isinstance(array, types.Array):
        return None
    result = array.copy(readonly=True)

    def codegen(context, builder, sig, args):  # noqa: ANN001
        from numba.np.arrayobj import make_array

        ary = make_array(sig.args[0])(context, builder, value=args[0])
        view = make_array(result)(context, builder)
        view.meminfo = cgutils.get_null_value(ary.meminfo.type)
        view.parent = cgutils.get_null_value(ary.parent.type)
        for name in ("nitems", "itemsize", "data", "shape", "strides"):
            setattr(view, name, getattr(ary, name))
        return view._getvalue()

    return result(array), codegen


@intrinsic
def dual_dtype(typingctx, k_marker):  # noqa: ANN001
    K = _k_of(k_marker)
    if K is None:
        return None
    result = DualDtypeType(K)

    def codegen(context, builder, sig, args):  # noqa: ANN001
        return context.get_dummy_value()

    return result(k_marker), codegen


@lower_cast(types.Float, DualType)
@lower_cast(types.Integer, DualType)
@lower_cast(types.Boolean, DualType)
def _real_to_dual(context, builder, fromty, toty, val):  # noqa: ANN001
    dual = cgutils.create_struct_proxy(toty)(context, builder)
    dual.value = context.cast(builder, val, fromty, toty.base)
    zero = context.get_constant(types.float64, 0.0)
    zero = context.cast(builder, zero, types.float64, toty.base)
    dual.partials = context.make_tuple(builder, toty.partials_type, [zero] * toty.K)
    return dual._getvalue()


@lower_cast(DualType, DualType)
def _dual_to_nested(context, builder, fromty, toty, val):  # noqa: ANN001
    """A Dual as the value of a nested Dual of its type, with zero outer partials."""
    if toty.base != fromty:
        raise errors.NumbaNotImplementedError(f"cannot convert {fromty} to {toty}")
    return _real_to_dual(context, builder, fromty, toty, val)
