"""The forward-mode API on classic test functions, against hand-derived derivatives."""

import numpy as np
import pytest

import dualad as da
from dualad import transforms

pytestmark = pytest.mark.usefixtures("both_modes")  # each test runs forward and reverse

RNG = np.random.default_rng(20261123)


# --- classic functions and their hand-derived derivatives ----------------------------------------


def rosenbrock(x):
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def rosenbrock_grad(x):
    g = np.zeros_like(x)
    g[:-1] = -400.0 * x[:-1] * (x[1:] - x[:-1] ** 2) - 2.0 * (1.0 - x[:-1])
    g[1:] += 200.0 * (x[1:] - x[:-1] ** 2)
    return g


def rosenbrock_hess(x):
    n = len(x)
    h = np.zeros((n, n))
    for i in range(n - 1):
        h[i, i] += 1200.0 * x[i] ** 2 - 400.0 * x[i + 1] + 2.0
        h[i, i + 1] = h[i + 1, i] = -400.0 * x[i]
        h[i + 1, i + 1] += 200.0
    return h


def lorenz(u, sigma=10.0, rho=28.0, beta=8.0 / 3.0):
    x, y, z = u
    return np.stack([sigma * (y - x), x * (rho - z) - y, x * y - beta * z])


def lorenz_jac(u, sigma=10.0, rho=28.0, beta=8.0 / 3.0):
    x, y, z = u
    return np.array([[-sigma, sigma, 0.0], [rho - z, -1.0, -x], [y, x, -beta]])


def softmax(x):
    e = np.exp(x - np.max(x))
    return e / np.sum(e)


@pytest.mark.parametrize("n", [2, 3, 7, 20])
def test_rosenbrock_gradient_and_hessian(n):
    x = RNG.normal(size=n)
    np.testing.assert_allclose(da.gradient(rosenbrock, x), rosenbrock_grad(x), rtol=1e-13)
    np.testing.assert_allclose(da.hessian(rosenbrock, x), rosenbrock_hess(x), rtol=1e-13)


def test_lorenz_jacobian_and_value():
    u = np.array([1.2, -0.4, 20.0])
    value, jac = da.value_and_jacobian(lorenz, u)
    np.testing.assert_array_equal(value, lorenz(u))
    np.testing.assert_allclose(jac, lorenz_jac(u), rtol=1e-15)


def test_softmax_jacobian_and_logsumexp_gradient():
    x = RNG.normal(size=5)
    s = softmax(x)
    np.testing.assert_allclose(da.jacobian(softmax, x), np.diag(s) - np.outer(s, s), atol=1e-15)
    lse = lambda x: np.log(np.sum(np.exp(x)))  # noqa: E731
    np.testing.assert_allclose(da.gradient(lse, x), s, rtol=1e-14)


def test_quadratic_form_gradient_and_hessian():
    a = RNG.normal(size=(4, 4))
    x = RNG.normal(size=4)
    f = lambda x: 0.5 * x @ a @ x  # noqa: E731
    np.testing.assert_allclose(da.gradient(f, x), 0.5 * (a + a.T) @ x, rtol=1e-13)
    np.testing.assert_allclose(da.hessian(f, x), 0.5 * (a + a.T), rtol=1e-14)


def test_matrix_input_jacobian_shape_and_values():
    x = RNG.normal(size=(2, 2))
    jac = da.jacobian(lambda m: m @ m, x)
    assert jac.shape == (2, 2, 2, 2)
    expected = np.einsum("ik,lj->ijkl", np.eye(2), x) + np.einsum("ik,jl->ijkl", x, np.eye(2))
    np.testing.assert_allclose(jac, expected, rtol=1e-15)


def test_hessian_symmetric_for_a_mixed_function():
    f = lambda v: np.sin(v[0] * v[1]) * np.exp(v[2]) + v[0] ** 3 * np.log(v[1])  # noqa: E731
    v = np.array([0.3, 1.7, -0.2])
    h = da.hessian(f, v)
    np.testing.assert_allclose(h, h.T, rtol=1e-14, atol=1e-15)
    x, y, z = v
    dxdy = (np.cos(x * y) - x * y * np.sin(x * y)) * np.exp(z) + 3 * x**2 / y
    assert h[0, 1] == pytest.approx(dxdy, rel=1e-14)


def test_hvp_matches_hessian_times_vector():
    x = RNG.normal(size=6)
    v = RNG.normal(size=6)
    np.testing.assert_allclose(da.hvp(rosenbrock, x, v), rosenbrock_hess(x) @ v, rtol=1e-12)


