"""Structural NumPy functions on Duals (dualad/structural.py) and Dual indexing.

Linear operations are checked against the exact matrix obtained by applying the same NumPy code to
plain basis arrays; nonlinear ones against central finite differences in float64.  Every check
also compares the value with NumPy's on plain arrays.
"""

from __future__ import annotations

import numpy as np
import pytest

import dualad as da
from dualad import Dual, DualError

pytestmark = pytest.mark.usefixtures("both_modes")  # each test runs forward and reverse

RNG = np.random.default_rng(20240601)


def rand(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape)


def distinct(*shape: int) -> np.ndarray:
    """Values with no ties, well separated, in random order (for sort/max/min)."""
    n = int(np.prod(shape))
    return (RNG.permutation(n) - n / 2.0 + 0.25).reshape(shape) * 0.7


def spd(n: int) -> np.ndarray:
    m = rand(n, n)
    return m @ m.T + n * np.eye(n)


def well_conditioned(n: int) -> np.ndarray:
    return rand(n, n) + 3.0 * np.eye(n)


# --- reference Jacobians -------------------------------------------------------------------------


def basis_jacobian(f, x):
    """Jacobian of an affine ``f`` from its values at the basis arrays: exact for linear maps."""
    x = np.asarray(x, dtype=float)
    y0 = np.asarray(f(np.zeros_like(x)), dtype=float)
    cols = []
    for i in range(x.size):
        e = np.zeros(x.size)
        e[i] = 1.0
        cols.append(np.asarray(f(e.reshape(x.shape)), dtype=float) - y0)
    return np.stack(cols, axis=-1).reshape(y0.shape + x.shape)


def fd_jacobian(f, x, h=1e-6):
    """Central finite difference Jacobian, shape f(x).shape + x.shape."""
    x = np.asarray(x, dtype=float)
    y0 = np.asarray(f(x), dtype=float)
    cols = []
    for i in range(x.size):
        e = np.zeros(x.size)
        e[i] = h
        e = e.reshape(x.shape)
        diff = np.asarray(f(x + e), dtype=float) - np.asarray(f(x - e), dtype=float)
        cols.append(diff / (2 * h))
    return np.stack(cols, axis=-1).reshape(y0.shape + x.shape)


def check_linear(f, x, chunk_size=None):
    x = np.asarray(x, dtype=float)
    value, jac = da.value_and_jacobian(f, x, chunk_size=chunk_size)
    expected_value = np.asarray(f(x))
    assert np.shape(value) == expected_value.shape
    np.testing.assert_allclose(value, expected_value, rtol=1e-13, atol=1e-13)
    expected = basis_jacobian(f, x)
    assert np.shape(jac) == expected.shape
    np.testing.assert_allclose(jac, expected, rtol=1e-12, atol=1e-12)


def check_fd(f, x, rtol=1e-6, atol=1e-7, h=1e-6):
    x = np.asarray(x, dtype=float)
    value, jac = da.value_and_jacobian(f, x)
    expected_value = np.asarray(f(x))
    assert np.shape(value) == expected_value.shape
    np.testing.assert_allclose(value, expected_value, rtol=1e-12, atol=1e-12)
    expected = fd_jacobian(f, x, h)
    assert np.shape(jac) == expected.shape
    scale = max(1.0, float(np.max(np.abs(expected))))
    np.testing.assert_allclose(jac, expected, rtol=rtol, atol=atol * scale)


# --- constants for the linear cases --------------------------------------------------------------

C3 = rand(3)
C4 = rand(4)
C23 = rand(2, 3)
C34 = rand(3, 4)
C42 = rand(4, 2)
C45 = rand(4, 5)
C43 = rand(4, 3)
C234 = rand(2, 3, 4)
C345 = rand(3, 4, 5)
C425 = rand(4, 2, 5)
C542 = rand(5, 4, 2)
C300_2 = rand(300, 2)
MASK23 = np.array([[True, False, True], [False, False, True]])
MASK234 = RNG.random((2, 3, 4)) > 0.5
MASK34 = RNG.random((3, 4)) > 0.5


def _split_pieces(x):
    return np.concatenate([np.ravel(p) for p in np.split(x, [1, 3], axis=1)] + [np.zeros(0)])


def _sum_out(x):
    out = np.zeros_like(x[0])
    result = np.sum(x, axis=0, out=out)
    assert result is out
    return out


def _concat_out(x):
    out = np.zeros(9, like=x)
    result = np.concatenate([x, C23[0], x], out=out)
    assert result is out
    return out


def _ufunc_out(x):
    out = np.zeros_like(x)
    result = np.multiply(x, C23, out=out)
    assert result is out
    np.add(out, x, out=out)
    return out


def _ufunc_out_plain_inputs(x):
    out = np.zeros_like(x) + x  # a Dual; every entry then overwritten by a constant
    np.add(C23, 1.0, out=out)
    return out


