"""A second corpus of real-world-style ``numba.njit`` code (``realworld_corpus.py``), compiled.

Each function compiles for Duals with ``engine="numba"`` (a fallback warning fails the test), and
its value and Jacobian agree with the float function and with central differences, and with the
NumPy engine where that engine can run the same source (it cannot run ``math.*`` on Duals, or
``np.array`` of a list of Duals).  Functions that write Duals into float allocations
(``np.zeros((n, 3))``) are refused with a message naming the line and ``dualad.numba.promote``,
and compile through ``promote``.
"""

import math
import warnings

import numpy as np
import pytest

numba = pytest.importorskip("numba")
pytest.importorskip("scipy")

import realworld_corpus as corpus  # noqa: E402

import dualad as da  # noqa: E402
from dualad.numba import promote  # noqa: E402

#: Corpus functions that allocate float arrays and write Duals into them: refused unless promoted.
FLOAT_ALLOCATIONS = {
    "nbody_accel", "kepler_orbit_xy", "pair_distance_matrix", "gaussian_mixture_nll",
    "weighted_kde", "moving_average_cumsum", "autocorrelation", "robertson_kinetics",
    "heat_equation_2d", "shallow_water_1d", "piecewise_eval", "catmull_rom",
    "linear_solve_residual",
}  # fmt: skip
COMPILED = [c for c in corpus.CASES if c.name not in FLOAT_ALLOCATIONS]
PROMOTED = [c for c in corpus.CASES if c.name in FLOAT_ALLOCATIONS]


def _compiled(f, case):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return da.value_and_jacobian(f, case.x, args=case.args, engine="numba")


def _assert_close(a, b, rtol, atol_scale=None):
    if isinstance(b, tuple):
        assert isinstance(a, tuple) and len(a) == len(b)
        for u, v in zip(a, b):
            _assert_close(u, v, rtol, atol_scale)
        return
    b = np.asarray(b)
    scale = max(1.0, np.abs(b).max()) if atol_scale is None else atol_scale
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * scale)


def _numpy_engine(case):
    """The NumPy engine's value and Jacobian of the same source, or None where it cannot run it."""
    try:
        return da.value_and_jacobian(case.f.py_func, case.x, args=case.args, engine="numpy")
    except (da.DualError, TypeError):
        return None


@pytest.mark.parametrize("case", COMPILED, ids=[c.name for c in COMPILED])
def test_compiles_and_agrees(case):
    value, jac = _compiled(case.f, case)
    _assert_close(value, case.f.py_func(case.x, *case.args), 1e-12)
    _assert_close(jac, corpus.central(case.f.py_func, case.x, case.args), case.fd_rtol)
    reference = _numpy_engine(case)
    if reference is not None:
        _assert_close(value, reference[0], 1e-12)
        _assert_close(jac, reference[1], 1e-10)


def test_most_of_the_corpus_runs_on_the_numpy_engine_too():
    """The NumPy-engine comparison above is not vacuous."""
    ran = [c.name for c in COMPILED if _numpy_engine(c) is not None]
    assert len(ran) >= 20, ran


@pytest.mark.parametrize("case", PROMOTED, ids=[c.name for c in PROMOTED])
def test_float_allocations_are_refused_at_their_line_then_promoted(case):
    with pytest.raises(da.DualError) as info:
        _compiled(case.f, case)
    message = str(info.value)
    assert "float array" in message and "dualad.numba.promote(f)" in message
    assert "realworld_corpus.py, line" in message
    assert len(message.splitlines()) <= 5
    promoted = promote(case.f)
    value, jac = _compiled(promoted, case)
    _assert_close(value, case.f.py_func(case.x, *case.args), 1e-12)
    _assert_close(jac, corpus.central(case.f.py_func, case.x, case.args), case.fd_rtol)
    # the rewrite computes the same floats (run as Python: compiled on floats, which
    # test_numba_arrays checks once, it cost each case two float compilations per run)
    expected = case.f.py_func(case.x, *case.args)
    np.testing.assert_array_equal(promoted.py_func(case.x, *case.args), expected)


