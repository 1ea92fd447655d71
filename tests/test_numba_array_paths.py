"""Array code on every compiled path: forward, reverse and the Hessian.

Functions in the style of public scientific Numba code that mix loops with whole-array NumPy
(``x.reshape(-1, 3)``, a minimum-image wrap with ``np.round``, ``data - mu``, ``np.var``,
``np.where``, ``for v in np.sort(x)``, in-place operators on views).  Each is differentiated by
compiled forward mode, compiled reverse mode and ``da.hessian`` (forward over reverse, recorded
once in local mode), with every fallback warning turned into an error, and checked against the
NumPy engine and central differences of the float function, which can disagree with all three.
"""

import math
import os
import warnings

import numba
import numpy as np
import pytest

import dualad as da
from dualad.numba import NotCompilable, adjoint, cache

RNG = np.random.default_rng(20261203)
BOX = 3.0
DATA = RNG.normal(0.7, 1.5, size=40)


@numba.njit
def pair_energy(x):
    """Spring energy of points in a periodic box: star-argument reshape, minimum image by
    np.round, an in-place update of a temporary, np.linalg.norm of each difference."""
    p = x.reshape(-1, 3)
    e = 0.0
    for i in range(p.shape[0]):
        for j in range(i + 1, p.shape[0]):
            d = p[i] - p[j]
            d -= BOX * np.round(d / BOX)
            r = np.linalg.norm(d)
            e += (r - 1.0) ** 2
    return e


@numba.njit
def sample_statistics(x):
    """A float array with a Dual scalar (data - mu), var, std, max, min, prod, cumsum, clip."""
    z = (DATA - x[0]) / np.exp(x[1])
    tail = np.cumsum(x[2:])
    return (
        np.var(z)
        + np.std(x)
        + np.max(x) * np.min(z)
        + np.prod(x[:3])
        + tail[-1] * tail[0]
        + np.sum(np.clip(x, -0.5, 0.5) ** 2)
    )


@numba.njit
def sorted_and_selected(x):
    """np.sort then a loop over its entries, np.where on a comparison, argmax indexing."""
    s = 0.0
    for v in np.sort(x):
        s += v * v * s + v
    w = np.where(x > 0.2, x**2, -x)
    return s + np.sum(w * x) + x[np.argmax(x)] ** 3


@numba.njit
def writes_through_views(x):
    """In-place operators on views: the writes must reach the arrays they view."""
    out = np.zeros_like(x)
    row = out[1:]
    row += x[:-1]
    row *= x[1:]
    grid = np.zeros_like(x.reshape(2, -1))
    second = grid[1]
    second += x[3:]
    second -= 0.5 * x[:3] ** 2
    return np.sum(out * x) + np.sum(grid * grid)


KNOTS = np.linspace(0.0, 1.0, 6)
GRID = np.linspace(0.05, 0.95, 11)


@numba.njit
def interpolated_fit(x):
    """np.interp in its values (a fitted curve on knots) and in its points."""
    curve = np.interp(GRID, KNOTS, x[:6])
    moved = np.interp(x[6:], KNOTS, np.sin(3.0 * KNOTS))
    return np.sum((curve - np.cos(GRID)) ** 2 * curve) + np.sum(moved**2 * x[6:])


FUNCTIONS = [
    pair_energy,
    sample_statistics,
    sorted_and_selected,
    writes_through_views,
    interpolated_fit,
]
POINTS = {
    "pair_energy": np.array([0.1, 0.2, 0.3, 1.4, 0.1, -0.2, 2.8, 0.5, 0.4, 0.6, 2.1, 1.7]),
    "sample_statistics": np.array([0.4, 0.3, -0.8, 0.7, 1.3, 0.2]),
    "sorted_and_selected": np.array([0.5, -0.3, 0.9, 0.1, 1.2, -0.7]),
    "writes_through_views": np.array([0.5, -0.3, 0.9, 0.1, 1.2, -0.7]),
    "interpolated_fit": np.array([1.0, 0.9, 0.7, 0.4, 0.1, -0.2, 0.13, 0.55, 1.3]),
}


def central_gradient(f, x, h=1e-6):
    g = np.empty_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e[i] = h
        g[i] = (f(x + e) - f(x - e)) / (2 * h)
    return g


def central_hessian(f, x, h=1e-4):
    """Central differences of the NumPy engine's exact gradient (error ~ h**2)."""
    grad = lambda z: da.gradient(f, z, engine="numpy")  # noqa: E731
    columns = []
    for i in range(x.size):
        e = np.zeros_like(x)
        e[i] = h
        columns.append((grad(x + e) - grad(x - e)) / (2 * h))
    return np.array(columns).T


