"""The compiled engine (dualad.numba) on loop code, against hand-derived derivatives.

Every function below is written the way a scientist writes a ``numba.njit`` function: explicit
loops over ``x[i]`` / ``x[i, j]``, scalar ``math.*`` / ``np.*`` calls, local arrays allocated
from the input.  Each result is checked against derivatives written out by hand and, where the
source can also run on the array-backed ``da.Dual``, against the NumPy engine on the same source.

Numba compiles each function once per chunk size K (1-3 s each, more for the parallel batch
drivers), so the functions live at module level and the tests reuse a few K values per function:
K in {2, 7, 10} for Rosenbrock, {1, 3, 5, 9, 10, 12} for the PDE residual, {1, 3} for Lorenz,
8 for the 2-D inputs and 3 for the small coverage functions.

Bugs these tests found (a 0-d point, ZeroDivisionError at an infinite local derivative,
math.fmod, np.sinc) were fixed; their tests stay as regression tests.
"""

import math
import warnings

import numba
import numpy as np
import pytest
from test_api import rosenbrock_grad, rosenbrock_hess  # the hand-derived derivatives

import dualad as da
import dualad.numba as dn

RNG = np.random.default_rng(20261124)
TWO_PI = 2.0 * np.pi


def assert_close(actual, expected, rtol=1e-12):
    """Equal to ``rtol`` relative to the largest entry of ``expected`` (zeros stay zeros)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    scale = max(float(np.max(np.abs(expected), initial=0.0)), 1e-300)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


def numpy_engine(call, f, x, **kw):
    """The same call, forced onto the NumPy engine (it runs ``f.py_func`` on da.Dual)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the NumPy engine must not need a fallback either
        return call(f, x, engine="numpy", **kw)


@pytest.fixture(autouse=True)
def no_fallback():
    """A compiled-engine test must stay on the compiled engine: a fallback warning fails it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="dualad could not compile")
        yield


# --- classic problems, loop versions -------------------------------------------------------------


@numba.njit
def rosenbrock(x):
    s = 0.0
    for i in range(len(x) - 1):
        s += 100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2
    return s


@numba.njit
def wood(x):
    a = x[1] - x[0] * x[0]
    b = x[3] - x[2] * x[2]
    return (
        100.0 * a * a
        + (1.0 - x[0]) ** 2
        + 90.0 * b * b
        + (1 - x[2]) ** 2
        + 10.1 * ((x[1] - 1.0) ** 2 + (x[3] - 1.0) ** 2)
        + 19.8 * (x[1] - 1) * (x[3] - 1)
    )


def wood_grad(x):
    x1, x2, x3, x4 = x
    return np.array(
        [
            -400.0 * x1 * (x2 - x1**2) - 2.0 * (1.0 - x1),
            200.0 * (x2 - x1**2) + 20.2 * (x2 - 1.0) + 19.8 * (x4 - 1.0),
            -360.0 * x3 * (x4 - x3**2) - 2.0 * (1.0 - x3),
            180.0 * (x4 - x3**2) + 20.2 * (x4 - 1.0) + 19.8 * (x2 - 1.0),
        ]
    )


def wood_hess(x):
    x1, x2, x3, x4 = x
    return np.array(
        [
            [1200.0 * x1**2 - 400.0 * x2 + 2.0, -400.0 * x1, 0.0, 0.0],
            [-400.0 * x1, 220.2, 0.0, 19.8],
            [0.0, 0.0, 1080.0 * x3**2 - 360.0 * x4 + 2.0, -360.0 * x3],
            [0.0, 19.8, -360.0 * x3, 200.2],
        ]
    )


@numba.njit
def helical_valley(x):
    """Residuals of Moré-Garbow-Hillstrom's helical valley, theta by a branch on x[0] > 0."""
    r = np.empty_like(x)
    if x[0] > 0.0:
        theta = np.arctan(x[1] / x[0]) / (2.0 * np.pi)
    else:
        theta = np.arctan(x[1] / x[0]) / (2.0 * np.pi) + 0.5
    r[0] = 10.0 * (x[2] - 10.0 * theta)
    r[1] = 10.0 * (np.sqrt(x[0] ** 2 + x[1] ** 2) - 1.0)
    r[2] = x[2]
    return r


@numba.njit
def helical_valley_objective(x):
    """The helical valley's sum of squares, theta by atan2."""
    theta = np.arctan2(x[1], x[0]) / (2.0 * np.pi)
    f1 = 10.0 * (x[2] - 10.0 * theta)
    f2 = 10.0 * (np.sqrt(x[0] * x[0] + x[1] * x[1]) - 1.0)
    return f1 * f1 + f2 * f2 + x[2] * x[2]


def helical_theta(x):
    theta = np.arctan(x[1] / x[0]) / TWO_PI
    return theta if x[0] > 0 else theta + 0.5


def helical_jac(x):
    x1, x2, _ = x
    r2 = x1 * x1 + x2 * x2
    r = np.sqrt(r2)
    dtheta = np.array([-x2, x1]) / (TWO_PI * r2)
    return np.array(
        [
            [-100.0 * dtheta[0], -100.0 * dtheta[1], 10.0],
            [10.0 * x1 / r, 10.0 * x2 / r, 0.0],
            [0.0, 0.0, 1.0],
        ]
    )


