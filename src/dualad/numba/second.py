"""Second derivatives in compiled code: nested Duals, and the Hessian and HVP drivers.

A nested Dual ``Dual(K1, of Dual(K2))`` has a Dual of K2 inner directions as its value and as
each of its K1 outer partials; the overloads generated from the rules table work on it as they
are, because each rule's partials, compiled for inner Duals, carry their own derivative.  For
seeds ``e_i`` (outer) and ``e_j`` (inner), f's output holds the gradient in its inner partials
and ``H[i, j]`` in ``y.partials[k].partials[l]``: no second-derivative formula is written here.

The driver's input is a ``SeedArray``: the point and the two seeds, read as nested Duals
element by element (``x[i]``, ``x[i, j]``, ``len(x)``, ``x.shape``).  It is read-only, and its
slices or whole-array operations are not supported (Numba then reports the call, and
``engine="auto"`` takes the NumPy engine with a warning).
"""

from __future__ import annotations

import operator

import numba
import numpy as np
from numba import types
from numba.core import cgutils
from numba.extending import (
    intrinsic,
    make_attribute_wrapper,
    models,
    overload_attribute,
    register_model,
)

from .drivers import set_seed
from .dualtypes import DualType, _k_of, borrowed, generate, overload_first, tuple_source
from .scalars import refuse


class SeedArrayType(types.Type):
    """The input of a second-order pass: value ``S``, outer seed ``S + (K1,)``, inner
    ``S + (K2,)``; element ``i`` is ``Dual(K1)`` of ``Dual(K2)``, with zero second partials."""

    def __init__(self, value_type: types.Array, outer_type: types.Array, inner_type, K1, K2):  # noqa: ANN001
        self.value_type, self.outer_type, self.inner_type = value_type, outer_type, inner_type
        self.K1, self.K2, self.ndim = K1, K2, value_type.ndim
        super().__init__(name=f"SeedArray({value_type}, {outer_type}, {inner_type}, {K1}, {K2})")


@register_model(SeedArrayType)
class _SeedArrayModel(models.StructModel):
    def __init__(self, dmm, fe_type):  # noqa: ANN001
        members = [
            ("value", fe_type.value_type),
            ("outer", fe_type.outer_type),
            ("inner", fe_type.inner_type),
        ]
        super().__init__(dmm, fe_type, members)


for _field in ("value", "outer", "inner"):
    make_attribute_wrapper(SeedArrayType, _field, _field)


@intrinsic
def make_seed_array(typingctx, value, outer, inner, k1_marker, k2_marker):  # noqa: ANN001
    """A SeedArray from float64 arrays of shapes S, S + (K1,) and S + (K2,)."""
    K1, K2 = _k_of(k1_marker), _k_of(k2_marker)
    arrays = (value, outer, inner)
    if K1 is None or K2 is None or not all(isinstance(a, types.Array) for a in arrays):
        return None
    result = SeedArrayType(value, outer, inner, K1, K2)

    def codegen(context, builder, sig, args):  # noqa: ANN001
        seed = cgutils.create_struct_proxy(result)(context, builder)
        seed.value, seed.outer, seed.inner = args[0], args[1], args[2]
        for k in range(3):
            context.nrt.incref(builder, sig.args[k], args[k])
        return seed._getvalue()

    return result(value, outer, inner, k1_marker, k2_marker), codegen


def _element_at(array: SeedArrayType, index) -> str | None:  # noqa: ANN001
    if isinstance(index, types.Integer) and array.ndim == 1:
        return "idx"
    if isinstance(index, types.BaseTuple) and len(index) == array.ndim:
        if all(isinstance(t, types.Integer) for t in index):
            return ", ".join(f"idx[{d}]" for d in range(array.ndim))
    return None


@overload_first(operator.getitem)
def _getitem(a, idx):  # noqa: ANN001
    if not isinstance(a, SeedArrayType):
        return None
    at = _element_at(a, idx)
    if at is None:
        return None  # slices: Numba reports the call (engine="auto" falls back)
    inner = tuple_source([f"a.inner[{at}, {m}]" for m in range(a.K2)])
    zeros = tuple_source(["0.0"] * a.K2)
    outer = tuple_source([f"make_dual(a.outer[{at}, {k}], {zeros})" for k in range(a.K1)])
    return generate(
        f"def impl(a, idx):\n    v = make_dual(a.value[{at}], {inner})\n"
        f"    return make_dual(v, {outer})\n",
        label="second-order getitem",
    )


_READ_ONLY = (
    "the function writes into its input array. In compiled code the input is read-only; copy "
    "it first into an array from np.empty_like(x) (that, and slices of the input, are not "
    "supported for second derivatives yet: use engine='numpy' for this function)."
)