LINEAR = {
    # shape and layout
    "reshape": (lambda x: np.reshape(x, (3, 2)), (2, 3)),
    "reshape_neg": (lambda x: np.reshape(x, (-1, 4)), (2, 3, 4)),
    "reshape_int": (lambda x: np.reshape(x, 24), (2, 3, 4)),
    "reshape_method": (lambda x: x.reshape(3, 2), (2, 3)),
    "reshape_method_tuple": (lambda x: x.reshape((6, 1)), (2, 3)),
    "ravel": (np.ravel, (2, 3, 4)),
    "ravel_method": (lambda x: x.ravel(), (2, 3)),
    "flatten": (lambda x: x.flatten(), (2, 3)),
    "transpose": (np.transpose, (2, 3, 4)),
    "transpose_axes": (lambda x: np.transpose(x, (1, 2, 0)), (2, 3, 4)),
    "transpose_neg_axes": (lambda x: np.transpose(x, (-1, 0, 1)), (2, 3, 4)),
    "transpose_method": (lambda x: x.transpose(2, 0, 1), (2, 3, 4)),
    "T": (lambda x: x.T, (2, 3)),
    "T_1d": (lambda x: x.T, (3,)),
    "swapaxes": (lambda x: np.swapaxes(x, 0, -1), (2, 3, 4)),
    "swapaxes_method": (lambda x: x.swapaxes(1, 2), (2, 3, 4)),
    "moveaxis": (lambda x: np.moveaxis(x, 0, -1), (2, 3, 4)),
    "moveaxis_multi": (lambda x: np.moveaxis(x, [0, 1], [-1, 0]), (2, 3, 4)),
    "squeeze": (np.squeeze, (1, 3, 1)),
    "squeeze_axis": (lambda x: np.squeeze(x, axis=-1), (1, 3, 1)),
    "squeeze_axes": (lambda x: np.squeeze(x, axis=(0, 2)), (1, 3, 1)),
    "squeeze_method": (lambda x: x.squeeze(0), (1, 3, 1)),
    "expand_dims": (lambda x: np.expand_dims(x, 1), (2, 3)),
    "expand_dims_neg": (lambda x: np.expand_dims(x, -1), (2, 3)),
    "expand_dims_tuple": (lambda x: np.expand_dims(x, (0, -1)), (2, 3)),
    "atleast_1d_scalar": (lambda x: np.atleast_1d(x[1]), (3,)),
    "atleast_1d": (lambda x: np.atleast_1d(x), (2, 3)),
    "atleast_1d_many": (lambda x: np.concatenate(np.atleast_1d(x[0], x[1:])), (3,)),
    "atleast_2d": (lambda x: np.atleast_2d(x), (3,)),
    "atleast_2d_scalar": (lambda x: np.atleast_2d(x[2]), (3,)),
    "atleast_2d_3d": (lambda x: np.atleast_2d(x), (2, 3, 4)),
    "broadcast_to": (lambda x: np.broadcast_to(x, (2, 3)), (3,)),
    "broadcast_to_3d": (lambda x: np.broadcast_to(x, (4, 2, 3)), (2, 1)),
    "broadcast_to_scalar": (lambda x: np.broadcast_to(x[0], (2, 2)), (3,)),
    "copy": (np.copy, (2, 3)),
    "copy_method": (lambda x: x.copy(), (2, 3)),
    "astype_float": (lambda x: x.astype(float), (2, 3)),
    # joining and splitting
    "concatenate": (lambda x: np.concatenate([x, 2.0 * x]), (3,)),
    "concatenate_plain_first": (lambda x: np.concatenate([C3, x, C3]), (3,)),
    "concatenate_axis1": (lambda x: np.concatenate([x, C23, x[:, :1]], axis=1), (2, 3)),
    "concatenate_axis_neg": (lambda x: np.concatenate([C234, x], axis=-1), (2, 3, 4)),
    "concatenate_axis_none": (lambda x: np.concatenate([x, C23, x[0]], axis=None), (2, 3)),
    "concatenate_tuple": (lambda x: np.concatenate((x, x)), (2, 3)),
    "stack": (lambda x: np.stack([x, C3, x]), (3,)),
    "stack_axis1": (lambda x: np.stack([C23, x], axis=1), (2, 3)),
    "stack_axis_neg": (lambda x: np.stack([x, C23, x], axis=-1), (2, 3)),
    "hstack_1d": (lambda x: np.hstack([x, C3]), (3,)),
    "hstack_2d": (lambda x: np.hstack([C23, x]), (2, 3)),
    "hstack_scalars": (lambda x: np.hstack([x[0], 1.0, x[2]]), (3,)),
    "vstack_1d": (lambda x: np.vstack([x, C3]), (3,)),
    "vstack_2d": (lambda x: np.vstack([x, C23, x]), (2, 3)),
    "split_sections": (lambda x: np.split(x, 3, axis=1)[1], (2, 3)),
    "split_indices": (_split_pieces, (2, 3, 4)),
    "split_first": (lambda x: np.split(x, 2)[0], (4,)),
    "array_split_uneven": (lambda x: np.array_split(x, 2)[0], (3,)),
    "array_split_uneven_last": (lambda x: np.array_split(x, 2, axis=2)[1], (2, 3, 5)),
    "array_split_indices": (lambda x: np.array_split(x, [1, 2], axis=1)[2], (2, 3)),
    # selection
    "where_dual_plain": (lambda x: np.where(MASK23, x, C23), (2, 3)),
    "where_plain_dual": (lambda x: np.where(MASK23, C23, x), (2, 3)),
    "where_dual_dual": (lambda x: np.where(MASK23, x, -3.0 * x), (2, 3)),
    "where_scalar_other": (lambda x: np.where(MASK23, x, 0.0), (2, 3)),
    "where_broadcast": (lambda x: np.where(MASK23, x, x[0, 0]), (2, 3)),
    "where_broadcast_row": (lambda x: np.where(MASK23, x[1], C3), (2, 3)),
    "roll_none": (lambda x: np.roll(x, 2), (2, 3)),
    "roll_none_neg": (lambda x: np.roll(x, -5), (2, 3, 4)),
    "roll_axis": (lambda x: np.roll(x, -1, axis=1), (2, 3)),
    "roll_tuple": (lambda x: np.roll(x, (1, 2), axis=(0, 2)), (2, 3, 4)),
    "flip_none": (np.flip, (2, 3, 4)),
    "flip_axis": (lambda x: np.flip(x, 1), (2, 3, 4)),
    "flip_axes": (lambda x: np.flip(x, (0, -1)), (2, 3, 4)),
    "fliplr": (np.fliplr, (2, 3)),
    "flipud": (np.flipud, (2, 3)),
    "take_flat": (lambda x: np.take(x, [5, 0, 0, 3]), (2, 3)),
    "take_axis": (lambda x: np.take(x, [2, 0, 2], axis=1), (2, 3, 4)),
    "take_scalar": (lambda x: np.take(x, 1, axis=0), (2, 3)),
    "take_2d_indices": (lambda x: np.take(x, [[0, 1], [1, 1]], axis=-1), (2, 3)),
    "take_wrap": (lambda x: np.take(x, [4, -1], mode="wrap"), (3,)),
    "take_along_axis": (
        lambda x: np.take_along_axis(x, np.array([[2, 0], [1, 1]]), axis=1),
        (2, 3),
    ),
    "take_along_axis_0": (
        lambda x: np.take_along_axis(x, np.array([[1, 0, 1]]), axis=0),
        (2, 3),
    ),
    "take_along_axis_none": (
        lambda x: np.take_along_axis(x, np.array([5, 0, 2]), axis=None),
        (2, 3),
    ),
    "repeat_none": (lambda x: np.repeat(x, 2), (2, 3)),
    "repeat_axis": (lambda x: np.repeat(x, [1, 0, 3], axis=1), (2, 3)),
    "diagonal": (np.diagonal, (3, 3)),
    "diagonal_offset": (lambda x: np.diagonal(x, 1), (3, 4)),
    "diagonal_neg_offset": (lambda x: np.diagonal(x, -1), (3, 4)),
    "diagonal_axes": (lambda x: np.diagonal(x, 0, 1, 2), (2, 3, 4)),
    "diagonal_axes_neg": (lambda x: np.diagonal(x, 1, -1, 0), (3, 2, 4)),
    "diagonal_method": (lambda x: x.diagonal(), (3, 3)),
    "diag_extract": (np.diag, (3, 4)),
    "diag_extract_offset": (lambda x: np.diag(x, 1), (3, 4)),
    "diag_extract_neg": (lambda x: np.diag(x, -2), (3, 4)),
    "diag_build": (np.diag, (3,)),
    "diag_build_offset": (lambda x: np.diag(x, 1), (3,)),
    "diag_build_neg": (lambda x: np.diag(x, -2), (3,)),
    "trace": (np.trace, (3, 3)),
    "trace_offset": (lambda x: np.trace(x, 1), (3, 4)),
    "trace_3d": (lambda x: np.trace(x, 0, 1, 2), (2, 3, 4)),
    "trace_method": (lambda x: x.trace(), (3, 3)),
    # linear reductions
    "sum": (np.sum, (2, 3, 4)),
    "sum_axis": (lambda x: np.sum(x, axis=1), (2, 3, 4)),
    "sum_neg_axis": (lambda x: np.sum(x, axis=-1), (2, 3, 4)),
    "sum_tuple": (lambda x: np.sum(x, axis=(0, 2)), (2, 3, 4)),
    "sum_keepdims": (lambda x: np.sum(x, axis=(0, 2), keepdims=True), (2, 3, 4)),
    "sum_none_keepdims": (lambda x: np.sum(x, keepdims=True), (2, 3)),
    "sum_method": (lambda x: x.sum(axis=0), (2, 3)),
    "sum_dtype": (lambda x: np.sum(x, dtype=np.float64), (2, 3)),
    "mean": (np.mean, (2, 3, 4)),
    "mean_axis": (lambda x: np.mean(x, axis=1), (2, 3, 4)),
    "mean_tuple_keepdims": (lambda x: np.mean(x, axis=(1, 2), keepdims=True), (2, 3, 4)),
    "mean_method": (lambda x: x.mean(axis=-1), (2, 3)),
    "cumsum_none": (np.cumsum, (2, 3)),
    "cumsum_axis": (lambda x: np.cumsum(x, axis=1), (2, 3, 4)),
    "cumsum_method": (lambda x: x.cumsum(axis=0), (2, 3)),
    "add_reduce": (np.add.reduce, (2, 3)),
    "add_reduce_axis": (lambda x: np.add.reduce(x, axis=-1), (2, 3, 4)),
    "add_reduce_none": (lambda x: np.add.reduce(x, axis=None), (2, 3)),
    "add_reduce_keepdims": (lambda x: np.add.reduce(x, axis=1, keepdims=True), (2, 3)),
    "add_accumulate": (np.add.accumulate, (2, 3)),
    "add_accumulate_axis": (lambda x: np.add.accumulate(x, axis=2), (2, 3, 4)),
    "diff": (np.diff, (2, 3, 4)),
    "diff_n2": (lambda x: np.diff(x, n=2), (5,)),
    "diff_axis": (lambda x: np.diff(x, axis=0), (3, 4)),
    "diff_prepend": (lambda x: np.diff(x, prepend=1.5), (4,)),
    "diff_append_array": (lambda x: np.diff(x, axis=0, append=C23[:1]), (2, 3)),
    "diff_prepend_append": (lambda x: np.diff(x, n=2, prepend=0.0, append=C3[:1]), (3,)),
    "diff_dual_prepend": (lambda x: np.diff(x[1:], prepend=x[:1]), (4,)),
    "diff_plain_dual_prepend": (lambda x: np.diff(C3, prepend=x[:1]), (2,)),
    # products with a constant
    "einsum_matmul": (lambda x: np.einsum("ij,jk->ik", x, C34), (2, 3)),
    "einsum_matmul_right": (lambda x: np.einsum("ij,jk->ik", C23, x), (3, 4)),
    "einsum_implicit": (lambda x: np.einsum("ij,jk", x, C34), (2, 3)),
    "einsum_implicit_transpose": (lambda x: np.einsum("ji", x), (2, 3)),
    "einsum_transpose": (lambda x: np.einsum("ij->ji", x), (2, 3)),
    "einsum_diag": (lambda x: np.einsum("ii->i", x), (3, 3)),
    "einsum_trace_implicit": (lambda x: np.einsum("ii", x), (3, 3)),
    "einsum_sum": (lambda x: np.einsum("ijk->", x), (2, 3, 4)),
    "einsum_ellipsis": (lambda x: np.einsum("...ij,jk->...ik", x, C45), (2, 3, 4)),
    "einsum_ellipsis_implicit": (lambda x: np.einsum("...i,...i", x, C234), (2, 3, 4)),
    "einsum_ellipsis_broadcast": (lambda x: np.einsum("...j,ij->...i", x, C43), (2, 3)),
    "einsum_three_operands": (lambda x: np.einsum("i,ij,jk->k", C3, x, C45), (3, 4)),
    "einsum_spaces": (lambda x: np.einsum("ij, jk -> ik", x, C34), (2, 3)),
    "einsum_uppercase": (lambda x: np.einsum("Ij,jK", x, C34), (2, 3)),
    "einsum_large": (lambda x: np.einsum("ij,jk->ik", x, C300_2), (2, 300)),
    "matmul_2d": (lambda x: x @ C34, (2, 3)),
    "matmul_2d_left_plain": (lambda x: C42 @ x, (2, 3)),
    "matmul_np": (lambda x: np.matmul(C23, x), (3, 4)),
    "matmul_1d_2d": (lambda x: x @ C34, (3,)),
    "matmul_2d_1d": (lambda x: C43 @ x, (3,)),
    "matmul_1d_1d": (lambda x: np.matmul(x, C3), (3,)),
    "matmul_batched": (lambda x: x @ C42, (2, 3, 4)),
    "matmul_batched_left": (lambda x: C23 @ x, (2, 3, 4)),
    "matmul_1d_batched": (lambda x: x @ C234, (3,)),
    "dot_2d_1d": (lambda x: np.dot(x, C3), (2, 3)),
    "dot_2d_2d": (lambda x: np.dot(C42, x), (2, 3)),
    "dot_1d_1d": (lambda x: np.dot(x, C3), (3,)),
    "dot_1d_2d": (lambda x: np.dot(x, C34), (3,)),
    "dot_nd": (lambda x: np.dot(x, C542), (2, 3, 4)),
    "dot_nd_left": (lambda x: np.dot(C23, x), (2, 3, 4)),
    "dot_scalar": (lambda x: np.dot(x, 2.5), (2, 3)),
    "dot_method": (lambda x: x.dot(C34), (2, 3)),
    "vdot": (lambda x: np.vdot(x, C23), (2, 3)),
    "vdot_right": (lambda x: np.vdot(C3, x), (3,)),
    "inner_1d": (lambda x: np.inner(x, C3), (3,)),
    "inner_2d": (lambda x: np.inner(x, C43), (2, 3)),
    "inner_left": (lambda x: np.inner(C234, x), (3, 4)),
    "outer": (lambda x: np.outer(x, C4), (2, 3)),
    "outer_right": (lambda x: np.outer(C3, x), (3,)),
    "tensordot_2": (lambda x: np.tensordot(x, C345, 2), (2, 3, 4)),
    "tensordot_1": (lambda x: np.tensordot(C23, x, 1), (3, 4)),
    "tensordot_0": (lambda x: np.tensordot(x, C3, 0), (2,)),
    "tensordot_pairs": (lambda x: np.tensordot(x, C425, axes=([0, 2], [1, 0])), (2, 3, 4)),
    "tensordot_int_pair": (lambda x: np.tensordot(x, C42, axes=(2, 0)), (2, 3, 4)),
    "vecdot": (lambda x: np.vecdot(x, C3), (2, 3)),
    "vecdot_axis": (lambda x: np.vecdot(x, C23, axis=0), (2, 3)),
    "vecdot_left": (lambda x: np.vecdot(C23, x), (3,)),
    "multiply_outer": (lambda x: np.multiply.outer(x, C4), (2, 3)),
    "multiply_outer_right": (lambda x: np.multiply.outer(C3, x), (2,)),
    "add_outer": (lambda x: np.add.outer(C3, x), (2,)),
    # out=
    "sum_out": (_sum_out, (2, 3)),
    "concatenate_out": (_concat_out, (3,)),
    "ufunc_out": (_ufunc_out, (2, 3)),
    "ufunc_out_plain_inputs": (_ufunc_out_plain_inputs, (2, 3)),
}