MEYER_T = 45.0 + 5.0 * np.arange(1, 17)
MEYER_Y = np.array(
    [34780, 28610, 23650, 19630, 16370, 13720, 11540, 9744,
     8261, 7030, 6005, 5147, 4427, 3820, 3307, 2872],
    dtype=float,
)  # fmt: skip


@numba.njit
def meyer(x, t, y):
    """Meyer's residuals x1 exp(x2 / (t + x3)) - y: 3 parameters, len(t) data points."""
    m = len(t)
    r = np.zeros(m, dtype=x.dtype)
    for i in range(m):
        r[i] = x[0] * np.exp(x[1] / (t[i] + x[2])) - y[i]
    return r


def meyer_vectorised(x, t, y):
    """The same residuals as whole-array NumPy, for the NumPy engine."""
    return x[0] * np.exp(x[1] / (t + x[2])) - y


def meyer_jac(x, t):
    e = np.exp(x[1] / (t + x[2]))
    return np.stack([e, x[0] * e / (t + x[2]), -x[0] * x[1] * e / (t + x[2]) ** 2], axis=1)


@numba.njit
def pde_residual(u, source, left, right):
    """u'' + u**3 - source on (0, 1), n interior points, u(0) = left, u(1) = right."""
    n = len(u)
    h2 = (1.0 / (n + 1)) ** 2
    r = np.empty_like(u)
    for i in range(n):
        lo = u[i - 1] if i > 0 else left
        hi = u[i + 1] if i < n - 1 else right
        r[i] = (lo - 2.0 * u[i] + hi) / h2 + u[i] ** 3 - source[i]
    return r


def pde_jac(u):
    n = len(u)
    h2 = (1.0 / (n + 1)) ** 2
    return (
        np.diag(-2.0 / h2 + 3.0 * u**2)
        + np.diag(np.full(n - 1, 1.0 / h2), 1)
        + np.diag(np.full(n - 1, 1.0 / h2), -1)
    )


def pde_point(n):
    grid = np.linspace(0.0, 1.0, n + 2)[1:-1]
    return np.sin(3.0 * grid) + 0.1 * RNG.normal(size=n), np.cos(grid), 0.3, -0.7


@numba.njit
def nbody_energy(x, mass):
    """Gravitational potential energy of n bodies at the rows of x (shape (n, 3)), G = 1."""
    n, d = x.shape
    e = 0.0
    for i in range(n):
        xi = x[i]
        for j in range(i + 1, n):
            r2 = 0.0
            for k in range(d):
                dk = xi[k] - x[j, k]
                r2 += dk * dk
            e -= mass[i] * mass[j] / np.sqrt(r2)
    return e


def nbody_forces(x, mass):
    """F_i = -sum_j m_i m_j (x_i - x_j) / |x_i - x_j|**3, written by hand."""
    forces = np.zeros_like(x)
    for i in range(len(x)):
        for j in range(len(x)):
            if i != j:
                d = x[i] - x[j]
                forces[i] -= mass[i] * mass[j] * d / np.linalg.norm(d) ** 3
    return forces


@numba.njit
def lorenz(u, sigma, rho, beta):
    du = np.empty_like(u)
    du[0] = sigma * (u[1] - u[0])
    du[1] = u[0] * (rho - u[2]) - u[1]
    du[2] = u[0] * u[1] - beta * u[2]
    return du


def lorenz_jac(u, sigma, rho, beta):
    x, y, z = u
    return np.array([[-sigma, sigma, 0.0], [rho - z, -1.0, -x], [y, x, -beta]])


LORENZ_ARGS = (10.0, 28.0, 8.0 / 3.0)


@pytest.mark.parametrize("n", [2, 7, 13, 30])
def test_rosenbrock_gradient(n):
    x = RNG.uniform(-1.5, 1.5, size=n)
    value, grad = da.value_and_gradient(rosenbrock, x)
    assert value == pytest.approx(rosenbrock(x), rel=1e-14)
    assert grad.shape == (n,)
    assert_close(grad, rosenbrock_grad(x))
    assert_close(grad, numpy_engine(da.gradient, rosenbrock, x))


def test_rosenbrock_gradient_at_the_minimum_and_at_an_integer_point():
    np.testing.assert_array_equal(da.gradient(rosenbrock, np.ones(7)), np.zeros(7))
    ints = np.arange(-3, 4)  # promoted to float64
    np.testing.assert_array_equal(da.gradient(rosenbrock, ints), rosenbrock_grad(ints * 1.0))


def test_wood_gradient():
    for x in (np.array([-3.0, -1.0, -3.0, -1.0]), RNG.normal(size=4)):
        value, grad = da.value_and_gradient(wood, x)
        assert value == pytest.approx(wood.py_func(x), rel=1e-14)
        assert_close(grad, wood_grad(x))
        assert_close(grad, numpy_engine(da.gradient, wood, x))
    np.testing.assert_array_equal(da.gradient(wood, np.ones(4)), np.zeros(4))


@pytest.mark.parametrize("x0", [1.0, -1.0])  # both sides of the branch on x[0] > 0
def test_helical_valley_jacobian_both_branches(x0):
    x = np.array([x0, 0.4, 0.7])
    value, jac = da.value_and_jacobian(helical_valley, x)
    theta = helical_theta(x)
    expected = [10.0 * (x[2] - 10.0 * theta), 10.0 * (np.hypot(x[0], x[1]) - 1.0), x[2]]
    assert_close(value, expected)
    assert_close(jac, helical_jac(x))
    assert_close(jac, numpy_engine(da.jacobian, helical_valley, x))


