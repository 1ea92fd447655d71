"""da.custom_jvp and da.custom_vjp: the rules are what both engines use (checked with rules that
differ recognisably from the automatic derivative), nesting differentiates the rules, and every
misuse raises an error that says what to do."""

import functools

import numpy as np
import pytest

import dualad as da

MODES = ["forward", "reverse"]


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


@da.custom_jvp
def log1pexp(x):
    with np.errstate(over="ignore"):
        return np.log1p(np.exp(x))


@log1pexp.defjvp
def _log1pexp_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return log1pexp(x), t * sigmoid(x)


def log1pexp_automatic(x):
    return np.log1p(np.exp(x))


X = np.array([-3.0, 0.0, 2.0, 800.0])


@pytest.mark.parametrize("mode", MODES)
def test_custom_jvp_rule_is_used_where_the_automatic_one_fails(mode):
    with np.errstate(over="ignore", invalid="ignore"):
        automatic = da.gradient(lambda x: np.sum(log1pexp_automatic(x)), X, mode=mode)
    assert not automatic[-1] == 1.0  # exp(800) overflows: NaN forward, 0 reverse
    g = da.gradient(lambda x: np.sum(log1pexp(x)), X, mode=mode)
    np.testing.assert_allclose(g, sigmoid(X), rtol=1e-14)
    jac = da.jacobian(log1pexp, X[:3], mode=mode)
    np.testing.assert_allclose(jac, np.diag(sigmoid(X[:3])), rtol=1e-14)


def test_custom_jvp_against_central_differences_and_plain_calls():
    x, h = 0.7, 1e-6
    fd = (log1pexp(x + h) - log1pexp(x - h)) / (2 * h)
    assert np.isclose(da.derivative(log1pexp, x), fd, rtol=1e-8)
    assert log1pexp(0.0) == np.log(2.0)  # no Carrier: the function itself runs


def test_hessian_through_a_custom_jvp_differentiates_its_rule():
    x = X[:3]
    expected = np.diag(sigmoid(x) * (1 - sigmoid(x)))
    f = lambda x: np.sum(log1pexp(x))  # noqa: E731
    np.testing.assert_allclose(da.hessian(f, x), expected, rtol=1e-13)
    rev_over_fwd = da.jacobian(lambda z: da.gradient(f, z, mode="forward"), x, mode="reverse")
    np.testing.assert_allclose(rev_over_fwd, expected, rtol=1e-13)
    # at x = 800 only the custom rule gives the (zero) curvature
    assert da.hessian(f, np.array([800.0]))[0, 0] == 0.0


@da.custom_jvp
def cube_with_wrong_rule(x):
    return x**3


@cube_with_wrong_rule.defjvp
def _seven(primals, tangents):
    return cube_with_wrong_rule(primals[0]), 7.0 * tangents[0]


@pytest.mark.parametrize("mode", MODES)
def test_both_engines_take_the_rule_not_the_code(mode):
    g = da.gradient(lambda x: np.sum(cube_with_wrong_rule(x)), np.array([1.0, 2.0]), mode=mode)
    np.testing.assert_array_equal(g, [7.0, 7.0])  # the code's derivative would be 3x^2


@da.custom_jvp
def polar(r, theta):
    """Two arguments, a tuple output: (r cos theta, r sin theta)."""
    return r * np.cos(theta), r * np.sin(theta)


@polar.defjvp
def _polar_jvp(primals, tangents):
    (r, th), (dr, dth) = primals, tangents
    c, s = np.cos(th), np.sin(th)
    return (r * c, r * s), (dr * c - r * s * dth, dr * s + r * c * dth)


@pytest.mark.parametrize("mode", MODES)
def test_custom_jvp_with_several_arguments_and_a_tuple_output(mode):
    r, th = 2.0, 0.3
    jac = da.jacfwd(polar, argnums=(0, 1))(r, th) if mode == "forward" else None
    jac = jac or da.jacrev(polar, argnums=(0, 1))(r, th)
    expected = ((np.cos(th), -r * np.sin(th)), (np.sin(th), r * np.cos(th)))
    for row, erow in zip(jac, expected):
        np.testing.assert_allclose(row, erow, rtol=1e-14)
    # a constant argument gets a zero tangent
    g = da.gradient(lambda t: polar(r, t)[1], th, mode=mode)
    assert np.isclose(g, r * np.cos(th))


