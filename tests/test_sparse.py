"""Sparse Jacobians: patterns (exact nnz), colorings, values against dense forward mode and hand
derivations, global and local patterns, and every error message.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

import dualad as da
from dualad.coloring import color_columns, colors_lower_bound, is_column_coloring
from dualad.sparse import SparseJacobian, jacobian_sparsity, sparse_jacobian
from dualad.sparsity import SparsityError

RNG = np.random.default_rng(5)


# --- functions of known structure ----------------------------------------------------------------


def residual(u):
    """The README's 1-D reaction-diffusion residual: tridiagonal, boundary rows diagonal."""
    lap = np.zeros_like(u)
    lap[1:-1] = u[:-2] - 2 * u[1:-1] + u[2:]
    return lap + u**2 - 1.0


def residual_jacobian(u):
    n = len(u)
    jac = np.diag(2 * u)
    for i in range(1, n - 1):
        jac[i, i - 1 : i + 2] += [1.0, -2.0, 1.0]
    return jac


def banded(lower, upper):
    """f_i = sum_k c_k sin(x_{i+k}) for k = -lower ... upper (terms beyond the ends dropped)."""

    def f(x):
        out = np.zeros_like(x)
        n = len(x)
        for k in range(-lower, upper + 1):
            lo, hi = max(0, -k), min(n, n - k)
            out[lo:hi] = out[lo:hi] + (k + 2.5) * np.sin(x[lo + k : hi + k])
        return out

    return f


def banded_nnz(n, lower, upper):
    return sum(n - abs(k) for k in range(-lower, upper + 1))


def blocks(x):
    """Block diagonal: each block of 4 multiplied by one dense 4 x 4 matrix, then squared."""
    b = x.reshape(-1, 4)
    return (np.einsum("ij,bj->bi", np.arange(1.0, 17.0).reshape(4, 4), b) ** 2).ravel()


def arrowhead(x):
    """Row 0 dense, column 0 dense, a diagonal elsewhere: 3n - 2 entries."""
    return np.concatenate([np.reshape(np.sum(x**2), (1,)), x[1:] ** 3 + x[0] * x[1:]])


def laplacian_2d(u, N):
    """Five-point stencil on an N x N grid with zero boundary values: 5N^2 - 4N entries."""
    g = u.reshape(N, N)
    out = -4.0 * g
    out[1:, :] += g[:-1, :]
    out[:-1, :] += g[1:, :]
    out[:, 1:] += g[:, :-1]
    out[:, :-1] += g[:, 1:]
    return (out + g**3).ravel()


def brusselator(y, N, A=3.4, B=1.0, alpha=10.0):
    """2-D Brusselator, periodic: u and v stacked, shape (2, N, N) flattened."""
    u, v = y.reshape(2, N, N)

    def lap(w):
        return np.roll(w, 1, 0) + np.roll(w, -1, 0) + np.roll(w, 1, 1) + np.roll(w, -1, 1) - 4 * w

    uuv = u * u * v
    du = alpha * lap(u) + B + uuv - (A + 1.0) * u
    dv = alpha * lap(v) + A * u - uuv
    return np.concatenate([du.ravel(), dv.ravel()])


def brusselator_jacobian(y, N, A=3.4, B=1.0, alpha=10.0):
    """By hand: alpha on the four neighbours, the reaction terms on the diagonal blocks."""
    M = N * N
    u, v = y[:M], y[M:]
    i, j = np.divmod(np.arange(M), N)
    stencil = np.zeros((M, M))
    for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        stencil[np.arange(M), ((i + di) % N) * N + (j + dj) % N] += alpha
    stencil[np.arange(M), np.arange(M)] -= 4 * alpha
    return np.block(
        [
            [stencil + np.diag(2 * u * v - (A + 1.0)), np.diag(u * u)],
            [np.diag(A - 2 * u * v), stencil - np.diag(u * u)],
        ]
    )


def dense(pattern):
    return pattern.toarray()


