"""The NumPy surface of issue 13: regressions of wrong results, float32, and added functions.

Every derivative is checked in forward and reverse mode (``both_modes``) against central
differences (or the exact basis Jacobian of a linear map), and against JAX where it is installed.
"""

from __future__ import annotations

import numpy as np
import pytest

import dualad as da
from dualad import DualError

pytestmark = pytest.mark.usefixtures("both_modes")

RNG = np.random.default_rng(1313)


def rand(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape)


def fd_jacobian(f, x, h=1e-6):
    x = np.asarray(x, dtype=float)
    y0 = np.asarray(f(x), dtype=float)
    cols = []
    for i in range(x.size):
        e = np.zeros(x.size)
        e[i] = h
        e = e.reshape(x.shape)
        cols.append(
            (np.asarray(f(x + e), dtype=float) - np.asarray(f(x - e), dtype=float)) / (2 * h)
        )
    return np.stack(cols, axis=-1).reshape(y0.shape + x.shape)


def check(f, x, rtol=1e-6, atol=1e-7):
    """Value equal to NumPy's, Jacobian equal to central differences."""
    x = np.asarray(x, dtype=float)
    value, jac = da.value_and_jacobian(f, x)
    expected = np.asarray(f(x))
    assert np.shape(value) == expected.shape
    np.testing.assert_allclose(value, expected, rtol=1e-12, atol=1e-12)
    ref = fd_jacobian(f, x)
    assert np.shape(jac) == ref.shape
    scale = max(1.0, float(np.max(np.abs(ref), initial=0.0)))
    np.testing.assert_allclose(jac, ref, rtol=rtol, atol=atol * scale)
    return jac


# --- wrong results of issue 13, kept as regressions ----------------------------------------------


def test_einsum_with_ellipsis_not_first():
    A = np.arange(6.0).reshape(2, 3)
    W = np.arange(1.0, 7.0).reshape(3, 2)
    g = da.gradient(lambda a: np.sum(np.einsum("i...->...i", a) * W), A)
    np.testing.assert_array_equal(g, W.T)


@pytest.mark.parametrize(
    "subscripts, shapes",
    [
        ("i...,i...->i...", [(3,), (3, 4)]),  # a broadcast ellipsis in the middle of the output
        ("i...j,j->...i", [(2, 4, 3), (3,)]),
        ("...ij,j...->i...", [(2, 3), (3, 2)]),
        ("a...b,b...", [(2, 1, 3), (3, 5)]),  # implicit output, size-1 broadcast
    ],
)
def test_einsum_ellipsis_anywhere(subscripts, shapes):
    sizes = [int(np.prod(s)) for s in shapes]

    def f(flat):
        ops, start = [], 0
        for s, n in zip(shapes, sizes):
            ops.append(flat[start : start + n].reshape(s))
            start += n
        return np.einsum(subscripts, *ops)

    check(f, rand(sum(sizes)))


@pytest.mark.parametrize(
    "f, x",
    [
        (lambda x: np.std(x), np.array([2.0])),
        (lambda x: np.sum(np.std(x, axis=1)), rand(3, 1)),
        (lambda x: np.sum(np.var(x, axis=1)), rand(3, 1)),
        (lambda x: np.std(x, axis=0, keepdims=True), rand(1, 4)),
        (lambda x: np.std(x * 0.0 + 1.0), rand(3)),  # equal entries: a zero variance
    ],
)
def test_std_var_of_zero_variance_is_zero_not_nan(f, x):
    jac = da.jacobian(f, x)
    assert np.all(np.isfinite(jac))
    np.testing.assert_array_equal(jac, np.zeros_like(jac))
    np.testing.assert_allclose(da.primal(da.value_and_jacobian(f, x)[0]), f(x))


def test_std_keeps_its_derivative_elsewhere():
    check(lambda x: np.std(x, axis=1, ddof=1), rand(3, 4))


def test_reverse_over_forward_diag_of_a_vector():
    def f(v):
        return da.gradient(lambda w: np.sum(np.diag(w) ** 2 * 3.0) + np.sum(np.diag(w, 1)), v)

    for mode in ("forward", "reverse"):
        hess = da.jacobian(f, np.array([1.0, 2.0, 3.0]), mode=mode)
        np.testing.assert_allclose(hess, 6.0 * np.eye(3))


# --- float32 -------------------------------------------------------------------------------------