def test_custom_jvp_agrees_with_jax():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy

    @jax.custom_jvp
    def jlog1pexp(x):
        return jnp.log1p(jnp.exp(x))

    @jlog1pexp.defjvp
    def _jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        return jlog1pexp(x), t * jax.nn.sigmoid(x)

    x = X[:3]
    ref = np.asarray(jax.hessian(lambda z: jnp.sum(jlog1pexp(z)))(jnp.asarray(x)))
    np.testing.assert_allclose(da.hessian(lambda z: np.sum(log1pexp(z)), x), ref, rtol=1e-12)


# --- custom_vjp ----------------------------------------------------------------------------------


@da.custom_vjp
def safe_norm(x):
    return np.sqrt(np.sum(x * x))


def _safe_norm_fwd(x):
    y = safe_norm(x)
    return y, (x, y)


def _safe_norm_bwd(residuals, ct):
    x, y = residuals
    return (ct * x / np.maximum(y, 1e-300),)


safe_norm.defvjp(_safe_norm_fwd, _safe_norm_bwd)


@pytest.mark.parametrize("mode", MODES)
def test_custom_vjp_rule_is_used(mode):
    with np.errstate(invalid="ignore", divide="ignore"):
        automatic = da.gradient(lambda x: np.sqrt(np.sum(x * x)), np.zeros(2), mode=mode)
    if mode == "reverse":
        assert np.all(np.isnan(automatic))  # sqrt'(0) = inf meets a cotangent of 1
    np.testing.assert_array_equal(da.gradient(safe_norm, np.zeros(2), mode=mode), [0.0, 0.0])
    x = np.array([3.0, 4.0])
    np.testing.assert_allclose(da.gradient(safe_norm, x, mode=mode), x / 5.0, rtol=1e-15)


@da.custom_vjp
def double_with_triple_rule(x):
    return 2.0 * x


double_with_triple_rule.defvjp(lambda x: (2.0 * x, None), lambda _, ct: (3.0 * ct,))


@pytest.mark.parametrize("mode", MODES)
def test_both_engines_take_the_vjp_rule_not_the_code(mode):
    g = da.gradient(lambda x: np.sum(double_with_triple_rule(x)), np.array([1.0, 2.0]), mode=mode)
    np.testing.assert_array_equal(g, [3.0, 3.0])


@da.custom_vjp
def scaled_sin(x, y):
    return x * np.sin(y)


scaled_sin.defvjp(
    lambda x, y: (scaled_sin(x, y), (x, y)),
    lambda res, ct: (ct * np.sin(res[1]), ct * res[0] * np.cos(res[1])),
)


@pytest.mark.parametrize("mode", MODES)
def test_custom_vjp_two_arguments(mode):
    gx, gy = da.grad(scaled_sin, argnums=(0, 1), mode=mode)(2.0, 0.5)
    assert np.isclose(gx, np.sin(0.5)) and np.isclose(gy, 2 * np.cos(0.5))
    x = np.array([1.0, 2.0])
    jac = da.jacobian(lambda v: scaled_sin(v, 0.5), x, mode=mode)  # vector output
    np.testing.assert_allclose(jac, np.sin(0.5) * np.eye(2))


def test_second_derivatives_through_custom_vjp_differentiate_bwd():
    h = da.hessian(lambda v: scaled_sin(v[0], v[1]), [2.0, 0.5])
    np.testing.assert_allclose(h, [[0.0, np.cos(0.5)], [np.cos(0.5), -2 * np.sin(0.5)]])
    x = np.array([3.0, 4.0])
    expected = (np.eye(2) - np.outer(x, x) / 25.0) / 5.0
    np.testing.assert_allclose(da.hessian(safe_norm, x), expected, rtol=1e-14)
    rev = da.jacobian(lambda z: da.gradient(safe_norm, z, mode="forward"), x, mode="reverse")
    np.testing.assert_allclose(rev, expected, rtol=1e-14)


