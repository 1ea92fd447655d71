"""Compiled Hessians and HVPs by forward over reverse (dualad.numba.adjoint on Dual values).

``da.hvp`` of a Numba function records it once per chunk of tangent directions on adjoint
numbers whose values are Duals; ``da.hessian`` records it once in local mode (each node's
partials with their derivatives along its two parents) and sweeps the tape per block of
columns.  Each result is checked against the nested-Dual path (forward over forward, called
directly), the NumPy engine, central differences of the gradient,
``hessian @ v`` and the symmetry of the raw H @ I (the driver mirrors only after that).  The
fallback to the nested-Dual path, and its errors, are tested where the adjoint engine refuses.
"""

import math
import warnings

import numba
import numpy as np
import pytest

import dualad as da
import dualad.numba as compiled
from dualad.numba import adjoint

X = np.array([0.3, -1.2, 0.8, 1.5, -0.4, 0.9, -0.7, 1.1, 0.2, -1.6])  # 10 inputs: two passes


@numba.njit
def rosenbrock(x):
    s = 0.0
    for i in range(x.shape[0] - 1):
        s += 100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2
    return s


@numba.njit
def _cbrt(a):
    """A cube root by Newton's method: a while loop with a data-dependent end."""
    y = a if a > 1.0 else 1.0
    while abs(y * y * y - a) > 1e-13 * a:
        y = y - (y * y * y - a) / (3.0 * y * y)
    return y


@numba.njit
def numba_style(x):
    """Accumulators, a helper with a Newton loop, branches and math.* functions."""
    n = x.shape[0]
    s = 0.0
    for i in range(n):
        r = _cbrt(x[i] * x[i] + 1.0)
        if x[i] > 0.0:
            s += r * math.sin(x[(i + 1) % n]) + x[i] ** 3
        else:
            s += math.exp(x[i]) * r - math.log(1.0 + x[i] * x[i]) * x[(i + 2) % n]
    return s + math.sqrt(x[0] ** 2 + 1.0) * math.atan2(x[1], 2.0)


@numba.njit
def local_arrays(x):
    """A local array from np.empty_like, slices and whole-array expressions (sum, dot)."""
    t = np.empty_like(x)
    for i in range(x.shape[0]):
        t[i] = np.tanh(x[i]) * x[i]
    u = np.zeros_like(x)
    u[1:] = x[1:] * x[:-1]
    return np.sum(t * t) + np.dot(t, x) + u.sum() + np.mean(np.cos(u))


@numba.njit
def on_a_matrix(x):
    s = 0.0
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            s += x[i, j] ** 2 * x[(i + 1) % x.shape[0], j] / (1.0 + x[i, j] ** 2)
    return s


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


def nested(f, x, K=2):
    """The nested-Dual Hessian (forward over forward), called directly."""
    h = compiled.run(f, "hessian", K, np.ascontiguousarray(x, dtype=np.float64))
    return h.reshape(x.shape + x.shape)


def central(f, x, step=1e-6):
    """Central differences of the compiled gradient, column by column."""
    n = x.size
    columns = []
    for j in range(n):
        e = np.zeros(n)
        e[j] = step
        up = da.gradient(f, x + e.reshape(x.shape))
        down = da.gradient(f, x - e.reshape(x.shape))
        columns.append(((up - down) / (2 * step)).ravel())
    return np.stack(columns, axis=1)


@numba.njit
def local_cases(x):
    """What local mode records in each of its ways: np.maximum (a partial zero with its
    derivatives: a function of one parent, no node), x * x (one variable twice), a product with
    a factor of value zero (a zero partial whose derivative is not) and sums of such terms."""
    s = 0.0
    for i in range(x.shape[0] - 1):
        a, b = x[i], x[i + 1]
        s += np.maximum(a, b) ** 2 * b + a * a * b + np.sin(a) * b * b
    return s


def test_local_mode_against_forward_over_reverse_numpy_and_differences():
    x = np.array([0.3, -1.2, 0.0, 1.5, -0.4, 0.9, 0.0, 0.7])  # exact zeros: zero partials
    h = da.hessian(local_cases, x)
    assert local_cases.py_func not in adjoint.failed_second_order
    assert_close(h, da.hessian(local_cases.py_func, x, engine="numpy"))
    assert_close(h, central(local_cases, x), rtol=1e-6)
    # forward over reverse: a recording on Duals per chunk of 3 columns, unsymmetrised
    raw = adjoint.run(local_cases, ("hvp", 3), x, np.eye(x.size), False)
    assert_close(h, raw)
    np.testing.assert_array_equal(h, h.T)
    assert_close(da.hessian(local_cases, x, chunk_size=3), h)  # sweeps of 3 columns each


@pytest.mark.parametrize("f", [rosenbrock, numba_style, local_arrays])
def test_hessian_against_nested_duals_numpy_and_differences(f):
    h = da.hessian(f, X)
    assert f.py_func not in adjoint.failed_second_order  # forward over reverse took it
    if f is not local_arrays:  # slices: the nested path cannot compile it (test below)
        assert_close(h, nested(f, X))
    if f is not numba_style:  # math.* functions: the NumPy engine cannot run it
        assert_close(h, da.hessian(f.py_func, X, engine="numpy"))
    assert_close(h, central(f, X), rtol=1e-6)
    np.testing.assert_array_equal(h, h.T)


def test_nested_path_refuses_slices_that_forward_over_reverse_records():
    """local_arrays slices its input: only forward over reverse compiles its Hessian."""
    with pytest.raises((compiled.NotCompilable, da.DualError)):
        nested(local_arrays, X)


