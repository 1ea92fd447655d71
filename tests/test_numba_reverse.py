"""Compiled reverse mode (dualad.numba.adjoint) on the compiled engine's loop problems.

Every problem of test_numba_engine.py is differentiated by compiled reverse mode and checked
against compiled forward mode (same rules, other sweep direction: agreement to rounding) and
central differences of the float function (which can disagree with both).  Each function is
recorded once per process (a Numba compilation each), so the tests share the module's functions.
"""

import math
import threading
import warnings

import numba
import numpy as np
import pytest
from test_numba_engine import (
    LORENZ_ARGS,
    MEYER_T,
    MEYER_Y,
    allocations,
    constant_output,
    helical_valley,
    helical_valley_objective,
    lorenz,
    matrix_function,
    meyer,
    nbody_energy,
    outer_square,
    pde_point,
    pde_residual,
    piecewise,
    quartic_via_local_array,
    rosenbrock,
    scalar_functions,
    sqrt_sum,
    uses_helpers,
    wood,
)

import dualad as da
from dualad import transforms
from dualad.numba import adjoint

RNG = np.random.default_rng(20261202)


def central_differences(f, x, args, h=1e-6):
    """J by central differences of the float function, shape f(x).shape + x.shape."""
    x = np.asarray(x, dtype=float)
    cols = []
    for i in range(x.size):
        e = np.zeros(x.size)
        e[i] = h * max(1.0, abs(x.flat[i]))
        up = np.asarray(f(x + e.reshape(x.shape), *args), dtype=float)
        down = np.asarray(f(x - e.reshape(x.shape), *args), dtype=float)
        cols.append((up - down) / (2.0 * e[i]))
    return np.moveaxis(np.array(cols), 0, -1).reshape(np.shape(cols[0]) + x.shape)


def _pde():
    u, source, left, right = pde_point(12)
    return u, (source, left, right)


_PDE_U, _PDE_ARGS = _pde()

#: (name, f, x, args, is the output a scalar)
PROBLEMS = [
    ("rosenbrock", rosenbrock, RNG.normal(size=9), ()),
    ("wood", wood, RNG.normal(size=4), ()),
    ("helical_valley", helical_valley, np.array([-0.7, 0.4, 0.3]), ()),
    ("helical_valley+", helical_valley, np.array([0.7, 0.4, 0.3]), ()),
    ("helical_valley_objective", helical_valley_objective, np.array([0.6, -0.8, 0.3]), ()),
    ("meyer", meyer, np.array([0.02, 4000.0, 250.0]), (MEYER_T, MEYER_Y)),
    ("pde_residual", pde_residual, _PDE_U, _PDE_ARGS),
    ("nbody_energy", nbody_energy, RNG.normal(size=(5, 3)), (RNG.uniform(1, 2, size=5),)),
    ("lorenz", lorenz, np.array([1.0, -2.0, 20.0]), LORENZ_ARGS),
    ("quartic_via_local_array", quartic_via_local_array, RNG.normal(size=4), ()),
    ("outer_square", outer_square, np.array([0.5, -1.0, 2.0]), ()),
    ("scalar_functions", scalar_functions, np.array([0.3, 0.6, 1.7]), ()),
    ("piecewise<", piecewise, np.array([-0.5, 0.7]), ()),
    ("piecewise>", piecewise, np.array([1.5, 0.4]), ()),
    ("allocations", allocations, np.array([0.5, -1.0, 2.0]), ()),
    ("matrix_function", matrix_function, RNG.normal(size=(3, 3)), ()),
    ("uses_helpers", uses_helpers, RNG.normal(size=5), (RNG.normal(size=5), 0.01)),
]


def assert_close(actual, expected, rtol):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    scale = max(float(np.max(np.abs(expected), initial=0.0)), 1e-300)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("problem", PROBLEMS, ids=[p[0] for p in PROBLEMS])
def test_reverse_matches_forward_and_central_differences(problem):
    _, f, x, args = problem
    value, jac = da.value_and_jacobian(f, x, mode="reverse", args=args)
    fvalue, fjac = da.value_and_jacobian(f, x, mode="forward", args=args)
    np.testing.assert_array_equal(value, fvalue)
    assert_close(jac, fjac, rtol=1e-12)
    assert_close(jac, central_differences(f, x, args), rtol=1e-5)
    if np.ndim(value) == 0:
        assert_close(da.gradient(f, x, mode="reverse", args=args), fjac, rtol=1e-12)