@pytest.mark.parametrize("name", sorted(LINEAR))
def test_linear_jacobian_is_exact(name):
    f, shape = LINEAR[name]
    check_linear(f, rand(*shape))


@pytest.mark.parametrize("name", ["transpose_axes", "concatenate_axis1", "einsum_ellipsis"])
def test_linear_jacobian_chunked(name):
    f, shape = LINEAR[name]
    check_linear(f, rand(*shape), chunk_size=5)


def test_linear_outputs_are_duals():
    x = Dual(rand(2, 3), np.ones((2, 3, 1)), tag=1)
    assert isinstance(np.split(x, 3, axis=1)[0], Dual)
    assert len(np.array_split(x, 2, axis=1)) == 2
    assert [p.shape for p in np.array_split(x, 2, axis=1)] == [(2, 2), (2, 1)]
    with pytest.raises(ValueError):
        np.split(x, 2, axis=1)  # NumPy refuses uneven sections for np.split
    a, b = np.atleast_1d(x[0, 0], x)
    assert a.shape == (1,) and b.shape == (2, 3)


# --- indexing ------------------------------------------------------------------------------------

INDICES_1D = [
    1,
    -1,
    np.int64(2),
    slice(None, None, -1),
    slice(1, None, 2),
    slice(-2, None),
    Ellipsis,
    None,
    (None, slice(1, 3)),
    [0, 3, 3],
    np.array([-1, 0]),
    np.array([True, False, True, True, False]),
    [True, False, True, True, False],
]
INDICES_2D = [
    0,
    -1,
    (1, 2),
    (-1, -2),
    (slice(None), 1),
    (slice(None, None, -1), slice(0, None, 2)),
    (Ellipsis, 0),
    (0, Ellipsis),
    (None, 0, None),
    (slice(None), None, slice(1, None)),
    ([0, 1, 0],),
    ([0, 1], [2, 0]),
    (slice(None), [3, 0]),
    (np.array([[0], [1]]), np.array([[0, 1, 2]])),
    MASK34,
    (MASK34[:, 0],),
    (slice(None), np.array([True, False, False, True])),
    (Ellipsis, None),
]
INDICES_3D = [
    0,
    (1, -1),
    (0, 1, 2),
    (Ellipsis, 1),
    (0, Ellipsis, -1),
    (slice(None), [2, 0], slice(None, None, 2)),
    ([0, 1], slice(None), [1, 3]),  # separated advanced indices: their axis moves first
    (slice(None), [0, 1], [1, 3]),
    MASK234,
    (MASK234[:, :, 0], 1),
    (1, MASK234[0]),
    (None, Ellipsis, None, 0),
    (slice(None, None, -1), None, slice(1, 3), [0]),
]


