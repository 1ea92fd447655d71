"""A second corpus of ``numba.njit`` functions in the style of public scientific Numba code.

Our own versions of the kinds of function found in astrophysics, molecular dynamics, finance,
statistics, signal processing, ODE right-hand sides, grid stencils, interpolation, geometry,
machine learning and optimisation packages, written the way such code is written (``n, d =
x.shape``, ``np.zeros((n, 3))``, ``axis=`` reductions, helpers called with slices, tuple
returns, index arrays, ``np.linalg`` inside njit, ``prange``, ``math.lgamma``), not the way the
compiled engine was built for.  None is a variation of ``test_numba_realworld.py``'s functions.

``tests/test_numba_realworld2.py`` checks each against central differences; run this module to
measure how many the compiled engine takes::

    PYTHONPATH=src python tests/realworld_corpus.py

Measured on 2026-12-02 (2-core machine, load 8): before the work of this corpus, 19 of its
first 45 functions compiled (16 refused with dualad's message: 13 float allocations, a tuple
return, ``math.lgamma``, ``math.gamma``; 10 stopped with Numba's error: unpacking and iterating a
DualArray, ``np.array`` of Duals, ``np.interp``, ``np.roll``, ``np.cross``, ``np.clip``,
``np.cumprod``, ``np.linalg.det``).  After: 33 of 46 compile; the 13 left are the float
allocations, refused at their line, and each compiles through ``dualad.numba.promote``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np
from numba import prange

RNG = np.random.default_rng(7)

G_CONST = 1.0  # a global constant, as packages keep physical constants
TWO_PI = 2.0 * np.pi
OBS_T = np.linspace(0.0, 2.0, 12)
OBS_Y = 1.3 * np.exp(-0.7 * OBS_T) + 0.05 * RNG.normal(size=12)
DESIGN = RNG.normal(size=(15, 4))
TARGET = (RNG.uniform(size=15) > 0.5).astype(np.float64)
CLASSES = RNG.integers(0, 3, size=10)
FEATURES = RNG.normal(size=(10, 3))
TAPS = np.array([0.1, 0.25, 0.3, 0.25, 0.1])
XGRID = np.linspace(0.0, 1.0, 9)
BONDS = np.array([[0, 1], [1, 2], [2, 3], [3, 0], [0, 2]])
REST = np.array([1.0, 1.0, 1.0, 1.0, 1.4])
CHARGES = np.array([1.0, -1.0, 0.5, -0.5])
TRIS = np.array([[0, 1, 2], [0, 2, 3]])
SAMPLES = RNG.normal(0.5, 1.2, size=25)
COUNTS = np.array([3.0, 0.0, 5.0, 2.0, 7.0, 1.0])
RATES_T = np.array([0.5, 1.0, 2.0, 3.0, 5.0])


# --- astrophysics / orbital ----------------------------------------------------------------------


@numba.njit(fastmath=True)
def nbody_energy(x):
    """Kinetic plus potential energy of bodies, state (n, 6) flattened: pos then vel per row."""
    s = x.reshape((-1, 6))
    n = s.shape[0]
    pos = s[:, :3]
    vel = s[:, 3:]
    ke = 0.5 * np.sum(vel**2)
    pe = 0.0
    for i in range(n):
        for j in range(i + 1, n):
            dx = pos[i, 0] - pos[j, 0]
            dy = pos[i, 1] - pos[j, 1]
            dz = pos[i, 2] - pos[j, 2]
            pe -= G_CONST / np.sqrt(dx * dx + dy * dy + dz * dz)
    return ke + pe


@numba.njit
def nbody_accel(x):
    """Accelerations of n bodies at positions (n, 3), allocated as np.zeros((n, 3))."""
    pos = x.reshape((-1, 3))
    n = pos.shape[0]
    acc = np.zeros((n, 3))
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            d = pos[j] - pos[i]
            r = np.sqrt(np.sum(d * d))
            acc[i] += G_CONST * d / r**3
    return acc


@numba.njit
def kepler_orbit_xy(params):
    """Positions on a Kepler orbit at the observation times: a, e, period; Newton in a loop."""
    a, e, period = params[0], params[1], params[2]
    n = OBS_T.size
    out = np.empty((n, 2))
    for k in range(n):
        m = TWO_PI * OBS_T[k] / period
        ecc = m
        for _ in range(20):
            ecc = ecc - (ecc - e * math.sin(ecc) - m) / (1.0 - e * math.cos(ecc))
        out[k, 0] = a * (math.cos(ecc) - e)
        out[k, 1] = a * math.sqrt(1.0 - e * e) * math.sin(ecc)
    return out


@numba.njit
def radial_velocity(theta):
    """A sinusoidal radial-velocity model's chi-square, unpacked parameters."""
    k, p, phi, v0 = theta
    model = v0 + k * np.sin(TWO_PI * OBS_T / p + phi)
    return np.sum((OBS_Y - model) ** 2)