def test_vjp_one_and_many_cotangents():
    u, args = _PDE_U, _PDE_ARGS
    value, pullback = da.vjp(pde_residual, u, args=args)
    jac = da.jacobian(pde_residual, u, mode="forward", args=args)
    np.testing.assert_array_equal(value, pde_residual(u, *args))
    w = RNG.normal(size=u.size)
    assert_close(pullback(w), w @ jac, rtol=1e-12)
    ws = RNG.normal(size=(u.size, 3))
    assert_close(pullback(ws), jac.T @ ws, rtol=1e-12)
    assert_close(pullback(w), w @ jac, rtol=1e-12)  # the tape is kept for a second call


def test_plain_function_with_engine_numba_and_a_scalar_point():
    def poly(x):
        s = 0.0
        for i in range(len(x)):
            s += x[i] ** 3 - 2.0 * x[i]
        return s

    x = np.array([0.5, -1.5, 2.0])
    assert_close(da.gradient(poly, x, mode="reverse", engine="numba"), 3 * x**2 - 2, 1e-14)
    assert da.derivative(numba.njit(lambda t: t * t * t), 2.0) == 12.0  # forward, a 0-d point
    assert_close(
        da.jacobian(numba.njit(lambda t: t * t * t), 2.0, mode="reverse"), np.float64(12.0), 0
    )


def test_constant_output_has_zero_jacobian():
    x = np.array([0.5, -1.0, 2.0])
    value, jac = da.value_and_jacobian(constant_output, x, mode="reverse", args=(2.5,))
    np.testing.assert_array_equal(value, [0.0, 2.5, 5.0])
    np.testing.assert_array_equal(jac, np.zeros((3, 3)))


def test_infinite_local_derivative_times_a_zero_adjoint_stays_zero():
    x = np.array([0.0, 4.0])
    np.testing.assert_array_equal(da.gradient(sqrt_sum, x, mode="reverse"), [np.inf, 0.25])


@numba.njit
def sqrt_of_zero_times_x(x):
    s = np.sqrt(0.0 * x[0]) + np.sqrt(x[1] - x[1])  # a zero derivative through d sqrt(0) = inf
    t = 0.0 * x[0] + 0.0 * x[1]
    return s + math.sqrt(t * t) + x[1]


def test_zero_derivative_through_an_infinite_partial_is_zero_as_in_forward_mode():
    x = np.array([1.5, -2.0])
    forward = da.gradient(sqrt_of_zero_times_x, x, mode="forward")
    np.testing.assert_array_equal(forward, [0.0, 1.0])
    np.testing.assert_array_equal(da.gradient(sqrt_of_zero_times_x, x, mode="reverse"), forward)
    value, jac = da.value_and_jacobian(sqrt_of_zero_times_x, x, mode="reverse")
    np.testing.assert_array_equal(jac, forward)
    _, pullback = da.vjp(sqrt_of_zero_times_x, x)
    np.testing.assert_array_equal(pullback(np.float64(2.0)), 2.0 * forward)


@numba.njit
def writes_into_its_input(x):
    x[0] = 1.0
    return x[1] * x[0]


@numba.njit
def calls_np_roll(x):
    return np.roll(x, 1)[0]  # x[-1]


def test_writing_into_the_input_is_a_clear_error_naming_the_line():
    with pytest.raises(da.DualError, match=r"writes into its input array.*line \d+"):
        da.gradient(writes_into_its_input, np.array([1.0, 2.0]), mode="reverse")


def test_an_unsupported_call_is_a_clear_error_and_auto_falls_back_to_forward():
    x = np.arange(130.0)
    with pytest.warns(UserWarning) as record:
        warnings.simplefilter("always")
        g = da.gradient(calls_np_roll, x)  # whichever forward engine takes it
    assert any("compiled reverse mode cannot record" in str(w.message) for w in record)
    np.testing.assert_array_equal(g, np.eye(130)[-1])
    with pytest.raises(adjoint.NotRecordable, match=r"cannot record calls_np_roll.*line \d+"):
        da.gradient(calls_np_roll, x, mode="reverse", engine="numba")


def test_auto_mode_takes_compiled_reverse_for_many_inputs(monkeypatch):
    x = RNG.normal(size=130)
    calls = []
    real = adjoint.value_and_jacobian
    monkeypatch.setattr(adjoint, "value_and_jacobian", lambda *a: calls.append(1) or real(*a))
    g = da.gradient(rosenbrock, x)
    assert calls, "mode='auto' did not pick compiled reverse mode"
    assert_close(g, da.gradient(rosenbrock, x, mode="forward"), 1e-12)
    calls.clear()
    da.gradient(rosenbrock, x[:5])  # few inputs: forward
    u, source, left, right = pde_point(40)
    da.jacobian(pde_residual, u, args=(source, left, right))  # as many outputs: forward
    assert not calls