def check_coloring(pattern, colors):
    """Within each row, all colors differ (and is_column_coloring agrees)."""
    assert is_column_coloring(pattern, colors)
    p = sparse.csr_array(pattern)
    for i in range(p.shape[0]):
        row_colors = colors[p.indices[p.indptr[i] : p.indptr[i + 1]]]
        assert len(set(row_colors.tolist())) == len(row_colors), f"row {i}: {row_colors}"


# --- patterns ------------------------------------------------------------------------------------


@pytest.mark.parametrize("lower, upper", [(1, 1), (2, 2), (0, 3), (3, 1)])
def test_banded_pattern_colors_and_values(lower, upper):
    n = 40
    f = banded(lower, upper)
    x = RNG.normal(size=n)
    pattern = jacobian_sparsity(f, x)
    assert pattern.shape == (n, n) and pattern.dtype == bool
    assert pattern.nnz == banded_nnz(n, lower, upper)
    rows, cols = pattern.nonzero()
    assert np.all((cols - rows >= -lower) & (cols - rows <= upper))
    colors = color_columns(pattern)
    check_coloring(pattern, colors)
    assert colors.max() + 1 == colors_lower_bound(pattern) == lower + upper + 1
    np.testing.assert_allclose(
        sparse_jacobian(f, x).toarray(), da.jacobian(f, x, mode="forward"), rtol=1e-14, atol=0
    )


def test_is_column_coloring_rejects_a_shared_row():
    pattern = sparse.csr_array(np.array([[1, 1, 0], [0, 1, 1]], dtype=bool))
    assert is_column_coloring(pattern, np.array([0, 1, 0]))
    assert not is_column_coloring(pattern, np.array([0, 0, 1]))
    assert not is_column_coloring(pattern, np.array([0, 1]))


def test_readme_residual_against_the_hand_jacobian():
    u = RNG.normal(size=30)
    pattern = jacobian_sparsity(residual, u)
    assert pattern.nnz == 3 * 30 - 4  # boundary rows hold the diagonal only
    jac = SparseJacobian(residual, u)
    assert (jac.ncolors, jac.lower_bound) == (3, 3)
    result = jac(u)
    assert isinstance(result, sparse.csr_array)
    np.testing.assert_allclose(result.toarray(), residual_jacobian(u), rtol=1e-15, atol=0)


def test_block_pattern():
    x = RNG.normal(size=24)
    pattern = jacobian_sparsity(blocks, x)
    assert pattern.nnz == 6 * 16
    np.testing.assert_array_equal(dense(pattern), np.kron(np.eye(6), np.ones((4, 4))) > 0)
    assert color_columns(pattern).max() + 1 == 4
    np.testing.assert_allclose(
        sparse_jacobian(blocks, x).toarray(), da.jacobian(blocks, x), rtol=1e-14, atol=0
    )


def test_arrowhead_pattern_and_its_dense_row():
    n = 25
    x = RNG.normal(size=n)
    pattern = jacobian_sparsity(arrowhead, x)
    assert pattern.nnz == 3 * n - 2
    assert dense(pattern)[0].all() and dense(pattern)[:, 0].all()
    colors = color_columns(pattern)
    check_coloring(pattern, colors)
    assert colors.max() + 1 == colors_lower_bound(pattern) == n  # the dense row: n colors
    np.testing.assert_allclose(
        sparse_jacobian(arrowhead, x).toarray(), da.jacobian(arrowhead, x), rtol=1e-14, atol=0
    )


@pytest.mark.parametrize("N", [5, 8])
def test_two_dimensional_stencil(N):
    u = RNG.normal(size=N * N)
    pattern = jacobian_sparsity(laplacian_2d, u, args=(N,))
    assert pattern.nnz == 5 * N * N - 4 * N
    colors = color_columns(pattern)
    check_coloring(pattern, colors)
    assert 5 <= colors.max() + 1 <= 8
    np.testing.assert_allclose(
        sparse_jacobian(laplacian_2d, u, args=(N,)).toarray(),
        da.jacobian(laplacian_2d, u, args=(N,)),
        rtol=1e-14,
        atol=0,
    )