# --- molecular dynamics / physics ----------------------------------------------------------------


@numba.njit
def spring_network(x):
    """Energy and forces of springs given by an integer bond array: a tuple return."""
    pos = x.reshape((-1, 2))
    forces = np.zeros_like(pos)
    energy = 0.0
    for b in range(BONDS.shape[0]):
        i, j = BONDS[b, 0], BONDS[b, 1]
        d = pos[i] - pos[j]
        r = np.sqrt(d[0] ** 2 + d[1] ** 2)
        stretch = r - REST[b]
        energy += 0.5 * stretch**2
        f = -stretch * d / r
        forces[i] += f
        forces[j] -= f
    return energy, forces


@numba.njit
def coulomb_sum(x):
    """Coulomb energy with charges from a global array, distances via np.linalg.norm of rows."""
    pos = x.reshape((len(CHARGES), 3))
    e = 0.0
    for i in range(len(CHARGES)):
        for j in range(i):
            e += CHARGES[i] * CHARGES[j] / np.linalg.norm(pos[i] - pos[j])
    return e


@numba.njit
def morse_potential(r, d_e, a, r_e):
    return d_e * (1.0 - np.exp(-a * (r - r_e))) ** 2


@numba.njit
def morse_chain(x):
    """A chain of Morse bonds: a helper called with array slices of differences."""
    pos = x.reshape((-1, 3))
    diff = pos[1:] - pos[:-1]
    r = np.sqrt(np.sum(diff**2, axis=1))
    return np.sum(morse_potential(r, 2.0, 1.5, 1.1))


@numba.njit
def pair_distance_matrix(x):
    """The full distance matrix, np.empty((n, n)) filled in loops."""
    pos = x.reshape((-1, 2))
    n = pos.shape[0]
    d = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            d[i, j] = math.sqrt((pos[i, 0] - pos[j, 0]) ** 2 + (pos[i, 1] - pos[j, 1]) ** 2)
    return d


@numba.njit
def harmonic_trap_3d(x):
    """A 3-D array of particle positions (frames, particles, 3) read as a[i, j, k]."""
    a = x.reshape((2, 3, 3))
    e = 0.0
    for f in range(a.shape[0]):
        for p in range(a.shape[1]):
            for k in range(a.shape[2]):
                e += (k + 1.0) * a[f, p, k] ** 2
    return e


# --- statistics ----------------------------------------------------------------------------------


@numba.njit
def gamma_loglik(theta):
    """Log-likelihood of SAMPLES' absolute values under a gamma distribution, math.lgamma."""
    shape = math.exp(theta[0])
    rate = math.exp(theta[1])
    ll = 0.0
    for i in range(SAMPLES.size):
        xi = abs(SAMPLES[i]) + 0.1
        ll += shape * math.log(rate) - math.lgamma(shape) + (shape - 1.0) * math.log(xi) - rate * xi
    return ll


@numba.njit
def poisson_regression_nll(beta):
    """Poisson negative log-likelihood with a log link, lgamma of counts as a constant."""
    eta = beta[0] + beta[1] * RATES_T[:5]
    mu = np.exp(eta)
    nll = 0.0
    for i in range(5):
        nll += mu[i] - COUNTS[i] * eta[i] + math.lgamma(COUNTS[i] + 1.0)
    return nll


