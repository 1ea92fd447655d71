"""Jitted drivers: seeding, the chunk loop and extraction, all in compiled code.

Each driver is made for one function compiled for Duals and one chunk size K (a K-tuple of zeros,
whose length is known at compile time); it takes the point ``x`` as a float64 array.  The output
of ``f`` may be a Dual, a DualArray, or a float or float array (when it does not depend on ``x``);
the overloads below read each kind.
"""

from __future__ import annotations

import operator

import numba
import numpy as np
from numba import prange, types
from numba.core import cgutils
from numba.core.imputils import impl_ret_borrowed, impl_ret_new_ref

from .dualtypes import (
    DualArrayType,
    DualType,
    borrowed,
    generate,
    lower_directly,
    make_dual_array,
    new_array,
    overload_first,
    tuple_source,
)


def out_size(y):  # noqa: ANN001, ANN201 - compiled-code helper, typed by the overload below
    """Number of output entries (1 for a scalar)."""


def out_shape(y):  # noqa: ANN001, ANN201
    """The output's shape (``()`` for a scalar)."""


@overload_first(out_shape)
def _out_shape(y):  # noqa: ANN001
    if isinstance(y, (DualArrayType, types.Array)):
        return lambda y: y.shape
    if isinstance(y, types.BaseTuple):  # the leaves' entries, one after another
        return lambda y: (out_size(y),)
    return lambda y: ()


def _each(y: types.BaseTuple, call: str) -> str:
    """Source of a tuple display of ``call`` (a format of ``{i}``) for each item of ``y``."""
    return tuple_source([call.format(i=i) for i in range(len(y))])


def first_pass(y, n):  # noqa: ANN001, ANN201
    """J as an array of (output entries, n), for the first pass's partials to be stored into:
    the output's own partials when f made them (contiguous, not shared with the input) and they
    carry all n directions (one pass, K = n; storing them is then a copy onto themselves), else
    a new array of zeros.

    One path for every output and chunking: a branch for the one-pass case in the driver would
    compile its helpers for every output, used or not.  The driver stores every pass itself:
    a ``store`` called here too would be compiled twice, since Numba keeps an overload's
    implementations apart by the caller's compile options (the driver's and its helpers' differ).
    """


def shaped_jacobian(jac, y, shape):  # noqa: ANN001, ANN201
    """``jac`` (one row per output entry, one column per input entry) as an array of shape
    ``out_shape(y) + shape``.

    Without a reshape where the shapes already agree (a 1-D input and a 1-D or scalar output,
    the common case): Numba's reshape costs a noticeable part of a first call to compile.
    """


def seed_of(flat, shape):  # noqa: ANN001, ANN201
    """The seed of shape ``shape + (K,)`` that ``flat`` (shape (n, K), n the size of ``shape``)
    is, without a reshape for a 1-D input."""


_REAL = (types.Float, types.Integer, types.Boolean)


def _zeros(context, builder, array_type, shape):  # noqa: ANN001, ANN202
    """LLVM IR of a new array of zeros of ``shape`` (intp values), as new_array makes it."""
    from numba.np.arrayobj import _empty_nd_impl

    new = _empty_nd_impl(context, builder, array_type, shape)
    cgutils.memset(builder, new.data, builder.mul(new.itemsize, new.nitems), 0)
    return new._getvalue()