X32 = np.array([1.0, 2.0, 3.0], dtype=np.float32)
W64 = np.array([0.5, -1.0, 2.0])


@pytest.mark.parametrize(
    "f",
    [
        lambda x: np.sum(x.astype(np.float64) ** 2),  # computed in float64
        lambda x: np.sum(x * W64),  # promoted by a float64 constant
        lambda x: np.sum(x**2),  # float32 throughout
    ],
)
def test_float32_input_gives_float32_derivative(f):
    g = da.gradient(f, X32)
    assert g.dtype == np.float32
    np.testing.assert_allclose(g, fd_jacobian(f, X32.astype(float)), rtol=1e-6)
    jac = da.jacobian(lambda x: f(x) * np.ones(2), X32)
    assert jac.dtype == np.float32


def test_float64_input_cast_to_float32_gives_float64_derivative():
    jac = da.jacobian(lambda x: x.astype(np.float32) * 2, np.array([1.0, 2.0]))
    assert jac.dtype == np.float64
    np.testing.assert_array_equal(jac, 2 * np.eye(2))


# --- structure -----------------------------------------------------------------------------------

C3 = rand(3)
C23 = rand(2, 3)
C33 = rand(3, 3)
STRUCTURE = {
    "tril": (lambda x: np.tril(x.reshape(3, 4), -1), rand(12)),
    "triu": (lambda x: np.triu(x.reshape(2, 3, 4), 1), rand(24)),
    "tril_vector": (lambda x: np.tril(x), rand(3)),
    "kron": (lambda x: np.kron(x[:6].reshape(2, 3), x[6:].reshape(3, 1)), rand(9)),
    "kron_constant": (lambda x: np.kron(C23, x.reshape(2, 2)), rand(4)),
    "kron_1d_2d": (lambda x: np.kron(x[:2], x[2:].reshape(2, 2)), rand(6)),
    "tile": (lambda x: np.tile(x.reshape(2, 3), (2, 1, 2)), rand(6)),
    "rot90": (lambda x: np.rot90(x.reshape(2, 3, 2), 3, axes=(1, 2)), rand(12)),
    "rollaxis": (lambda x: np.rollaxis(x.reshape(2, 3, 4), 2, 1), rand(24)),
    "pad_constant": (lambda x: np.pad(x.reshape(2, 3), ((1, 0), (2, 1)), constant_values=3.0), rand(6)),  # noqa: E501
    "pad_edge": (lambda x: np.pad(x.reshape(2, 3), 2, mode="edge"), rand(6)),
    "pad_wrap": (lambda x: np.pad(x, (3, 4), mode="wrap"), rand(3)),
    "pad_reflect": (lambda x: np.pad(x, 2, mode="reflect"), rand(4)),
    "atleast_1d": (lambda x: np.atleast_1d(x[0]), rand(2)),
    "atleast_2d": (lambda x: np.atleast_2d(x), rand(2)),
    "atleast_3d": (lambda x: np.concatenate([np.ravel(a) for a in np.atleast_3d(x[0], x, x.reshape(1, 3))]), rand(3)),  # noqa: E501
    "atleast_3d_shape": (lambda x: np.atleast_3d(x.reshape(2, 2)), rand(4)),
    "column_stack": (lambda x: np.column_stack([x[:3], x[3:].reshape(3, 2), C3]), rand(9)),
    "dstack": (lambda x: np.dstack([x[:3], C3, x[3:]]), rand(6)),
    "append": (lambda x: np.append(x.reshape(2, 2), C23[:, :2], axis=1), rand(4)),
    "append_flat": (lambda x: np.append(C3, x.reshape(2, 2)), rand(4)),
    "vsplit": (lambda x: np.vsplit(x.reshape(4, 2), 2)[1], rand(8)),
    "hsplit": (lambda x: np.hsplit(x.reshape(2, 4), [1, 3])[1], rand(8)),
    "hsplit_1d": (lambda x: np.hsplit(x, 2)[0], rand(4)),
    "dsplit": (lambda x: np.dsplit(x.reshape(1, 2, 4), [1])[1], rand(8)),
    "gradient": (lambda x: np.gradient(x), rand(5)),
    "gradient_2d": (lambda x: np.stack(np.gradient(x.reshape(3, 4), 0.5, [0.0, 1.0, 1.5, 3.5])), rand(12)),  # noqa: E501
    "gradient_axis_order2": (lambda x: np.gradient(x.reshape(4, 3), 2.0, axis=0, edge_order=2), rand(12)),  # noqa: E501
    "linspace": (lambda x: np.linspace(x[0], x[1], 5), rand(2)),
    "linspace_constant_start": (lambda x: np.linspace(1.0, x[0], 4, endpoint=False), rand(1)),
    "linspace_arrays_axis": (lambda x: np.linspace(x[:2], x[2:], 3, axis=1), rand(4)),
    "linspace_retstep": (lambda x: np.stack(np.linspace(x[0], x[1], 4, retstep=True)[1:]), rand(2)),
    "einsum_sublist": (lambda x: np.einsum(x.reshape(2, 3), [0, 1], C23, [0, 1], [1]), rand(6)),
    "einsum_sublist_implicit": (lambda x: np.einsum(x.reshape(2, 3), [1, 0], x[:3], [0]), rand(6)),
    "einsum_sublist_ellipsis": (lambda x: np.einsum(x.reshape(2, 3), [Ellipsis, 0], x[:3], [0], [Ellipsis]), rand(6)),  # noqa: E501
    "einsum_optimize": (lambda x: np.einsum("ij,jk,k->i", x.reshape(2, 3), C33, x[:3], optimize="optimal"), rand(6)),  # noqa: E501
    "einsum_optimize_true": (lambda x: np.einsum("ij,ij", x.reshape(2, 3), x.reshape(2, 3), optimize=True), rand(6)),  # noqa: E501
    "degrees": (lambda x: np.degrees(x), rand(3)),
    "radians": (lambda x: np.radians(x) * x, rand(3)),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(STRUCTURE))
