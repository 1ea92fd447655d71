"""Scientific ``numba.njit`` code as people write it, differentiated by the compiled engine.

Our own versions of the kinds of function found in public Numba code (distance metrics,
statistics, orbital mechanics, molecular dynamics, option pricing, inequality measures, PDE
residuals), mixing loops with array expressions, slices, reductions, ``math.*`` calls, ``while``
Newton iterations, njit helpers and dispatcher options (``fastmath``, ``cache``, ``parallel``,
``prange``).  Each must compile for Duals (a fallback warning fails the test) and its Jacobian
must agree with central differences and with the NumPy engine on the same source; where the source
calls ``math.*`` (which the NumPy engine cannot run on Duals) with a derivative written out.
"""

import math
import warnings

import numpy as np
import pytest

numba = pytest.importorskip("numba")

import dualad as da  # noqa: E402

RNG = np.random.default_rng(20261202)
DATA = RNG.normal(1.5, 0.7, size=40)  # a global float array the functions close over
DESIGN = RNG.normal(size=(30, 5))
LABELS = np.where(RNG.uniform(size=30) > 0.5, 1.0, -1.0)
MASS = np.array([1.0, 0.5, 2.0, 1.5])
COEF = np.array([0.5, -1.0, 0.25, 2.0, -0.3])


def central(f, x, h=1e-6):
    cols = []
    flat = x.ravel()
    for j in range(flat.size):
        e = np.zeros_like(flat)
        e[j] = h
        up = np.asarray(f((flat + e).reshape(x.shape)))
        down = np.asarray(f((flat - e).reshape(x.shape)))
        cols.append((up - down) / (2 * h))
    return np.stack(cols, axis=-1).reshape(np.shape(f(x)) + x.shape)


def compiled(f, x):
    """The compiled engine's value and Jacobian; any warning (a fallback) fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return da.value_and_jacobian(f, x, engine="numba")


def check(f, x, numpy_engine=True, fd_rtol=1e-6):
    value, jac = compiled(f, x)
    np.testing.assert_allclose(value, f.py_func(x), rtol=1e-12, atol=1e-12)
    if numpy_engine:
        ref_value, ref = da.value_and_jacobian(f.py_func, x, engine="numpy")
        np.testing.assert_allclose(value, ref_value, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(jac, ref, rtol=1e-10, atol=1e-10 * max(1.0, np.abs(ref).max()))
    fd = central(f.py_func, x)
    np.testing.assert_allclose(jac, fd, rtol=fd_rtol, atol=fd_rtol * max(1.0, np.abs(fd).max()))
    return jac


# --- distances and potentials on (n, 3) positions ------------------------------------------------

POSITIONS = np.array(
    [[0.0, 0.1, -0.2], [1.1, 0.3, 0.2], [0.2, 1.2, 0.4], [0.9, 1.0, 1.3]]
)  # fmt: skip


@numba.njit
def coulomb_energy(x):
    """Pairwise 1/r with an accumulator and a row difference per pair."""
    n = x.shape[0]
    e = 0.0
    for i in range(n):
        for j in range(i + 1, n):
            d = x[i, :] - x[j, :]
            e += 1.0 / np.sqrt(np.sum(d * d))
    return e


@numba.njit
def distance_sums(x):
    """Each point's summed distance to the others, accumulated into a new array."""
    n = x.shape[0]
    acc = np.zeros_like(x[:, 0])
    for i in range(n):
        for j in range(n):
            if i != j:
                acc[i] += np.linalg.norm(x[i] - x[j])
    return acc


@numba.njit
def lennard_jones_forces(x):
    """Forces of a Lennard-Jones pair potential, written with slices of an (n, 3) array."""
    n = x.shape[0]
    f = np.zeros_like(x)
    for i in range(n):
        for j in range(i + 1, n):
            d = x[i] - x[j]
            r2 = np.sum(d * d)
            inv6 = 1.0 / r2**3
            s = 24.0 * (2.0 * inv6 * inv6 - inv6) / r2
            f[i, :] += s * d
            f[j, :] -= s * d
    return f


@numba.njit
def _pair_acceleration(d, m):
    return m * d / (np.sum(d * d) + 0.01) ** 1.5


@numba.njit
def nbody_accelerations(x):
    """Softened gravity; the pair term is another njit function taking array arguments."""
    n = x.shape[0]
    a = np.zeros_like(x)
    for i in range(n):
        for j in range(n):
            if i != j:
                a[i] += _pair_acceleration(x[j] - x[i], MASS[j])
    return a.ravel()


@pytest.mark.parametrize(
    "f", [coulomb_energy, distance_sums, lennard_jones_forces, nbody_accelerations]
)
def test_particles(f):
    # The NumPy engine runs f.py_func, which calls the njit helper: on Duals that needs the work
    # of issue 11's other half (the NumPy engine running a helper's py_func); not compared yet.
    check(f, POSITIONS, numpy_engine=f is not nbody_accelerations)