@pytest.mark.parametrize(
    "shape, index",
    [((5,), i) for i in INDICES_1D]
    + [((3, 4), i) for i in INDICES_2D]
    + [((2, 3, 4), i) for i in INDICES_3D],
)
def test_getitem(shape, index):
    def f(x):
        return x[index]

    check_linear(f, rand(*shape))


def _setitem_dual_into_dual(x):
    y = x * 1.0
    y[0] = x[1] * 2.0
    y[1, ::2] = x[2, :2]
    y[[2, 0], [1, 1]] = x[[0, 2], [2, 0]]
    y[np.array([[False, False, True], [False, False, False], [True, False, False]])] = x[0, :2]
    return y


def _setitem_plain(x):
    y = x * 1.0
    y[0, 0] = 7.0
    y[1] = C3
    y[1:, -1] = C3[:2]
    y[[0, 2], [2, 1]] = 0.5
    y[x > 0.5] = 0.0
    return y


def _setitem_into_zeros(x):
    y = np.zeros_like(x)
    y[..., 1] = x[..., 0]
    y[:, 0] = x[:, 2] + x[:, 1]
    y[-1] = -x[0]
    return y


def _setitem_broadcast(x):
    y = np.zeros_like(x)
    y[:] = x[1]  # a row broadcast over all rows
    y[0, :] = x[0, 0]  # a scalar broadcast over a row
    return y


def _setitem_ellipsis_newaxis(x):
    y = np.ones_like(x)
    y[..., None, 0] = x[:, None, 1]
    return y


def _setitem_3d_advanced(x):
    y = x * 0.0
    y[[0, 1], :, [3, 0]] = x[:, :, 1]
    y[1, MASK234[0]] = x[0, MASK234[0]] * 3.0
    return y


def _setitem_dual_into_plain_range(x):
    y = x + 0.0
    y[1:] = C3[:2]
    return y


def _iadd_slice(x):
    y = x * 1.0
    y[1:] += x[:-1]
    return y


def _imul_view(x):
    y = x * 1.0
    v = y[1:, ::2]  # a view: writing into it writes into y
    v *= 3.0
    v -= x[:2, :2]
    return y


def _iadd_whole(x):
    y = x * 1.0
    y += x
    y /= 2.0
    y **= 1.0
    return y


def _iadd_scalar_copy(x):
    y = x * 1.0
    v = y[0]  # NumPy: a scalar copy, so y is unchanged
    v *= 3.0
    return y + 0.0 * v


def _iadd_plain_slice_in_dual(x):
    y = np.zeros_like(x)
    y[1:] += C3[:2]
    y[:2] += x[1:]
    return y


SETITEM = {
    "dual_into_dual": (_setitem_dual_into_dual, (3, 3)),
    "plain_into_dual": (_setitem_plain, (3, 3)),
    "into_zeros_like": (_setitem_into_zeros, (2, 3)),
    "broadcast": (_setitem_broadcast, (2, 3)),
    "ellipsis_newaxis": (_setitem_ellipsis_newaxis, (2, 3)),
    "advanced_3d": (_setitem_3d_advanced, (2, 3, 4)),
    "plain_slice": (_setitem_dual_into_plain_range, (3,)),
    "iadd_slice": (_iadd_slice, (4,)),
    "imul_view": (_imul_view, (3, 4)),
    "iadd_whole": (_iadd_whole, (2, 3)),
    "scalar_copy": (_iadd_scalar_copy, (3,)),
    "iadd_plain_slice": (_iadd_plain_slice_in_dual, (3,)),
}


@pytest.mark.parametrize("name", sorted(SETITEM))
def test_setitem(name):
    f, shape = SETITEM[name]
    x = rand(*shape)
    value, jac = da.value_and_jacobian(f, x)
    np.testing.assert_allclose(value, f(x), rtol=1e-13, atol=1e-13)
    # The items assigned depend on x only through masks computed at x; hold them fixed.
    np.testing.assert_allclose(jac, fd_jacobian(f, x, 1e-7), rtol=1e-6, atol=1e-7)
    if name != "plain_into_dual":
        np.testing.assert_allclose(jac, basis_jacobian(f, x), rtol=1e-12, atol=1e-12)


def test_setitem_does_not_touch_the_source():
    def f(x):
        w = x * 1.0
        y = w + 1.0
        y[0] = 0.0
        z = np.reshape(w, (1, 3))  # a view of w in NumPy: writing into it changes w, not y
        z[0, 1] = 5.0 * x[2]
        return np.concatenate([x, w, y, z[0]])

    check_linear(f, rand(3))