@lower_directly(first_pass)
def _first_pass_directly(typingctx, y, n):  # noqa: ANN001, ANN202
    """:func:`first_pass` of a 1-D DualArray output that f made, in the caller."""
    result = types.Array(types.float64, 2, "C")
    if isinstance(y, (DualType, *_REAL)):  # one row of zeros

        def zeros(context, builder, sig, args):  # noqa: ANN001, ANN202
            n = context.cast(builder, args[1], sig.args[1], types.intp)
            return _zeros(context, builder, result, [context.get_constant(types.intp, 1), n])

        return result(y, n), zeros
    if not (isinstance(y, DualArrayType) and y.ndim == 1 and y.partials_type == result):
        return None

    def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
        from numba.np.arrayobj import make_array

        arr = cgutils.create_struct_proxy(sig.args[0])(context, builder, value=args[0])
        rows, width = cgutils.unpack_tuple(
            builder, make_array(result)(context, builder, arr.partials).shape, count=2
        )
        n = context.cast(builder, args[1], sig.args[1], types.intp)
        with builder.if_else(builder.icmp_signed("==", width, n)) as (same, other):
            with same:
                context.nrt.incref(builder, result, arr.partials)
                own, own_block = arr.partials, builder.block
            with other:
                fresh, fresh_block = _zeros(context, builder, result, [rows, n]), builder.block
        jac = builder.phi(own.type)
        jac.add_incoming(own, own_block)
        jac.add_incoming(fresh, fresh_block)
        return impl_ret_new_ref(context, builder, result, jac)

    return result(y, n), codegen


@overload_first(first_pass)
def _first_pass(y, n):  # noqa: ANN001
    if isinstance(y, DualArrayType) and y.partials_type.mutable and y.partials_type.layout == "C":
        flat = "y.partials" if y.ndim == 1 else "y.partials.reshape((y.size, n))"
        return generate(
            "def impl(y, n):\n"
            f"    if y.partials.shape[-1] == n:\n        return {flat}\n"
            "    return new_array((y.size, n), True)\n"
        )
    return lambda y, n: new_array((out_size(y), n), True)


def _same(typingctx, value, *rest):  # noqa: ANN001, ANN202
    """A plan (see lower_directly) returning its first argument (a new reference to it)."""

    def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
        return impl_ret_borrowed(context, builder, sig.return_type, args[0])

    return value(value, *rest), codegen


@lower_directly(seed_of)
def _seed_directly(typingctx, flat, shape):  # noqa: ANN001, ANN202
    """The seed of a 1-D input is ``flat`` itself: returned in the caller (see
    :func:`dualad.numba.dualtypes.lower_directly`), as is the Jacobian of a 1-D output."""
    return _same(typingctx, flat, shape) if len(shape) == 1 else None


@lower_directly(shaped_jacobian)
def _jacobian_directly(typingctx, jac, y, shape):  # noqa: ANN001, ANN202
    if len(shape) != 1:
        return None
    if (
        isinstance(y, (DualArrayType, types.Array))
        and y.ndim == 1
        or isinstance(y, types.BaseTuple)
    ):
        return _same(typingctx, jac, y, shape)
    if isinstance(y, (DualArrayType, types.Array)):
        return None
    # a scalar output: jac[0], by Numba's own indexing lowered here
    row = typingctx.resolve_function_type(operator.getitem, (jac, types.intp), {})
    if row is None:
        return None

    def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
        zero = context.get_constant(types.intp, 0)
        return context.get_function(operator.getitem, row)(builder, [args[0], zero])

    return row.return_type(jac, y, shape), codegen


@overload_first(shaped_jacobian)
def _shaped_jacobian(jac, y, shape):  # noqa: ANN001
    if len(shape) == 1:
        if isinstance(y, (DualArrayType, types.Array)) and y.ndim == 1:
            return lambda jac, y, shape: jac
        if isinstance(y, types.BaseTuple):  # out_shape: one axis of the leaves' entries
            return lambda jac, y, shape: jac
        if not isinstance(y, (DualArrayType, types.Array)):  # a scalar output
            return lambda jac, y, shape: jac[0]
    return lambda jac, y, shape: jac.reshape(out_shape(y) + shape)


@overload_first(seed_of)
def _seed_of(flat, shape):  # noqa: ANN001
    if len(shape) == 1:
        return lambda flat, shape: flat
    return lambda flat, shape: flat.reshape(shape + (flat.shape[1],))


def out_value(y):  # noqa: ANN001, ANN201
    """The output's value as a float64 array of its shape (0-d for a scalar), not shared with
    the caller's data."""


def store(y, out, start, width):  # noqa: ANN001, ANN201
    """Write the first ``width`` partials of each output entry into ``out[:, start:]``."""