def test_structure_against_differences(name):
    f, x = STRUCTURE[name]
    check(f, x)


@pytest.mark.parametrize("name", ["partition", "partition_axis0", "partition_flat"])
def test_partition(name):
    x = (RNG.permutation(12) - 5.5) * 0.5  # distinct entries: no ties
    f = {
        "partition": lambda x: np.partition(x.reshape(3, 4), 2),
        "partition_axis0": lambda x: np.partition(x.reshape(3, 4), [0, 2], axis=0),
        "partition_flat": lambda x: np.partition(x.reshape(3, 4), 5, axis=None),
    }[name]
    check(f, x)


def test_select_and_nan_to_num():
    x = np.array([-2.0, -0.5, 0.5, 2.0])

    def f(x):
        return np.select([x < -1, x > 1], [x**2, 3 * x], default=x)

    jac = check(f, x)
    np.testing.assert_array_equal(np.diag(jac), [-4.0, 1.0, 1.0, 3.0])

    def g(x):
        return np.nan_to_num(np.log(x), neginf=-5.0) * 2

    with np.errstate(divide="ignore"):
        value, jac = da.value_and_jacobian(g, np.array([0.0, 1.0, 2.0]))
        np.testing.assert_array_equal(value, g(np.array([0.0, 1.0, 2.0])))
    np.testing.assert_allclose(jac, np.diag([0.0, 2.0, 1.0]))


def test_pad_refuses_statistic_modes_and_dual_fill():
    x = rand(3)
    with pytest.raises(DualError, match=r"np.pad\(mode='mean'\) is not supported.*'edge'"):
        da.jacobian(lambda x: np.pad(x, 1, mode="mean"), x)
    with pytest.raises(DualError, match="reflect_type='even' only"):
        da.jacobian(lambda x: np.pad(x, 1, mode="symmetric", reflect_type="odd"), x)
    with pytest.raises(DualError, match="constant_values as plain numbers"):
        da.jacobian(lambda x: np.pad(x[1:], 1, constant_values=x[0]), x)


def test_einsum_bad_sublist_names_both_forms():
    with pytest.raises(DualError, match="sublists of integers 0-51"):
        da.jacobian(lambda x: np.einsum(x, ["a"]), rand(3))


JAX_CASES = {
    "kron": (lambda np_: lambda x: np_.kron(x[:4].reshape(2, 2), x[4:].reshape(1, 2)), 6),
    "tile": (lambda np_: lambda x: np_.tile(x.reshape(2, 2), (3, 1)) ** 2, 4),
    "pad_edge": (lambda np_: lambda x: np_.pad(x.reshape(2, 2), 1, mode="edge") * 2.0, 4),
    "gradient": (lambda np_: lambda x: np_.gradient(x**2, 0.3), 5),
    "rot90": (lambda np_: lambda x: np_.rot90(x.reshape(2, 3)) * 1.5, 6),
}