def test_brusselator_pattern_values_and_colors():
    N = 6
    y = RNG.uniform(0.5, 2.0, size=2 * N * N)
    hand = brusselator_jacobian(y, N)
    pattern = jacobian_sparsity(brusselator, y, args=(N,))
    assert pattern.nnz == 12 * N * N  # 4 neighbours, itself and its partner, per row
    np.testing.assert_array_equal(dense(pattern), hand != 0)
    jac = SparseJacobian(brusselator, y, args=(N,))
    check_coloring(pattern, jac.colors)
    assert jac.lower_bound == 6 and jac.ncolors <= 12
    np.testing.assert_allclose(jac(y).toarray(), hand, rtol=1e-13, atol=1e-12)
    y2 = RNG.uniform(0.5, 2.0, size=2 * N * N)  # a new point: only the passes run again
    np.testing.assert_allclose(
        jac(y2).toarray(), brusselator_jacobian(y2, N), rtol=1e-13, atol=1e-12
    )


def test_dense_row_and_a_scalar_output():
    x = RNG.normal(size=7)
    f = lambda x: np.concatenate([x**2, np.sum(np.sin(x), keepdims=True)])  # noqa: E731
    pattern = jacobian_sparsity(f, x)
    assert pattern.nnz == 7 + 7 and dense(pattern)[-1].all()
    np.testing.assert_allclose(sparse_jacobian(f, x).toarray(), da.jacobian(f, x), rtol=1e-14)
    assert jacobian_sparsity(lambda x: np.prod(x), x).shape == (1, 7)


def test_patterns_through_structural_functions_cover_the_jacobian():
    """Each pattern covers every nonzero of the dense Jacobian at a random point (and equals
    it where values cannot cancel)."""
    x = RNG.normal(size=12)
    cases = {
        "matmul": lambda u: u.reshape(3, 4) @ u[:4],
        "mean/var": lambda u: np.stack([np.mean(u[:6]), np.var(u[6:])]),
        "cumsum": lambda u: np.cumsum(u.reshape(3, 4), axis=1).ravel(),
        "outer": lambda u: np.outer(u[:2], u[2:5]).ravel(),
        "tensordot": lambda u: np.tensordot(u.reshape(3, 4), u[:4], axes=1),
        "transpose": lambda u: (u.reshape(3, 4).T * u[:3]).ravel(),
        "diff": lambda u: np.diff(u, 2),
        "fancy": lambda u: u[[0, 0, 11]] * u[[1, 2, 3]],
        "norm": lambda u: np.linalg.norm(u[:3]) * u[5:8],
        "solve": lambda u: np.linalg.solve(u[:4].reshape(2, 2) + 4 * np.eye(2), u[4:6]),
        "prod": lambda u: np.prod(u.reshape(4, 3), axis=0),
        "diag": lambda u: np.diag(u[:3]).ravel() + 1.0,
        "broadcast": lambda u: (u[:3, None] * u[None, 3:6]).ravel(),
        "loops": lambda u: np.stack([u[i] * u[(i + 5) % 12] for i in range(12)]),
    }
    for name, f in cases.items():
        pattern = dense(jacobian_sparsity(f, x))
        nonzero = np.reshape(da.jacobian(f, x, mode="forward"), pattern.shape) != 0
        np.testing.assert_array_equal(pattern, nonzero, err_msg=name)


def test_values_never_remove_a_dependence():
    x = np.array([0.0, 1.0, 2.0])
    assert jacobian_sparsity(lambda u: u * 0.0, x).nnz == 3
    triangular = np.triu(np.ones((3, 3)))  # A @ x with a constant A: all of A's shape
    assert jacobian_sparsity(lambda u: triangular @ u, x).nnz == 9
    assert jacobian_sparsity(lambda u: u * np.floor(u), x).nnz == 3


