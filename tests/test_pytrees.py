"""Containers (pytrees) as inputs and outputs, argnums= and has_aux=, checked against JAX's
conventions, analytic derivatives and central differences, in forward and reverse mode."""

from collections import namedtuple

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

import dualad as da
from dualad.pytrees import flatten, unflatten

MODES = ["forward", "reverse"]


def tree_allclose(a, b, rtol=1e-10, atol=1e-12):
    """Same structure (types, keys, lengths) and close leaves."""
    la, ta = flatten(a)
    lb, tb = flatten(b)
    assert ta == tb, f"structures differ: {ta!r} vs {tb!r}"
    for x, y in zip(la, lb):
        assert np.shape(x) == np.shape(y)
        np.testing.assert_allclose(np.asarray(x, float), np.asarray(y, float), rtol=rtol, atol=atol)


def f_tree(p):
    """A dict output of a tuple input: {"a": w * s, "b": sum(w**2) * s}."""
    w, s = p
    return {"a": w * s, "b": np.sum(w**2) * s}


W = np.array([1.0, 2.0, 3.0])
S = 0.5
P = (W, S)


def jac_tree_expected():
    return {
        "a": (S * np.eye(3), W.copy()),
        "b": (2 * W * S, np.sum(W**2)),
    }


# --- flatten / unflatten -------------------------------------------------------------------------


def test_flatten_rules_and_round_trip():
    Point = namedtuple("Point", "x y")
    tree = {"b": [np.ones(2), (3.0, None)], "a": Point(1.0, [1.0, 2.0])}
    leaves, treedef = flatten(tree)
    # dict keys sorted; a list of numbers is one leaf; None holds no leaf
    assert len(leaves) == 4 and leaves[1] == [1.0, 2.0]
    back = unflatten(treedef, leaves)
    assert isinstance(back["a"], Point) and back["b"][1][1] is None
    assert flatten(back)[1] == treedef
    assert repr(flatten((1.0, {"k": None}))[1]) == "(*, {'k': None})"
    assert flatten([[1, 2], [3, 4]])[1].is_leaf  # nested numbers: one array
    assert not flatten([np.ones(2), 1.0])[1].is_leaf  # holds an array: a container
    with pytest.raises(ValueError, match="too many leaves"):
        unflatten(flatten((1.0,))[1], [1.0, 2.0])
    with pytest.raises(ValueError, match="too few leaves"):
        unflatten(flatten((1.0, 2.0))[1], [1.0])


# --- the bug: tuple outputs are never stacked --------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_tuple_output_gives_a_tuple_of_jacobians(mode):
    jac = da.jacobian(lambda a: (a * a, a), 2.0, mode=mode)
    assert isinstance(jac, tuple) and len(jac) == 2
    assert jac[0] == 4.0 and jac[1] == 1.0


def test_array_only_paths_refuse_containers_instead_of_stacking():
    from dualad import transforms

    for mode in MODES:
        with pytest.raises(da.DualError, match="never stacks a container"):
            transforms.jacobian(lambda a: (a * a, a), 2.0, mode=mode)


# --- jacobian, gradient, value_and_* -------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_dict_output_tuple_input_jacobian(mode):
    jac = da.jacobian(f_tree, P, mode=mode)
    tree_allclose(jac, jac_tree_expected())
    value, jac2 = da.value_and_jacobian(f_tree, P, mode=mode)
    tree_allclose(value, f_tree(P))
    tree_allclose(jac2, jac)