@pytest.mark.parametrize("name", sorted(JAX_CASES))
def test_structure_against_jax(name):
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    make, n = JAX_CASES[name]
    x = rand(n)
    expected = np.asarray(jax.jacfwd(make(jnp))(jnp.asarray(x)))
    np.testing.assert_allclose(da.jacobian(make(np), x), expected, rtol=1e-12, atol=1e-12)


# --- linear algebra ------------------------------------------------------------------------------

SQUARE = rand(3, 3)
SYMMETRIC = SQUARE + SQUARE.T
TALL = rand(4, 3)
_P = rand(3, 3) + 2 * np.eye(3)
REAL_SPECTRUM = _P @ np.diag([1.0, 2.5, -1.5]) @ np.linalg.inv(_P)


def _fixed_signs(vectors, a, which):
    """Eigen- and singular vectors with the signs NumPy chose at the point itself (NumPy's
    choice may flip between a difference's two evaluations)."""
    return vectors * np.sign(which(da.primal(a))[0])


LINALG = {
    "eigh_values": (lambda a: np.linalg.eigh(a)[0], SYMMETRIC),
    "eigh_vectors": (
        lambda a: _fixed_signs(np.linalg.eigh(a)[1], a, lambda p: np.linalg.eigh(p)[1]),
        SYMMETRIC,
    ),
    "eigh_upper": (lambda a: np.linalg.eigh(a, UPLO="U").eigenvectors[:, 0] ** 2, SQUARE),
    "eigvalsh_lower_reads_one_triangle": (lambda a: np.linalg.eigvalsh(a), SQUARE),
    "eig_values": (lambda a: np.linalg.eig(a)[0], REAL_SPECTRUM),
    "eig_vectors": (
        lambda a: _fixed_signs(np.linalg.eig(a)[1], a, lambda p: np.linalg.eig(p)[1]),
        REAL_SPECTRUM,
    ),
    "eigvals": (lambda a: np.linalg.eigvals(a), REAL_SPECTRUM),
    "svd_values": (lambda a: np.linalg.svd(a, compute_uv=False), TALL),
    "svd_values_wide": (lambda a: np.linalg.svd(a.T, compute_uv=False), TALL),
    "svd_U": (
        lambda a: _fixed_signs(
            np.linalg.svd(a, full_matrices=False)[0], a, lambda p: np.linalg.svd(p)[0][:, :3]
        ),
        TALL,
    ),
    "svd_Vh_square": (lambda a: np.linalg.svd(a)[2] ** 2, SQUARE),
    "svd_reconstructs": (
        lambda a: (lambda u, s, vh: (u * s) @ vh)(*np.linalg.svd(a, full_matrices=False)),
        TALL,
    ),
    "pinv_tall": (lambda a: np.linalg.pinv(a), TALL),
    "pinv_wide": (lambda a: np.linalg.pinv(a.T), TALL),
    "qr_Q": (lambda a: np.linalg.qr(a)[0], TALL),
    "qr_R": (lambda a: np.linalg.qr(a, mode="r"), TALL),
    "qr_square_complete": (lambda a: np.linalg.qr(a, mode="complete").R, SQUARE),
    "matrix_power_5": (lambda a: np.linalg.matrix_power(a, 5), SQUARE),
    "matrix_power_-2": (lambda a: np.linalg.matrix_power(a, -2), SQUARE + 3 * np.eye(3)),
    "matrix_power_0": (lambda a: np.linalg.matrix_power(a, 0) * a, SQUARE),
    "norm_nuc": (lambda a: np.linalg.norm(a, "nuc"), TALL),
    "norm_2": (lambda a: np.linalg.norm(a, 2), TALL),
    "norm_-2": (lambda a: np.linalg.norm(a, -2), TALL),
    "norm_1": (lambda a: np.linalg.norm(a, 1), TALL),
    "norm_inf": (lambda a: np.linalg.norm(a, np.inf), TALL),
    "norm_nuc_axes": (
        lambda a: np.linalg.norm(a.reshape(2, 2, 3), "nuc", axis=(2, 0), keepdims=True),
        TALL,
    ),
    "batched_svd": (
        lambda a: np.linalg.svd(a.reshape(2, 2, 3), full_matrices=False)[2] ** 2,
        TALL,
    ),
    "batched_eigh": (lambda a: np.linalg.eigh(a[:2, :2] * a[2:, 1:] + 1.0)[0], TALL),
    "batched_pinv_qr": (
        lambda a: np.linalg.pinv(a.reshape(2, 3, 2)) + np.linalg.qr(a.reshape(2, 3, 2))[0].mT,
        TALL,
    ),
    "norm_-inf_axes": (lambda a: np.linalg.norm(a.reshape(2, 2, 3), -np.inf, axis=(2, 1)), TALL),
}