def test_writes_through_views_and_scalar_loops():
    def through_view(u):
        out = np.zeros_like(u)
        inner = out[1:-1]
        inner += u[:-2] * u[2:]
        return out

    def loop(u):
        out = np.empty_like(u)
        for i in range(len(u)):
            out[i] = u[i] * u[(i + 1) % len(u)]
        out[0] = 2.0  # overwritten: no dependence left
        return out

    x = RNG.normal(size=6)
    assert dense(jacobian_sparsity(through_view, x)).sum(axis=1).tolist() == [0, 2, 2, 2, 2, 0]
    expected = (np.eye(6) + np.roll(np.eye(6), 1, axis=1)) > 0
    expected[0] = False
    np.testing.assert_array_equal(dense(jacobian_sparsity(loop, x)), expected)


# --- global and local patterns -------------------------------------------------------------------


def branchy(u):
    if u[0] > 0:
        return u * u[-1]
    return u**2


def selecting(u):
    return np.where(u > 0, u * u[-1], u**2)


def test_a_python_branch_global_refuses_local_follows():
    x_pos, x_neg = np.array([1.0, 2.0, 3.0]), np.array([-1.0, 2.0, 3.0])
    with pytest.raises(SparsityError, match="local=True"):
        jacobian_sparsity(branchy, x_pos)
    positive = dense(jacobian_sparsity(branchy, x_pos, local=True))
    negative = dense(jacobian_sparsity(branchy, x_neg, local=True))
    np.testing.assert_array_equal(positive, np.eye(3, dtype=bool) | (np.arange(3) == 2))
    np.testing.assert_array_equal(negative, np.eye(3, dtype=bool))


def test_np_where_global_takes_both_sides_local_the_one_taken():
    x = np.array([1.0, -2.0, 3.0])
    union = np.eye(3, dtype=bool) | (np.arange(3) == 2)
    np.testing.assert_array_equal(dense(jacobian_sparsity(selecting, x)), union)
    local = dense(jacobian_sparsity(selecting, x, local=True))
    np.testing.assert_array_equal(local, union & (x > 0)[:, None] | np.eye(3, dtype=bool))
    for f in (np.sort, lambda u: np.max(u.reshape(3, 1), axis=0), lambda u: np.maximum(u, u[::-1])):
        glob, loc = jacobian_sparsity(f, x), jacobian_sparsity(f, x, local=True)
        assert (dense(loc) <= dense(glob)).all()


def test_a_local_pattern_is_checked_where_it_no_longer_holds():
    x_neg, x_pos = np.array([-1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0])
    jac = SparseJacobian(branchy, x_neg, local=True)
    assert jac.check  # local patterns are checked by default
    np.testing.assert_allclose(jac(x_neg).toarray(), da.jacobian(branchy, x_neg))
    with pytest.raises(ValueError, match="outside the sparsity pattern, in output rows 0, 1"):
        jac(x_pos)


# --- given patterns and the check ----------------------------------------------------------------


def test_a_given_pattern_is_used_and_checked():
    n = 20
    x = RNG.normal(size=n)
    f = banded(1, 1)
    full = jacobian_sparsity(f, x)
    given = SparseJacobian(f, x, sparsity=full.toarray())  # a dense boolean array works too
    assert given.check and given.ncolors == 3
    np.testing.assert_allclose(given(x).toarray(), da.jacobian(f, x), rtol=1e-14, atol=0)
    missing = sparse.lil_array(full)
    missing[7, 8] = False
    with pytest.raises(ValueError, match=r"in output rows 7 \(1 of 20"):
        sparse_jacobian(f, x, sparsity=missing.tocsr())
    assert not SparseJacobian(f, x).check  # a global pattern dualad found covers everything