def test_helical_valley_objective_gradient_with_atan2():
    for x in (np.array([-1.0, 0.0, 0.0]), np.array([0.6, -0.8, 0.3]), np.array([-0.5, -0.2, 1.0])):
        theta = np.arctan2(x[1], x[0]) / TWO_PI
        r = np.array([10.0 * (x[2] - 10.0 * theta), 10.0 * (np.hypot(x[0], x[1]) - 1.0), x[2]])
        value, grad = da.value_and_gradient(helical_valley_objective, x)
        assert value == pytest.approx(r @ r, rel=1e-13)
        assert_close(grad, 2.0 * helical_jac(x).T @ r)
        assert_close(grad, numpy_engine(da.gradient, helical_valley_objective, x))


@pytest.mark.parametrize("x", [[0.02, 4000.0, 250.0], [0.0056096, 6181.35, 345.224]])
def test_meyer_residual_jacobian_with_data_in_args(x):
    x = np.array(x)
    value, jac = da.value_and_jacobian(meyer, x, args=(MEYER_T, MEYER_Y))
    assert jac.shape == (16, 3)
    assert_close(value, meyer(x, MEYER_T, MEYER_Y), rtol=1e-15)
    assert_close(jac, meyer_jac(x, MEYER_T))
    # np.zeros(m, dtype=x.dtype) holds floats in the NumPy engine, so it gets the NumPy twin
    assert_close(jac, da.jacobian(meyer_vectorised, x, args=(MEYER_T, MEYER_Y)))


@pytest.mark.parametrize("n", [5, 12, 25, 40])
def test_pde_residual_jacobian_is_tridiagonal(n):
    u, source, left, right = pde_point(n)
    value, jac = da.value_and_jacobian(pde_residual, u, args=(source, left, right))
    assert_close(value, pde_residual(u, source, left, right), rtol=1e-15)
    assert_close(jac, pde_jac(u))
    assert np.all(np.triu(jac, 2) == 0) and np.all(np.tril(jac, -2) == 0)
    numpy_jac = numpy_engine(da.jacobian, pde_residual, u, args=(source, left, right))
    assert_close(jac, numpy_jac)


def test_nbody_gradient_is_minus_the_forces():
    x = RNG.normal(size=(5, 3))
    mass = RNG.uniform(0.5, 2.0, size=5)
    value, grad = da.value_and_gradient(nbody_energy, x, args=(mass,))
    assert grad.shape == (5, 3)
    assert value == pytest.approx(nbody_energy(x, mass), rel=1e-14)
    assert_close(grad, -nbody_forces(x, mass))
    np.testing.assert_allclose(grad.sum(axis=0), 0.0, atol=1e-12 * np.abs(grad).max())
    assert_close(grad, numpy_engine(da.gradient, nbody_energy, x, args=(mass,)))


def test_lorenz_jacobian_with_parameters_in_args():
    u = np.array([1.2, -0.4, 20.0])
    for params in (LORENZ_ARGS, (3.0, 0.5, 1.0)):
        value, jac = da.value_and_jacobian(lorenz, u, args=params)
        assert_close(value, lorenz(u, *params), rtol=1e-15)
        assert_close(jac, lorenz_jac(u, *params))
        assert_close(jac, numpy_engine(da.jacobian, lorenz, u, args=params))


def test_hessian_of_a_numba_function_on_the_numpy_engine():
    # compiled Hessians (the default for a numba.njit function) are tested in
    # test_numba_hessian.py; this is the NumPy engine on the same source
    x = RNG.uniform(-1.5, 1.5, size=7)
    assert_close(da.hessian(rosenbrock, x, engine="numpy"), rosenbrock_hess(x))
    v = RNG.normal(size=7)
    assert_close(da.hvp(rosenbrock, x, v, engine="numpy"), rosenbrock_hess(x) @ v)
    wood_point = RNG.normal(size=4)
    assert_close(da.hessian(wood, wood_point, engine="numpy"), wood_hess(wood_point))


@numba.njit
def quartic_via_local_array(x):
    n = len(x)
    r = np.zeros(2 * n, dtype=x.dtype)  # the compiled engine's allocation idiom
    for i in range(2 * n):
        r[i] = x[i % n] ** 2
    s = 0.0
    for i in range(2 * n):
        s += r[i] * r[i]
    return s  # 2 * sum(x**4)