def test_dual_into_plain_array_is_an_error():
    x = Dual(rand(3), np.eye(3), tag=1)
    y = np.zeros(3)
    with pytest.raises((DualError, ValueError)):
        y[0] = x[0]
    with pytest.raises(DualError, match="zeros_like"):
        y[:] = x
    with pytest.raises(DualError):
        np.add(x, 1.0, out=y)
    with pytest.raises(DualError):
        np.sum(x, axis=0, out=np.zeros(()))


def test_len_iter_shape_attributes():
    x = Dual(rand(2, 3, 4), np.zeros((2, 3, 4, 1)), tag=1)
    assert len(x) == 2
    assert x.shape == (2, 3, 4) and x.ndim == 3 and x.size == 24
    assert x.T.shape == (4, 3, 2)
    rows = list(x)
    assert len(rows) == 2 and all(isinstance(r, Dual) and r.shape == (3, 4) for r in rows)
    check_linear(lambda z: np.stack(list(z)[::-1]), rand(2, 3))
    check_linear(lambda z: np.stack([r * i for i, r in enumerate(z)]), rand(3, 2))


@pytest.mark.parametrize(
    "method",
    [
        lambda x: x.reshape(6),
        lambda x: x.ravel(),
        lambda x: x.sum(),
        lambda x: x.sum(axis=1, keepdims=True),
        lambda x: x.mean(axis=0),
        lambda x: x.prod(axis=1),
        lambda x: x.prod(),
        lambda x: x.max(),
        lambda x: x.max(axis=0),
        lambda x: x.min(axis=1, keepdims=True),
        lambda x: x.dot(C3),
        lambda x: x.copy(),
        lambda x: x.astype(float),
        lambda x: x.var(axis=1),
        lambda x: x.std(ddof=1),
        lambda x: x.clip(-0.3, 0.4),
        lambda x: x.cumsum(),
        lambda x: x.trace(),
    ],
)
def test_methods(method):
    check_fd(method, distinct(2, 3))


def test_astype_float32():
    x = rand(2, 3)
    value, jac = da.value_and_jacobian(lambda z: z.astype(np.float32), x)
    assert np.asarray(value).dtype == np.float32
    np.testing.assert_allclose(value, x.astype(np.float32))
    np.testing.assert_allclose(np.reshape(jac, (6, 6)), np.eye(6))
    with pytest.raises(DualError):
        da.jacobian(lambda z: z.astype(int), x)


def test_dual_index_is_an_error():
    x = Dual(rand(3), np.eye(3), tag=1)
    with pytest.raises(DualError):
        x[x[0]]
    with pytest.raises(IndexError):
        x[0, 0]
    with pytest.raises(IndexError):
        x[..., ...]


# --- nonlinear functions against finite differences ----------------------------------------------


def _with_zeros(shape, positions):
    x = rand(*shape)
    for p in positions:
        x[p] = 0.0
    return x


def _spd_param(x):
    """An SPD matrix from a parameter vector (used where the test needs symmetric input)."""
    m = np.reshape(x, (3, 3))
    return m @ m.T + 3.0 * np.eye(3)