def test_bad_patterns_say_what_to_do():
    x = np.ones(4)
    f = banded(1, 0)
    with pytest.raises(TypeError, match=r"boolean pattern.*float64.*A != 0"):
        sparse_jacobian(f, x, sparsity=np.eye(4))
    with pytest.raises(ValueError, match=r"shape \(3, 4\).*shape \(4, 4\)"):
        sparse_jacobian(f, x, sparsity=np.ones((3, 4), dtype=bool))
    with pytest.raises(ValueError, match=r"prepared for x of shape \(4,\)"):
        SparseJacobian(f, x)(np.ones(5))
    with pytest.raises(ValueError, match="format must be"):
        SparseJacobian(f, x, format="coo")


def test_functions_the_tracer_cannot_follow_say_so():
    x = np.ones(3)
    with pytest.raises(da.DualError, match=r"np\.spacing.*da\.register_rule"):
        jacobian_sparsity(lambda u: np.spacing(u), x)
    with pytest.raises(SparsityError, match=r"np\.sin, not math\.sin"):
        jacobian_sparsity(lambda u: __import__("math").sin(u[0]), x)
    with pytest.raises(SparsityError, match=r"np\.zeros_like\(x\)"):
        jacobian_sparsity(lambda u: np.zeros(3).__setitem__(slice(0, 2), u[:2]), x)
    with pytest.raises(SparsityError, match="as an index"):
        jacobian_sparsity(lambda u: u[int(np.argmax(u))], x)
    with pytest.raises(SparsityError, match="indexes with a value computed from x"):
        jacobian_sparsity(lambda u: u[u > 0], x)


def test_a_registered_plain_function(restore_rules):
    softplus = da.register_rule(
        lambda x: np.log1p(np.exp(x)), lambda x, y: 1.0 / (1.0 + np.exp(-x)), name="softplus"
    )
    f = lambda u: softplus(u[::-1])  # noqa: E731
    np.testing.assert_array_equal(dense(jacobian_sparsity(f, np.ones(3))), np.eye(3)[::-1] > 0)
    np.testing.assert_allclose(sparse_jacobian(f, np.zeros(3)).toarray(), 0.5 * np.eye(3)[::-1])


# --- shapes, formats, the compiled engine --------------------------------------------------------


def test_matrix_input_and_output_flatten_in_c_order():
    x = RNG.normal(size=(3, 4))
    f = lambda a: a.T**2  # noqa: E731 - (4, 3) output
    jac = sparse_jacobian(f, x, format="csc")
    assert isinstance(jac, sparse.csc_array) and jac.shape == (12, 12)
    np.testing.assert_allclose(jac.toarray(), da.jacobian(f, x).reshape(12, 12), rtol=1e-15)


def test_a_constant_function_has_an_empty_jacobian():
    jac = SparseJacobian(lambda u: np.ones(3), np.ones(2))
    assert jac.ncolors == 0 and jac(np.ones(2)).nnz == 0 and jac(np.ones(2)).shape == (3, 2)


def test_numba_function_passes_run_compiled():
    numba = pytest.importorskip("numba")

    @numba.njit
    def chain(u, c):
        out = np.empty_like(u)
        n = len(u)
        for i in range(n):
            left = u[i - 1] if i > 0 else 0.0
            out[i] = c * left * u[i] - np.exp(u[i])
        return out

    x = RNG.normal(size=15)
    jac = SparseJacobian(chain, x, args=(2.0,))
    assert jac.sparsity.nnz == 2 * 15 - 1 and jac.ncolors == 2
    first = jac(x)
    assert jac._compiled is not None  # later calls go straight to the compiled driver
    expected = da.jacobian(chain, x, args=(2.0,), engine="numpy")
    np.testing.assert_allclose(first.toarray(), expected, rtol=1e-14, atol=0)
    x2 = RNG.normal(size=15)
    np.testing.assert_allclose(
        jac(x2, 3.0).toarray(), da.jacobian(chain, x2, args=(3.0,), engine="numpy"), rtol=1e-14
    )
    on_numpy = SparseJacobian(chain, x, args=(2.0,), engine="numpy")
    np.testing.assert_allclose(on_numpy(x).toarray(), first.toarray(), rtol=1e-14, atol=0)
    assert on_numpy._compiled is None