@numba.njit
def log_posterior(theta):
    """A log-prior with a -inf branch plus a Gaussian log-likelihood over the observations."""
    amp, rate, log_sigma = theta[0], theta[1], theta[2]
    if amp <= 0.0 or rate <= 0.0:
        return -np.inf
    sigma = np.exp(log_sigma)
    model = amp * np.exp(-rate * OBS_T)
    resid = OBS_Y - model
    ll = -0.5 * np.sum(resid**2) / sigma**2 - OBS_T.size * np.log(sigma)
    return ll - 0.5 * (log_sigma / 2.0) ** 2


@numba.njit
def gaussian_mixture_nll(theta):
    """Two-component mixture: an (n, 2) array of log-densities, a logsumexp per row."""
    w = 1.0 / (1.0 + np.exp(-theta[0]))
    mu = theta[1:3]
    n = SAMPLES.size
    logp = np.empty((n, 2))
    for i in range(n):
        for k in range(2):
            z = SAMPLES[i] - mu[k]
            logp[i, k] = -0.5 * z * z - 0.5 * np.log(TWO_PI)
        logp[i, 0] += np.log(w)
        logp[i, 1] += np.log(1.0 - w)
    total = 0.0
    for i in range(n):
        m = logp[i].max()
        total += m + np.log(np.sum(np.exp(logp[i] - m)))
    return -total


@numba.njit
def weighted_kde(x, data, bw):
    """Kernel density at the points x from data with one bandwidth: an extra-argument function."""
    out = np.zeros(x.size)
    norm = 1.0 / (data.size * bw * math.sqrt(TWO_PI))
    for j in range(data.size):
        u = (x - data[j]) / bw
        out += np.exp(-0.5 * u * u)
    return out * norm


@numba.njit
def student_t_loglik(theta):
    """Student-t log-likelihood with math.gamma of the degrees of freedom."""
    loc, log_scale, nu = theta[0], theta[1], theta[2]
    scale = math.exp(log_scale)
    c = math.gamma((nu + 1.0) / 2.0) / (math.gamma(nu / 2.0) * math.sqrt(nu * math.pi) * scale)
    z = (SAMPLES - loc) / scale
    return SAMPLES.size * math.log(c) - (nu + 1.0) / 2.0 * np.sum(np.log1p(z * z / nu))


@numba.njit
def column_standardise(x):
    """Column means and standard deviations of a (n, 3) array by np.sum(axis=0)."""
    a = x.reshape((-1, 3))
    mu = np.sum(a, axis=0) / a.shape[0]
    sd = np.sqrt(np.sum((a - mu) ** 2, axis=0) / a.shape[0])
    return (a - mu) / sd


# --- signal processing ---------------------------------------------------------------------------


@numba.njit
def fir_filter(x):
    """A causal FIR filter by loops over global taps."""
    n = x.size
    m = TAPS.size
    y = np.zeros_like(x)
    for i in range(n):
        acc = 0.0
        for k in range(m):
            if i - k >= 0:
                acc += TAPS[k] * x[i - k]
        y[i] = acc
    return y


@numba.njit
def moving_average_cumsum(x):
    """A moving average of width 3 by a cumulative sum."""
    c = np.cumsum(x)
    out = np.empty(x.size - 2)
    out[0] = c[2]
    out[1:] = c[3:] - c[:-3]
    return out / 3.0


@numba.njit
def autocorrelation(x):
    """Normalised autocorrelation at the first lags, with np.dot of shifted slices."""
    d = x - np.mean(x)
    var = np.dot(d, d)
    lags = 4
    out = np.empty(lags)
    for k in range(lags):
        out[k] = np.dot(d[: x.size - k], d[k:]) / var
    return out


@numba.njit
def biquad(x):
    """A second-order IIR section run over the signal, state in scalars."""
    b0, b1, b2, a1, a2 = 0.2, 0.4, 0.2, -0.5, 0.3
    y = np.empty_like(x)
    x1 = x2 = y1 = y2 = 0.0
    for i in range(x.size):
        yi = b0 * x[i] + b1 * x1 + b2 * x2 - a1 * y1 - a2 * y2
        x2, x1 = x1, x[i]
        y2, y1 = y1, yi
        y[i] = yi
    return y


# --- ODE right-hand sides and grids --------------------------------------------------------------


@numba.njit
def sir_rhs(y):
    """The SIR model's right-hand side returned as np.array of three scalars."""
    s, i, r = y[0], y[1], y[2]
    beta, gamma = 0.3, 0.1
    n = s + i + r
    return np.array([-beta * s * i / n, beta * s * i / n - gamma * i, gamma * i])