@pytest.mark.parametrize("f", [rosenbrock, numba_style])
def test_raw_columns_are_symmetric(f):
    """The driver's H @ I before mirroring: symmetric up to rounding (each column is its own
    recording, so this can fail where a tangent or a partial is wrong).  K = 3: the last of four
    chunks carries one direction and two zero ones."""
    raw = adjoint.hvp(f, X, np.eye(X.size), 3, ())
    assert_close(raw, raw.T, rtol=1e-11)
    assert_close(raw, da.hessian(f, X))


def test_hvp_against_hessian_times_v():
    h = da.hessian(numba_style, X)
    v = np.linspace(-1.0, 2.0, X.size)
    assert_close(da.hvp(numba_style, X, v), h @ v)
    vs = np.stack([np.cos(np.arange(X.size) * k) for k in range(5)], axis=-1)  # one pass
    assert_close(da.hvp(numba_style, X, vs), h @ vs)


def test_matrix_input():
    x = np.array([[0.4, -0.7, 1.1], [0.9, 0.2, -1.3]])
    h = da.hessian(on_a_matrix, x)
    assert h.shape == (2, 3, 2, 3)
    assert_close(h, nested(on_a_matrix, x))
    assert_close(h, da.hessian(on_a_matrix.py_func, x, engine="numpy"))
    v = np.arange(6.0).reshape(2, 3)
    assert_close(da.hvp(on_a_matrix, x, v), np.tensordot(h, v, axes=2))


@numba.njit
def _scalar_input(x):
    return math.exp(x) * x**3


def test_scalar_input():
    x = 0.7
    expected = math.exp(x) * (x**3 + 6 * x**2 + 6 * x)
    assert_close(da.hessian(_scalar_input, x), expected)
    assert_close(da.hvp(_scalar_input, x, 2.0), 2.0 * expected)


@numba.njit
def stopped(x):
    """stop_gradient and primal drop the whole derivative, the tangents of a Dual value too."""
    return x[0] * da.stop_gradient(x[0]) * x[1] + np.sum(da.primal(x) * x * x)


@numba.njit
def stopped_elementwise(x):
    """The same stop on element reads only, which the nested-Dual path compiles too."""
    return x[0] * da.stop_gradient(x[0]) * x[1] + da.primal(x[1]) * x[1] * x[2]


def test_stop_gradient_stops_second_derivatives():
    x = X[:4]
    expected = da.hessian(stopped.py_func, x, engine="numpy")  # as JAX's stop_gradient
    assert expected[0, 0] == 2.0 * x[0] and expected[0, 1] == x[0]  # stop(x0): 0, not 2 x1
    assert_close(da.hessian(stopped, x), expected)
    # the nested path once removed only the outer layer: H[0, 0] was 2 x1, H[1, 0] half of x0
    expected = da.hessian(stopped_elementwise.py_func, x, engine="numpy")
    assert expected[0, 0] == 0.0 and expected[1, 1] == 0.0 and expected[1, 2] == x[1]
    assert_close(nested(stopped_elementwise, x), expected)
    assert_close(da.hessian(stopped_elementwise, x), expected)


# --- refusals and the fallback to nested Duals ---------------------------------------------------


@numba.njit
def writes_its_input(x):
    x[0] = 1.0
    return x[0] * x[1]


def test_a_refusal_falls_back_to_the_nested_path_and_its_error():
    with pytest.raises(da.DualError, match="writes into its input array") as e:
        da.hessian(writes_its_input, X)
    assert "engine='numpy'" in str(e.value)  # the nested path's message, as before
    assert writes_its_input.py_func in adjoint.failed_second_order


@numba.njit
def pair(x):
    return x[0] * x[1], x[1]


def test_vector_output_is_refused():
    with pytest.raises(da.DualError, match="need f to return a scalar"):
        da.hvp(pair, X, X)


def _blend(a, b, t):
    return a * (1.0 - t) + b * t


def _snap(x):
    return np.floor(x)


def test_a_registered_rule_gives_the_tangent_of_the_value_too(restore_rules):
    """A rule that is not the derivative of the source (a straight-through floor): the value's
    tangent comes from the rule, as in the other engines, not from the floor's zero."""
    snap = da.register_rule(_snap, lambda x, y: 1.0 + 0.0 * x, name="snap")

    def snapped(x):
        return snap(x[0]) ** 2 * x[1]

    x = np.array([1.7, -0.6])
    h = da.hessian(numba.njit(snapped), x)
    assert snapped not in adjoint.failed_second_order
    expected = da.hessian(snapped, x, engine="numpy")
    assert expected[0, 0] == 2.0 * x[1]  # d/dx0 of 2 floor(x0) x1 by the rule
    assert_close(h, expected)


def test_three_input_rule_runs_on_nested_duals(restore_rules):
    """Compiled reverse mode records at most two adjoint inputs per operation: a three-input
    rule sends the Hessian to the nested-Dual path, which gives the right one."""
    blend = da.register_rule(
        _blend, lambda a, b, t, y: 1.0 - t, lambda a, b, t, y: t, lambda a, b, t, y: b - a
    )

    def three(x):
        return blend(x[0] ** 2, x[1], x[2]) * x[3]

    f = numba.njit(three)
    x = X[:4]
    h = da.hessian(f, x)
    assert three in adjoint.failed_second_order
    assert "at most two adjoint inputs" in adjoint.failed_second_order[three]
    assert_close(h, da.hessian(three, x, engine="numpy"))
    assert_close(h, nested(f, x))