@pytest.mark.parametrize("f", FUNCTIONS, ids=lambda f: f.__name__)
def test_gradients_compile_in_both_modes_and_agree(f):
    x = POINTS[f.__name__]
    expected = central_gradient(f.py_func, x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fallback to the NumPy engine fails the test
        value, forward = da.value_and_gradient(f, x, mode="forward", engine="numba")
        reverse = da.gradient(f, x, mode="reverse", engine="numba")
    assert value == pytest.approx(f.py_func(x), rel=1e-13)
    np.testing.assert_allclose(forward, expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(reverse, forward, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(da.gradient(f.py_func, x, engine="numpy"), forward, rtol=1e-12)


@pytest.mark.parametrize("f", FUNCTIONS, ids=lambda f: f.__name__)
def test_hessians_of_array_code_compile(f):
    x = POINTS[f.__name__]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h = da.hessian(f, x)
    assert f.py_func not in adjoint.failed_second_order  # the compiled path, not a fallback
    np.testing.assert_array_equal(h, h.T)
    np.testing.assert_allclose(h, da.hessian(f.py_func, x, engine="numpy"), rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(h, central_hessian(f.py_func, x), rtol=1e-5, atol=1e-6)


def test_writes_through_views_keep_the_value():
    x = POINTS["writes_through_views"]
    value = da.value_and_gradient(writes_through_views, x, mode="forward")[0]
    assert value == pytest.approx(writes_through_views(x), rel=1e-14)
    assert value != 0.0  # what the lost writes gave


def test_reshape_by_separate_integers_and_by_a_tuple_agree():
    x = np.arange(1.0, 7.0)
    by_ints = da.jacobian(_reshape_by_ints, x, engine="numba")
    by_tuple = da.jacobian(_reshape_by_tuple, x, engine="numba")
    np.testing.assert_array_equal(by_ints, by_tuple)
    np.testing.assert_array_equal(by_ints, np.diag(2 * x).reshape(2, 3, 6))


@numba.njit
def _reshape_by_ints(x):
    return (x * x).reshape(2, 3)


@numba.njit
def _reshape_by_tuple(x):
    return (x * x).reshape((2, 3))


M = RNG.normal(size=(3, 3)) + 3.0 * np.eye(3)


@numba.njit
def scaled_determinant(x):
    """np.linalg.det is not recorded by reverse mode, and the nested-Dual path meets M * x[0]."""
    return np.linalg.det(M * x[0]) + x[1] ** 3


def test_an_array_operation_on_second_order_duals_falls_back_with_its_reason():
    x = np.array([0.7, 1.3])
    with pytest.warns(UserWarning, match="an array operation met a second-order Dual"):
        h = da.hessian(scaled_determinant, x)
    expected = np.array([[6.0 * np.linalg.det(M) * x[0], 0.0], [0.0, 6.0 * x[1]]])
    np.testing.assert_allclose(h, expected, rtol=1e-10)
    with pytest.raises(NotCompilable, match="an array operation met a second-order Dual"):
        da.hessian(scaled_determinant, x, engine="numba")


def _raise_attribute_error(filename):
    code = compile("def boom():\n    raise AttributeError('no dtype')\n", filename, "exec")
    namespace = {}
    exec(code, namespace)  # noqa: S102
    try:
        namespace["boom"]()
    except AttributeError as error:
        return error
    raise AssertionError("unreachable")


def test_only_attribute_errors_of_numbas_cache_loader_count_as_an_entry_that_will_not_load():
    loader = os.path.join("/x", "numba", "core", "caching.py")
    assert cache.raised_while_loading(_raise_attribute_error(loader))
    assert not cache.raised_while_loading(_raise_attribute_error("/x/numba/np/arraymath.py"))
    assert cache.raised_while_loading(ImportError("No module named 'gone'"))


def test_an_attribute_error_while_typing_is_a_compile_failure_not_a_cache_failure():
    from dualad import numba as engine

    def typing_crash(*_):
        raise _raise_attribute_error("/x/numba/np/arraymath.py")

    with pytest.raises(engine.NotCompilable, match="no dtype"):
        engine._call(typing_crash, math.sin, 1, (np.ones(1),), "jacobian")
    engine.failed.pop((math.sin, 1), None)
    assert not cache._disabled  # the disk cache stays in use


def _view_updates(x):
    out = np.zeros_like(x)
    row = out[1:]
    row += x[:-1]
    row *= x[1:]
    return np.sum(out * x)


def _same_by_assignment(x):
    out = np.zeros_like(x)
    out[1:] = x[:-1] * x[1:]
    return np.sum(out * x)


def test_numpy_engine_second_derivatives_through_in_place_updates_of_views():
    """The NumPy engine's nested Duals: np.zeros_like(x) holds every layer, so a view's
    in-place update reaches its array (the Hessian was all zeros)."""
    x = np.array([0.5, -0.3, 0.9, 1.1])
    expected = da.hessian(_same_by_assignment, x, engine="numpy")
    assert np.any(expected != 0.0)
    np.testing.assert_allclose(da.hessian(_view_updates, x, engine="numpy"), expected, rtol=1e-14)
    np.testing.assert_allclose(
        da.hvp(_view_updates, x, x, engine="numpy"), expected @ x, rtol=1e-13
    )