def test_jacobian_matches_jax_structure_and_values():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy

    def fj(p):
        return {"a": p["u"] * p["v"][0], "b": (jnp.sin(p["v"][1]) * jnp.sum(p["u"]), p["u"] ** 2)}

    def fd(p):
        return {"a": p["u"] * p["v"][0], "b": (np.sin(p["v"][1]) * np.sum(p["u"]), p["u"] ** 2)}

    p = {"u": np.array([0.3, -1.2]), "v": [1.5, np.array([0.1, 0.2, 0.4])]}
    ref = jax.jacfwd(fj)({"u": jnp.asarray(p["u"]), "v": [1.5, jnp.asarray(p["v"][1])]})
    ref = jax.tree_util.tree_map(np.asarray, ref)
    for mode in MODES:
        tree_allclose(da.jacobian(fd, p, mode=mode), ref)
    tree_allclose(
        da.hessian(lambda q: np.sum(fd(q)["b"][0]), p),
        jax.tree_util.tree_map(
            np.asarray,
            jax.hessian(lambda q: jnp.sum(fj(q)["b"][0]))(
                {"u": jnp.asarray(p["u"]), "v": [1.5, jnp.asarray(p["v"][1])]}
            ),
        ),
    )


@pytest.mark.parametrize("mode", MODES)
def test_gradient_has_the_structure_of_x(mode):
    def loss(p):
        return np.sum(p["w"] ** 2) * p["b"] + np.sin(p["b"])

    p = {"w": np.array([1.0, -2.0]), "b": 0.3}
    value, g = da.value_and_gradient(loss, p, mode=mode)
    assert np.isclose(value, loss(p))
    tree_allclose(g, {"w": 2 * p["w"] * p["b"], "b": np.sum(p["w"] ** 2) + np.cos(p["b"])})
    # central differences in each leaf
    h = 1e-6
    fd_b = (loss({**p, "b": p["b"] + h}) - loss({**p, "b": p["b"] - h})) / (2 * h)
    assert np.isclose(g["b"], fd_b, rtol=1e-8)


def test_list_of_numbers_stays_an_array_input():
    g = da.gradient(lambda x: x[0] * x[1], [2.0, 3.0])
    assert isinstance(g, np.ndarray) and g.shape == (2,)
    np.testing.assert_array_equal(g, [3.0, 2.0])
    # a list holding arrays is a container: the gradient is a list
    g = da.gradient(lambda p: np.sum(p[0] * p[1]), [np.array([1.0, 2.0]), np.array([3.0, 4.0])])
    assert isinstance(g, list)
    tree_allclose(g, [np.array([3.0, 4.0]), np.array([1.0, 2.0])])


@pytest.mark.parametrize("mode", MODES)
def test_none_leaves_and_constant_outputs(mode):
    jac = da.jacobian(lambda p: (p[0] * 2.0, None, 7.0), (np.array([1.0, 2.0]), None), mode=mode)
    assert jac[1] is None
    tree_allclose(jac[0], (2 * np.eye(2), None))
    tree_allclose(jac[2], (np.zeros(2), None))


def test_nested_containers_and_dtypes():
    x32 = (np.array([1.0, 2.0], dtype=np.float32), np.float32(3.0))
    g = da.gradient(lambda p: np.sum(p[0]) * p[1], x32)
    assert g[0].dtype == np.float32  # all leaves float32: stays float32
    g = da.gradient(lambda p: np.sum(p[0]) * p[1], (np.array([1, 2]), 3))  # ints: promoted
    tree_allclose(g, (np.array([3.0, 3.0]), 3.0))


def test_derivative_of_a_container_output():
    d = da.derivative(lambda t: {"sin": np.sin(t), "sq": t * t}, 0.5)
    tree_allclose(d, {"sin": np.cos(0.5), "sq": 1.0})


# --- jvp, vjp, hessian, hvp ----------------------------------------------------------------------


def test_jvp_with_v_of_x_structure():
    v = (np.array([1.0, 0.0, -1.0]), 2.0)
    value, tangent = da.jvp(f_tree, P, v)
    tree_allclose(value, f_tree(P))
    expected = jac_tree_expected()
    tree_allclose(
        tangent,
        {
            "a": expected["a"][0] @ v[0] + expected["a"][1] * v[1],
            "b": expected["b"][0] @ v[0] + expected["b"][1] * v[1],
        },
    )
    # k directions at once: a trailing axis on every leaf of v
    vk = (np.stack([v[0], 2 * v[0]], axis=-1), np.array([v[1], 2 * v[1]]))
    _, tk = da.jvp(f_tree, P, vk)
    np.testing.assert_allclose(tk["a"][:, 1], 2 * tangent["a"])
    np.testing.assert_allclose(tk["b"], [tangent["b"], 2 * tangent["b"]])


