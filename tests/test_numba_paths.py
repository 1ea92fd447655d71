"""Every path of the API on a numba.njit function that calls numba.njit helpers, and ``engine=``.

The NumPy engine, the reverse engine and the sparsity tracer run the function's Python source;
its helpers are redirected to their Python source for the call (``dualad.pysource``).  Each path
is checked against the hand-derived derivatives of ``f(x) = x0 * sum(x_i**2) + sum(sin(x_i))``
and against the compiled engine, which compiles the helpers for Duals itself.
"""

import threading
import types
import warnings

import numba
import numpy as np
import pytest

import dualad as da
from dualad.pysource import python_source

X = np.array([0.7, -1.3, 2.1, 0.4])


@numba.njit
def _square(a):
    return a * a


@numba.njit
def _term(a):
    return np.sin(a)  # a helper that itself calls nothing compiled


@numba.njit
def _sum_of_squares(x):
    s = 0.0
    for i in range(x.shape[0]):
        s += _square(x[i])  # a helper calling a helper
    return s


@numba.njit
def with_helpers(x):
    s = x[0] * _sum_of_squares(x)
    for i in range(x.shape[0]):
        s += _term(x[i])
    return s


def expected_gradient(x):
    g = 2.0 * x[0] * x + np.cos(x)
    g[0] += np.sum(x**2)
    return g


def expected_hessian(x):
    h = np.diag(2.0 * x[0] - np.sin(x))
    h[0, :] += 2.0 * x
    h[:, 0] += 2.0 * x
    return h


def _make_closure():
    helper = _square

    @numba.njit
    def closure(x):
        s = 0.0
        for i in range(x.shape[0]):
            s += helper(x[i]) * x[0]
        return s

    return closure


closure_over_helper = _make_closure()


def plain_with_helper(x):
    """A plain Python function (engine="numpy") that calls a numba.njit helper."""
    return np.sum(x) * _sum_of_squares(x)


def assert_close(actual, expected):
    np.testing.assert_allclose(actual, expected, rtol=1e-13, atol=1e-13)


@pytest.fixture(autouse=True)
def no_fallback():
    """No path may need the compiled engine's fallback warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="dualad could not compile")
        yield


def test_compiled_engine_compiles_the_helpers():
    assert_close(da.gradient(with_helpers, X), expected_gradient(X))


@pytest.mark.parametrize(
    "path",
    [
        lambda f, x: da.gradient(f, x, engine="numpy"),
        lambda f, x: da.gradient(f, x, mode="reverse"),
        lambda f, x: da.grad(f, mode="reverse")(x),
        lambda f, x: da.jacrev(f)(x),
        lambda f, x: da.vjp(f, x)[1](1.0),
        lambda f, x: da.jvp(f, x, np.eye(x.size), engine="numpy")[1],
        lambda f, x: da.value_and_gradient(f, x, engine="numpy")[1],
    ],
    ids=["numpy", "reverse", "grad-reverse", "jacrev", "vjp", "jvp-numpy", "value-and-gradient"],
)
def test_first_order_paths(path):
    assert_close(path(with_helpers, X), expected_gradient(X))


@pytest.mark.parametrize("engine", ["auto", "numpy"])
def test_hessian_and_hvp(engine):
    h = da.hessian(with_helpers, X, engine=engine)
    assert_close(h, expected_hessian(X))
    v = np.array([1.0, -2.0, 0.5, 3.0])
    assert_close(da.hvp(with_helpers, X, v, engine=engine), expected_hessian(X) @ v)


def test_sparsity_and_sparse_jacobian():
    @numba.njit
    def residual(u):
        r = np.empty_like(u)
        r[0] = _square(u[0])
        for i in range(1, u.shape[0]):
            r[i] = _square(u[i]) - u[i - 1]
        return r

    u = np.linspace(0.5, 2.0, 6)
    pattern = da.jacobian_sparsity(residual, u).toarray()
    np.testing.assert_array_equal(pattern, np.eye(6, dtype=bool) | np.eye(6, k=-1, dtype=bool))
    expected = np.diag(2.0 * u) - np.eye(6, k=-1)
    assert_close(da.sparse_jacobian(residual, u, engine="numpy").toarray(), expected)
    assert_close(da.sparse_jacobian(residual, u).toarray(), expected)  # compiled passes


def test_a_helper_in_a_closure_cell():
    expected = 2.0 * X[0] * X
    expected[0] += np.sum(X**2)
    assert_close(da.gradient(closure_over_helper, X, mode="reverse"), expected)
    assert_close(da.gradient(closure_over_helper, X), expected)  # compiled


def test_plain_function_calling_a_helper():
    expected = np.sum(X**2) + 2.0 * np.sum(X) * X
    assert_close(da.gradient(plain_with_helper, X, engine="numpy"), expected)
    assert_close(da.gradient(plain_with_helper, X, mode="reverse"), expected)


def test_redirection_leaves_the_functions_alone():
    """The rebuilt source is a copy: the user's module still holds its dispatchers."""
    source = python_source(with_helpers)
    assert source is not with_helpers.py_func
    assert source.__globals__["_sum_of_squares"] is not _sum_of_squares
    assert with_helpers.py_func.__globals__["_sum_of_squares"] is _sum_of_squares
    assert globals()["_square"] is _square
    # a function that calls nothing compiled is run as it is (it sees later global changes)
    assert python_source(expected_gradient) is expected_gradient
    assert python_source(np.sin) is np.sin