NONLINEAR = {
    # prod: exact also with zero factors
    "prod": (np.prod, lambda: rand(2, 3)),
    "prod_one_zero": (np.prod, lambda: _with_zeros((2, 3), [(0, 1)])),
    "prod_two_zeros": (np.prod, lambda: _with_zeros((2, 3), [(0, 1), (1, 2)])),
    "prod_axis_zero": (lambda x: np.prod(x, axis=1), lambda: _with_zeros((2, 3), [(0, 0)])),
    "prod_tuple_keepdims": (
        lambda x: np.prod(x, axis=(0, 2), keepdims=True),
        lambda: _with_zeros((2, 3, 4), [(1, 1, 1), (0, 2, 3)]),
    ),
    "prod_odd_length": (lambda x: np.prod(x, axis=-1), lambda: _with_zeros((2, 5), [(1, 4)])),
    "multiply_reduce": (np.multiply.reduce, lambda: _with_zeros((3, 2), [(2, 1)])),
    "multiply_reduce_axis": (
        lambda x: np.multiply.reduce(x, axis=1),
        lambda: _with_zeros((2, 3), [(0, 0)]),
    ),
    # moments
    "var": (np.var, lambda: rand(2, 3)),
    "var_axis": (lambda x: np.var(x, axis=0), lambda: rand(2, 3, 4)),
    "var_tuple_ddof": (lambda x: np.var(x, axis=(0, 2), ddof=1), lambda: rand(2, 3, 4)),
    "var_keepdims": (lambda x: np.var(x, axis=-1, keepdims=True), lambda: rand(2, 3)),
    "std": (np.std, lambda: rand(2, 3)),
    "std_axis_ddof": (lambda x: np.std(x, axis=1, ddof=1), lambda: rand(2, 3, 4)),
    "std_keepdims": (lambda x: np.std(x, axis=(1, 2), keepdims=True), lambda: rand(2, 3, 4)),
    # selection by value
    "max": (np.max, lambda: distinct(2, 3)),
    "max_axis": (lambda x: np.max(x, axis=1), lambda: distinct(2, 3, 4)),
    "max_tuple_keepdims": (
        lambda x: np.max(x, axis=(0, 2), keepdims=True),
        lambda: distinct(2, 3, 4),
    ),
    "min": (np.min, lambda: distinct(2, 3)),
    "min_axis_neg": (lambda x: np.min(x, axis=-1), lambda: distinct(2, 3, 4)),
    "amax": (lambda x: np.amax(x, axis=0), lambda: distinct(2, 3)),
    "amin_keepdims": (lambda x: np.amin(x, axis=1, keepdims=True), lambda: distinct(2, 3)),
    "maximum_reduce": (np.maximum.reduce, lambda: distinct(3, 2)),
    "maximum_reduce_none": (lambda x: np.maximum.reduce(x, axis=None), lambda: distinct(3, 2)),
    "minimum_reduce": (lambda x: np.minimum.reduce(x, axis=1), lambda: distinct(3, 2)),
    "sort": (np.sort, lambda: distinct(2, 5)),
    "sort_axis0": (lambda x: np.sort(x, axis=0), lambda: distinct(3, 4)),
    "sort_none": (lambda x: np.sort(x, axis=None), lambda: distinct(2, 3)),
    "sort_stable": (lambda x: np.sort(x, kind="stable"), lambda: distinct(6)),
    "clip": (lambda x: np.clip(x, -0.5, 0.6), lambda: distinct(2, 5)),
    "clip_kw": (lambda x: np.clip(x, min=-0.5), lambda: distinct(2, 5)),
    "clip_array_bounds": (lambda x: np.clip(x, C23 - 0.3, 2.0), lambda: distinct(2, 3)),
    "clip_dual_bound": (lambda x: np.clip(C3, x, x + 1.0), lambda: C3 + np.array([0.3, -2, -0.4])),
    "where_dual_condition": (lambda x: np.where(x > 0.2, x * x, -x), lambda: distinct(2, 3)),
    # norms
    "norm": (np.linalg.norm, lambda: rand(2, 3)),
    "norm_1": (lambda x: np.linalg.norm(x, 1), lambda: rand(5)),
    "norm_2": (lambda x: np.linalg.norm(x, 2), lambda: rand(5)),
    "norm_inf": (lambda x: np.linalg.norm(x, np.inf), lambda: distinct(5)),
    "norm_neg_inf": (lambda x: np.linalg.norm(x, -np.inf), lambda: distinct(5)),
    "norm_3": (lambda x: np.linalg.norm(x, 3), lambda: rand(5)),
    "norm_neg_1": (lambda x: np.linalg.norm(x, -1), lambda: rand(4)),
    "norm_fro": (lambda x: np.linalg.norm(x, "fro"), lambda: rand(3, 4)),
    "norm_axis": (lambda x: np.linalg.norm(x, axis=1), lambda: rand(3, 4)),
    "norm_axis_ord": (lambda x: np.linalg.norm(x, 3, axis=0, keepdims=True), lambda: rand(3, 4)),
    "norm_axis_inf": (lambda x: np.linalg.norm(x, np.inf, axis=-1), lambda: distinct(3, 4)),
    "norm_3d": (lambda x: np.linalg.norm(x), lambda: rand(2, 3, 4)),
    "norm_matrix_axes": (lambda x: np.linalg.norm(x, axis=(1, 2)), lambda: rand(2, 3, 4)),
    "norm_0": (lambda x: np.linalg.norm(x, 0), lambda: _with_zeros((5,), [(1,)])),
    # products of x with itself
    "einsum_quadratic": (lambda x: np.einsum("i,ij,j", x, C34[:, :3], x), lambda: rand(3)),
    "einsum_three": (lambda x: np.einsum("ij,jk,kl->il", x, C34, x), lambda: rand(4, 3)),
    "einsum_gram": (lambda x: np.einsum("...ij,...kj->...ik", x, x), lambda: rand(2, 3, 4)),
    "matmul_self": (lambda x: x @ x.T, lambda: rand(2, 3)),
    "matmul_batched_self": (lambda x: x @ np.swapaxes(x, -1, -2), lambda: rand(2, 3, 4)),
    "dot_self": (lambda x: np.dot(x, x), lambda: rand(3, 3)),
    "vdot_self": (lambda x: np.vdot(x, x), lambda: rand(2, 3)),
    "inner_self": (lambda x: np.inner(x, x), lambda: rand(2, 3)),
    "outer_self": (lambda x: np.outer(x, x[::-1]), lambda: rand(3)),
    "tensordot_self": (lambda x: np.tensordot(x, x, axes=([0], [0])), lambda: rand(2, 3)),
    "vecdot_self": (lambda x: np.vecdot(x, x[::-1]), lambda: rand(2, 3)),
    "multiply_outer_self": (lambda x: np.multiply.outer(x, x), lambda: rand(3)),
    # linear algebra
    "solve_A_vector": (lambda x: np.linalg.solve(x, C3), lambda: well_conditioned(3)),
    "solve_A_matrix": (lambda x: np.linalg.solve(x, C34), lambda: well_conditioned(3)),
    "solve_b_vector": (lambda x: np.linalg.solve(_A0, x), lambda: rand(3)),
    "solve_b_matrix": (lambda x: np.linalg.solve(_A0, x), lambda: rand(3, 2)),
    "solve_both": (lambda x: np.linalg.solve(x[:, :3], x[:, 3]), lambda: _Ab0.copy()),
    "solve_both_matrix": (lambda x: np.linalg.solve(x[:, :3], x[:, 3:]), lambda: _AB0.copy()),
    "solve_batched": (lambda x: np.linalg.solve(x, _B2), lambda: _A2.copy()),
    "inv": (np.linalg.inv, lambda: well_conditioned(3)),
    "inv_batched": (np.linalg.inv, lambda: _A2.copy()),
    "det": (np.linalg.det, lambda: well_conditioned(3)),
    "det_negative": (np.linalg.det, lambda: well_conditioned(3)[::-1].copy()),
    "det_batched": (np.linalg.det, lambda: _A2.copy()),
    "slogdet_logabs": (lambda x: np.linalg.slogdet(x)[1], lambda: well_conditioned(3)[::-1].copy()),
    "slogdet_attr": (lambda x: np.linalg.slogdet(x).logabsdet, lambda: well_conditioned(3)),
    "slogdet_sign": (lambda x: np.linalg.slogdet(x)[0], lambda: well_conditioned(3)[::-1].copy()),
    "slogdet_batched": (lambda x: np.linalg.slogdet(x).logabsdet, lambda: _A2.copy()),
    "cholesky_sym": (lambda x: np.linalg.cholesky(_spd_param(x)), lambda: rand(9)),
    "cholesky_upper_sym": (
        lambda x: np.linalg.cholesky(_spd_param(x), upper=True),
        lambda: rand(9),
    ),
    # NumPy's cholesky reads one triangle only: its Jacobian in the other one is zero
    "cholesky_full": (np.linalg.cholesky, lambda: spd(3)),
    "cholesky_upper_full": (lambda x: np.linalg.cholesky(x, upper=True), lambda: spd(3)),
    "cholesky_batched": (np.linalg.cholesky, lambda: np.stack([spd(3), spd(3)])),
}

_A0 = well_conditioned(3)
_Ab0 = np.concatenate([well_conditioned(3), rand(3, 1)], axis=1)
_AB0 = np.concatenate([well_conditioned(3), rand(3, 2)], axis=1)
_A2 = np.stack([well_conditioned(3), well_conditioned(3)])
_B2 = rand(2, 3, 2)


@pytest.mark.parametrize("name", sorted(NONLINEAR))
def test_nonlinear_against_finite_differences(name):
    f, make_x = NONLINEAR[name]
    check_fd(f, make_x())


def test_out_dual_with_plain_inputs():
    def f(x):
        s = np.zeros_like(x[0])
        r1 = np.sum(C23, axis=0, out=s)  # only out= is a Dual: a constant written into it
        e = np.zeros_like(x[:, 0])
        r2 = np.einsum("ij->i", C23, out=e)
        c = np.zeros_like(x)
        r3 = np.concatenate([C3[:1], C3[1:]], out=c[0])
        assert r1 is s and r2 is e and r3 is not None
        return np.concatenate([s * x[0], e, c.ravel()])

    check_linear(f, rand(2, 3))


def test_take_and_trace_out():
    def f(x):
        t = np.zeros_like(x[:2])
        r1 = np.take(x, [2, 0], out=t)
        s = np.zeros_like(x[:1])
        r2 = np.trace(x.reshape(1, 3, 1) * x.reshape(3, 1, 1), axis1=0, axis2=1, out=s)
        if isinstance(x, Dual):
            assert r1 is t and r2 is s
        return np.concatenate([t, s])

    check_fd(f, rand(3))


@pytest.mark.parametrize("upper", [False, True])
def test_cholesky_reads_one_triangle(upper):
    b = spd(3) + np.triu(rand(3, 3), 1)  # upper triangle differs from the lower one

    def f(m):
        return np.linalg.cholesky(m, upper=upper)

    value, jac = da.value_and_jacobian(f, b)
    np.testing.assert_allclose(value, f(b), rtol=1e-13)
    np.testing.assert_allclose(jac, fd_jacobian(f, b), rtol=1e-6, atol=1e-7)