def test_vjp_with_a_cotangent_of_the_output_structure():
    value, pullback = da.vjp(f_tree, P)
    tree_allclose(value, f_tree(P))
    u = {"a": np.array([1.0, 0.5, 0.0]), "b": 2.0}
    g = pullback(u)
    e = jac_tree_expected()
    tree_allclose(
        g, (u["a"] @ e["a"][0] + u["b"] * e["b"][0], u["a"] @ e["a"][1] + u["b"] * e["b"][1])
    )
    # agrees with jvp: <u, J v> = <J^T u, v>
    v = (np.array([0.3, -0.2, 0.1]), -1.5)
    _, t = da.jvp(f_tree, P, v)
    lhs = u["a"] @ t["a"] + u["b"] * t["b"]
    rhs = g[0] @ v[0] + g[1] * v[1]
    assert np.isclose(lhs, rhs)


def test_hessian_and_hvp_of_a_container_point():
    def f(p):
        w, s = p
        return np.sum(w**2) * s**2

    h = da.hessian(f, P)
    expected = ((2 * S**2 * np.eye(3), 4 * W * S), (4 * W * S, 2 * np.sum(W**2)))
    tree_allclose(h, expected)
    v = (np.array([1.0, 0.0, 2.0]), -1.0)
    hv = da.hvp(f, P, v)
    tree_allclose(hv, (h[0][0] @ v[0] + h[0][1] * v[1], h[1][0] @ v[0] + h[1][1] * v[1]))


def test_reverse_over_forward_jacobian_of_a_tree_gradient():
    def f(p):
        return np.sum(p["w"] ** 3) * p["s"]

    p = {"s": 2.0, "w": np.array([1.0, 2.0])}
    h = da.jacobian(lambda q: da.gradient(f, q, mode="forward"), p, mode="reverse")
    tree_allclose(h["w"]["w"], np.diag(6 * p["w"] * p["s"]))
    tree_allclose(h["w"]["s"], 3 * p["w"] ** 2)
    tree_allclose(h["s"]["w"], 3 * p["w"] ** 2)


# --- argnums and has_aux -------------------------------------------------------------------------


def f3(a, b, c):
    return a * b**2 + np.sin(c) * a


@pytest.mark.parametrize("mode", ["forward", "reverse", "auto"])
def test_grad_argnums(mode):
    a, b, c = 2.0, 3.0, 0.4
    grads = da.grad(f3, argnums=(0, 2), mode=mode)(a, b, c)
    assert isinstance(grads, tuple) and len(grads) == 2
    assert np.isclose(grads[0], b**2 + np.sin(c)) and np.isclose(grads[1], np.cos(c) * a)
    assert np.isclose(da.grad(f3, argnums=1, mode=mode)(a, b, c), 2 * a * b)
    assert np.isclose(da.grad(f3)(a, b, c), b**2 + np.sin(c))  # default: the first argument
    value, g = da.value_and_grad(f3, argnums=(1,), mode=mode)(a, b, c)
    assert np.isclose(value, f3(a, b, c)) and isinstance(g, tuple) and np.isclose(g[0], 2 * a * b)


def test_jacfwd_jacrev_argnums_agree():
    def f(x, y):
        return {"p": x * y[0], "q": np.cumsum(x) * y[1]}

    x, y = np.array([1.0, 2.0]), np.array([3.0, -1.0])
    fwd = da.jacfwd(f, argnums=(0, 1))(x, y)
    rev = da.jacrev(f, argnums=(0, 1))(x, y)
    tree_allclose(fwd, rev)
    tree_allclose(fwd["p"], (3.0 * np.eye(2), np.stack([x, np.zeros(2)], axis=-1)))
    tree_allclose(da.jacfwd(f, argnums=1)(x, y), {"p": fwd["p"][1], "q": fwd["q"][1]})