@numba.njit
def leading_squares(x, m):
    out = np.zeros(m, dtype=x.dtype)
    for i in range(m):
        out[i] = x[i] ** 2
    return out


def test_a_repeated_call_goes_straight_to_the_reverse_driver_and_still_weighs_the_output(
    monkeypatch,
):
    """The second call at the same shape skips the checks (and f on floats), but an output
    that has grown past one per two inputs still sends the call after it to forward mode."""
    calls = []
    real = adjoint.value_and_jacobian
    monkeypatch.setattr(adjoint, "value_and_jacobian", lambda *a: calls.append(1) or real(*a))
    floats = []
    monkeypatch.setattr(
        transforms, "_compiled_reverse", _counting(transforms._compiled_reverse, floats)
    )
    x = RNG.normal(size=130)
    for point in (x, 2.0 * x):  # the second takes the short path, at a new point
        jac = da.jacobian(leading_squares, point, args=(3,))
        assert_close(jac, np.eye(3, 130) * 2.0 * point, 1e-15)
    assert len(calls) == 2 and len(floats) == 1
    jac = da.jacobian(leading_squares, x, args=(100,))  # short path: right, then forgotten
    assert_close(jac, np.eye(100, 130) * 2.0 * x, 1e-15)
    assert len(calls) == 3 and len(floats) == 1
    jac = da.jacobian(leading_squares, x, args=(100,))  # the full path: forward mode
    assert_close(jac, np.eye(100, 130) * 2.0 * x, 1e-15)
    assert len(calls) == 3 and len(floats) == 2


def _counting(function, calls):
    def counted(*a, **k):
        calls.append(1)
        return function(*a, **k)

    return counted


@numba.njit
def halves(x):
    return 0.5 * x[0] * x[1]


def test_a_reverse_driver_that_will_not_load_means_compiling_without_the_cache(
    monkeypatch, tmp_path
):
    """A disk entry Numba cannot load back (a stale environment) warns, turns the cache off
    for the process and compiles, as for the forward drivers."""
    from dualad.numba import cache

    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path))
    monkeypatch.setattr(cache, "_disabled", [])
    real, failures = adjoint.driver, []

    def first_load_fails(f, kind):
        made = real(f, kind)
        if failures:
            return made

        def broken(*arguments):
            failures.append(made)
            raise ImportError("No module named '<dynamic>'")  # what a stale environment gives

        return broken

    monkeypatch.setattr(adjoint, "driver", first_load_fails)
    with pytest.warns(UserWarning, match="could not load a compiled reverse driver"):
        g = da.gradient(halves, np.array([2.0, 3.0]), mode="reverse")
    np.testing.assert_array_equal(g, [1.5, 1.0])
    assert cache.cache_folder() is None  # the rest of the process compiles without it
    assert real(halves, "jacobian") is not failures[0]


@numba.njit
def long_loop(x, iterations):
    s = 0.0
    n = len(x)
    for k in range(iterations):
        s += x[k % n] * x[(k + 1) % n]
    return s


def test_a_million_iterations_stay_within_the_documented_tape_bound():
    x = RNG.normal(size=10)
    iterations = 10**6
    from numba.core.runtime import nrt

    stats = nrt.rtsys.get_allocation_stats
    nrt._nrt.memsys_enable_stats()  # counts of Numba's allocations and frees
    before = stats()
    value, outs, tape = adjoint.run(long_loop, "record", x, iterations)
    nodes = tape.n
    assert nodes <= 2 * iterations  # a product and a sum per iteration
    bound = adjoint.BYTES_PER_NODE * 2 * nodes + 1  # the arrays at most double past their fill
    assert tape.nbytes() <= bound
    del tape, outs, value
    g = da.gradient(long_loop, x, mode="reverse", args=(iterations,))
    kept = adjoint.workspace.arrays  # this thread's workspace keeps at most WORKSPACE_BYTES
    assert kept is None or sum(a.nbytes for a in kept) <= adjoint.WORKSPACE_BYTES
    n, k = x.size, np.arange(iterations)
    expected = np.bincount(k % n, x[(k + 1) % n], n) + np.bincount((k + 1) % n, x[k % n], n)
    assert_close(g, expected, rtol=1e-9)
    del kept, g
    adjoint.workspace.clear()
    after = stats()
    nrt._nrt.memsys_disable_stats()
    assert after.alloc - after.free <= before.alloc - before.free  # the tapes were freed


