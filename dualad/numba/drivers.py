"""Jitted drivers: seeding, the chunk loop and extraction, all in compiled code.

Each driver is made for one function compiled for Duals and one chunk size K (a K-tuple of zeros,
whose length is known at compile time); it takes the point ``x`` as a float64 array.  The output
of ``f`` may be a Dual, a DualArray, or a float or float array (when it does not depend on ``x``);
the overloads below read each kind.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange, types
from numba.extending import overload

from .dualtypes import DualArrayType, DualType, make_dual_array


def out_size(y):  # noqa: ANN001, ANN201 - compiled-code helper, typed by the overload below
    """Number of output entries (1 for a scalar)."""


def out_value(y):  # noqa: ANN001, ANN201
    """The output's value as a float64 array of its shape (0-d for a scalar), not shared with
    the caller's data."""


def store(y, out, start, width):  # noqa: ANN001, ANN201
    """Write the first ``width`` partials of each output entry into ``out[:, start:]``."""


@overload(out_size)
def _out_size(y):  # noqa: ANN001
    if isinstance(y, (DualArrayType, types.Array)):
        return lambda y: y.size
    return lambda y: 1


@overload(out_value)
def _out_value(y):  # noqa: ANN001
    if isinstance(y, DualArrayType):
        return lambda y: y.value  # made inside f, from the driver's own copy of x
    if isinstance(y, types.Array):
        return lambda y: y.astype(np.float64)
    if isinstance(y, DualType):
        return lambda y: np.full((), y.value)
    return lambda y: np.full((), np.float64(y))


@overload(store)
def _store(y, out, start, width):  # noqa: ANN001
    if isinstance(y, DualType):

        def store_dual(y, out, start, width):  # noqa: ANN001, ANN202
            p = y.partials
            for k in range(width):
                out[0, start + k] = p[k]

        return store_dual
    if isinstance(y, DualArrayType):

        def store_array(y, out, start, width):  # noqa: ANN001, ANN202
            # Loops, not out[:, a:b] = p[:, :w]: Numba's slice assignment costs seconds to compile.
            flat = np.ascontiguousarray(y.partials).ravel()
            K = y.partials.shape[-1]
            for i in range(out.shape[0]):
                for k in range(width):
                    out[i, start + k] = flat[i * K + k]

        return store_array
    return lambda y, out, start, width: None  # a constant output: its partials stay zero


@numba.njit
def seeded(x, k_marker, start, width):  # noqa: ANN001, ANN201
    """``x`` (copied) carrying basis directions ``start ... start + width - 1`` of ``x.ravel()``."""
    K = len(k_marker)
    partials = np.zeros(x.shape + (K,))
    flat = partials.reshape((x.size, K))
    for k in range(width):
        flat[start + k, k] = 1.0
    return make_dual_array(x.copy(), partials, k_marker)


def make_value_and_jacobian(f, k_marker):  # noqa: ANN001, ANN201
    """A driver ``(x, *args) -> (f(x), J as (m, n))``, one call of f per chunk of K columns.

    ``f`` and ``k_marker`` are constants of the compiled driver, so a call dispatches on the
    argument types only (Numba's fast path for arrays).
    """

    @numba.njit
    def value_and_jacobian(x, *args):  # noqa: ANN001, ANN202
        n = x.size
        K = len(k_marker)
        first = min(K, n)
        zero = n - n  # not the literal 0, which would compile a second copy of seeded
        y = f(seeded(x, k_marker, zero, first), *args)
        jac = np.zeros((out_size(y), n))
        store(y, jac, 0, first)
        value = out_value(y)
        for start in range(K, n, K):
            y = f(seeded(x, k_marker, start, min(K, n - start)), *args)
            store(y, jac, start, min(K, n - start))
        return value, jac

    return value_and_jacobian


def make_jvp(f, k_marker):  # noqa: ANN001, ANN201
    """A driver ``(x, directions, *args) -> (f(x), J @ directions as (m, K))``."""

    @numba.njit
    def jvp(x, directions, *args):  # noqa: ANN001, ANN202
        y = f(make_dual_array(x.copy(), directions.copy(), k_marker), *args)
        tangent = np.zeros((out_size(y), len(k_marker)))
        store(y, tangent, 0, len(k_marker))
        return out_value(y), tangent

    return jvp


def make_batch_jvp(jvp):  # noqa: ANN001, ANN201
    """A parallel driver ``(xs, vs, *args)`` running ``jvp`` at each point along the first axis.

    It returns f at the first point (which gives the output shape), then the stacked values and
    tangents.
    """

    @numba.njit(parallel=True)
    def batch_jvp(xs, vs, *args):  # noqa: ANN001, ANN202
        value0, tangent0 = jvp(xs[0], vs[0], *args)
        values = np.zeros((xs.shape[0], value0.size))
        tangents = np.zeros((xs.shape[0],) + tangent0.shape)
        for b in prange(xs.shape[0]):
            value, tangent = jvp(xs[b], vs[b], *args)
            values[b] = value.ravel()
            tangents[b] = tangent
        return value0, values, tangents

    return batch_jvp


def make_batch_jacobian(value_and_jacobian):  # noqa: ANN001, ANN201
    """A parallel driver ``(xs, *args)``: f and its Jacobian at each point, as for batch_jvp."""

    @numba.njit(parallel=True)
    def batch_jacobian(xs, *args):  # noqa: ANN001, ANN202
        value0, jac0 = value_and_jacobian(xs[0], *args)
        values = np.zeros((xs.shape[0], value0.size))
        jacs = np.zeros((xs.shape[0],) + jac0.shape)
        for b in prange(xs.shape[0]):
            value, jac = value_and_jacobian(xs[b], *args)
            values[b] = value.ravel()
            jacs[b] = jac
        return value0, values, jacs

    return batch_jacobian