def test_prod_with_zero_is_exact():
    x = np.array([2.0, 0.0, 3.0, 0.0, 5.0])
    np.testing.assert_array_equal(da.gradient(np.prod, x), [0.0, 0.0, 0.0, 0.0, 0.0])
    x[3] = 4.0
    np.testing.assert_array_equal(da.gradient(np.prod, x), [0.0, 120.0, 0.0, 0.0, 0.0])


def test_prod_of_empty():
    def f(x):
        return np.prod(x[:, :0], axis=1, keepdims=True) * x[:, :1]

    check_linear(f, rand(2, 3))
    assert da.primal(np.prod(Dual(np.zeros(0), np.zeros((0, 2)), tag=1))) == 1.0


def test_det_at_a_singular_matrix_is_the_adjugate():
    a = np.array([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [1.0, 0.0, 1.0]])  # rank 2
    adjugate_t = fd_jacobian(np.linalg.det, a)
    np.testing.assert_allclose(da.gradient(np.linalg.det, a), adjugate_t, atol=1e-8)


def test_slogdet_returns_sign_and_logabsdet():
    a = well_conditioned(3)[::-1].copy()
    x = Dual(a, np.zeros((3, 3, 1)), tag=1)
    result = np.linalg.slogdet(x)
    sign, logabs = result
    expected = np.linalg.slogdet(a)
    assert result.sign == expected.sign == sign
    np.testing.assert_allclose(da.primal(result.logabsdet), expected.logabsdet)


def test_solve_with_both_duals_of_different_tags():
    a0, b0 = well_conditioned(3), rand(3)

    def g(b):
        return da.jacobian(lambda a: np.linalg.solve(a, b), a0)

    jac = da.jacobian(g, b0)
    expected = fd_jacobian(lambda b: da.jacobian(lambda a: np.linalg.solve(a, b), a0), b0)
    np.testing.assert_allclose(jac, expected, rtol=1e-6, atol=1e-8)


# --- creation ------------------------------------------------------------------------------------


def test_like_functions_give_duals():
    x = Dual(rand(2, 3), np.ones((2, 3, 2)), tag=1)
    for make, fill in [
        (np.zeros_like, 0.0),
        (np.ones_like, 1.0),
        (lambda a: np.full_like(a, 2.5), 2.5),
        (lambda a: np.full_like(a, fill_value=2.5), 2.5),
    ]:
        y = make(x)
        assert isinstance(y, Dual) and y.shape == (2, 3) and y.nderiv == 2
        np.testing.assert_array_equal(da.primal(y), np.full((2, 3), fill))
        np.testing.assert_array_equal(y.partials, 0.0)
    e = np.empty_like(x)
    assert isinstance(e, Dual) and e.shape == (2, 3)
    assert np.zeros_like(x, shape=(4,)).shape == (4,)
    assert da.primal(np.ones_like(x, dtype=np.float32)).dtype == np.float32
    for y in [
        np.zeros_like(x, dtype=int),
        np.ones_like(x, dtype=int),
        np.empty_like(x, dtype=bool),
        np.full_like(x, 3, dtype=int),
        np.full_like(x, 3, int),
    ]:
        assert type(y) is np.ndarray and y.shape == (2, 3)
    assert (np.full_like(x, 3, dtype=int) == 3).all()


def test_like_keyword_creation():
    x = Dual(rand(3), np.ones((3, 2)), tag=1)
    z = np.zeros(4, like=x)
    assert isinstance(z, Dual) and z.shape == (4,) and z.nderiv == 2
    o = np.ones((2, 2), like=x)
    assert isinstance(o, Dual) and o.shape == (2, 2)
    np.testing.assert_array_equal(da.primal(o), 1.0)
    f = np.full(3, 2.0, like=x)
    assert isinstance(f, Dual)
    np.testing.assert_array_equal(da.primal(f), [2.0, 2.0, 2.0])
    f2 = np.full((3,), fill_value=2.0, like=x)
    np.testing.assert_array_equal(da.primal(f2), [2.0, 2.0, 2.0])
    assert type(np.zeros(3, dtype=int, like=x)) is np.ndarray
    a = np.array([x[0], x[2]], like=x)
    assert isinstance(a, Dual) and a.shape == (2,)
    np.testing.assert_array_equal(a.partials, x.partials[[0, 2]])
    idx = np.array([0, 2], like=x)
    assert type(idx) is np.ndarray and idx.dtype.kind == "i"


def _built_with_like(x):
    y = np.zeros(4, like=x)
    y[0] = x[1] * 2.0
    y[2:] = x[::2]
    m = np.ones((2, 2), like=x)
    m[0, 1] = x[0]
    m[1] = x[1:]
    f = np.full(3, 2.0, like=x)
    f[1] = x[2] - x[0]
    a = np.array([x[0], 3.0, x[1] * x[2]], like=x)
    b = np.array([[x[2], x[0]], [1.0, x[1]]], like=x)
    return np.concatenate([y, m.ravel(), f, a, b.ravel()])


def _built_with_like_functions(x):
    y = np.zeros_like(x)
    y[1] = x[0] ** 2
    o = np.ones_like(x)
    o[0] = x[2]
    f = np.full_like(x, 4.0)
    f[2] = np.sin(x[1])
    e = np.empty_like(x)
    e[:] = x * x
    return np.concatenate([y, o, f, e])


@pytest.mark.parametrize("f", [_built_with_like, _built_with_like_functions])
def test_creation_then_assignment(f):
    check_fd(f, rand(3))


def test_nested_setitem_minimal():
    def f(x):
        y = np.zeros_like(x)
        y[0] = x[0] * x[1]  # y's value and partials become Duals of the inner differentiation
        y[1] = x[0]
        return np.sum(y)

    np.testing.assert_array_equal(da.hessian(f, np.array([1.0, 2.0])), [[0.0, 1.0], [1.0, 0.0]])


def test_creation_then_assignment_nested():
    def f(x):
        y = np.zeros(3, like=x)
        y[0] = x[1] * x[2]
        y[1:] = np.array([x[0] ** 2, x[2]], like=x)
        return np.sum(y * y)

    x = rand(3)
    np.testing.assert_allclose(
        da.hessian(f, x), fd_jacobian(lambda z: da.gradient(f, z), x), rtol=1e-6, atol=1e-7
    )


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "func, name",
    [
        (np.fft.hfft, "np.fft.hfft"),
        (np.linalg.cond, "np.linalg.cond"),
        (np.fft.ihfft, "np.fft.ihfft"),
        (np.unique, "np.unique"),
        (np.cumprod, "np.cumprod"),
        (np.median, "np.median"),
    ],
)
def test_unsupported_function_names_itself(func, name):
    x = np.array([[2.0, 1.0], [1.0, 3.0]])
    with pytest.raises(TypeError, match="register_rule") as info:
        da.jacobian(func, x)
    assert name in str(info.value)