@overload_first(out_size)
def _out_size(y):  # noqa: ANN001
    if isinstance(y, (DualArrayType, types.Array)):
        return lambda y: y.size
    if isinstance(y, types.BaseTuple):
        total = " + ".join(f"out_size(y[{i}])" for i in range(len(y))) or "0"
        return generate(f"def impl(y):\n    return {total}\n", out_size=out_size)
    return lambda y: 1


# A tuple output (``return energy, forces``): its value is the tuple of the leaves' values, and
# its Jacobian has the leaves' rows one after another; dualad.transforms cuts it into a tuple of
# Jacobians, one per output, as the NumPy engine gives for a tuple output.


@lower_directly(out_value)
def _value_directly(typingctx, y):  # noqa: ANN001, ANN202
    """The value array that f made (not shared), returned in the caller."""
    if isinstance(y, _REAL) or isinstance(y, DualType) and y.base == types.float64:
        # a 0-d array of the value
        result = types.Array(types.float64, 0, "C")

        def scalar(context, builder, sig, args):  # noqa: ANN001, ANN202
            from numba.np.arrayobj import _empty_nd_impl

            value = args[0]
            if isinstance(sig.args[0], DualType):
                value = cgutils.create_struct_proxy(sig.args[0])(context, builder, value=value)
                value = value.value
            else:
                value = context.cast(builder, value, sig.args[0], types.float64)
            new = _empty_nd_impl(context, builder, result, [])
            builder.store(value, new.data)
            return new._getvalue()

        return result(y), scalar
    if not (isinstance(y, DualArrayType) and y.value_type.mutable):
        return None

    def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
        arr = cgutils.create_struct_proxy(sig.args[0])(context, builder, value=args[0])
        return impl_ret_borrowed(context, builder, sig.return_type, arr.value)

    return y.value_type(y), codegen


@overload_first(out_value)
def _out_value(y):  # noqa: ANN001
    if isinstance(y, types.BaseTuple):
        return generate(f"def impl(y):\n    return {_each(y, 'out_value(y[{i}])')}\n",
                        out_value=out_value)  # fmt: skip
    if isinstance(y, DualArrayType):
        if y.value_type.mutable:
            return lambda y: y.value  # made inside f: not shared
        return lambda y: y.value.copy()  # f returned (a view of) its input
    if isinstance(y, types.Array):
        return lambda y: y.astype(np.float64)
    if isinstance(y, DualType):
        return _scalar_value("y.value")
    return _scalar_value("y")


def _scalar_value(value: str):  # noqa: ANN202
    """An implementation ``impl(y)`` returning the 0-d float64 array of ``value``."""
    source = f"def impl(y):\n    a = new_array((), False)\n    a[()] = {value}\n    return a\n"
    return generate(source, new_array=new_array)


@lower_directly(store)
def _store_directly(typingctx, y, out, start, width):  # noqa: ANN001, ANN202
    """:func:`store` of a Dual or 1-D DualArray output, by loops in the caller."""
    if not (isinstance(out, types.Array) and out.ndim == 2 and out.dtype == types.float64):
        return None
    if not out.mutable:
        return None
    vector = isinstance(y, DualArrayType) and y.ndim == 1
    if vector and y.partials_type.dtype != types.float64:
        return None
    if not vector and not (isinstance(y, DualType) and y.base == types.float64):
        return None

    def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
        from numba.np.arrayobj import make_array

        y_type, out_type = sig.args[:2]
        target = make_array(out_type)(context, builder, args[1])
        shape = cgutils.unpack_tuple(builder, target.shape, count=2)
        strides = cgutils.unpack_tuple(builder, target.strides, count=2)
        start = context.cast(builder, args[2], sig.args[2], types.intp)
        width = context.cast(builder, args[3], sig.args[3], types.intp)

        def entry(i, k):  # noqa: ANN001, ANN202
            return cgutils.get_item_pointer2(
                context, builder, target.data, shape, strides, out_type.layout,
                [i, builder.add(start, k)], wraparound=False,
            )  # fmt: skip

        intp = context.get_value_type(types.intp)
        if not vector:  # out[0, start + k] = p[k] for k < width
            dual = cgutils.create_struct_proxy(y_type)(context, builder, value=args[0])
            for k in range(y_type.K):
                with builder.if_then(builder.icmp_signed("<", intp(k), width)):
                    item = builder.extract_value(dual.partials, k)
                    builder.store(item, entry(intp(0), intp(k)))
            return context.get_dummy_value()
        arr = cgutils.create_struct_proxy(y_type)(context, builder, value=args[0])
        source_type = y_type.partials_type
        source = make_array(source_type)(context, builder, arr.partials)
        source_shape = cgutils.unpack_tuple(builder, source.shape, count=2)
        source_strides = cgutils.unpack_tuple(builder, source.strides, count=2)
        with cgutils.for_range(builder, shape[0]) as row:
            with cgutils.for_range(builder, width) as column:
                pointer = cgutils.get_item_pointer2(
                    context, builder, source.data, source_shape, source_strides,
                    source_type.layout, [row.index, column.index], wraparound=False,
                )  # fmt: skip
                builder.store(builder.load(pointer), entry(row.index, column.index))
        return context.get_dummy_value()

    return types.none(y, out, start, width), codegen