@numba.njit
def robertson_kinetics(y):
    """Stiff chemical kinetics (Robertson), out = np.empty(3) filled element by element."""
    out = np.empty(3)
    out[0] = -0.04 * y[0] + 1.0e4 * y[1] * y[2]
    out[2] = 3.0e7 * y[1] ** 2
    out[1] = -out[0] - out[2]
    return out


@numba.njit
def heat_equation_2d(u_flat):
    """The 5-point Laplacian of a 2-D grid with zero boundary, by slices of a reshaped array."""
    nx = 5
    u = u_flat.reshape((nx, nx))
    du = np.zeros((nx, nx))
    du[1:-1, 1:-1] = u[2:, 1:-1] + u[:-2, 1:-1] + u[1:-1, 2:] + u[1:-1, :-2] - 4.0 * u[1:-1, 1:-1]
    return du.ravel()


@numba.njit
def shallow_water_1d(q):
    """Flux differences of the 1-D shallow-water equations, state (2, n): h and hu."""
    g = 9.81
    n = q.size // 2
    h = q[:n]
    hu = q[n:]
    u = hu / h
    f1 = hu
    f2 = hu * u + 0.5 * g * h * h
    out = np.zeros(2 * n)
    out[1:n] = -(f1[1:] - f1[:-1])
    out[n + 1 :] = -(f2[1:] - f2[:-1])
    return out


@numba.njit(parallel=True)
def reaction_diffusion(u):
    """A prange loop over a periodic 1-D grid with a cubic reaction term."""
    n = u.size
    out = np.empty_like(u)
    for i in prange(n):
        left = u[(i - 1) % n]
        right = u[(i + 1) % n]
        out[i] = 0.1 * (left - 2.0 * u[i] + right) + u[i] - u[i] ** 3
    return out


@numba.njit
def lotka_volterra_rhs(z):
    """Predator-prey dynamics, unpacked with x, y = z."""
    x, y = z
    return np.array([1.1 * x - 0.4 * x * y, 0.1 * x * y - 0.4 * y])


# --- image / grid stencils, interpolation --------------------------------------------------------


@numba.njit
def total_variation(x):
    """Smoothed total variation of a 4x4 image, with np.diff on both axes."""
    img = x.reshape((4, 4))
    gx = img[1:, :-1] - img[:-1, :-1]
    gy = img[:-1, 1:] - img[:-1, :-1]
    return np.sum(np.sqrt(gx**2 + gy**2 + 1e-3))


@numba.njit
def linear_interp_loss(y):
    """Values y on XGRID interpolated at fixed points by np.interp, squared error to a target."""
    xs = np.linspace(0.05, 0.95, 7)
    yi = np.interp(xs, XGRID, y)
    return np.sum((yi - np.sin(xs)) ** 2)


@numba.njit
def piecewise_eval(knots_y):
    """Piecewise-linear evaluation by np.searchsorted and explicit weights."""
    xs = np.array([0.1, 0.33, 0.5, 0.72, 0.9])
    out = np.empty(xs.size)
    for k in range(xs.size):
        j = np.searchsorted(XGRID, xs[k]) - 1
        t = (xs[k] - XGRID[j]) / (XGRID[j + 1] - XGRID[j])
        out[k] = (1.0 - t) * knots_y[j] + t * knots_y[j + 1]
    return out


@numba.njit
def catmull_rom(p):
    """A Catmull-Rom spline through the control values, evaluated at 4 points per segment."""
    n = p.size
    out = np.empty((n - 3) * 4)
    k = 0
    for i in range(1, n - 2):
        for s in range(4):
            t = s / 4.0
            t2 = t * t
            t3 = t2 * t
            out[k] = 0.5 * (
                2.0 * p[i]
                + (-p[i - 1] + p[i + 1]) * t
                + (2.0 * p[i - 1] - 5.0 * p[i] + 4.0 * p[i + 1] - p[i + 2]) * t2
                + (-p[i - 1] + 3.0 * p[i] - 3.0 * p[i + 1] + p[i + 2]) * t3
            )
            k += 1
    return out


# --- geometry ------------------------------------------------------------------------------------