# --- tuple outputs -------------------------------------------------------------------------------

SPRINGS = np.array([0.0, 0.0, 1.1, 0.1, 1.0, 1.2, -0.1, 0.9])


def test_a_tuple_output_gives_a_tuple_of_jacobians_as_the_numpy_engine():
    f = corpus.spring_network
    jac = da.jacobian(f, SPRINGS)
    ref = da.jacobian(f.py_func, SPRINGS, engine="numpy")
    assert isinstance(jac, tuple) and len(jac) == 2
    assert jac[0].shape == (8,) and jac[1].shape == (4, 2, 8)
    for a, b in zip(jac, ref):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    # the energy's gradient is minus the forces
    np.testing.assert_allclose(jac[0], -f.py_func(SPRINGS)[1].ravel(), rtol=1e-12, atol=1e-12)
    v = np.linspace(-1.0, 1.0, 8)
    value, tangent = da.jvp(f, SPRINGS, v)
    assert isinstance(value, tuple) and isinstance(tangent, tuple)
    np.testing.assert_allclose(tangent[0], jac[0] @ v, rtol=1e-12)
    np.testing.assert_allclose(tangent[1], jac[1] @ v, rtol=1e-12, atol=1e-12)


def test_a_tuple_output_is_refused_by_the_batch_drivers():
    with pytest.raises(da.DualError, match=r"one output array; this one returns a tuple"):
        da.batch_jacobian(corpus.spring_network, np.stack([SPRINGS, SPRINGS + 0.1]))


# --- iteration, np.array of Duals, special functions, refusals -----------------------------------


@numba.njit
def _rows_and_items(x):
    m = x.reshape((3, 2))
    total = 0.0
    for row in m:
        a, b = row
        total += a * b
    for xi in x:
        total += xi**3
    return np.array([total, x[0], 2.0])


def test_iteration_over_rows_and_items_and_np_array_of_duals():
    x = np.array([0.3, -1.2, 2.0, 0.7, 0.1, 1.3])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        jac = da.jacobian(_rows_and_items, x, engine="numba")
    expected = np.zeros((3, 6))
    expected[0] = np.array([x[1], x[0], x[3], x[2], x[5], x[4]]) + 3.0 * x**2
    expected[1, 0] = 1.0
    np.testing.assert_allclose(jac, expected, rtol=1e-13)


def test_compiled_digamma_matches_scipy():
    from scipy import special

    from dualad.numba.special import digamma

    points = [-2.5, -0.3, 0.01, 0.4, 1.0, 3.7, 9.99, 10.0, 55.0, 1e4]
    for p in points:
        assert math.isclose(digamma(p), special.digamma(p), rel_tol=1e-14, abs_tol=1e-14)
    assert math.isnan(digamma(-2.0))


@numba.njit
def _interp_knots(x):
    return np.interp(0.5, x, np.array([0.0, 1.0, 4.0]))


def test_interp_with_dual_sample_points_is_refused_clearly():
    with pytest.raises(da.DualError, match=r"np\.interp with Duals in xp .*line \d+"):
        da.jacobian(_interp_knots, np.array([0.0, 0.4, 1.0]), engine="numba")


@numba.njit
def _array_float64(x):
    return np.array([x[0] * x[1], x[1]], dtype=np.float64)


@numba.njit
def _array_float32(x):
    return np.array([x[0] * x[1], x[1]], dtype=np.float32)


def test_np_array_of_duals_takes_float64_and_refuses_a_narrower_dtype():
    x = np.array([2.0, 3.0])
    np.testing.assert_array_equal(
        da.jacobian(_array_float64, x, engine="numba"), [[3.0, 2.0], [0.0, 1.0]]
    )
    with pytest.raises(da.DualError, match=r"dtype other than float64 .*line \d+"):
        da.jacobian(_array_float32, x, engine="numba")