@overload_first(store)
def _store(y, out, start, width):  # noqa: ANN001
    if isinstance(y, DualType):

        def store_dual(y, out, start, width):  # noqa: ANN001, ANN202
            p = y.partials
            for k in range(width):
                out[0, start + k] = p[k]

        return store_dual
    if isinstance(y, DualArrayType):
        if y.ndim == 1:

            def store_vector(y, out, start, width):  # noqa: ANN001, ANN202
                p = y.partials
                for i in range(out.shape[0]):
                    for k in range(width):
                        out[i, start + k] = p[i, k]

            return store_vector

        def store_array(y, out, start, width):  # noqa: ANN001, ANN202
            # Loops, not out[:, a:b] = p[:, :w]: Numba's slice assignment costs seconds to compile.
            flat = np.ascontiguousarray(y.partials).ravel()
            K = y.partials.shape[-1]
            for i in range(out.shape[0]):
                for k in range(width):
                    out[i, start + k] = flat[i * K + k]

        return store_array
    if isinstance(y, types.BaseTuple):
        lines = ["def impl(y, out, start, width):", "    row = 0"]
        for i in range(len(y)):
            lines.append(f"    size = out_size(y[{i}])")
            lines.append(f"    store(y[{i}], out[row:row + size], start, width)")
            lines.append("    row += size")
        return generate("\n".join(lines) + "\n", out_size=out_size, store=store)
    return lambda y, out, start, width: None  # a constant output: its partials stay zero


def as_input(point, directions, k_marker):  # noqa: ANN001, ANN201
    """What f receives: a DualArray, or a Dual for a 0-d point (f of a scalar)."""


@lower_directly(as_input)
def _input_directly(typingctx, point, directions, k_marker):  # noqa: ANN001, ANN202
    """The DualArray of the point and the seed, made in the caller."""
    if point.ndim == 0:
        return None
    result = DualArrayType(point, directions, len(k_marker))

    def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
        arr = cgutils.create_struct_proxy(result)(context, builder)
        arr.value, arr.partials = args[0], args[1]
        context.nrt.incref(builder, sig.args[0], args[0])
        context.nrt.incref(builder, sig.args[1], args[1])
        return impl_ret_new_ref(context, builder, result, arr._getvalue())

    return result(point, directions, k_marker), codegen


@overload_first(as_input)
def _as_input(point, directions, k_marker):  # noqa: ANN001
    if point.ndim > 0:
        return lambda point, directions, k_marker: make_dual_array(point, directions, k_marker)
    K = len(k_marker)
    reads = "".join(f"    e{k} = directions[{k}]\n" for k in range(K))
    names = tuple_source([f"e{k}" for k in range(K)])
    return generate(
        f"def impl(point, directions, k_marker):\n{reads}    return make_dual(point[()], {names})\n"
    )