@pytest.mark.parametrize(
    "call",
    [
        lambda x: np.sum(x, initial=1.0),
        lambda x: np.mean(x, where=x > 0),
        lambda x: np.max(x, initial=0.0),
        lambda x: np.prod(x, where=x > 0),
        lambda x: np.var(x, correction=1),
        lambda x: np.reshape(x, 6, order="F"),
        lambda x: np.sin(x, where=x > 0),
        lambda x: np.add.reduce(x, initial=0.0),
        lambda x: np.add.reduce(x, where=x > 0),
        lambda x: np.multiply.accumulate(x),
        lambda x: np.add.reduceat(x, [0, 1]),
        lambda x: np.pad(x, 1, mode="median"),
        lambda x: np.matmul(x, x, axes=[(0, 1), (0, 1), (0, 1)]),
        lambda x: np.where(x > 0, x),
    ],
)
def test_unsupported_keywords_raise(call):
    x = np.array([[2.0, 1.0, 0.5], [1.0, 3.0, -1.0]])
    with pytest.raises((TypeError, ValueError)) as info:
        da.jacobian(call, x)
    message = str(info.value)
    assert "Dual" in message or "traced array" in message or "where" in message


def test_loss_of_derivative_is_an_error():
    x = Dual(rand(3), np.eye(3), tag=1)
    with pytest.raises(DualError, match="primal"):
        np.asarray(x)
    with pytest.raises(DualError):
        float(x[0])


# --- second derivatives through structural operations --------------------------------------------

Q = spd(4)
W34 = rand(3, 4)


def _hess_einsum(x):
    return np.einsum("i,ij,j", x, Q, x) * np.einsum("i->", x) + np.einsum("i,i,i", x, x, x)


def _hess_solve(x):
    a = Q + np.diag(x)
    return np.sum(np.linalg.solve(a, x)) + np.linalg.solve(a, C4) @ x


def _hess_cholesky(x):
    a = Q + np.outer(x, x)
    return np.sum(np.linalg.cholesky(a) * np.arange(16.0).reshape(4, 4)) + np.sum(
        np.linalg.cholesky(a, upper=True)[0]
    )


def _hess_prod(x):
    return np.prod(x) + np.prod(x[:2] * x[1:3])


def _hess_sort_max(x):
    s = np.sort(x * x * np.array([1.0, -1.0, 2.0, 0.5]))
    return s @ np.arange(1.0, 5.0) + np.max(x**3) - np.min(np.exp(x))


def _hess_linalg(x):
    m = np.reshape(x, (2, 2)) + 3.0 * np.eye(2)
    return (
        np.linalg.det(m) ** 2
        + np.sum(np.linalg.inv(m) ** 2)
        + np.linalg.slogdet(m)[1]
        + np.linalg.norm(m) * np.linalg.norm(x, 3)
    )


def _hess_layout(x):
    m = np.reshape(x, (2, 2))
    t = np.concatenate([m, m.T * m], axis=None)
    return np.sum(np.roll(t, 1) * t) + np.trace(m @ m) + np.var(x) * np.std(x) + np.sum(np.diff(t))


def _hess_indexing(x):
    y = np.zeros_like(x)
    y[1:] = x[:-1] * x[1:]
    y[0] = x[-1] ** 3
    y[::2] += np.take(x, [3, 2])
    return np.sum(np.cumsum(y) ** 2) + np.sum(np.where(x > 0, x**2, x**3))


def _hess_select(x):
    m = np.reshape(x, (2, 2))
    picked = np.take(x, [3, 0, 0]) * np.take_along_axis(m, np.array([[1], [0]]), axis=1).ravel()[0]
    chosen = np.where(x > 0, x**2, x**3) + np.clip(x * x[0], -0.2, 0.25)
    return (
        np.sum(np.cumsum(picked) ** 2)
        + chosen @ np.arange(4.0)
        + np.sum(np.max(m * m, axis=0))
        + np.linalg.norm(x, np.inf) ** 2
        + np.sum(np.diag(x[:2]) @ m)
    )


@pytest.mark.parametrize(
    "f",
    [
        _hess_select,
        _hess_einsum,
        _hess_solve,
        _hess_cholesky,
        _hess_prod,
        _hess_sort_max,
        _hess_linalg,
        _hess_layout,
        _hess_indexing,
    ],
)
def test_hessian_through_structural_ops(f):
    x = np.array([0.3, -0.7, 1.1, 0.45])
    hess = da.hessian(f, x)
    expected = fd_jacobian(lambda z: da.gradient(f, z), x, h=1e-6)
    np.testing.assert_allclose(hess, hess.T, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(hess, expected, rtol=1e-6, atol=1e-6)


def test_hessian_of_prod_with_zero():
    x = np.array([0.0, 2.0, 3.0])
    expected = np.array([[0.0, 3.0, 2.0], [3.0, 0.0, 0.0], [2.0, 0.0, 0.0]])
    np.testing.assert_array_equal(da.hessian(np.prod, x), expected)


# --- compositions added after the first pass: interp, polyval, cross, nansum, sum(where=) -------

_XP, _FP = np.array([0.0, 1.0, 2.0, 4.0]), np.array([0.0, 1.0, 4.0, 5.0])


@pytest.mark.parametrize(
    "f",
    [
        lambda x: np.interp(x, _XP, _FP),
        lambda x: np.polyval([1.5, -2.0, 3.0, 0.5], x),
        lambda x: np.polyval(x, 1.7),  # in the coefficients
        lambda x: np.cross(x, [1.0, -2.0, 0.5]),
        lambda x: np.cross([0.3, 2.0, -1.0], x * x),
        lambda x: np.nansum(x * np.array([1.0, np.nan, 2.0])),
        lambda x: np.sum(x * x, where=np.array([True, False, True])),
    ],
    ids=["interp", "polyval-x", "polyval-coeffs", "cross", "cross-right", "nansum", "sum-where"],
)
def test_compositions_against_differences(f):
    check_fd(f, np.array([0.4, 1.3, 3.1]))


def test_interp_slope_is_the_segment_and_flat_outside():
    x = np.array([-1.0, 0.5, 1.5, 3.0, 9.0])
    np.testing.assert_array_equal(
        np.diag(da.jacobian(lambda x: np.interp(x, _XP, _FP), x)), [0.0, 1.0, 3.0, 0.5, 0.0]
    )


def test_interp_differentiates_the_values_fp_like_the_compiled_engine():
    x = np.array([-1.0, 0.5, 1.5, 3.0, 9.0])
    # in fp: the weights of the two ends of each point's segment; beyond the table, the end
    expected = np.array(
        [[1, 0, 0, 0], [0.5, 0.5, 0, 0], [0, 0.5, 0.5, 0], [0, 0, 0.5, 0.5], [0, 0, 0, 1]]
    )
    np.testing.assert_allclose(da.jacobian(lambda fp: np.interp(x, _XP, fp), _FP), expected)
    both = lambda z: np.interp(z[:2], _XP, z[2:] ** 2)  # noqa: E731
    check_fd(both, np.array([0.4, 2.7, 0.3, 1.1, -0.8, 2.0]))
    value, _ = da.value_and_jacobian(both, np.array([0.4, 2.7, 0.3, 1.1, -0.8, 2.0]))
    assert np.array_equal(value, np.interp([0.4, 2.7], _XP, np.array([0.3, 1.1, -0.8, 2.0]) ** 2))
    with pytest.raises(da.DualError, match="constant xp, left and right"):
        da.jacobian(lambda p: np.interp(0.5, p, _FP), _XP)


def test_round_is_value_only():
    assert da.derivative(lambda t: round(t) * t, 2.4) == 2.0
