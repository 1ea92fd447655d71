"""Long runs hold no memory: repeated calls keep RSS flat, caches stay bounded, big inputs fit.

Measured on the development machine (2 cores, shared): a reverse gradient of Rosenbrock and a
forward JVP of an elementwise function at n = 10**6 each peak at about 72 MB of traced
allocations (9 arrays of the input's 8 MB); the bound asserted is 25 of them.
"""

from __future__ import annotations

import gc
import os
import tracemalloc
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import dualad as da
from dualad import transforms

numba = pytest.importorskip("numba")

STATM = "/proc/self/statm"

#: RSS growth allowed over a run of calls once warmed up (the allocator keeps some slack).
RSS_BOUND_MB = 8.0


def _rss_mb() -> float:
    with open(STATM) as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def rosenbrock(x):
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def lorenz(u):
    return np.stack([10.0 * (u[1] - u[0]), u[0] * (28.0 - u[2]) - u[1], u[0] * u[1] - 8 / 3 * u[2]])


@numba.njit
def smooth(x):
    y = np.zeros_like(x)
    for i in range(x.size):
        y[i] = np.sin(x[i]) * x[i - 1]
    return y


@numba.njit
def smooth_sizes(x):
    """smooth's twin for the compilation count: no other test compiles it, so no driver of it
    was loaded from a warm disk cache before that test counts (smooth's K = 4 one was)."""
    y = np.zeros_like(x)
    for i in range(x.size):
        y[i] = np.sin(x[i]) * x[i - 1]
    return y


U = np.array([1.0, 2.0, 3.0])
X = np.linspace(-1.0, 1.0, 100)
X8 = np.linspace(0.5, 1.5, 8)

#: name -> (call, calls per run in the quick test); the slow test makes 10**5 of each.
REPEATED: dict[str, tuple[Callable[[], Any], int]] = {
    "NumPy-engine Jacobian": (lambda: da.jacobian(lorenz, U), 2000),
    "reverse gradient": (lambda: da.gradient(rosenbrock, X, mode="reverse"), 2000),
    "compiled Jacobian": (lambda: da.value_and_jacobian(smooth, X8, chunk_size=4)[1], 10000),
}


def _growth(call: Callable[[], Any], count: int) -> float:
    for _ in range(200):  # warm up: compilation, caches, the allocator's pools
        call()
    gc.collect()
    before = _rss_mb()
    for _ in range(count):
        call()
    gc.collect()
    return _rss_mb() - before


@pytest.mark.skipif(not os.path.exists(STATM), reason="reads RSS from /proc")
@pytest.mark.parametrize("name", list(REPEATED))
def test_repeated_calls_keep_rss_flat(name):
    call, count = REPEATED[name]
    expected = call()
    growth = _growth(call, count)
    assert growth < RSS_BOUND_MB, f"{name}: RSS grew {growth:.1f} MB over {count} calls"
    np.testing.assert_array_equal(call(), expected)


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(STATM), reason="reads RSS from /proc")
@pytest.mark.parametrize("name", list(REPEATED))
def test_1e5_calls_keep_rss_flat(name, request):
    if not (request.config.getoption("--slow", default=False) or os.environ.get("DUALAD_SLOW")):
        pytest.skip("10**5 calls: run with --slow (or DUALAD_SLOW=1)")
    call, _ = REPEATED[name]
    growth = _growth(call, 10**5)
    assert growth < RSS_BOUND_MB, f"{name}: RSS grew {growth:.1f} MB over 10**5 calls"


def test_a_chunked_jacobian_leaves_no_seeds_behind():
    """Seeds of large chunks are not cached: after the call only small ones may remain."""
    x = np.ones(3000)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        jac = da.jacobian(lambda z: z * 2.0, x, mode="forward", chunk_size=500)
        np.testing.assert_array_equal(jac, 2.0 * np.eye(3000))
        del jac
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept < 1e6, f"{kept / 1e6:.1f} MB kept after the call (the 6 seeds are 12 MB each)"
    cache = transforms._small_basis.cache_info()
    assert cache.maxsize * transforms.BASIS_CACHE_ENTRIES * 8 <= 16 * 2**20


# --- the compiled engine: compilations stay bounded -----------------------------------------------


