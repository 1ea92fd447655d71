"""Prepared Jacobians and derivative functions go to multiprocessing workers; Duals pickle only
when that cannot mix differentiations.

A spawned worker imports the functions by name, so they live in ``tests/_pickle_helpers.py``.
"""

from __future__ import annotations

import copy
import multiprocessing
import pickle

import _pickle_helpers as helpers
import numpy as np
import pytest

import dualad as da

pytest.importorskip("scipy")

POINTS = [np.linspace(0.5, 1.5, 9) + shift for shift in (0.0, 0.25, -0.1)]


def _tasks() -> tuple[list[tuple], list]:
    sparse = da.SparseJacobian(helpers.banded, POINTS[0])
    sparse(POINTS[0])  # used once before it is sent: the prepared state travels
    functions = [
        sparse,
        da.jacfwd(helpers.banded),
        da.jacrev(helpers.banded),
        da.grad(helpers.rosenbrock),
        da.jacfwd(da.grad(helpers.rosenbrock)),  # a Hessian
    ]
    tasks = [(fn, x) for fn in functions for x in POINTS]
    return tasks, [helpers.apply(task) for task in tasks]


# JAX, when another test of this worker imported it, warns at every os.fork(); this test forks
# on purpose (its workers run no JAX), so that warning is expected here.
@pytest.mark.filterwarnings("ignore:os.fork\\(\\) was called:RuntimeWarning")
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_sparse_jacobian_and_derivative_functions_run_in_workers(method):
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {method} start method here")
    tasks, expected = _tasks()
    with multiprocessing.get_context(method).Pool(2) as pool:
        got = pool.map(helpers.apply, tasks)
    for (fn, _), a, b in zip(tasks, got, expected, strict=True):
        np.testing.assert_array_equal(a, b, err_msg=repr(fn))
    dense = da.jacobian(helpers.banded, POINTS[1])
    np.testing.assert_allclose(got[1], dense, rtol=1e-14)  # the sparse one against dense


def test_derivative_functions_pickle_and_keep_their_names():
    for fn, name in [
        (da.jacfwd(helpers.banded, chunk_size=2), "jacfwd(banded)"),
        (da.jacrev(helpers.banded), "jacrev(banded)"),
        (da.grad(helpers.rosenbrock, mode="forward"), "grad(rosenbrock)"),
    ]:
        again = pickle.loads(pickle.dumps(fn))
        assert fn.__name__ == again.__name__ == name
        np.testing.assert_array_equal(again(POINTS[0]), fn(POINTS[0]))


def test_a_dual_you_built_pickles_and_copies():
    d = da.Dual(np.array([1.0, 2.0]), np.array([[1.0, 0.0], [0.0, 3.0]]))
    for again in (pickle.loads(pickle.dumps(d)), copy.deepcopy(d), copy.copy(d)):
        assert again.tag == 0
        np.testing.assert_array_equal(again.value, d.value)
        np.testing.assert_array_equal(again.partials, d.partials)


def test_a_dual_of_a_running_differentiation_refuses_to_pickle():
    def f(x):
        pickle.dumps(x)
        return x

    with pytest.raises(da.DualError, match="cannot be pickled.*da.primal") as info:
        da.jacobian(f, np.ones(2), mode="forward")
    assert "another process" in str(info.value)


def test_a_traced_value_refuses_to_pickle_or_copy():
    for make in (pickle.dumps, copy.copy, copy.deepcopy):

        def f(x, make=make):
            make(x)
            return x

        with pytest.raises(da.DualError, match="cannot be pickled or copied.*np.copy"):
            da.jacobian(f, np.ones(2), mode="reverse")


def test_a_dual_deep_copied_inside_f_keeps_its_derivative():
    np.testing.assert_array_equal(
        da.jacobian(lambda x: copy.deepcopy(x) * 2.0, np.ones(2), mode="forward"), 2.0 * np.eye(2)
    )