@pytest.mark.parametrize("name", sorted(LINALG))
def test_linalg_against_differences(name):
    f, a = LINALG[name]
    check(f, a, rtol=1e-5, atol=1e-6)


def test_eigvalsh_second_derivative():
    def f(a):
        return np.sum(np.linalg.eigvalsh(a) ** 3)

    hess = da.hessian(f, SYMMETRIC)
    ref = fd_jacobian(lambda a: da.gradient(f, a, mode="forward"), SYMMETRIC)
    np.testing.assert_allclose(hess, ref, rtol=1e-5, atol=1e-6)
    for mode in ("forward", "reverse"):  # reverse over forward
        outer = da.jacobian(lambda a: da.gradient(f, a, mode="forward"), SYMMETRIC, mode=mode)
        np.testing.assert_allclose(outer, hess, rtol=1e-10, atol=1e-10)


def test_linalg_refusals_say_what_to_do():
    with pytest.raises(DualError, match="pass full_matrices=False"):
        da.jacobian(lambda a: np.linalg.svd(a)[0], TALL)
    with pytest.raises(DualError, match="complex eigenvalues.*eigh"):
        da.jacobian(lambda a: np.linalg.eig(a)[0], np.array([[0.0, 1.0], [-1.0, 0.0]]))
    with pytest.raises(DualError, match="rows >= columns"):
        da.jacobian(lambda a: np.linalg.qr(a.T)[1], TALL)
    with pytest.raises(DualError, match="hermitian=True"):
        da.jacobian(lambda a: np.linalg.pinv(a, hermitian=True), SYMMETRIC)
    with pytest.raises(ValueError, match="invalid norm order"):
        da.jacobian(lambda a: np.linalg.norm(a, 3), SQUARE)


JAX_LINALG = {
    "eigvalsh": (lambda L: lambda a: L.eigvalsh(a), SYMMETRIC),
    "svd_values": (lambda L: lambda a: L.svd(a, compute_uv=False), TALL),
    "pinv": (lambda L: lambda a: L.pinv(a), TALL),
    "qr_R": (lambda L: lambda a: L.qr(a)[1], TALL),
    "matrix_power": (lambda L: lambda a: L.matrix_power(a, 3), SQUARE),
    "norm_nuc": (lambda L: lambda a: L.norm(a, "nuc"), TALL),
}


@pytest.mark.parametrize("name", sorted(JAX_LINALG))
def test_linalg_against_jax(name):
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    make, a = JAX_LINALG[name]
    expected = np.asarray(jax.jacfwd(make(jnp.linalg))(jnp.asarray(a)))
    if name == "eigvalsh":  # JAX differentiates (A + A^T) / 2; NumPy reads the lower triangle
        diagonal = np.eye(3)[None] * expected
        below = np.tril(np.ones((3, 3)), -1)[None] * (expected + expected.transpose(0, 2, 1))
        expected = diagonal + below
    np.testing.assert_allclose(da.jacobian(make(np.linalg), a), expected, rtol=1e-9, atol=1e-9)


# --- cross: every shape and axis NumPy takes -----------------------------------------------------

CROSS = [
    ((3,), (3,), {}),
    ((4, 3), (3,), {}),
    ((2, 1, 3), (4, 3), {}),
    ((3, 2), (2, 3), {"axisa": 0, "axisb": 1}),
    ((3, 4), (3, 4), {"axis": 0}),
    ((2, 3, 2), (3, 2), {"axisa": 1, "axisb": 0, "axisc": 0}),
    ((2,), (3,), {}),
    ((3,), (4, 2), {}),
    ((2, 2), (2,), {}),  # two 2-vectors: the scalar z component
    ((2, 4), (4, 2), {"axisa": 0, "axisb": 1}),
]