def test_30_shapes_and_chunk_sizes_compile_2_drivers(monkeypatch):
    """Numba specialises on dtype, ndim and layout, not on the length: drivers come from the
    function and K alone (30 lengths and 2 chunk sizes here: 2 compilations)."""
    import dualad.numba as dn

    monkeypatch.setenv("DUALAD_CACHE_DIR", "off")  # a warm disk cache would compile nothing

    rng = np.random.default_rng(15)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback to the NumPy engine
        for n in range(5, 35):
            x = rng.uniform(0.5, 1.5, n)
            value, jac = da.value_and_jacobian(smooth_sizes, x, chunk_size=4 + n % 2)
            expected = da.jacobian(smooth_sizes.py_func, x, engine="numpy", mode="forward")
            np.testing.assert_allclose(jac, expected, rtol=1e-13, atol=1e-15)
            np.testing.assert_allclose(value, smooth_sizes.py_func(x), rtol=1e-15)
    drivers = {key[1:] for key in dn._drivers if key[0] is smooth_sizes}
    assert drivers == {("value_and_jacobian", 4), ("value_and_jacobian", 5)}
    compiled = len(dn.for_duals(smooth_sizes).signatures)
    assert compiled == 2, f"{compiled} compilations for Duals"


def test_default_chunk_sizes_are_few_whatever_the_size():
    """With the default chunking, any n reaches one of 12 chunk sizes: at most 12 drivers."""
    from dualad.numba import CHUNK_THRESHOLD, chunk_size_for

    sizes = {chunk_size_for(n) for n in range(1, 20001)}
    assert sizes == set(range(1, CHUNK_THRESHOLD + 1))


# --- large inputs ---------------------------------------------------------------------------------

N_LARGE = 10**6
#: Peak traced allocations allowed, in arrays of the input's size (measured: 9).
PEAK_ARRAYS = 25


def _peak(call: Callable[[], Any]) -> tuple[Any, float]:
    gc.collect()
    tracemalloc.start()
    try:
        result = call()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return result, peak


def test_reverse_gradient_at_a_million_inputs_fits():
    x = np.linspace(-1.0, 1.0, N_LARGE)
    grad, peak = _peak(lambda: da.gradient(rosenbrock, x, mode="reverse"))
    expected = np.zeros_like(x)
    inner = x[1:] - x[:-1] ** 2
    expected[:-1] = -400.0 * x[:-1] * inner - 2.0 * (1.0 - x[:-1])
    expected[1:] += 200.0 * inner
    np.testing.assert_allclose(grad, expected, rtol=1e-12, atol=1e-9)
    assert peak < PEAK_ARRAYS * x.nbytes, f"peak {peak / 1e6:.0f} MB"


def test_forward_jvp_at_a_million_inputs_fits():
    x = np.linspace(-1.0, 1.0, N_LARGE)
    v = np.cos(x)
    (value, tangent), peak = _peak(lambda: da.jvp(lambda z: np.sin(z) * z + z[::-1] ** 2, x, v))
    np.testing.assert_allclose(value, np.sin(x) * x + x[::-1] ** 2, rtol=1e-15)
    expected = (np.cos(x) * x + np.sin(x)) * v + 2.0 * x[::-1] * v[::-1]
    np.testing.assert_allclose(tangent, expected, rtol=1e-13, atol=1e-15)
    assert peak < PEAK_ARRAYS * x.nbytes, f"peak {peak / 1e6:.0f} MB"


@numba.njit
def _indexes_x(x):
    s = 0.0
    for i in range(x.size):
        s += np.sin(x[i])
    return s


def test_a_failing_scalar_call_does_not_demote_array_calls():
    """A call at a 0-d point that Numba cannot compile (f indexes x) falls back with a warning;
    calls at arrays stay compiled, without warnings, however long the run."""
    import dualad.numba as dn

    with pytest.warns(UserWarning, match="could not compile _indexes_x"):
        with pytest.raises(IndexError):  # the NumPy engine then runs f on one Dual
            da.gradient(_indexes_x, 0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(3):
            np.testing.assert_allclose(da.gradient(_indexes_x, X8), np.cos(X8), rtol=1e-15)
    assert (_indexes_x, "value_and_jacobian", 8) in dn._drivers