# --- statistics ----------------------------------------------------------------------------------


@numba.njit
def normal_loglik(theta):
    """Log-likelihood of the global DATA under N(mu, exp(log_sigma)**2), in array math."""
    mu, sigma = theta[0], np.exp(theta[1])
    z = (DATA - mu) / sigma
    return -0.5 * np.sum(z * z) - DATA.size * np.log(sigma) - 0.5 * DATA.size * np.log(2 * np.pi)


@numba.njit
def softmax(x):
    e = np.exp(x - np.max(x))
    return e / np.sum(e)


@numba.njit
def gini(x):
    """Gini coefficient of positive incomes from the sorted cumulative sum."""
    s = np.sort(x)
    c = np.cumsum(s)
    n = x.size
    return (n + 1 - 2.0 * np.sum(c) / c[-1]) / n


@numba.njit
def kde_loglik(x):
    """Gaussian kernel density of the data at the points x, a loop over data of array terms."""
    h = 0.4
    dens = np.zeros_like(x)
    for i in range(DATA.size):
        u = (x - DATA[i]) / h
        dens += np.exp(-0.5 * u * u)
    return np.sum(np.log(dens / (DATA.size * h * math.sqrt(2.0 * math.pi))))


@numba.njit
def logistic_loss(w):
    z = DESIGN @ w
    return np.sum(np.log1p(np.exp(-LABELS * z))) + 0.05 * np.dot(w, w)


@numba.njit
def zscore_moments(x):
    z = (x - x.mean()) / x.std()
    return np.array([0.0, 1.0, 2.0]) + np.mean(z**3) * np.ones(3) + np.var(z[1:]) * COEF[:3]


@pytest.mark.parametrize(
    "f, x",
    [
        (normal_loglik, np.array([1.2, -0.3])),
        (softmax, np.array([0.3, -1.2, 2.0, 0.7, 0.1])),
        (gini, np.array([3.0, 1.0, 4.0, 1.5, 9.0, 2.6])),
        (kde_loglik, np.array([0.5, 1.4, 2.2])),
        (logistic_loss, np.array([0.2, -0.5, 0.3, 0.8, -0.1])),
        (zscore_moments, np.array([0.3, -1.2, 2.0, 0.7, 0.1, 1.1])),
    ],
    ids=["normal_loglik", "softmax", "gini", "kde", "logistic", "zscore"],
)
def test_statistics(f, x):
    check(f, x)


# --- orbital mechanics ---------------------------------------------------------------------------


@numba.njit
def kepler_vector(x):
    """Eccentric anomalies for mean anomalies x[:-1] and eccentricity x[-1], by a while loop
    of whole-array Newton steps."""
    m = x[:-1]
    e = x[-1]
    ea = m.copy()
    step = np.ones_like(m)
    it = 0
    while np.max(np.abs(step)) > 1e-15 and it < 50:
        step = (ea - e * np.sin(ea) - m) / (1.0 - e * np.cos(ea))
        ea = ea - step
        it += 1
    return ea


@numba.njit
def kepler_scalar(x):
    """The same with math.* on one element at a time."""
    out = np.empty_like(x[:-1])
    e = x[-1]
    for i in range(x.size - 1):
        ea = x[i]
        for _ in range(30):
            ea = ea - (ea - e * math.sin(ea) - x[i]) / (1.0 - e * math.cos(ea))
        out[i] = ea
    return out


def kepler_jacobian(x, ea):
    """dE/dM = 1 / (1 - e cos E), dE/de = sin E / (1 - e cos E), from differentiating Kepler."""
    e = x[-1]
    q = 1.0 - e * np.cos(ea)
    jac = np.zeros((ea.size, x.size))
    jac[np.arange(ea.size), np.arange(ea.size)] = 1.0 / q
    jac[:, -1] = np.sin(ea) / q
    return jac


@pytest.mark.parametrize("f", [kepler_vector, kepler_scalar])
def test_kepler_newton(f):
    x = np.array([0.3, 1.7, 4.0, 0.4])
    jac = check(f, x, numpy_engine=f is kepler_vector)
    np.testing.assert_allclose(jac, kepler_jacobian(x, f.py_func(x)), rtol=1e-12, atol=1e-14)


@numba.njit
def two_body(y):
    """dy/dt of the two-body problem, state (r, v), returned as one stacked array."""
    r = y[:3]
    v = y[3:]
    a = -1.5 * r / np.linalg.norm(r) ** 3
    return np.concatenate((v, a))


def test_two_body_rhs():
    y = np.array([1.0, 0.2, -0.1, 0.05, 1.1, 0.3])
    jac = check(two_body, y)
    r = y[:3]
    rn = np.linalg.norm(r)
    expected = -1.5 * (np.eye(3) / rn**3 - 3.0 * np.outer(r, r) / rn**5)
    np.testing.assert_allclose(jac[3:, :3], expected, rtol=1e-13)