@pytest.mark.parametrize("shape_a, shape_b, axes", CROSS)
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # NumPy 2 deprecates 2-vectors
def test_cross_every_shape(shape_a, shape_b, axes):
    na = int(np.prod(shape_a))

    def f(x):
        return np.cross(x[:na].reshape(shape_a), x[na:].reshape(shape_b), **axes)

    check(f, rand(na + int(np.prod(shape_b))))


def test_cross_with_a_constant_and_bad_dimension():
    check(lambda x: np.cross(C3, x.reshape(2, 3), axisc=0), rand(6))
    with pytest.raises(ValueError, match="dimension must be 2 or 3"):
        da.jacobian(lambda x: np.cross(x, x), rand(4))


@pytest.mark.parametrize(
    "build", [lambda x: np.array([x[0], x[1]]), lambda x: np.mean([x[0], x[1]])]
)
def test_list_of_duals_error_names_stack_and_like(build):
    with pytest.raises(DualError, match=r"np\.stack.*np\.array\(\[\.\.\.\], like=x\)"):
        da.gradient(lambda x: np.sum(build(x)), np.ones(2))
    np.testing.assert_array_equal(  # the forms the message names
        da.jacobian(lambda x: np.stack([x[1], x[0]]) + np.array([x[0], 1.0], like=x), np.ones(2)),
        [[1.0, 1.0], [1.0, 0.0]],
    )


# --- sparsity patterns of the added functions ----------------------------------------------------

PATTERNS = {
    "eigh": lambda x: np.linalg.eigh(x.reshape(3, 3))[1],
    "eig": lambda x: np.linalg.eig(x.reshape(3, 3) @ x.reshape(3, 3).T)[0],
    "svd": lambda x: np.linalg.svd(x.reshape(3, 3))[2],
    "pinv": lambda x: np.linalg.pinv(x.reshape(3, 3)),
    "qr": lambda x: np.linalg.qr(x.reshape(3, 3)).Q,
    "matrix_power": lambda x: np.linalg.matrix_power(x.reshape(3, 3), 3),
    "tile_pad_kron": lambda x: np.kron(np.pad(np.tile(x[:3], 2), 1, mode="wrap"), x[3:5]),
    "tril_rot90": lambda x: np.rot90(np.tril(x.reshape(3, 3))),
    "cross_2d": lambda x: np.cross(x[:2], x[2:5]),
}


@pytest.mark.parametrize("name", sorted(PATTERNS))
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_sparsity_pattern_covers_the_jacobian(name):
    f = PATTERNS[name]
    x = rand(9) + 3.0 * np.eye(3).ravel()
    pattern = da.jacobian_sparsity(f, x).toarray()
    jac = np.reshape(da.jacobian(f, x), (pattern.shape[0], -1))
    assert not np.any((jac != 0) & ~pattern)
    if name in ("tile_pad_kron", "tril_rot90", "cross_2d"):  # entry by entry: exact
        np.testing.assert_array_equal(pattern, jac != 0)


SECOND_ORDER = {
    "svd": lambda a: np.sum(np.linalg.svd(a, compute_uv=False) ** 3),
    "svd_vectors": lambda a: np.sum(np.linalg.svd(a, full_matrices=False)[0][:, 0] ** 4),
    "pinv": lambda a: np.sum(np.linalg.pinv(a) ** 2),
    "qr": lambda a: np.sum(np.linalg.qr(a)[1] ** 3),
    "eig": lambda a: np.sum(np.linalg.eigvals(a @ a.T) ** 2),
    "nuc_kron_tile": lambda a: np.linalg.norm(np.kron(np.tile(a[0], 2), a[1:3]), "nuc"),
}


@pytest.mark.parametrize("name", sorted(SECOND_ORDER))
def test_second_derivatives_forward_and_reverse_over_forward(name):
    f = SECOND_ORDER[name]
    a = TALL + np.eye(4, 3)
    hess = da.hessian(f, a)
    ref = fd_jacobian(lambda z: da.gradient(f, z, mode="forward"), a)
    np.testing.assert_allclose(hess, ref, rtol=1e-5, atol=1e-6)
    outer = da.jacobian(lambda z: da.gradient(f, z, mode="forward"), a, mode="reverse")
    np.testing.assert_allclose(outer, hess, rtol=1e-9, atol=1e-9)