def test_has_aux_conventions():
    def f(x, scale):
        y = np.sum(x**2) * scale
        return y, {"y": y, "x2": x * 2}

    x = np.array([1.0, 2.0])
    g, aux = da.grad(f, has_aux=True)(x, 3.0)
    np.testing.assert_allclose(g, 6 * x)
    assert isinstance(aux["y"], np.floating) and aux["y"] == 15.0  # values, not Duals
    np.testing.assert_array_equal(aux["x2"], 2 * x)
    (value, aux), g2 = da.value_and_grad(f, has_aux=True, mode="reverse")(x, 3.0)
    assert value == 15.0 and aux["y"] == 15.0 and not isinstance(aux["x2"], da.Carrier)
    np.testing.assert_allclose(g2, g)
    jac, aux = da.jacfwd(lambda x: (x**2, "label"), has_aux=True)(x)
    np.testing.assert_array_equal(jac, np.diag(2 * x))
    assert aux == "label"
    jac, aux = da.jacrev(lambda x: (x**2, x[0]), has_aux=True)(x)
    np.testing.assert_array_equal(jac, np.diag(2 * x))
    assert aux == 1.0 and not isinstance(aux, da.Carrier)
    (value, aux), g3 = da.value_and_gradient(lambda x: f(x, 3.0), x, has_aux=True)
    np.testing.assert_allclose(g3, g)
    g4, aux = da.gradient(lambda x: f(x, 3.0), x, has_aux=True)
    np.testing.assert_allclose(g4, g)


def test_has_aux_keeps_the_layers_of_an_enclosing_derivative():
    # aux computed from x inside an outer derivative keeps the outer derivative
    def inner(x, t):
        return da.grad(lambda z: (np.sum(z * t), z * t), has_aux=True)(x)[1]

    d = da.derivative(lambda t: np.sum(inner(np.array([1.0, 2.0]), t)), 0.5)
    assert np.isclose(d, 3.0)


# --- errors --------------------------------------------------------------------------------------


def test_error_messages():
    x = np.array([1.0, 2.0])
    with pytest.raises(ValueError, match=r"has_aux=True\) needs f to return a pair"):
        da.grad(lambda x: np.sum(x), has_aux=True)(x)
    with pytest.raises(ValueError, match=r"needs f to return a pair .*a tuple of 3 items"):
        da.jacobian(lambda x: (x, x, x), x, has_aux=True)
    with pytest.raises(TypeError, match="argnums must be an int or a tuple of ints"):
        da.grad(np.sum, argnums="0")
    with pytest.raises(ValueError, match="argnums must be non-negative"):
        da.jacfwd(np.sum, argnums=-1)
    with pytest.raises(ValueError, match="must not repeat"):
        da.jacrev(np.sum, argnums=(0, 0))
    with pytest.raises(ValueError, match="non-empty tuple of non-negative ints"):
        da.grad(np.sum, argnums=())
    with pytest.raises(ValueError, match=r"argnums=\(0, 2\) asks for positional argument 2"):
        da.grad(lambda a, b: a * b, argnums=(0, 2))(1.0, 2.0)
    with pytest.raises(
        ValueError, match=r"v must have the structure of x \(\*, \*\); got \[\*, \*\]"
    ):
        da.jvp(f_tree, P, [W, S])
    with pytest.raises(ValueError, match="leaves of v must have the shapes of x's leaves"):
        da.jvp(f_tree, P, (np.ones(2), 1.0))
    with pytest.raises(ValueError, match="v must have the structure of x \\(one array\\)"):
        da.jvp(np.sin, x, (x,))
    _, pullback = da.vjp(f_tree, P)
    with pytest.raises(
        ValueError, match=r"u must have the structure of f\(x\) \{'a': \*, 'b': \*\}"
    ):
        pullback({"a": np.ones(3)})
    with pytest.raises(ValueError, match="gradient needs f to return a scalar; it returned a "):
        da.gradient(lambda p: (p[0], p[1]), (1.0, 2.0))
    with pytest.raises(ValueError, match="hessian needs f to return a scalar; it returned a"):
        da.hessian(lambda p: (p[0], p[1]), (1.0, 2.0))
    with pytest.raises(ValueError, match="hessian needs f to return a scalar; it returned a"):
        da.hessian(lambda a: (a, a), 1.0)
    with pytest.raises(ValueError, match="hvp needs f to return a scalar; it returned a"):
        da.hvp(lambda p: (p[0], p[1]), (1.0, 2.0), (1.0, 0.0))
    with pytest.raises(ValueError, match="first argument only; got argnums=1"):
        da.grad(lambda a, b: a * b, argnums=1, engine="numba")
    with pytest.raises(ValueError, match="engine='numba' takes one array x"):
        da.jacobian(lambda p: p[0], (1.0, 2.0), engine="numba")
    with pytest.raises(ValueError, match=r"derivative needs a scalar x; got a container"):
        da.derivative(lambda p: p["a"], {"a": 1.0})
    calls = []

    def changing(x):
        calls.append(1)
        return (x, x) if len(calls) == 1 else x

    with pytest.raises(ValueError, match="outputs of different structures on two calls"):
        da.jacobian(changing, np.arange(4.0), chunk_size=2, mode="forward")