@numba.njit
def polygon_area(xy):
    """Shoelace area of a polygon given as (n, 2) vertices, with np.roll."""
    v = xy.reshape((-1, 2))
    x = v[:, 0]
    y = v[:, 1]
    return 0.5 * np.abs(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


@numba.njit
def triangle_mesh_area(x):
    """Total area of a triangle mesh from an index array, by cross products."""
    pts = x.reshape((-1, 3))
    total = 0.0
    for t in range(TRIS.shape[0]):
        a = pts[TRIS[t, 0]]
        b = pts[TRIS[t, 1]]
        c = pts[TRIS[t, 2]]
        cr = np.cross(b - a, c - a)
        total += 0.5 * np.sqrt(np.dot(cr, cr))
    return total


@numba.njit
def polyline_length(x):
    """Length of a 2-D polyline: row differences and np.hypot of the columns."""
    p = x.reshape((-1, 2))
    d = p[1:] - p[:-1]
    return np.sum(np.hypot(d[:, 0], d[:, 1]))


# --- machine learning ----------------------------------------------------------------------------


@numba.njit
def mlp_forward(w):
    """A one-hidden-layer MLP's squared loss on DESIGN, weights unpacked from one vector."""
    n_in, n_hidden = 4, 3
    w1 = w[: n_in * n_hidden].reshape((n_in, n_hidden))
    b1 = w[n_in * n_hidden : n_in * n_hidden + n_hidden]
    w2 = w[n_in * n_hidden + n_hidden :]
    h = np.tanh(np.dot(DESIGN, w1) + b1)
    pred = np.dot(h, w2)
    return np.mean((pred - TARGET) ** 2)


@numba.njit
def softmax_cross_entropy(w):
    """Multinomial logistic loss, logits = FEATURES @ W, a log-sum-exp per row."""
    W = w.reshape((3, 3))
    logits = FEATURES @ W
    loss = 0.0
    for i in range(logits.shape[0]):
        row = logits[i]
        m = row.max()
        lse = m + np.log(np.sum(np.exp(row - m)))
        loss += lse - row[CLASSES[i]]
    return loss / logits.shape[0]


@numba.njit
def logistic_nll_matmul(beta):
    """Binary logistic regression with @, np.clip of probabilities and np.log."""
    p = 1.0 / (1.0 + np.exp(-(DESIGN @ beta)))
    p = np.clip(p, 1e-12, 1.0 - 1e-12)
    return -np.sum(TARGET * np.log(p) + (1.0 - TARGET) * np.log(1.0 - p))


@numba.njit
def relu_layer(w):
    """A ReLU layer with np.maximum, then the row sums of its output."""
    W = w.reshape((4, 2))
    z = np.maximum(DESIGN @ W, 0.0)
    return np.sum(z, axis=1)


@numba.njit
def svm_hinge_loss(w):
    """Hinge loss over the margin violators, selected by a boolean mask, plus an L2 penalty."""
    margins = (2.0 * TARGET - 1.0) * (DESIGN @ w)
    active = margins < 1.0
    return np.sum(1.0 - margins[active]) + 0.1 * np.sum(w[np.array([0, 1, 2, 3])] ** 2)


# --- finance -------------------------------------------------------------------------------------


@numba.njit
def portfolio_variance(w):
    """w' C w with the covariance built from returns in the function."""
    rets = DESIGN[:, :3]
    cov = np.cov(rets.T)
    return w @ cov @ w


@numba.njit
def binomial_tree_price(params):
    """A European call on a recombining binomial tree; np.maximum on the terminal payoffs."""
    s0, vol = params[0], params[1]
    k, r, t, steps = 100.0, 0.02, 1.0, 20
    dt = t / steps
    u = math.exp(vol * math.sqrt(dt))
    d = 1.0 / u
    p = (math.exp(r * dt) - d) / (u - d)
    j = np.arange(steps + 1)
    v = np.maximum(s0 * u**j * d ** (steps - j) - k, 0.0)
    for _ in range(steps):
        v = math.exp(-r * dt) * (p * v[1:] + (1.0 - p) * v[:-1])
    return v[0]


@numba.njit
def discounted_cashflows(rates):
    """Present value of cash flows with a term structure of rates: np.exp(-r t), np.cumprod."""
    df = np.exp(-rates * RATES_T)
    fwd = np.cumprod(1.0 / (1.0 + 0.1 * rates))
    return np.sum(df * fwd * 10.0)


# --- optimisation test functions -----------------------------------------------------------------


@numba.njit
def rastrigin(x):
    return 10.0 * x.size + np.sum(x**2 - 10.0 * np.cos(TWO_PI * x))


@numba.njit
def ackley(x):
    n = x.size
    s1 = np.sum(x * x)
    s2 = np.sum(np.cos(TWO_PI * x))
    return -20.0 * np.exp(-0.2 * np.sqrt(s1 / n)) - np.exp(s2 / n) + 20.0 + math.e


@numba.njit
def styblinski_tang(x):
    total = 0.0
    for xi in x:
        total += xi**4 - 16.0 * xi**2 + 5.0 * xi
    return total / 2.0


@numba.njit
def linear_solve_residual(x):
    """The solution of a 3x3 system whose matrix depends on x: np.linalg.solve inside njit."""
    a = np.eye(3) * 4.0
    a[0, 1] = x[0]
    a[1, 2] = x[1]
    a[2, 0] = x[2]
    return np.linalg.solve(a, np.ones(3))


@numba.njit
def log_det_matrix(x):
    """log|det A| of a 3x3 matrix from nine parameters."""
    return np.log(np.abs(np.linalg.det(x.reshape((3, 3)))))


# --- the corpus ----------------------------------------------------------------------------------


@dataclass
class Case:
    """One function of the corpus at a point (and its extra arguments)."""

    f: Any
    x: np.ndarray
    args: tuple[Any, ...] = ()
    fd_rtol: float = 1e-6
    notes: str = ""
    tags: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.f.__name__


def _points(n: int, lo: float = 0.2, hi: float = 1.5) -> np.ndarray:
    return np.random.default_rng(n).uniform(lo, hi, size=n)


_BODIES = np.array([0.0, 0.0, 0.0, 0.1, 0.2, 0.0, 1.0, 0.2, 0.1, 0.0, -0.3, 0.1,
                    0.3, 1.1, -0.2, 0.2, 0.0, 0.1])  # fmt: skip
_POLY = np.array([0.0, 0.0, 2.0, 0.1, 2.2, 1.5, 1.0, 2.3, -0.2, 1.4])

CASES = [
    Case(nbody_energy, _BODIES),
    Case(nbody_accel, _points(9, -1.0, 1.0)),
    Case(kepler_orbit_xy, np.array([1.3, 0.2, 1.7])),
    Case(radial_velocity, np.array([1.2, 1.9, 0.3, 0.1])),
    Case(spring_network, np.array([0.0, 0.0, 1.1, 0.1, 1.0, 1.2, -0.1, 0.9])),
    Case(coulomb_sum, _points(12, -1.0, 1.0)),
    Case(morse_chain, _points(12, -1.0, 1.0)),
    Case(pair_distance_matrix, _points(8, -1.0, 1.0)),
    Case(harmonic_trap_3d, _points(18, -1.0, 1.0)),
    Case(gamma_loglik, np.array([0.4, -0.2])),
    Case(poisson_regression_nll, np.array([0.3, 0.2])),
    Case(log_posterior, np.array([1.2, 0.6, -1.0])),
    Case(gaussian_mixture_nll, np.array([0.3, -0.2, 1.4])),
    Case(weighted_kde, np.array([0.1, 0.7, 1.9]), args=(SAMPLES, 0.4)),
    Case(student_t_loglik, np.array([0.4, 0.1, 4.0])),
    Case(column_standardise, _points(12)),
    Case(fir_filter, _points(8)),
    Case(moving_average_cumsum, _points(7)),
    Case(autocorrelation, _points(9)),
    Case(biquad, _points(7)),
    Case(sir_rhs, np.array([990.0, 10.0, 0.5])),
    Case(robertson_kinetics, np.array([1.0, 2e-5, 0.01]), fd_rtol=1e-5),
    Case(heat_equation_2d, _points(25)),
    Case(shallow_water_1d, np.concatenate((_points(5, 1.0, 2.0), _points(5, -0.3, 0.3)))),
    Case(reaction_diffusion, _points(6, -1.0, 1.0)),
    Case(lotka_volterra_rhs, np.array([10.0, 5.0])),
    Case(total_variation, _points(16)),
    Case(linear_interp_loss, _points(9)),
    Case(piecewise_eval, _points(9)),
    Case(catmull_rom, _points(7)),
    Case(polygon_area, _POLY),
    Case(triangle_mesh_area, np.array([0.0, 0, 0, 1, 0, 0.1, 1.2, 1.1, 0, -0.1, 1.0, 0.2])),
    Case(polyline_length, _POLY),
    Case(mlp_forward, _points(18, -0.8, 0.8)),
    Case(softmax_cross_entropy, _points(9, -1.0, 1.0)),
    Case(logistic_nll_matmul, np.array([0.2, -0.4, 0.3, 0.1])),
    Case(svm_hinge_loss, np.array([0.3, -0.2, 0.5, 0.1])),
    Case(relu_layer, np.array([0.5, -0.3, 0.8, 0.2, -0.6, 0.4, 0.1, -0.9])),
    Case(portfolio_variance, np.array([0.3, 0.5, 0.2])),
    Case(binomial_tree_price, np.array([101.3, 0.25]), fd_rtol=1e-5),
    Case(discounted_cashflows, np.array([0.01, 0.015, 0.02, 0.025, 0.03])),
    Case(rastrigin, _points(5, -1.0, 1.0)),
    Case(ackley, _points(5, -1.0, 1.0)),
    Case(styblinski_tang, _points(5, -1.0, 1.0)),
    Case(linear_solve_residual, np.array([0.5, -0.3, 0.8])),
    Case(log_det_matrix, np.array([2.0, 0.3, 0.1, 0.2, 1.5, -0.4, 0.0, 0.6, 1.8])),
]


def central(f: Any, x: np.ndarray, args: tuple[Any, ...] = (), h: float = 1e-6) -> Any:
    """Central differences of ``f`` (a tuple of Jacobians for a tuple output)."""
    y = f(x, *args)
    if isinstance(y, tuple):
        return tuple(central(lambda z, *a, i=i: f(z, *a)[i], x, args, h) for i in range(len(y)))
    cols = []
    for j in range(x.size):
        e = np.zeros_like(x)
        e.flat[j] = h
        cols.append((np.asarray(f(x + e, *args)) - np.asarray(f(x - e, *args))) / (2 * h))
    return np.stack(cols, axis=-1).reshape(np.shape(y) + x.shape)


def agrees(jac: Any, fd: Any, rtol: float) -> bool:
    if isinstance(fd, tuple):
        return isinstance(jac, tuple) and all(agrees(a, b, rtol) for a, b in zip(jac, fd))
    fd = np.asarray(fd)
    return np.allclose(jac, fd, rtol=rtol, atol=rtol * max(1.0, np.abs(fd).max()))


def classify(case: Case) -> tuple[str, str]:
    """("compiled" | "refused" | "numba error" | "wrong" | "other", detail) for one case."""
    import warnings

    import dualad as da
    from dualad.numba import NotCompilable

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            _, jac = da.value_and_jacobian(case.f, case.x, args=case.args, engine="numba")
        if not agrees(jac, central(case.f.py_func, case.x, case.args), case.fd_rtol):
            return "wrong", "the Jacobian disagrees with central differences"
    except da.DualError as exc:
        return "refused", str(exc).splitlines()[0][:160]
    except NotCompilable as exc:
        tail = str(exc).split("dualad: compiling")[-1]
        return "numba error", tail.strip().splitlines()[0][:200]
    except Exception as exc:  # noqa: BLE001 - a measurement: every kind of failure is counted
        return "other", f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
    return "compiled", ""


if __name__ == "__main__":
    import sys
    import time

    names = sys.argv[1:]
    counts: dict[str, int] = {}
    for case in CASES:
        if names and case.name not in names:
            continue
        start = time.perf_counter()
        kind, detail = classify(case)
        counts[kind] = counts.get(kind, 0) + 1
        seconds = time.perf_counter() - start
        print(f"{case.name:24s} {kind:12s} {seconds:5.1f}s {detail}", flush=True)
    total = sum(counts.values())
    print(f"\n{counts.get('compiled', 0)} of {total} compiled; {counts}")
