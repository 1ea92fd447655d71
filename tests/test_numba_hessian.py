"""Compiled Hessians and HVPs through the public API: forward over reverse (dualad.numba.adjoint
on Duals), with the nested Duals of dualad.numba.second where that cannot record f (see
test_numba_fwdrev.py, which also checks the two paths against each other).

Each result is checked against a hand-derived Hessian, the NumPy engine's forward-over-forward
Hessian of the same source, exact symmetry, and ``hvp`` against ``hessian @ v``.  Every function
is compiled once, with chunk size 2 (a few seconds each under load), so the inputs stay small.
"""

import math
import warnings

import numba
import numpy as np
import pytest
from test_api import rosenbrock_hess

import dualad as da

K = 2
X = np.array([0.3, -1.2, 0.8, 1.5, -0.4])


@numba.njit
def rosenbrock(x):
    s = 0.0
    for i in range(x.shape[0] - 1):
        s += 100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2
    return s


@numba.njit
def _pair(a, b):
    return np.exp(a) * np.sin(b) / (1.0 + a * a)


@numba.njit
def mixed(x):
    """Transcendental functions, a quotient, a float power and a helper, on a 2-D input."""
    s = 0.0
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            s += _pair(x[i, j], x[(i + 1) % x.shape[0], j]) + abs(x[i, j]) ** 1.5
    return s + np.sqrt(x[0, 0] ** 2 + 1.0)


def assert_close(actual, expected, rtol=1e-12):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    scale = float(np.max(np.abs(expected), initial=1.0))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


@pytest.fixture(autouse=True)
def compiled_only():
    """These must run compiled: a fallback to the NumPy engine fails the test."""
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="dualad could not compile")
        yield


def test_rosenbrock_hessian():
    h = da.hessian(rosenbrock, X, chunk_size=K)
    assert_close(h, rosenbrock_hess(X))
    assert_close(h, da.hessian(rosenbrock, X, engine="numpy"))
    np.testing.assert_array_equal(h, h.T)  # one number for both triangles


def test_rosenbrock_hvp():
    v = np.array([1.0, -2.0, 0.5, 0.0, 3.0])
    assert_close(da.hvp(rosenbrock, X, v), rosenbrock_hess(X) @ v)
    vs = np.stack([v, np.ones(5)], axis=-1)  # two directions in one call
    assert_close(da.hvp(rosenbrock, X, vs), rosenbrock_hess(X) @ vs)


def test_mixed_functions_on_a_matrix():
    x = np.array([[0.4, -0.7, 1.1], [0.9, 0.2, -1.3]])
    h = da.hessian(mixed, x, chunk_size=K)
    assert h.shape == (2, 3, 2, 3)
    assert_close(h, da.hessian(mixed, x, engine="numpy"))
    flat = h.reshape(6, 6)
    np.testing.assert_array_equal(flat, flat.T)
    # against central differences of the (compiled) gradient
    step, columns = 1e-6, []
    for j in range(6):
        e = np.zeros(6)
        e[j] = step
        up = da.gradient(mixed.py_func, x + e.reshape(2, 3), engine="numpy")
        down = da.gradient(mixed.py_func, x - e.reshape(2, 3), engine="numpy")
        columns.append(((up - down) / (2 * step)).ravel())
    assert_close(flat, np.stack(columns, axis=1), rtol=1e-6)


@numba.njit
def with_math(x):
    return math.exp(x[0]) * math.sin(x[1]) + math.log(x[2]) * x[0]


def test_math_functions_against_the_analytic_hessian():
    x = np.array([0.3, 1.1, 2.5])
    e, s, c = math.exp(x[0]), math.sin(x[1]), math.cos(x[1])
    expected = np.array(
        [
            [e * s, e * c, 1.0 / x[2]],
            [e * c, -e * s, 0.0],
            [1.0 / x[2], 0.0, -x[0] / x[2] ** 2],
        ]
    )
    assert_close(da.hessian(with_math, x, chunk_size=K), expected)
    v = np.array([0.5, -1.0, 2.0])
    assert_close(da.hvp(with_math, x, v), expected @ v)


def test_a_plain_function_with_engine_numba():
    def cubes(x):
        s = 0.0
        for i in range(x.shape[0]):
            s += x[i] ** 3 * x[0]
        return s

    h = da.hessian(cubes, X, chunk_size=K, engine="numba")
    expected = da.hessian(cubes, X, engine="numpy")
    assert_close(h, expected)


def test_whole_array_code_falls_back_with_a_warning():
    """np.roll is neither recorded by compiled reverse mode nor compiled on nested Duals."""

    @numba.njit
    def rolled(x):
        return np.sum(np.roll(x, 1) * x)

    with pytest.warns(UserWarning, match="dualad could not compile rolled"):
        h = da.hessian(rolled, X, chunk_size=K)
    shift = np.roll(np.eye(5), 1, axis=0)  # np.roll(x, 1) = R @ x, so H = R + R.T
    assert_close(h, shift + shift.T)


def test_vector_output_is_refused():
    @numba.njit
    def pair(x):
        return x[0] * x[1], x[1]

    with pytest.raises(da.DualError, match="need f to return a scalar"):
        da.hessian(pair, X, chunk_size=K, engine="numba")