# --- random structures (hypothesis) ---------------------------------------------------------------

_SHAPES = st.sampled_from([(), (2,), (2, 3)])
_LEAF = _SHAPES.map(lambda s: ("leaf", s))
_TREES = st.recursive(
    _LEAF,
    lambda kids: st.one_of(
        st.lists(kids, min_size=1, max_size=3).map(lambda k: ("tuple", k)),
        st.lists(kids, min_size=1, max_size=3).map(lambda k: ("list", k)),
        st.dictionaries(st.sampled_from("abc"), kids, min_size=1).map(lambda d: ("dict", d)),
    ),
    max_leaves=5,
)


def _build(spec, rng):
    kind, body = spec
    if kind == "leaf":
        return rng.normal(size=body) if body else float(rng.normal())
    if kind == "tuple":
        return tuple(_build(s, rng) for s in body)
    if kind == "list":
        return [np.atleast_1d(_build(s, rng)) if s[0] == "leaf" else _build(s, rng) for s in body]
    return {k: _build(s, rng) for k, s in body.items()}


@hsettings(max_examples=15, deadline=None)
@given(_TREES, st.sampled_from(MODES))
def test_random_structures_against_the_analytic_jacobian(spec, mode):
    x = _build(spec, np.random.default_rng(1))
    leaves, treedef = flatten(x)

    def f(tree):  # leaf_i -> sin(leaf_i) * S, S = the sum of every entry of every leaf
        ls, td = flatten(tree)
        total = sum(np.sum(leaf) for leaf in ls)
        return unflatten(td, [np.sin(leaf) * total for leaf in ls])

    total = sum(np.sum(leaf) for leaf in leaves)
    jac = da.jacobian(f, x, mode=mode)
    # the output's structure holding x's structure in each output leaf
    out_blocks, jac_def = flatten(jac)
    assert jac_def == flatten(unflatten(treedef, [x] * len(leaves)))[1]
    n = len(leaves)
    assert len(out_blocks) == n * n
    for i, a in enumerate(leaves):
        for j, b in enumerate(leaves):
            block = out_blocks[i * n + j]
            sa, sb = np.shape(a), np.shape(b)
            expected = np.multiply.outer(np.sin(a), np.ones(sb))
            if i == j:
                expected = expected + np.reshape(np.diag(np.ravel(np.cos(a) * total)), sa + sb)
            assert np.shape(block) == sa + sb
            np.testing.assert_allclose(block, expected, rtol=1e-12, atol=1e-12)