def test_third_derivative_by_nesting():
    f = lambda x: np.sin(x) * np.exp(x)  # noqa: E731
    d3 = da.derivative(lambda a: da.derivative(lambda b: da.derivative(f, b), a), 0.4)
    # (sin x e^x)''' = 2 e^x (cos x - sin x)
    assert d3 == pytest.approx(2 * np.exp(0.4) * (np.cos(0.4) - np.sin(0.4)), rel=1e-14)


# --- tags: nested differentiation never confuses perturbations -----------------------------------


def test_perturbation_confusion_issue_example():
    assert da.derivative(lambda x: x * da.derivative(lambda y: x + y, 1.0), 1.0) == 1.0


def test_perturbation_confusion_inner_depends_on_outer():
    # d/dx [x * d/dy (x * y)] = d/dx x**2 = 2x
    assert da.derivative(lambda x: x * da.derivative(lambda y: x * y, 2.0), 3.0) == 6.0


def test_inner_gradient_closing_over_outer_array():
    # d/dx sum(x * grad_y(sum(x*y))) = d/dx sum(x*x) = 2x
    x = np.array([1.0, -2.0, 0.5])
    g = da.gradient(lambda x: np.sum(x * da.gradient(lambda y: np.sum(x * y), x)), x)
    np.testing.assert_allclose(g, 2 * x)


# --- inputs and outputs --------------------------------------------------------------------------


def test_input_kinds():
    assert da.derivative(lambda x: x**2, 3) == 6.0  # Python int
    np.testing.assert_array_equal(da.gradient(lambda x: np.sum(x * x), [1, 2]), [2.0, 4.0])
    g = da.gradient(lambda x: np.sum(x * x), np.array([1, 2], dtype=np.int32))
    assert g.dtype == np.float64
    g32 = da.gradient(lambda x: np.sum(x * x), np.array([1.0, 2.0], dtype=np.float32))
    assert g32.dtype == np.float32
    np.testing.assert_array_equal(g32, [2.0, 4.0])


def test_output_kinds():
    x = np.array([1.0, 2.0])
    np.testing.assert_array_equal(da.jacobian(lambda x: [x[0], x[1] * x[0]], x), [[1, 0], [2, 1]])
    np.testing.assert_array_equal(da.jacobian(lambda x: np.ones(3), x), np.zeros((3, 2)))
    assert da.gradient(lambda x: 5.0, x).shape == (2,)
    np.testing.assert_array_equal(da.derivative(lambda t: t * np.arange(3.0), 2.0), [0, 1, 2])
    assert da.derivative(lambda t: 3.0, 1.0) == 0.0


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 8, 100])
def test_chunk_size_does_not_change_the_jacobian(chunk):
    x = RNG.normal(size=8)
    f = lambda x: np.cumsum(np.sin(x) * x[::-1])  # noqa: E731
    np.testing.assert_array_equal(da.jacobian(f, x, chunk_size=chunk), da.jacobian(f, x))


@pytest.mark.forward_only  # counts the directions each forward pass carries
def test_memory_budget_splits_into_balanced_chunks(monkeypatch):
    calls = []

    def f(x):
        calls.append(x.nderiv)
        return x**2

    x = np.arange(10.0)
    monkeypatch.setattr(transforms, "MEMORY_BUDGET_ENTRIES", 40)  # 4 directions of 10 inputs
    np.testing.assert_array_equal(da.jacobian(f, x), np.diag(2 * x))
    assert calls == [4, 4, 2]  # 3 passes; the last one carries the remaining 2 directions
    assert transforms.chunk_width(10, None) == 4
    assert transforms.chunk_width(12, None) == 3  # 4 passes of 3, not 3, 3, 3, 3 after a 4


def test_default_chunking_is_one_pass_while_it_fits():
    assert transforms.chunk_width(2000, None) == 2000
    assert transforms.chunk_width(10_000, None) == 400  # 25 passes of 400 directions


def test_jvp_one_and_many_directions():
    # its own generator: the module's RNG gave points depending on xdist's test order, and an
    # entry of J v that cancels to near zero has no relative accuracy (hence atol too)
    rng = np.random.default_rng(183)
    x = rng.normal(size=3)
    jac = lorenz_jac(x)
    v = rng.normal(size=3)
    value, jv = da.jvp(lorenz, x, v)
    np.testing.assert_allclose(value, lorenz(x))
    scale = np.abs(jac).max() * np.abs(v).max()
    np.testing.assert_allclose(jv, jac @ v, rtol=1e-14, atol=1e-14 * scale)
    vs = rng.normal(size=(3, 5))
    _, jvs = da.jvp(lorenz, x, vs)
    assert jvs.shape == (3, 5)
    np.testing.assert_allclose(jvs, jac @ vs, rtol=1e-13, atol=1e-14 * scale)