def _cached(fn):  # noqa: ANN001, ANN202
    """``numba.njit(cache=True)``: a helper of every driver, loaded from Numba's own disk cache
    in a later process (compiled per process where Numba finds no writable cache place)."""
    try:
        return numba.njit(cache=True)(fn)
    except RuntimeError:  # no cache locator: a read-only install without a user cache dir
        return numba.njit(fn)


@_cached
def set_seed(flat, start, width, one):  # noqa: ANN001, ANN201
    """Directions ``start ... start + width - 1`` of the seed set to ``one`` (1, or 0 to clear)."""
    for k in range(width):
        flat[start + k, k] = one


@_cached
def set_row(out, b, row):  # noqa: ANN001, ANN201
    """``out[b] = row`` for a 1-D ``row`` by a loop (Numba's array-into-array assignment
    compiles its shape error message, seconds of a first call); False, writing nothing, when
    ``row`` has another size than ``out``'s rows."""
    if row.size != out.shape[1]:
        return False
    for i in range(row.size):
        out[b, i] = row[i]
    return True


@_cached
def check_rows(fits):  # noqa: ANN001, ANN201
    """Raise unless every point's output fit its row: raised outside the parallel loop, where
    Numba would drop the exception and leave that point's row zero."""
    for b in range(fits.size):
        if not fits[b]:
            raise ValueError(
                "f's output at one of the points has another size than at the first point; "
                "batch_jacobian and batch_jvp need one output shape for all points"
            )


def make_value_and_jacobian(f, k_marker):  # noqa: ANN001, ANN201
    """A driver ``(x, *args) -> (f(x), J)``, J of shape f(x).shape + x.shape, from one call of f
    per chunk of K columns.

    ``f`` and ``k_marker`` are constants of the compiled driver, so a call dispatches on the
    argument types only (Numba's fast path for arrays).  f sees x and the seed read-only, so
    both are shared by all passes: moving to the next chunk rewrites K entries of the seed.
    """

    @numba.njit
    def value_and_jacobian(x, *args):  # noqa: ANN001, ANN202
        n = x.size
        K = len(k_marker)
        flat = new_array((n, K), True)
        seed = seed_of(flat, x.shape)
        point, directions = borrowed(x), borrowed(seed)
        start = n - n  # not the literal 0, which would compile second copies of the helpers
        while True:  # one call of f in the source: LLVM inlines and optimises f once
            width = K if K < n - start else n - start
            set_seed(flat, start, width, 1.0)
            y = f(as_input(point, directions, k_marker), *args)
            if start == 0:
                value = out_value(y)
                jac = first_pass(y, n)
            store(y, jac, start, width)
            start += K
            if start >= n:
                break
            set_seed(flat, start - K, K, 0.0)
        return value, shaped_jacobian(jac, y, x.shape)

    return value_and_jacobian


def second_of(value_and_jacobian):  # noqa: ANN001, ANN201
    """The driver ``(x, *args) -> J``: the value-and-Jacobian driver with its value dropped.

    In Python rather than compiled: a compiled wrapper costs a second optimisation and machine
    code emission of the whole program (f, the driver and every overload it links), about half
    a second per function, to save a fraction of a microsecond per call.
    """

    def jacobian(x, *args):  # noqa: ANN001, ANN202
        pair = value_and_jacobian(x, *args)
        # a tuple output: the pair itself (the shapes of its value's leaves cut J)
        return pair if isinstance(pair[0], tuple) else pair[1]

    jacobian.driver = value_and_jacobian
    return jacobian


def flat_value(value):  # noqa: ANN001, ANN201
    """The value at one point of a batch as a 1-D array (a tuple output is refused there)."""


@overload_first(flat_value)
def _flat_value(value):  # noqa: ANN001
    if isinstance(value, types.BaseTuple):
        from .scalars import refuse

        refuse(
            "batch_jacobian and batch_jvp take a function with one output array; this one returns "
            "a tuple. Return np.concatenate((a.ravel(), b.ravel())), or call da.jacobian per point."
        )
    return lambda value: value.ravel()


def out_tangent(y, k_marker):  # noqa: ANN001, ANN201
    """The output's partials, shape ``y.shape + (K,)``; zeros for an output that is no Dual."""