def test_sparsity_follows_the_function_itself():
    pattern = da.jacobian_sparsity(log1pexp, np.ones(3))
    np.testing.assert_array_equal(pattern.toarray(), np.eye(3, dtype=bool))


# --- errors --------------------------------------------------------------------------------------


def test_custom_errors():
    x = np.array([1.0, 2.0])

    @da.custom_jvp
    def no_rule(x):
        return x

    with pytest.raises(da.DualError, match=r"no rule yet: define one with @no_rule.defjvp"):
        da.jacobian(no_rule, x)
    no_rule(x)  # a plain call needs no rule

    @da.custom_vjp
    def no_vjp(x):
        return x

    with pytest.raises(da.DualError, match=r"no rule yet: call no_vjp.defvjp\(fwd, bwd\)"):
        da.gradient(lambda x: np.sum(no_vjp(x)), x, mode="reverse")

    def jvp_custom(rule):
        f = da.custom_jvp(lambda x: x * 2.0)
        f.defjvp(rule)
        return f

    with pytest.raises(da.DualError, match="must return a pair"):
        da.jacobian(jvp_custom(lambda p, t: t[0]), x)
    with pytest.raises(
        da.DualError, match=r"tangent of shape \(1,\) for an output of shape \(2,\)"
    ):
        da.jacobian(jvp_custom(lambda p, t: (p[0] * 2.0, t[0][:1])), x)
    with pytest.raises(da.DualError, match="tangent of structure"):
        da.jacobian(jvp_custom(lambda p, t: (p[0] * 2.0, (t[0], t[0]))), x)
    with pytest.raises(da.DualError, match="not linear in the tangents"):
        da.jacobian(jvp_custom(lambda p, t: (p[0] * 2.0, t[0] + 1.0)), x)
    with pytest.raises(da.DualError, match="must depend on the primals only"):
        da.jacobian(jvp_custom(lambda p, t: (p[0] + t[0], t[0])), x)
    with pytest.raises(TypeError, match="pass its arguments positionally"):
        da.jacobian(lambda x: polar(x, theta=0.1), 1.0)
    with pytest.raises(da.DualError, match="compiled engine cannot use"):
        da.jacobian(log1pexp, x, engine="numba")
    with pytest.raises(TypeError, match="defjvp takes the JVP rule"):
        log1pexp.defjvp(3)
    with pytest.raises(TypeError, match="custom_vjp decorates a function"):
        da.custom_vjp(3)

    def vjp_custom(bwd):
        f = da.custom_vjp(lambda x: x * 2.0)
        f.defvjp(lambda x: (x * 2.0, None), bwd)
        return f

    for mode in MODES:
        with pytest.raises(da.DualError, match=r"one cotangent per positional argument \(1\)"):
            da.gradient(lambda x: np.sum(vjp_custom(lambda r, ct: ct * 2.0)(x)), x, mode=mode)
        with pytest.raises(da.DualError, match="returned cotangents of structure"):
            da.gradient(lambda x: np.sum(vjp_custom(lambda r, ct: ((ct, ct),))(x)), x, mode=mode)

    def closing_over(x):
        f = da.custom_jvp(lambda z: z * x)  # x is the Dual being differentiated
        f.defjvp(lambda p, t: (p[0] * x, t[0] * x))
        return f(x * 1.0)

    with pytest.raises(da.DualError, match="pass that value as an argument"):
        da.jacobian(closing_over, x)

    def closing_over_vjp(x):
        f = da.custom_vjp(lambda z: z * x)
        f.defvjp(lambda z: (z * x, None), lambda r, ct: (ct * x,))
        return f(x * 1.0)

    with pytest.raises(da.DualError, match="pass that value as an argument"):
        da.jacobian(closing_over_vjp, x, mode="forward")

    def view_after_write(p, t):  # the reverse engine cannot trace this rule
        a = t[0] * 1.0
        v = a[:1]
        a[0] = 2.0 * a[0]
        return p[0] * 2.0, a + v

    with pytest.raises(da.ReverseModeUnsupported, match="define a custom_vjp for it"):
        da.gradient(lambda x: np.sum(jvp_custom(view_after_write)(x)), x, mode="reverse")


# --- nondiff_argnums -----------------------------------------------------------------------------


