"""The README's SciPy recipes, each run: exact Jacobians (dense and sparse), gradients and
Hessians handed to solve_ivp, root, least_squares and minimize.

Each result is checked against SciPy's own finite-difference run of the same problem (or the known
solution), and each derivative callable is checked to have been used.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import optimize, sparse
from scipy.integrate import solve_ivp

import dualad as da
from dualad.sparse import SparseJacobian, jacobian_sparsity


def brusselator(y, N):
    """2-D Brusselator on a periodic N x N grid: u and v stacked, shape (2, N, N) flattened."""
    A, B, alpha = 3.4, 1.0, 0.02 * (N - 1) ** 2
    u, v = y.reshape(2, N, N)

    def lap(w):
        return np.roll(w, 1, 0) + np.roll(w, -1, 0) + np.roll(w, 1, 1) + np.roll(w, -1, 1) - 4 * w

    uuv = u * u * v
    du = alpha * lap(u) + B + uuv - (A + 1.0) * u
    dv = alpha * lap(v) + A * u - uuv
    return np.concatenate([du.ravel(), dv.ravel()])


N = 6
Y0 = np.concatenate([1.0 + np.sin(np.linspace(0, 6, N * N)), np.full(N * N, 3.0)])


def rhs(t, y):
    return brusselator(y, N)


def counted(jac):
    def wrapper(*args):
        wrapper.calls += 1
        return jac(*args)

    wrapper.calls = 0
    return wrapper


@pytest.fixture(scope="module")
def reference():
    """SciPy's own BDF with its finite-difference Jacobian, at tight tolerances."""
    return solve_ivp(rhs, (0.0, 1.0), Y0, method="BDF", rtol=1e-8, atol=1e-10).y[:, -1]


@pytest.mark.parametrize("method", ["BDF", "Radau"])
@pytest.mark.parametrize("kind", ["dense", "sparse"])
def test_solve_ivp_with_exact_jacobians(method, kind, reference):
    if kind == "dense":
        jac = counted(lambda t, y: da.jacobian(brusselator, y, args=(N,)))
    else:
        prepared = SparseJacobian(brusselator, Y0, args=(N,), format="csc")
        assert prepared.ncolors <= 12
        jac = counted(lambda t, y: prepared(y))
    sol = solve_ivp(rhs, (0.0, 1.0), Y0, method=method, jac=jac, rtol=1e-8, atol=1e-10)
    assert sol.success
    assert sol.njev == jac.calls > 0
    np.testing.assert_allclose(sol.y[:, -1], reference, rtol=1e-6, atol=1e-8)


def test_solve_ivp_sparse_jacobian_saves_evaluations():
    """An exact Jacobian costs BDF no evaluations of the right-hand side; SciPy's finite
    differences cost one per group of columns, which its nfev does not count."""
    prepared = SparseJacobian(brusselator, Y0, args=(N,), format="csc")
    ours_rhs, theirs_rhs = counted(rhs), counted(rhs)
    ours = solve_ivp(ours_rhs, (0.0, 1.0), Y0, method="BDF", jac=lambda t, y: prepared(y))
    pattern = jacobian_sparsity(brusselator, Y0, args=(N,))
    theirs = solve_ivp(theirs_rhs, (0.0, 1.0), Y0, method="BDF", jac_sparsity=pattern)
    assert ours.success and theirs.success
    assert ours_rhs.calls == ours.nfev
    assert theirs_rhs.calls > theirs.nfev + theirs.njev * prepared.lower_bound
    np.testing.assert_allclose(ours.y[:, -1], theirs.y[:, -1], rtol=1e-3)


def residual(u):
    lap = np.zeros_like(u)
    lap[1:-1] = u[:-2] - 2 * u[1:-1] + u[2:]
    return lap + u**3 - 1.0


@pytest.mark.parametrize("method", ["hybr", "lm"])
def test_root_with_the_exact_jacobian(method):
    jac = counted(da.jacfwd(residual))
    sol = optimize.root(residual, np.full(20, 0.5), jac=jac, method=method)
    assert sol.success and jac.calls > 0
    assert np.abs(residual(sol.x)).max() < 1e-9


def observations(p, t):
    """A model with 3 parameters per series, 8 independent series: a block-sparse Jacobian."""
    a, b, c = p.reshape(3, -1)
    return a[:, None] * np.exp(-b[:, None] * t) + c[:, None]


T = np.linspace(0.0, 3.0, 12)
TRUE = np.concatenate([np.linspace(1, 2, 8), np.linspace(0.5, 1.5, 8), np.linspace(-1, 1, 8)])
DATA = observations(TRUE, T) + 1e-3 * np.sin(np.arange(96)).reshape(8, 12)


def misfit(p, t, data):
    return (observations(p, t) - data).ravel()


def test_least_squares_with_sparse_and_dense_jacobians():
    p0 = np.concatenate([np.ones(8), np.ones(8), np.zeros(8)])
    jac = SparseJacobian(misfit, p0, args=(T, DATA))
    assert jac.ncolors == 3 and jac.sparsity.nnz == 96 * 3
    sparse_fit = optimize.least_squares(misfit, p0, jac=jac, args=(T, DATA))
    assert sparse.issparse(jac(p0, T, DATA)) and sparse_fit.success
    dense_fit = optimize.least_squares(misfit, p0, jac=da.jacfwd(misfit), args=(T, DATA))
    fd_fit = optimize.least_squares(misfit, p0, jac_sparsity=jac.sparsity, args=(T, DATA))
    for fit in (dense_fit, fd_fit):
        np.testing.assert_allclose(sparse_fit.x, fit.x, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(sparse_fit.x, TRUE, atol=0.05)


def rosenbrock(x):
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def test_minimize_trust_exact_with_gradient_and_hessian():
    hess = counted(lambda x: da.hessian(rosenbrock, x))
    res = optimize.minimize(
        rosenbrock,
        np.full(6, -0.5),
        method="trust-exact",
        jac=da.grad(rosenbrock),
        hess=hess,
        options={"gtol": 1e-10},
    )
    assert res.success and hess.calls > 0
    np.testing.assert_allclose(res.x, np.ones(6), atol=1e-9)


def test_minimize_newton_cg_with_hessian_vector_products():
    hessp = counted(lambda x, p: da.hvp(rosenbrock, x, p))
    res = optimize.minimize(
        rosenbrock, np.full(6, -0.5), method="Newton-CG", jac=da.grad(rosenbrock), hessp=hessp
    )
    assert res.success and hessp.calls > 0
    np.testing.assert_allclose(res.x, np.ones(6), atol=1e-5)