@overload_first(operator.setitem)
def _setitem(a, idx, val):  # noqa: ANN001
    if isinstance(a, SeedArrayType):
        refuse(_READ_ONLY)
    return None


@overload_first(len)
def _len(a):  # noqa: ANN001
    if isinstance(a, SeedArrayType):
        return lambda a: len(a.value)
    return None


for _name in ("shape", "size", "ndim"):
    overload_attribute(SeedArrayType, _name)(
        generate(f"def impl(a):\n    return lambda a: a.value.{_name}\n")
    )


# --- reading the output --------------------------------------------------------------------------


def store_block(y, out, i0, wi, j0, wj, mirror):  # noqa: ANN001, ANN201
    """``out[i0 + k, j0 + l] = y.partials[k].partials[l]`` for k < wi, l < wj (and, with
    ``mirror``, the transposed entry from the same number, so that the Hessian is symmetric)."""


def _nested_scalar(y) -> bool:  # noqa: ANN001
    return isinstance(y, DualType) and isinstance(y.base, DualType)


_NOT_SCALAR = (
    "da.hessian and da.hvp need f to return a scalar; it returned {}. Use da.jacobian of "
    "da.gradient for vector outputs, or reduce the output (e.g. a sum)."
)


@overload_first(store_block)
def _store_block(y, out, i0, wi, j0, wj, mirror):  # noqa: ANN001
    if _nested_scalar(y):
        # Loops with the tuples indexed at run time: the unrolled form (K1 x K2 guarded stores)
        # took most of a second to compile at K = 4.
        def store_nested(y, out, i0, wi, j0, wj, mirror):  # noqa: ANN001, ANN202
            for k in range(wi):
                q = y.partials[k].partials
                for m in range(wj):
                    out[i0 + k, j0 + m] = q[m]
                    if mirror and j0 + m > i0 + k:
                        out[j0 + m, i0 + k] = q[m]

        return store_nested
    if isinstance(y, (types.Float, types.Integer, types.Boolean)):
        return lambda y, out, i0, wi, j0, wj, mirror: None  # constant f: zero Hessian
    if isinstance(y, (types.Array, types.BaseTuple)) or (
        isinstance(y, types.Type) and hasattr(y, "ndim")
    ):
        refuse(_NOT_SCALAR.format(f"an array ({y})"))
    return None


def make_hessian(f, k_marker):  # noqa: ANN001, ANN201
    """A driver ``(x, *args) -> H`` of shape (n, n): one pass of f per block of K x K entries
    on or above the diagonal, the block below it mirrored."""

    @numba.njit
    def hessian(x, *args):  # noqa: ANN001, ANN202
        n = x.size
        K = len(k_marker)
        outer = np.zeros(x.shape + (K,))
        inner = np.zeros(x.shape + (K,))
        flat_outer = outer.reshape((n, K))
        flat_inner = inner.reshape((n, K))
        point, seen_outer, seen_inner = borrowed(x), borrowed(outer), borrowed(inner)
        h = np.zeros((n, n))
        for i0 in range(0, n, K):
            wi = min(K, n - i0)
            set_seed(flat_outer, i0, wi, 1.0)
            for j0 in range(i0, n, K):
                wj = min(K, n - j0)
                set_seed(flat_inner, j0, wj, 1.0)
                seeded = make_seed_array(point, seen_outer, seen_inner, k_marker, k_marker)
                y = f(seeded, *args)
                store_block(y, h, i0, wi, j0, wj, True)
                set_seed(flat_inner, j0, wj, 0.0)
            set_seed(flat_outer, i0, wi, 0.0)
        return h

    return hessian


def make_hvp(f, k_marker, v_marker):  # noqa: ANN001, ANN201
    """A driver ``(x, v, *args) -> H @ v`` for v of shape ``x.shape + (k,)``: the k directions
    are the outer seed, the inner one runs over the inputs K at a time."""

    @numba.njit
    def hvp(x, v, *args):  # noqa: ANN001, ANN202
        n = x.size
        K = len(k_marker)
        k = len(v_marker)
        inner = np.zeros(x.shape + (K,))
        flat_inner = inner.reshape((n, K))
        point, seen_outer, seen_inner = borrowed(x), borrowed(v), borrowed(inner)
        out = np.zeros((k, n))
        for j0 in range(0, n, K):
            wj = min(K, n - j0)
            set_seed(flat_inner, j0, wj, 1.0)
            seeded = make_seed_array(point, seen_outer, seen_inner, v_marker, k_marker)
            store_block(f(seeded, *args), out, 0, k, j0, wj, False)
            set_seed(flat_inner, j0, wj, 0.0)
        return out.T.copy()

    return hvp