def test_hessian_of_a_numba_function_that_allocates_with_x_dtype():
    # Nested Duals cannot allocate np.zeros(m, dtype=x.dtype); forward over reverse (what
    # da.hessian runs first) records it on adjoint numbers of Duals: no fallback, no warning.
    x = np.array([0.5, -1.0, 2.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h = da.hessian(quartic_via_local_array, x)
    assert_close(h, np.diag(24.0 * x**2))


# --- chunking ------------------------------------------------------------------------------------


def test_chunk_sizes_give_identical_jacobians():
    u, source, left, right = pde_point(12)
    args = (source, left, right)
    full = da.jacobian(pde_residual, u, args=args, chunk_size=12)
    assert_close(full, pde_jac(u))
    for k in (1, 3, 5):  # 12 is not a multiple of 5
        np.testing.assert_array_equal(da.jacobian(pde_residual, u, args=args, chunk_size=k), full)
    x = RNG.normal(size=30)
    default = da.gradient(rosenbrock, x)
    for k in (2, 7):  # 30 = 4 * 7 + 2
        np.testing.assert_array_equal(da.gradient(rosenbrock, x, chunk_size=k), default)


def test_default_chunk_size_beyond_the_threshold(monkeypatch):
    assert dn.CHUNK_THRESHOLD == 12
    assert [dn.chunk_size_for(n) for n in (1, 5, 12, 13, 25, 30, 40)] == [1, 5, 12, 7, 9, 10, 10]
    assert dn.chunk_size_for(40, 100) == 40
    chunks = []
    run = dn.run

    def spy(f, kind, K, *arguments):
        chunks.append(K)
        return run(f, kind, K, *arguments)

    monkeypatch.setattr(dn, "run", spy)
    u, source, left, right = pde_point(25)
    args = (source, left, right)
    default = da.jacobian(pde_residual, u, args=args)
    # 25 columns in 3 passes: of 9, 9, 7 (K = 9), or of a wider K that an earlier test already
    # compiled for this function and that takes 3 passes too (dn.reuse_chunk)
    assert len(chunks) == 1 and chunks[0] in (9, 10, 11, 12)
    np.testing.assert_array_equal(da.jacobian(pde_residual, u, args=args, chunk_size=5), default)
    assert_close(default, pde_jac(u))


# --- jvp, value_and_*, output shapes -------------------------------------------------------------


def test_jvp_one_direction_and_many_directions():
    u = np.array([1.2, -0.4, 20.0])
    jac = lorenz_jac(u, *LORENZ_ARGS)
    v = RNG.normal(size=3)
    value, tangent = da.jvp(lorenz, u, v, args=LORENZ_ARGS)
    assert_close(value, lorenz(u, *LORENZ_ARGS), rtol=1e-15)
    assert tangent.shape == (3,)
    assert_close(tangent, jac @ v)
    vs = RNG.normal(size=(3, 3))
    value, tangents = da.jvp(lorenz, u, vs, args=LORENZ_ARGS)
    assert tangents.shape == (3, 3)
    assert_close(tangents, jac @ vs)


def test_jvp_with_k_1_and_of_a_2d_input():
    u, source, left, right = pde_point(12)
    v = RNG.normal(size=12)
    _, tangent = da.jvp(pde_residual, u, v, args=(source, left, right))
    assert_close(tangent, pde_jac(u) @ v)
    x = RNG.normal(size=(5, 3))
    mass = RNG.uniform(0.5, 2.0, size=5)
    vs = RNG.normal(size=(5, 3, 8))
    value, tangents = da.jvp(nbody_energy, x, vs, args=(mass,))
    assert tangents.shape == (8,)
    assert value == pytest.approx(nbody_energy(x, mass), rel=1e-14)
    assert_close(tangents, np.einsum("ij,ijk->k", -nbody_forces(x, mass), vs))


@numba.njit
def constant_output(x, c):
    out = np.zeros(3)  # a plain float array: nothing in it depends on x
    for i in range(3):
        out[i] = c * i
    if x[0] > 100.0:  # a value-only use of x
        out[0] = -1.0
    return out


@numba.njit
def outer_square(x):
    n = len(x)
    out = np.zeros((n, n), dtype=x.dtype)
    for i in range(n):
        for j in range(n):
            out[i, j] = x[i] * x[j]
    return out


def test_output_that_does_not_depend_on_x_has_zero_jacobian():
    x = np.array([0.5, -1.0, 2.0])
    value, jac = da.value_and_jacobian(constant_output, x, args=(2.5,))
    np.testing.assert_array_equal(value, [0.0, 2.5, 5.0])
    assert jac.shape == (3, 3)
    np.testing.assert_array_equal(jac, np.zeros((3, 3)))


def test_function_returning_a_2d_array():
    x = np.array([0.5, -1.0, 2.0])
    value, jac = da.value_and_jacobian(outer_square, x)
    np.testing.assert_array_equal(value, np.outer(x, x))
    eye = np.eye(3)
    expected = np.einsum("ik,j->ijk", eye, x) + np.einsum("jk,i->ijk", eye, x)
    assert jac.shape == (3, 3, 3)
    np.testing.assert_array_equal(jac, expected)


def scalar_poly(x):
    return 3.0 * x * x - 2 * x + math.sin(x)


def test_derivative_of_a_scalar_numba_function():
    # a 0-d point reaches f as a Dual scalar, not as a 1-element DualArray
    f = numba.njit(scalar_poly)
    d = da.derivative(f, 0.7, engine="numba")
    assert np.ndim(d) == 0
    assert float(d) == pytest.approx(6.0 * 0.7 - 2.0 + math.cos(0.7), rel=1e-14)


# --- language coverage ---------------------------------------------------------------------------


@numba.njit
def scalar_functions(x):
    """Builtins, math.* and np.* scalar functions on Duals, mixed with floats and ints."""
    out = np.zeros(12, dtype=x.dtype)  # 12 != len(x)
    out[0] = abs(x[0])
    out[1] = math.fabs(x[1]) * x[0]
    out[2] = x[1] ** 2.5 + x[2] ** -1
    out[3] = pow(x[1], 3)
    out[4] = math.sqrt(x[2]) * math.erf(x[0])
    out[5] = 2 * x[0] - 1 + x[2] % 0.5
    out[6] = math.exp(x[1]) * math.sin(x[2])
    out[7] = math.atan2(x[0], x[1]) + math.hypot(x[1], x[2])
    out[8] = np.log(x[2]) + np.tanh(x[0]) + np.sqrt(x[1])
    out[9] = math.log1p(x[1]) / math.cosh(x[0])
    out[10] = 3 - x[2] / 4 + x[0] * 0.5
    out[11] = math.asin(x[0] / 2) + np.arccos(x[2] / 2)
    return out


def scalar_functions_jac(x):
    a, b, c = x
    return np.array(
        [
            [np.sign(a), 0.0, 0.0],
            [abs(b), a * np.sign(b), 0.0],
            [0.0, 2.5 * b**1.5, -(c**-2)],
            [0.0, 3.0 * b**2, 0.0],
            [np.sqrt(c) * 2.0 / np.sqrt(np.pi) * np.exp(-a * a), 0.0, math.erf(a) / (2 * c**0.5)],
            [2.0, 0.0, 1.0],
            [0.0, np.exp(b) * np.sin(c), np.exp(b) * np.cos(c)],
            [b / (a * a + b * b), -a / (a * a + b * b) + b / np.hypot(b, c), c / np.hypot(b, c)],
            [1.0 - np.tanh(a) ** 2, 0.5 / np.sqrt(b), 1.0 / c],
            [-np.log1p(b) * np.sinh(a) / np.cosh(a) ** 2, 1.0 / ((1.0 + b) * np.cosh(a)), 0.0],
            [0.5, 0.0, -0.25],
            [0.5 / np.sqrt(1.0 - a * a / 4), 0.0, -0.5 / np.sqrt(1.0 - c * c / 4)],
        ]
    )


def test_builtins_math_and_numpy_scalar_functions():
    x = np.array([-0.7, 1.3, 0.8])
    value, jac = da.value_and_jacobian(scalar_functions, x)
    assert_close(value, scalar_functions.py_func(x), rtol=1e-15)
    assert_close(jac, scalar_functions_jac(x))
    assert scalar_functions(x)[0] == 0.7  # still plain Numba on floats


@numba.njit
def min_max_pow(x):
    out = np.empty_like(x)
    out[0] = min(x[0], x[1]) + max(x[2], 1.0)
    out[1] = min(1, x[2]) + abs(x[1])
    out[2] = x[1] ** x[2] + 2.0 ** x[0] + pow(x[2], x[0])
    return out


def min_max_pow_jac(x):
    a, b, c = x
    return np.array(
        [
            [float(a < b), float(b < a), float(c > 1.0)],
            [0.0, np.sign(b), float(c < 1.0)],
            [
                2.0**a * np.log(2.0) + c**a * np.log(c),
                c * b ** (c - 1.0),
                b**c * np.log(b) + a * c ** (a - 1.0),
            ],
        ]
    )


@pytest.mark.parametrize("x", [[-0.7, 1.3, 0.8], [1.5, 0.4, 1.2]], ids=["a<b", "a>b"])
def test_min_max_on_both_sides_and_dual_exponents(x):
    x = np.array(x)
    value, jac = da.value_and_jacobian(min_max_pow, x)
    assert_close(value, min_max_pow.py_func(x), rtol=1e-15)
    assert_close(jac, min_max_pow_jac(x))


# Rules that once failed in the compiled engine.  Each case: f's body, the point, the gradient.
ONCE_BROKEN_RULES = {
    # Numba has no math.fmod: its value comes from np.fmod
    "math.fmod": ("math.fmod(x[1], 0.7)", [0.3, 1.3], lambda a, b: [0.0, 1.0]),
    # np.sinc is a Python function, not a ufunc: the table's non-ufunc keys get overloads too
    "np.sinc": (
        "np.sinc(x[0])",
        [0.3, 0.2],
        lambda a, b: [(np.cos(np.pi * a) - np.sinc(a)) / a, 0.0],
    ),
}


@pytest.mark.parametrize("case", list(ONCE_BROKEN_RULES))
def test_rules_with_no_numba_value_or_no_ufunc(case):
    body, x, grad = ONCE_BROKEN_RULES[case]
    namespace = {"np": np, "math": math}
    exec(f"def f(x):\n    return {body}\n", namespace)  # noqa: S102 - a one-line repro
    x = np.array(x)
    assert_close(da.gradient(namespace["f"], x, engine="numba"), grad(*x))


@numba.njit
def integer_powers(x):
    """Constant integer powers (each of 0..8 is unrolled in the compiled engine), one beyond
    them, a negative one and an integer variable; ``**=`` and ``pow`` as well."""
    out = np.zeros(14, dtype=x.dtype)
    out[0] = x[0] ** 0
    out[1] = x[0] ** 1
    out[2] = x[0] ** 2
    out[3] = x[0] ** 3
    out[4] = x[0] ** 4
    out[5] = x[0] ** 5
    out[6] = x[0] ** 6
    out[7] = x[0] ** 7
    out[8] = x[0] ** 8
    out[9] = x[0] ** 9
    out[10] = x[1] ** -2
    y = x[1]
    y **= 3
    out[11] = y
    out[12] = pow(x[2], 2)
    out[13] = x[2] ** (len(x) - 1)  # an integer that is no constant: 2
    return out


def integer_powers_jac(x):
    a, b, c = x
    jac = np.zeros((14, 3))
    for n in range(1, 10):
        jac[n, 0] = n * a ** (n - 1)
    jac[10, 1] = -2.0 * b**-3
    jac[11, 1] = 3.0 * b * b
    jac[12, 2] = jac[13, 2] = 2.0 * c
    return jac


@pytest.mark.parametrize("x", [[-1.3, 0.7, 2.1], [0.0, -2.0, -0.0], [1.7, 3.0, 0.5]])
def test_integer_powers_values_as_float_code_and_derivatives(x):
    x = np.array(x)
    value, jac = da.value_and_jacobian(integer_powers, x)
    expected = integer_powers(x)  # Numba on floats: the same multiplications, the same bits
    np.testing.assert_array_equal(value, expected)
    np.testing.assert_array_equal(np.signbit(value), np.signbit(expected))
    assert_close(jac, integer_powers_jac(x))


@numba.njit
def sqrt_sum(x):
    s = 0.0
    for i in range(len(x)):
        s += np.sqrt(x[i])
    return s


def test_infinite_local_derivative_as_in_the_numpy_engine():
    # the partials are compiled with error_model="numpy": 0.5 / sqrt(0) is inf, not an error
    x = np.array([0.0, 1.0])
    # a zero tangent times the infinite local derivative contributes 0 (README)
    _, tangents = da.jvp(sqrt_sum, x, np.array([[0.0, 0.0], [1.0, 2.0]]))
    np.testing.assert_array_equal(tangents, [0.5, 1.0])
    # the gradient of sum(sqrt(x)) at (0, 1) is (inf, 0.5), as the NumPy engine gives
    np.testing.assert_array_equal(da.gradient(sqrt_sum, x), [np.inf, 0.5])


@numba.njit
def piecewise(x):
    s = 0.0
    for i in range(len(x)):
        if x[i] > 1.0:
            s += x[i] ** 2
        elif x[i] < -1.0:
            s -= 3.0 * x[i]
        else:
            s += math.sin(x[i])
    k = 0
    while x[0] * 2**k < 10.0 and k < 20:  # a loop on values: s is scaled, not differentiated
        k += 1
    return s * k


def piecewise_grad(x):
    inner = np.where(x > 1.0, 2.0 * x, np.where(x < -1.0, -3.0, np.cos(x)))
    k = 0
    while x[0] * 2**k < 10.0 and k < 20:
        k += 1
    return inner * k


@pytest.mark.parametrize(
    "x", [[1.5, -2.0, 0.3], [-0.5, 2.5, -1.5], [0.9, 1.1, -0.9]], ids=["a", "b", "c"]
)
def test_branches_on_values_both_sides(x):
    x = np.array(x)
    value, grad = da.value_and_gradient(piecewise, x)
    assert value == pytest.approx(piecewise.py_func(x), rel=1e-15)
    assert_close(grad, piecewise_grad(x))


@numba.njit
def allocations(x):
    """Local arrays and assignments: every way the engine documents to hold Duals."""
    n = len(x)
    w = np.empty(5, x.dtype)  # positional dtype, 5 != n
    for i in range(5):
        w[i] = x[i % n] * (i + 1)
    z = np.zeros_like(x)
    for i in range(n):
        z[i] += x[i]  # in-place on a Dual slot
        z[i] *= 3.0
    e = np.empty_like(x)
    e[0] = 1.5  # a float constant into a Dual slot
    e[1] = x[0] * x[1]
    e[2] = 7  # an int constant
    acc = 0  # an int accumulator that becomes a Dual
    for i in range(n):
        acc += x[i] * x[i]
    tail = x[1:]  # a slice of the input
    t = 0.0
    for i in range(len(tail)):
        t += tail[i] * (i + 2)
    m = 5 + 3 * n + 2
    out = np.zeros(m, dtype=x.dtype)
    for i in range(5):
        out[i] = w[i]
    for i in range(n):
        out[5 + i] = z[i]
        out[5 + n + i] = e[i]
    out[5 + 2 * n : 5 + 3 * n] = 0.25  # a float into a slice
    out[5 + 2 * n] += e[1]
    out[m - 2] = acc
    out[m - 1] = t
    return out


def allocations_jac(x):
    a, b, c = x
    rows = []
    for i in range(5):
        row = np.zeros(3)
        row[i % 3] = i + 1
        rows.append(row)
    rows += list(3.0 * np.eye(3))
    rows += [np.zeros(3), [b, a, 0.0], np.zeros(3)]
    rows += [[b, a, 0.0], np.zeros(3), np.zeros(3)]
    rows += [2.0 * x, [0.0, 2.0, 3.0]]
    return np.array(rows, dtype=float)


def test_local_arrays_slots_slices_and_accumulators():
    x = np.array([0.5, -1.0, 2.0])
    value, jac = da.value_and_jacobian(allocations, x)
    assert value.shape == (16,)
    assert_close(value, allocations.py_func(x), rtol=1e-15)
    assert value[8] == 1.5 and value[10] == 7.0 and value[12] == 0.25
    assert_close(jac, allocations_jac(x))


@numba.njit
def smooth_abs(a, eps):
    return math.sqrt(a * a + eps)


@numba.njit
def weighted_dot(x, w):
    s = 0.0
    for i in range(len(x)):
        s += w[i] * x[i]
    return s


@numba.njit
def uses_helpers(x, w, eps):
    s = 0.0
    for i in range(len(x)):
        s += smooth_abs(x[i], eps)  # a helper on Dual scalars
    return s + weighted_dot(x, w) ** 2  # a helper on the DualArray


def test_njit_helpers_called_from_f():
    x = np.array([0.5, -1.0, 2.0])
    w = np.array([1.0, 2.0, -0.5])
    eps = 0.01
    grad = da.gradient(uses_helpers, x, args=(w, eps))
    assert_close(grad, x / np.sqrt(x * x + eps) + 2.0 * (w @ x) * w)
    assert uses_helpers(x, w, eps) == pytest.approx(np.sum(np.sqrt(x * x + eps)) + (w @ x) ** 2)


@numba.njit
def matrix_function(a):
    """A 2-D input read with x.shape, x[i, j] and x[i] rows; returns A^T A's trace and more."""
    rows, cols = a.shape
    out = np.zeros(cols + 1, dtype=a.dtype)
    for i in range(rows):
        row = a[i]
        for j in range(cols):
            out[j] += row[j] * a[i, j]
    out[cols] = a[rows - 1, cols - 1] * rows
    return out


def test_2d_input_shape_rows_and_elements():
    a = RNG.normal(size=(2, 4))  # K = 8, as for the n-body problem
    value, jac = da.value_and_jacobian(matrix_function, a)
    expected_value = np.append((a * a).sum(axis=0), a[1, 3] * 2)
    assert_close(value, expected_value, rtol=1e-15)
    expected = np.zeros((5, 2, 4))
    for j in range(4):
        expected[j, :, j] = 2.0 * a[:, j]
    expected[4, 1, 3] = 2.0
    assert jac.shape == (5, 2, 4)
    assert_close(jac, expected)


def test_njit_functions_still_run_as_plain_numba_on_floats():
    # the user's dispatcher keeps only float signatures: the Dual compilations live elsewhere
    x = np.array([0.3, 1.7, -0.4, 2.2, 0.9, -1.1, 0.5])
    u = np.array([1.2, -0.4, 20.0])
    da.gradient(rosenbrock, x)
    da.jacobian(lorenz, u, args=LORENZ_ARGS)
    assert rosenbrock(x) == pytest.approx(rosenbrock.py_func(x), rel=1e-15)
    assert_close(lorenz(u, *LORENZ_ARGS), lorenz.py_func(u, *LORENZ_ARGS), rtol=1e-15)
    assert wood(x[:4]) == pytest.approx(wood.py_func(x[:4]), rel=1e-15)
    for f in (rosenbrock, lorenz, wood):
        assert f.signatures, f
        assert all("Dual" not in str(sig) for sig in f.signatures), f.signatures


def test_whole_array_numpy_falls_back_to_the_numpy_engine_with_a_warning():
    @numba.njit
    def vectorised(x):
        return np.trace(np.outer(x, x)) + np.sum(np.sin(x) * x)

    x = np.array([0.1, 0.2, 0.3])
    expected = 2.0 * x + np.sin(x) + x * np.cos(x)
    with pytest.warns(UserWarning, match="could not compile vectorised"):
        grad = da.gradient(vectorised, x)
    assert_close(grad, expected)
    with pytest.raises(dn.NotCompilable):
        da.gradient(vectorised, x, engine="numba")


# --- batched evaluation ---------------------------------------------------------------------------


def test_batch_jacobian_and_jvp_of_a_scalar_output_with_args():
    # the n-body energy: 2-D points stacked to shape (B, 5, 3), masses in args
    mass = RNG.uniform(0.5, 2.0, size=5)
    xs = RNG.normal(size=(4, 5, 3))
    jacs = da.batch_jacobian(nbody_energy, xs, args=(mass,))
    assert jacs.shape == (4, 5, 3)
    vs = RNG.normal(size=(4, 5, 3, 8))
    values, tangents = da.batch_jvp(nbody_energy, xs, vs, args=(mass,))
    assert values.shape == (4,) and tangents.shape == (4, 8)
    for b in range(4):
        np.testing.assert_array_equal(jacs[b], da.gradient(nbody_energy, xs[b], args=(mass,)))
        assert_close(jacs[b], -nbody_forces(xs[b], mass))
        value, tangent = da.jvp(nbody_energy, xs[b], vs[b], args=(mass,))
        assert values[b] == value
        np.testing.assert_array_equal(tangents[b], tangent)
        assert_close(tangent, np.einsum("ij,ijk->k", -nbody_forces(xs[b], mass), vs[b]))


def test_batch_jvp_of_a_vector_output_with_args():
    # Lorenz at an ensemble of points, one direction each: J(x_b) @ v_b against the hand Jacobian
    params = (10.0, 28.0, 8.0 / 3.0)
    xs, vs = RNG.normal(size=(7, 3)), RNG.normal(size=(7, 3))
    values, tangents = da.batch_jvp(lorenz, xs, vs, args=params)
    assert values.shape == tangents.shape == (7, 3)
    for b in range(7):
        np.testing.assert_array_equal(values[b], lorenz(xs[b], *params))
        assert_close(tangents[b], lorenz_jac(xs[b], *params) @ vs[b])


def test_batch_jacobian_of_a_vector_output_with_args():
    # the PDE residual: an array and two scalars in args
    _, source, left, right = pde_point(5)
    args = (source, left, right)
    us = np.stack([pde_point(5)[0] for _ in range(6)])
    jacs = da.batch_jacobian(pde_residual, us, args=args)
    assert jacs.shape == (6, 5, 5)
    for b in range(6):
        np.testing.assert_array_equal(jacs[b], da.jacobian(pde_residual, us[b], args=args))
        assert_close(jacs[b], pde_jac(us[b]))


# --- ownership: what the drivers hand out is never shared ----------------------------------------


@numba.njit
def identity(x):
    return x


@numba.njit
def writes_into_its_input(x):
    x[0] = 1.0
    return x


def test_results_share_nothing_with_the_input_or_the_next_call():
    x = np.array([1.0, 2.0])
    jac = da.jacobian(identity, x)  # the output's partials are the read-only seed: copied
    jac[0, 0] = 5.0
    np.testing.assert_array_equal(da.jacobian(identity, x), np.eye(2))
    value, tangent = da.jvp(identity, x, np.array([1.0, 0.0]))
    value[0] = tangent[0] = 7.0
    np.testing.assert_array_equal(x, [1.0, 2.0])
    np.testing.assert_array_equal(da.jvp(identity, x, np.array([1.0, 0.0]))[1], [1.0, 0.0])


def test_writing_into_the_input_is_refused():
    with pytest.raises(da.DualError, match=r"writes into its input.*x = x\.copy\(\)"):
        da.jacobian(writes_into_its_input, np.array([1.0, 2.0]), engine="numba")


def test_ready_driver_path_follows_shape_and_argument_changes():
    # After a first compiled call, jacobian() goes straight to the driver; a new shape, a float32
    # point or a Dual argument must take the full path and still give the right answer.
    u, source, left, right = pde_point(5)
    args = (source, left, right)
    np.testing.assert_allclose(da.jacobian(pde_residual, u, args=args), pde_jac(u))
    np.testing.assert_allclose(da.jacobian(pde_residual, u, args=args), pde_jac(u))
    u7, source7, _, _ = pde_point(7)
    np.testing.assert_allclose(
        da.jacobian(pde_residual, u7, args=(source7, left, right)), pde_jac(u7)
    )
    np.testing.assert_allclose(
        da.jacobian(pde_residual, u.astype(np.float32), args=args), pde_jac(u), rtol=1e-6
    )
    # a Dual argument (a derivative with respect to a parameter): the NumPy engine takes it;
    # J does not depend on the boundary value, and the residual's first entry does, by 1 / h**2
    d_jac = da.derivative(lambda a: da.jacobian(pde_residual, u, args=(source, a, right)), left)
    np.testing.assert_array_equal(d_jac, np.zeros((5, 5)))
    d_value = da.derivative(lambda a: da.jvp(pde_residual, u, u, args=(source, a, right))[0], left)
    np.testing.assert_allclose(d_value, [36.0, 0, 0, 0, 0], rtol=1e-12)


def test_empty_like_after_the_function_ran_on_floats_in_a_fresh_process():
    # Numba's own np.empty_like accepts any type; registered before dualad's overloads (by a
    # float compilation first), it turned a DualArray into a 0-d array of them. A fresh process
    # is needed because the order of registration is per process.
    import subprocess
    import sys

    script = (
        "import numpy as np, numba, dualad as da\n"
        "@numba.njit\n"
        "def f(u):\n"
        "    r = np.empty_like(u)\n"
        "    for i in range(len(u)):\n"
        "        r[i] = u[i] ** 3\n"
        "    return r\n"
        "x = np.array([1.0, 2.0])\n"
        "f(x)\n"
        "print(da.jacobian(f, x, engine='numba').tolist())\n"
    )
    command = [sys.executable, "-c", script]
    out = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[[3.0, 0.0], [0.0, 12.0]]"


@numba.njit
def _lowered_in_the_caller(x):
    """First-order operations that dualad lowers inside the caller: element reads (a negative
    index too) and writes, len, shape, dtype, np.empty, operators mixing floats and Duals, a
    constant power and np.sin (whose partial is compiled on its own, in rules.py)."""
    out = np.empty(x.shape[0], x.dtype)
    for i in range(len(x)):
        out[i] = 2.0 * x[i] - x[i] * x[-1 - i] + x[i] ** 2 / 3.0 + np.sin(x[i])
    out[0] = 1.0
    return out


def test_first_order_operations_compile_no_functions_of_their_own(monkeypatch):
    """A first call compiles the driver, f and the rules' partials, not one implementation per
    operation and argument types (each was 40-60 ms of a first call).  K = 11: no other test
    compiles for it, so the operations are typed here for the first time in the process."""
    from numba.core import event

    monkeypatch.setenv("DUALAD_CACHE_DIR", "off")  # a warm disk cache would compile nothing
    compiled = []

    class Listener(event.Listener):
        def on_start(self, ev):  # noqa: ANN001, ANN202
            fn = getattr(ev.data["dispatcher"], "py_func", None)
            if fn is not None:
                compiled.append((fn.__code__.co_filename, fn.__name__))

        def on_end(self, ev):  # noqa: ANN001, ANN202
            pass

    x = np.linspace(0.5, 1.5, 11)
    with event.install_listener("numba:compile", Listener()):
        jac = da.jacobian(_lowered_in_the_caller, x, engine="numba")
    expected = np.zeros((11, 11))  # by hand; row 0 is the constant 1.0
    for i in range(1, 11):
        j = 10 - i
        expected[i, i] += 2.0 - x[j] + 2.0 * x[i] / 3.0 + np.cos(x[i])
        expected[i, j] -= x[i]
    np.testing.assert_allclose(jac, expected, rtol=1e-14, atol=1e-14)
    own = [
        (path, name)
        for path, name in compiled
        if path.startswith("<dualad")
        or path.endswith("drivers.py")
        and name not in ("value_and_jacobian", "set_seed")
    ]
    assert not own, f"compiled as functions of their own: {own}"