def test_eight_threads_each_own_their_tape():
    points = [RNG.normal(size=30) for _ in range(8)]
    expected = [da.gradient(rosenbrock, p, mode="forward") for p in points]
    da.gradient(rosenbrock, points[0], mode="reverse")  # compiled once, before the threads
    results = [None] * 8

    def work(i):
        for _ in range(20):
            results[i] = da.gradient(rosenbrock, points[i], mode="reverse")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, expected, strict=True):
        assert_close(got, want, rtol=1e-12)


# --- whole-array expressions on adjoint arrays ---------------------------------------------------


@numba.njit
def rosenbrock_vectorised(x):
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


@numba.njit
def ufuncs_and_reductions(x):
    y = np.sin(x) * np.exp(-x) + np.sqrt(x * x + 1.0)
    return np.mean(y) + np.dot(x, y) + (np.tanh(x) / (2.0 + np.cos(x))).sum() - x.mean()


@numba.njit
def logistic_vectorised(w, a, y):
    return np.sum(np.log1p(np.exp(-y * (a @ w)))) / a.shape[0]


@numba.njit
def matrix_products(x):
    m = np.empty((2, 3), dtype=x.dtype)
    for i in range(2):
        for j in range(3):
            m[i, j] = x[i] * x[j + 1] + 1.0
    v = m @ x[:3]  # (2, 3) @ (3,)
    return m.T @ v + np.dot(x[1:3], m) * np.dot(m, m.T)[0, 1]


@numba.njit
def elementwise_vector_output(x, c):
    z = np.where(x > 0.0, 1.0, 2.0)  # a comparison on the values only
    return c * np.log1p(x * x) - x[::-1] * z + np.abs(x) ** 1.5


ARRAY_PROBLEMS = [
    ("rosenbrock_vectorised", rosenbrock_vectorised, RNG.normal(size=7), ()),
    ("ufuncs_and_reductions", ufuncs_and_reductions, RNG.normal(size=5), ()),
    (
        "logistic_vectorised",
        logistic_vectorised,
        RNG.normal(size=6),
        (RNG.normal(size=(4, 6)), np.array([1.0, -1.0, -1.0, 1.0])),
    ),
    ("matrix_products", matrix_products, RNG.normal(size=4), ()),
    ("elementwise_vector_output", elementwise_vector_output, RNG.normal(size=5), (0.7,)),
]


@pytest.mark.parametrize("problem", ARRAY_PROBLEMS, ids=[p[0] for p in ARRAY_PROBLEMS])
def test_array_expressions_match_forward_and_central_differences(problem):
    _, f, x, args = problem
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # recorded by compiled reverse mode, no fallback
        value, jac = da.value_and_jacobian(f, x, mode="reverse", args=args, engine="numba")
    fvalue, fjac = da.value_and_jacobian(f, x, mode="forward", args=args)
    np.testing.assert_allclose(value, fvalue, rtol=1e-14)
    assert_close(jac, fjac, rtol=1e-12)
    assert_close(jac, central_differences(f, x, args), rtol=1e-5)


@numba.njit
def broadcasts_a_column(x):
    return np.sum(x[:2] * np.ones((3, 2)))


def test_broadcasting_between_dimensions_is_a_clear_error():
    with pytest.raises(da.DualError, match=r"entry by entry.*one shape.*line \d+"):
        da.gradient(broadcasts_a_column, np.array([1.0, 2.0]), mode="reverse", engine="numba")


@numba.njit
def scaled_outputs(x):
    y = np.empty(3, dtype=x.dtype)
    y[0] = 3.0 * x[0]  # outputs that are scaled inputs, no tape node, two of one input
    y[1] = -5.0 * x[0]
    y[2] = np.sin(x[1]) * 2.0
    return y


def test_vjp_and_jacobian_of_outputs_that_are_scaled_inputs():
    x = np.array([0.3, -1.2])
    expected = np.array([[3.0, 0.0], [-5.0, 0.0], [0.0, 2.0 * np.cos(x[1])]])
    assert_close(da.jacobian(scaled_outputs, x, mode="forward"), expected, rtol=1e-15)
    assert_close(da.jacobian(scaled_outputs, x, mode="reverse"), expected, rtol=1e-15)
    _, pullback = da.vjp(scaled_outputs, x)
    w = np.array([0.5, 2.0, -1.0])
    assert_close(pullback(w), w @ expected, rtol=1e-15)