def test_args_are_passed_through_and_not_differentiated():
    u = np.array([1.0, 2.0, 3.0])
    jac = da.jacobian(lorenz, u, args=(5.0, 7.0, 1.0))
    np.testing.assert_allclose(jac, lorenz_jac(u, 5.0, 7.0, 1.0))
    np.testing.assert_allclose(da.jacfwd(lorenz)(u, 5.0, 7.0, 1.0), jac)
    grad = da.grad(lambda x, c: c * np.sum(x**2))
    np.testing.assert_allclose(grad(u, 3.0), 6 * u)


def test_value_and_gradient():
    x = RNG.normal(size=4)
    value, g = da.value_and_gradient(rosenbrock, x)
    assert value == pytest.approx(rosenbrock(x), rel=1e-15)
    np.testing.assert_allclose(g, rosenbrock_grad(x), rtol=1e-13)


def test_stop_gradient_primal_tangent():
    x = np.array([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(
        da.gradient(lambda x: np.sum(da.stop_gradient(x * x) * x), x), x * x
    )
    d = da.Dual(np.array([1.0, 2.0]), np.array([[1.0, 0.0], [0.0, 3.0]]))
    np.testing.assert_array_equal(da.primal(d), [1.0, 2.0])
    np.testing.assert_array_equal(da.tangent(d), [[1.0, 0.0], [0.0, 3.0]])
    assert da.primal(2.5) == 2.5
    assert da.tangent(np.ones(2)).shape == (2, 1)


def test_dual_constructor_default_partials():
    d = da.Dual([1.0, 2.0])
    assert d.partials.shape == (2, 1)
    assert d.nderiv == 1
    assert np.all(d.partials == 0)


def test_numba_dispatcher_is_differentiated_through_its_python_source():
    numba = pytest.importorskip("numba")

    @numba.njit
    def f(x):
        return np.sum(np.sin(x) * x)

    x = np.array([0.1, 0.2])
    np.testing.assert_allclose(da.gradient(f, x), np.sin(x) + x * np.cos(x), rtol=1e-15)


def test_scipy_minimize_with_exact_gradient_and_hessian():
    optimize = pytest.importorskip("scipy.optimize")
    x0 = np.array([-1.2, 1.0])  # the classic start
    res = optimize.minimize(
        rosenbrock, x0, jac=da.grad(rosenbrock), hess=da.jacfwd(da.grad(rosenbrock)),
        method="trust-exact",
    )  # fmt: skip
    assert res.success
    np.testing.assert_allclose(res.x, np.ones(2), atol=1e-6)


# --- NumPy's copy and view semantics carry over to the partials ----------------------------------


def test_results_never_share_partials_with_their_inputs():
    def f(x):
        y = x + 0.0  # a new array in NumPy: writing into y must leave x alone
        y[0] = 7.0
        z = x[1]  # a scalar copy
        z += x[2]
        return np.stack([x[0], y[0], z])

    np.testing.assert_array_equal(da.jacobian(f, np.ones(3)), [[1, 0, 0], [0, 0, 0], [0, 1, 1]])


def test_writes_through_views_reach_the_base_as_in_numpy():
    def f(x):
        y = np.zeros_like(x)
        row = y[1:]  # a view
        row += x[:-1]
        return y

    np.testing.assert_array_equal(da.jacobian(f, np.ones(3)), [[0, 0, 0], [1, 0, 0], [0, 1, 0]])


def test_function_writing_into_its_input_does_not_corrupt_later_calls():
    def f(x):
        x[0] = 2 * x[1]
        return x

    first = da.jacobian(f, np.ones(3))
    np.testing.assert_array_equal(first, [[0, 2, 0], [0, 1, 0], [0, 0, 1]])
    np.testing.assert_array_equal(da.jacobian(lambda x: x, np.ones(3)), np.eye(3))


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # sqrt'(0) = inf, on purpose
def test_infinite_local_derivative_does_not_spill_into_other_directions():
    # sqrt'(0) is infinite, but x[0] does not move along the second direction: 0, not NaN
    g = da.gradient(lambda x: np.sum(np.sqrt(x)), [0.0, 1.0])
    assert g[0] == np.inf and g[1] == 0.5
    assert da.jacobian(lambda x: np.sqrt(x[0]) + x[1], [0.0, 4.0])[1] == 1.0  # 0-d path