# --- finance -------------------------------------------------------------------------------------


@numba.njit(fastmath=True)
def _ncdf(z):
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


@numba.njit(fastmath=True, cache=True)
def black_scholes(x):
    """European call prices for spot x[0], rate x[1], volatility x[2], strikes x[3:]."""
    s, r, v = x[0], x[1], x[2]
    t = 0.75
    out = np.empty_like(x[3:])
    for i in range(x.size - 3):
        k = x[3 + i]
        d1 = (math.log(s / k) + (r + 0.5 * v * v) * t) / (v * math.sqrt(t))
        d2 = d1 - v * math.sqrt(t)
        out[i] = s * _ncdf(d1) - k * math.exp(-r * t) * _ncdf(d2)
    return out


def test_black_scholes_delta_and_dual_delta():
    x = np.array([100.0, 0.03, 0.25, 90.0, 100.0, 115.0])
    jac = check(black_scholes, x, numpy_engine=False, fd_rtol=1e-5)
    s, r, v, t = 100.0, 0.03, 0.25, 0.75
    k = x[3:]
    d1 = (np.log(s / k) + (r + 0.5 * v * v) * t) / (v * np.sqrt(t))
    ncdf = np.vectorize(lambda z: 0.5 * (1.0 + math.erf(z / math.sqrt(2.0))))
    np.testing.assert_allclose(jac[:, 0], ncdf(d1), rtol=1e-12)  # delta = N(d1)
    d2 = d1 - v * np.sqrt(t)
    np.testing.assert_allclose(np.diag(jac[:, 3:]), -np.exp(-r * t) * ncdf(d2), rtol=1e-12)


# --- PDEs, polynomials, parallel loops -----------------------------------------------------------


@numba.njit
def bratu_residual(u):
    """Residual of u'' + exp(u) = 0 on a grid, with slices and slice assignment."""
    h2 = 1.0 / (u.size - 1) ** 2
    r = np.empty_like(u)
    r[1:-1] = (u[:-2] - 2.0 * u[1:-1] + u[2:]) / h2 + np.exp(u[1:-1])
    r[0] = u[0]
    r[-1] = u[-1]
    return r


@numba.njit
def horner(x):
    """A polynomial with global coefficients at each x, by a while loop."""
    acc = np.zeros_like(x)
    i = 0
    while i < COEF.size:
        acc = acc * x + COEF[i]
        i += 1
    return acc


@numba.njit(parallel=True, fastmath=True)
def pendulum_chain(x):
    """A prange loop of scalar math over a chain, plus a vectorised coupling term."""
    n = x.size
    out = np.empty_like(x)
    for i in numba.prange(n):
        out[i] = -9.81 * np.sin(x[i])
    out[1:] += 0.5 * (x[:-1] - x[1:])
    return out


@numba.njit
def rosenbrock_vector(x):
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


@pytest.mark.parametrize(
    "f, x",
    [
        (bratu_residual, np.linspace(0.0, 0.3, 7)),
        (horner, np.array([0.3, -1.2, 2.0, 0.7])),
        (pendulum_chain, np.array([0.3, -1.2, 2.0, 0.7, 0.1])),
        (rosenbrock_vector, np.array([0.3, -1.2, 2.0, 0.7, 0.1, 1.3])),
    ],
    ids=["bratu", "horner", "pendulum_prange", "rosenbrock_vector"],
)
def test_grids_polynomials_parallel(f, x):
    check(f, x)


def test_the_users_dispatcher_keeps_its_options_and_float_signatures():
    x = np.array([0.3, -1.2, 2.0, 0.7, 0.1])
    compiled(pendulum_chain, x)
    assert pendulum_chain.targetoptions.get("parallel")
    assert all("Dual" not in str(sig) for sig in pendulum_chain.signatures)
    np.testing.assert_allclose(pendulum_chain(x), pendulum_chain.py_func(x), rtol=1e-12)


@numba.njit(parallel=True)
def _sum_squares_parallel(v):
    s = 0.0
    for i in numba.prange(v.size):
        s += v[i] * v[i]
    return s


@numba.njit
def ridge_penalised(x):
    """A helper with parallel=True and a prange reduction, called with a DualArray."""
    return np.sum((x - 1.0) ** 2) + 0.1 * _sum_squares_parallel(x)


def test_a_parallel_helper_with_a_prange_reduction():
    x = np.array([0.3, -1.2, 2.0, 0.7])
    jac = check(ridge_penalised, x, numpy_engine=False)  # NumPy engine: see test_particles
    np.testing.assert_allclose(jac, 2.0 * (x - 1.0) + 0.2 * x, rtol=1e-14)
    assert _sum_squares_parallel.targetoptions.get("parallel")  # the user's helper is unchanged