@functools.partial(da.custom_jvp, nondiff_argnums=(0,))
def _apply_twice(g, x):
    return g(g(x))


@_apply_twice.defjvp
def _apply_twice_jvp(g, primals, tangents):
    (x,), (t,) = primals, tangents
    inner = g(x)
    # the rule is deliberately off by a factor 2 from the truth, so that it is seen to be used
    return g(inner), 2.0 * _slope(g, inner) * _slope(g, x) * t


def _slope(g, x, h=1e-6):
    return (g(x + h) - g(x - h)) / (2 * h)


@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_custom_jvp_nondiff_argnums_passes_a_function_through(mode):
    x = np.array([0.3, 0.8])
    got = da.jacobian(lambda x: _apply_twice(np.sin, x), x, mode=mode)
    truth = np.diag(np.cos(np.sin(x)) * np.cos(x))  # d/dx sin(sin(x))
    np.testing.assert_allclose(got, 2.0 * truth, rtol=1e-8)
    np.testing.assert_allclose(_apply_twice(np.sin, x), np.sin(np.sin(x)))  # plain call


@functools.partial(da.custom_vjp, nondiff_argnums=(1, 3))
def _scaled_power(x, n, y, scale):
    return scale * x**n * y


def _scaled_power_fwd(x, n, y, scale):
    return _scaled_power(x, n, y, scale), (x, y)


def _scaled_power_bwd(n, scale, residuals, ct):
    x, y = residuals
    return (ct * scale * n * x ** (n - 1) * y, ct * scale * x**n)


_scaled_power.defvjp(_scaled_power_fwd, _scaled_power_bwd)


@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_custom_vjp_nondiff_argnums_in_the_middle(mode):
    x, y = np.array([0.5, 1.5]), np.array([2.0, -1.0])
    got = da.jacobian(lambda x: _scaled_power(x, 3, y, 0.5), x, mode=mode)
    np.testing.assert_allclose(got, np.diag(0.5 * 3 * x**2 * y), rtol=1e-14)
    got = da.gradient(lambda y: np.sum(_scaled_power(x, 2, y, 4.0)), y, mode=mode)
    np.testing.assert_allclose(got, 4.0 * x**2, rtol=1e-14)
    fd = (_scaled_power(x + 1e-6, 3, y, 0.5) - _scaled_power(x - 1e-6, 3, y, 0.5)) / 2e-6
    np.testing.assert_allclose(np.diag(da.jacobian(lambda x: _scaled_power(x, 3, y, 0.5), x)),
                               fd, rtol=1e-7)  # fmt: skip


def test_nondiff_argnums_negative_index():
    f = da.custom_jvp(lambda x, k: x * k, nondiff_argnums=-1)
    f.defjvp(lambda k, primals, tangents: (primals[0] * k, tangents[0] * k))
    assert da.derivative(lambda x: f(x, 3.0), 2.0) == 3.0


def test_nondiff_argnums_errors():
    with pytest.raises(ValueError, match=r"nondiff_argnums must be an int or a tuple of ints"):
        da.custom_jvp(lambda x, n: x, nondiff_argnums="n")
    with pytest.raises(ValueError, match=r"nondiff_argnums must be an int or a tuple of ints"):
        da.custom_vjp(lambda x, n: x, nondiff_argnums=(1.0,))
    with pytest.raises(ValueError, match=r"nondiff_argnums has a repeated position"):
        da.custom_vjp(lambda x, n: x, nondiff_argnums=(1, 1))
    f = da.custom_jvp(lambda x, n: x * n, nondiff_argnums=(2,))
    f.defjvp(lambda n, primals, tangents: (primals[0], tangents[0]))
    with pytest.raises(ValueError, match=r"nondiff_argnums=\(2,\) names argument 2, but it was "
                       r"called with 2 positional argument"):  # fmt: skip
        da.derivative(lambda x: f(x, 2.0), 1.0)
    g = da.custom_jvp(lambda x, n: x * n, nondiff_argnums=(1,))
    g.defjvp(lambda n, primals, tangents: (primals[0] * n, tangents[0] * n))
    with pytest.raises(da.DualError, match="listed in nondiff_argnums carries a derivative"):
        da.derivative(lambda x: g(1.0, x), 1.0)
