"""da.vmap: a loop over the batch with JAX's in_axes/out_axes conventions, composing with the
transforms in both orders (checked against the unbatched results and analytic derivatives)."""

import numpy as np
import pytest

import dualad as da


def loss(w, x):
    return np.sum(np.sin(w * x) ** 2)


W = np.array([0.3, -0.7, 1.1])
XS = np.random.default_rng(0).normal(size=(4, 3))


def test_vmap_of_grad_gives_per_example_gradients():
    per_example = da.vmap(da.grad(loss), in_axes=(None, 0))(W, XS)
    assert per_example.shape == (4, 3)
    for i, x in enumerate(XS):
        np.testing.assert_allclose(per_example[i], 2 * np.sin(W * x) * np.cos(W * x) * x)


@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_jacobian_of_vmap(mode):
    batched = da.vmap(loss, in_axes=(None, 0))
    jac = da.jacobian(lambda w: batched(w, XS), W, mode=mode)
    expected = np.stack([2 * np.sin(W * x) * np.cos(W * x) * x for x in XS])
    np.testing.assert_allclose(jac, expected, rtol=1e-13)


def test_axes_and_containers():
    xs = np.arange(6.0).reshape(2, 3)
    out = da.vmap(lambda p: {"s": p[0] * p[1], "t": p[0]}, in_axes=1)((xs, xs + 1.0))
    np.testing.assert_array_equal(out["s"], (xs * (xs + 1.0)).T)
    np.testing.assert_array_equal(out["t"], xs.T)
    out = da.vmap(lambda a: a * 2.0, in_axes=0, out_axes=1)(xs)
    np.testing.assert_array_equal(out, (xs * 2.0).T)
    np.testing.assert_array_equal(da.vmap(lambda a: a, in_axes=-1)(xs), xs.T)


def test_vmap_errors():
    xs = np.ones((2, 3))
    with pytest.raises(
        ValueError, match="in_axes has 1 entries but the function was called with 2"
    ):
        da.vmap(loss, in_axes=(0,))(W, XS)
    with pytest.raises(ValueError, match=r"mapped axes have different sizes \[2, 4\]"):
        da.vmap(lambda a, b: a, in_axes=0)(xs, XS)
    with pytest.raises(ValueError, match="at least one argument mapped"):
        da.vmap(loss, in_axes=(None, None))(W, XS)
    with pytest.raises(ValueError, match=r"in_axes=2 is out of range for an argument of shape"):
        da.vmap(np.sin, in_axes=2)(xs)
    with pytest.raises(TypeError, match="in_axes must be an int or None"):
        da.vmap(np.sin, in_axes="0")
    with pytest.raises(TypeError, match="out_axes must be an int"):
        da.vmap(np.sin, out_axes=None)
    with pytest.raises(ValueError, match="outputs of different structures"):
        da.vmap(lambda a: (a, a) if a[0] > 0 else a)(np.array([[1.0], [-1.0]]))
    with pytest.raises(ValueError, match="axis of length 0"):
        da.vmap(np.sin)(np.ones((0, 2)))