@lower_directly(out_tangent)
def _tangent_directly(typingctx, y, k_marker):  # noqa: ANN001, ANN202
    """The partials array that f made (not shared), returned in the caller."""
    if not (isinstance(y, DualArrayType) and y.partials_type.mutable):
        return None

    def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
        arr = cgutils.create_struct_proxy(sig.args[0])(context, builder, value=args[0])
        return impl_ret_borrowed(context, builder, sig.return_type, arr.partials)

    return y.partials_type(y, k_marker), codegen


@overload_first(out_tangent)
def _out_tangent(y, k_marker):  # noqa: ANN001
    if isinstance(y, DualArrayType):
        if y.partials_type.mutable:
            return lambda y, k_marker: y.partials  # made inside f: not shared
        return lambda y, k_marker: y.partials.copy()  # f returned (a view of) its input
    if isinstance(y, DualType):
        copies = "".join(f"    t[{k}] = y.partials[{k}]\n" for k in range(y.K))
        source = f"def impl(y, k_marker):\n    t = new_array({y.K}, False)\n{copies}    return t\n"
        return generate(source, new_array=new_array)
    if isinstance(y, types.Array):
        return lambda y, k_marker: new_array(y.shape + (len(k_marker),), True)
    if isinstance(y, types.BaseTuple):
        return generate(
            f"def impl(y, k_marker):\n    return {_each(y, 'out_tangent(y[{i}], k_marker)')}\n",
            out_tangent=out_tangent,
        )
    return lambda y, k_marker: new_array(len(k_marker), True)


def make_jvp(f, k_marker):  # noqa: ANN001, ANN201
    """A driver ``(x, directions, *args) -> (f(x), J @ directions of shape f(x).shape + (K,))``.

    f reads x and the directions in place, typed read-only: no copies.
    """

    @numba.njit
    def jvp(x, directions, *args):  # noqa: ANN001, ANN202
        y = f(as_input(borrowed(x), borrowed(directions), k_marker), *args)
        return out_value(y), out_tangent(y, k_marker)

    return jvp


def make_batch_jvp(jvp):  # noqa: ANN001, ANN201
    """A parallel driver ``(xs, vs, *args)`` running ``jvp`` at each point along the first axis.

    It returns f at the first point (which gives the output shape), then the stacked values and
    tangents, one flat row per point (the caller reshapes them).
    """

    @numba.njit(parallel=True)
    def batch_jvp(xs, vs, *args):  # noqa: ANN001, ANN202
        value0, tangent0 = jvp(xs[0], vs[0], *args)
        values = np.zeros((xs.shape[0], flat_value(value0).size))
        tangents = np.zeros((xs.shape[0], tangent0.size))
        fits = np.zeros(xs.shape[0], np.bool_)
        for b in prange(xs.shape[0]):
            value, tangent = jvp(xs[b], vs[b], *args)
            fits[b] = set_row(values, b, flat_value(value)) and set_row(
                tangents, b, np.ascontiguousarray(tangent).ravel()
            )
        check_rows(fits)
        return value0, values, tangents

    return batch_jvp


def make_batch_jacobian(value_and_jacobian):  # noqa: ANN001, ANN201
    """A parallel driver ``(xs, *args)``: f and its Jacobian at each point, as for batch_jvp."""

    @numba.njit(parallel=True)
    def batch_jacobian(xs, *args):  # noqa: ANN001, ANN202
        value0, jac0 = value_and_jacobian(xs[0], *args)
        values = np.zeros((xs.shape[0], flat_value(value0).size))
        jacs = np.zeros((xs.shape[0], jac0.size))
        fits = np.zeros(xs.shape[0], np.bool_)
        for b in prange(xs.shape[0]):
            value, jac = value_and_jacobian(xs[b], *args)
            fits[b] = set_row(values, b, flat_value(value)) and set_row(
                jacs, b, np.ascontiguousarray(jac).ravel()
            )
        check_rows(fits)
        return value0, values, jacs

    return batch_jacobian