SCALE = 2.0


@numba.njit
def _scaled(x):
    return SCALE * _sum_of_squares(x)


def test_the_rebuild_is_reused_until_a_global_it_reads_changes():
    """The rebuilt source is kept per function, but never with a stale global or helper."""
    global SCALE, _sum_of_squares
    first = python_source(_scaled)
    assert python_source(_scaled) is first  # nothing changed: the same rebuild
    assert_close(da.gradient(_scaled, X, engine="numpy"), 4.0 * X)
    saved = SCALE, _sum_of_squares
    try:
        SCALE = 3.0  # a number the function reads
        assert python_source(_scaled) is not first
        assert_close(da.gradient(_scaled, X, engine="numpy"), 6.0 * X)
        _sum_of_squares = numba.njit(lambda x: np.sum(x**3))  # a helper swapped for another
        assert_close(da.gradient(_scaled, X, engine="numpy"), 9.0 * X**2)
    finally:
        SCALE, _sum_of_squares = saved
    assert_close(da.gradient(_scaled, X, engine="numpy"), 4.0 * X)


def test_redirection_in_threads():
    """Concurrent calls share the rebuilt source read-only and agree."""
    results, errors = [], []

    def work():
        try:
            for _ in range(5):
                results.append(da.gradient(with_helpers, X, engine="numpy"))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for g in results:
        assert_close(g, expected_gradient(X))


_helpers = types.SimpleNamespace(square=_square)


def _via_attribute(x):
    return x[0] * _helpers.square(x[1])


def test_a_helper_reached_as_an_attribute_says_what_to_do():
    message = "Import it by name"
    with pytest.raises(da.DualError, match=message):
        da.gradient(_via_attribute, X, engine="numpy")
    with pytest.raises(da.DualError, match=message):
        da.gradient(_via_attribute, X, mode="reverse")
    with pytest.raises(da.DualError, match=message):
        da.jacobian_sparsity(_via_attribute, X)


# --- engine= on every function that takes f -------------------------------------------------------


def _cubes(x):
    return np.sum(x**3)


V = np.array([1.0, 0.0, 2.0, -1.0])
EVERY_CALL = {
    "derivative": lambda e: da.derivative(np.sin, 0.5, engine=e),
    "gradient": lambda e: da.gradient(_cubes, X, engine=e),
    "value_and_gradient": lambda e: da.value_and_gradient(_cubes, X, engine=e),
    "jacobian": lambda e: da.jacobian(np.sin, X, engine=e),
    "value_and_jacobian": lambda e: da.value_and_jacobian(np.sin, X, engine=e),
    "jvp": lambda e: da.jvp(np.sin, X, V, engine=e),
    "vjp": lambda e: da.vjp(np.sin, X, engine=e)[1](V),
    "hessian": lambda e: da.hessian(_cubes, X, engine=e),
    "hvp": lambda e: da.hvp(_cubes, X, V, engine=e),
    "jacfwd": lambda e: da.jacfwd(np.sin, engine=e)(X),
    "jacrev": lambda e: da.jacrev(np.sin, engine=e)(X),
    "grad": lambda e: da.grad(_cubes, engine=e)(X),
    "batch_jvp": lambda e: da.batch_jvp(np.sin, np.stack([X, X]), np.stack([V, V]), engine=e),
    "batch_jacobian": lambda e: da.batch_jacobian(np.sin, np.stack([X, X]), engine=e),
    "jacobian_sparsity": lambda e: da.jacobian_sparsity(np.sin, X, engine=e).toarray(),
    "sparse_jacobian": lambda e: da.sparse_jacobian(np.sin, X, engine=e).toarray(),
    "SparseJacobian": lambda e: da.SparseJacobian(np.sin, X, engine=e)(X).toarray(),
}


#: Batches default to the compiled engine, which takes loop code: their reference is written out.
REFERENCE = {
    "batch_jvp": lambda: (np.sin(np.stack([X, X])), np.cos(np.stack([X, X])) * V),
    "batch_jacobian": lambda: np.stack([np.diag(np.cos(X))] * 2),
}


def _flat(result):
    if isinstance(result, tuple):
        return np.concatenate([np.ravel(r) for r in result])
    return np.ravel(result)


@pytest.mark.parametrize("name", sorted(EVERY_CALL))
def test_engine_numpy_is_accepted_everywhere(name):
    """engine="numpy" gives what engine="auto" gives (the functions here are plain Python)."""
    expected = REFERENCE[name]() if name in REFERENCE else EVERY_CALL[name]("auto")
    assert_close(_flat(EVERY_CALL[name]("numpy")), _flat(expected))


@pytest.mark.parametrize("name", sorted(EVERY_CALL))
def test_unknown_engine_is_refused_everywhere(name):
    with pytest.raises(ValueError, match="engine must be 'auto', 'numba' or 'numpy'; got 'jax'"):
        EVERY_CALL[name]("jax")


@pytest.mark.parametrize("name", ["vjp", "jacrev"])
def test_compiled_reverse_mode_says_to_wrap_a_ufunc(name):
    # engine='numba' in reverse mode compiles f (issue 12); np.sin is no Python function
    with pytest.raises(TypeError, match=r"compiles a Python function .*got 'sin'. Wrap it"):
        EVERY_CALL[name]("numba")
