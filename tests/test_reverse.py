"""Reverse mode's own behaviour: vjp, chunked sweeps, auto mode's choice, the tape, errors.

Every forward-mode test of the API, the structural functions, the rules and the errors runs in
reverse mode too (``both_modes`` in conftest.py); this file checks what only reverse mode has.
"""

import gc
import warnings
import weakref

import numpy as np
import pytest

import dualad as da
from dualad import reverse, transforms

RNG = np.random.default_rng(4)


def _mixed(x):
    """R^4 -> R^3 with products, broadcasting against a constant, a reduction and indexing."""
    c = np.array([1.0, -2.0, 0.5])
    return np.stack([x[0] * x[1], np.sin(x[2]) * x[3], np.sum(x**2) * c[2]]) + c * x[1]


def _mixed_jacobian(x):
    """By hand."""
    return np.array(
        [
            [x[1], x[0] + 1.0, 0.0, 0.0],
            [0.0, -2.0, np.cos(x[2]) * x[3], np.sin(x[2])],
            [x[0], x[1] + 0.5, x[2], x[3]],
        ]
    )


# --- vjp -----------------------------------------------------------------------------------------


def test_vjp_is_the_transposed_jacobian_times_u():
    x = RNG.normal(size=4)
    y, pullback = da.vjp(_mixed, x)
    np.testing.assert_allclose(y, _mixed(x))
    u = RNG.normal(size=3)
    np.testing.assert_allclose(pullback(u), u @ _mixed_jacobian(x), rtol=1e-14)
    many = RNG.normal(size=(3, 5))  # five cotangents in one sweep: x.shape + (5,)
    np.testing.assert_allclose(pullback(many), _mixed_jacobian(x).T @ many, rtol=1e-14)
    np.testing.assert_allclose(pullback(u), u @ _mixed_jacobian(x), rtol=1e-14)  # again


def test_vjp_against_a_directional_difference_on_a_matrix_function():
    # <u, J v> = <J^T u, v>: the pullback against a central difference along v
    def f(a):
        return np.linalg.solve(a @ a.T + 3 * np.eye(3), np.tanh(a[:, 0])) * np.linalg.det(a)

    a = RNG.normal(size=(3, 3))
    v, u = RNG.normal(size=(3, 3)), RNG.normal(size=3)
    _, pullback = da.vjp(f, a)
    h = 1e-6
    directional = (f(a + h * v) - f(a - h * v)) / (2 * h)
    np.testing.assert_allclose(np.sum(pullback(u) * v), u @ directional, rtol=1e-7)


def test_vjp_scalar_output_and_shape_errors():
    y, pullback = da.vjp(lambda x: np.sum(x**3), np.array([1.0, 2.0]))
    assert y == 9.0
    np.testing.assert_array_equal(pullback(2.0), [6.0, 24.0])
    np.testing.assert_array_equal(pullback([1.0, 2.0, 3.0]), [[3, 6, 9], [12, 24, 36]])  # k = 3
    with pytest.raises(ValueError, match=r"u must have the shape of f\(x\) \(\) .*\(2, 3\)"):
        pullback(np.ones((2, 3)))


def test_vjp_result_does_not_alias_the_cotangent():
    _, pullback = da.vjp(lambda x: x, np.ones(3))
    u = np.arange(3.0)
    g = pullback(u)
    g[0] = 99.0
    assert u[0] == 0.0


# --- jacobians by reverse mode -------------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [None, 1, 2, 3])
def test_reverse_jacobian_in_chunks_of_rows(chunk_size):
    x = RNG.normal(size=4)
    jac = da.jacobian(_mixed, x, mode="reverse", chunk_size=chunk_size)
    np.testing.assert_allclose(jac, _mixed_jacobian(x), rtol=1e-14)


def test_jacrev_for_scipy_and_tall_functions():
    t = np.linspace(0, 1, 7)
    jac = da.jacrev(lambda p, t: p[0] * np.exp(-p[1] * t), chunk_size=3)(np.array([2.0, 0.5]), t)
    expected = np.stack([np.exp(-0.5 * t), -2.0 * t * np.exp(-0.5 * t)], axis=-1)
    np.testing.assert_allclose(jac, expected, rtol=1e-14)


def test_gradient_shapes_dtypes_and_constant_outputs():
    x = RNG.normal(size=(2, 3))
    g = da.gradient(lambda a: np.sum(a[0] * a[1]), x, mode="reverse")
    np.testing.assert_array_equal(g, [x[1], x[0]])
    g32 = da.gradient(lambda a: np.sum(a * a), x.astype(np.float32), mode="reverse")
    assert g32.dtype == np.float32
    np.testing.assert_array_equal(da.gradient(lambda a: 3.0, x, mode="reverse"), np.zeros((2, 3)))
    jac = da.jacobian(lambda a: [a[0, 0], 2.0 * a[1, 2]], x, mode="reverse")  # a list output:
    assert isinstance(jac, list) and len(jac) == 2  # a list of Jacobians, never stacked
    assert jac[0].shape == jac[1].shape == (2, 3) and jac[0][0, 0] == 1.0 and jac[1][1, 2] == 2.0


def test_nan_safe_pullback_where_jax_gives_nan():
    # JAX: grad of this at 0 is nan (0 cotangent times sqrt's infinite derivative); here 0
    def f(x):
        return np.sum(np.where(x > 0, np.sqrt(np.abs(x)), 0.0))

    with np.errstate(divide="ignore"):
        g = da.grad(f, mode="reverse")(np.array([0.0, 4.0, -1.0]))
    np.testing.assert_array_equal(g, [0.0, 0.25, 0.0])


def test_duplicate_writes_give_the_derivative_to_the_write_that_stays():
    def f(x):
        y = np.zeros_like(x)
        y[[0, 0, 2]] = x[:3] * 2.0  # y[0] ends up as 2 x[1]: NumPy keeps the last write
        y[np.array([False, True, False, True])] += x[3]
        return y

    x = RNG.normal(size=4)
    np.testing.assert_array_equal(
        da.jacobian(f, x, mode="reverse"), da.jacobian(f, x, mode="forward")
    )
    assert da.jacobian(f, x, mode="reverse")[0, 1] == 2.0


def test_einsum_with_a_repeated_index_and_a_lone_summed_index():
    a, b = RNG.normal(size=(3, 3)), RNG.normal(size=(3, 4))
    for f in (
        lambda m: np.einsum("ii->i", m) * np.einsum("ii", m),
        lambda m: np.einsum("ij,jk->i", m, b),  # k is summed in b alone
        lambda m: np.einsum("...ij,...j->...i", np.stack([m, m.T]), m[0]),
    ):
        np.testing.assert_allclose(
            da.jacobian(f, a, mode="reverse"), da.jacobian(f, a, mode="forward"), rtol=1e-13
        )


def test_reverse_over_forward_hessian():
    # jacobian (reverse) of a gradient (forward): Duals carrying Tracers, against the hessian
    def f(x):
        return np.sum(np.sin(x) * np.roll(x, 1)) + np.prod(x[:3])

    x = RNG.normal(size=5)
    h = da.jacobian(lambda z: da.gradient(f, z, mode="forward"), x, mode="reverse")
    np.testing.assert_allclose(h, da.hessian(f, x), rtol=1e-13)
    np.testing.assert_allclose(h, h.T, rtol=1e-13)


def test_writes_into_views_reach_their_base():
    def f(x):
        y = np.zeros((2, 3), like=x)
        row = y[1]
        row[1:] = x[:2]  # through a view of a view
        flat = np.reshape(y, 6)
        flat[0] = x[2] ** 2  # through a reshape
        y[0, 1:] += 3.0 * x[:2]  # the a[i] += v idiom writes through a view too
        return y

    x = RNG.normal(size=3)
    np.testing.assert_array_equal(
        da.jacobian(f, x, mode="reverse"), da.jacobian(f, x, mode="forward")
    )


# --- mode="auto" ---------------------------------------------------------------------------------


def _engine_seen(f, x, **kw):
    """The kinds of value f was called with, in order."""
    seen = []

    def spy(x):
        seen.append(type(x).__name__)
        return f(x)

    da.jacobian(spy, x, **kw)
    return seen


def test_auto_mode_chooses_as_documented():
    few = transforms.AUTO_REVERSE_MIN_INPUTS
    ratio = transforms.AUTO_INPUTS_PER_OUTPUT
    assert _engine_seen(np.sum, np.ones(few)) == ["Dual"]  # few inputs: forward
    assert _engine_seen(np.sum, np.ones(few + 1)) == ["Tracer"]  # a gradient: reverse
    n = 4 * ratio * few
    assert _engine_seen(lambda x: x[: n // ratio], np.ones(n)) == ["Tracer"]  # m = n / ratio
    # one output too many: the trace is dropped and forward mode takes the Jacobian
    assert _engine_seen(lambda x: x[: n // ratio + 1], np.ones(n)) == ["Tracer", "Dual"]
    assert _engine_seen(np.sin, np.ones(n)) == ["Tracer", "Dual"]  # square
    nested = []
    da.jacobian(lambda a: da.gradient(lambda x: nested.append(type(x).__name__) or np.sum(x * a[0]),
                                      np.ones(n)), np.ones(2))  # fmt: skip
    assert nested == ["Dual"]  # inside another derivative: forward


def test_auto_mode_falls_back_to_forward_with_a_warning():
    def g(x):
        w = x * 1.0
        v = w[2:]
        w[0] = 1.0  # v is now stale (NumPy would show the write through it)
        return np.sum(v * 2.0)

    with pytest.warns(UserWarning, match="uses forward mode"):
        np.testing.assert_array_equal(da.gradient(g, np.arange(99.0)), np.r_[0, 0, np.full(97, 2)])


def test_numba_functions_stay_compiled_in_auto_mode():
    numba = pytest.importorskip("numba")

    @numba.njit
    def s(x):
        t = 0.0
        for i in range(x.shape[0]):
            t += x[i] ** 2
        return t

    x = np.arange(30.0)
    calls = []
    original = reverse.trace
    try:
        reverse.trace = lambda *a: calls.append(1) or original(*a)
        np.testing.assert_array_equal(da.gradient(s, x), 2 * x)
    finally:
        reverse.trace = original
    assert calls == []
    np.testing.assert_array_equal(da.gradient(s, x, mode="reverse"), 2 * x)  # its source, traced


# --- the tape ------------------------------------------------------------------------------------


class _Witness:
    """A weak reference to the first large intermediate the function makes."""

    def __init__(self):
        self.ref = None

    def __call__(self, x):
        y = np.exp(x)
        if self.ref is None:
            self.ref = weakref.ref(da.primal(y))
        return np.sum(y * x)


def test_the_tape_is_freed_after_the_pullback():
    x = np.ones(1000)
    witness = _Witness()
    da.gradient(witness, x, mode="reverse")
    gc.collect()
    assert witness.ref() is None  # nothing of the evaluation outlives the gradient
    witness = _Witness()
    _, pullback = da.vjp(witness, x)
    gc.collect()
    assert witness.ref() is not None  # a pullback keeps its tape, to be called again
    del pullback
    gc.collect()
    assert witness.ref() is None


# --- errors --------------------------------------------------------------------------------------


def test_conversions_inside_reverse_mode_name_primal():
    with pytest.raises(da.DualError, match="traced array .* would drop the derivative") as info:
        da.gradient(lambda x: float(x[0]), np.ones(3), mode="reverse")
    assert "da.primal" in str(info.value)
    with pytest.raises(da.DualError, match="np.zeros_like"):
        da.gradient(lambda x: np.sum(np.asarray(x)), np.ones(3), mode="reverse")


def test_a_leaked_tracer_is_refused():
    kept = []
    da.gradient(lambda x: kept.append(x) or np.sum(x), np.ones(3), mode="reverse")
    with pytest.raises(da.DualError, match="already finished"):
        da.gradient(lambda x: np.sum(x * kept[0]), np.ones(3), mode="reverse")


def test_a_stale_view_is_refused_in_reverse_mode():
    def g(x):
        w = x * 1.0
        v = w[1:]
        w[0] = 0.0
        return np.sum(v)

    with pytest.raises(da.ReverseModeUnsupported, match="written to other than through it"):
        da.gradient(g, np.ones(3), mode="reverse")


def test_nesting_that_reverse_mode_cannot_do_is_refused_clearly():
    # reverse at a Dual point, and reverse inside forward through a closure
    with pytest.raises(da.ReverseModeUnsupported, match="inside another derivative"):
        da.jacobian(lambda a: da.gradient(np.sum, a, mode="reverse"), np.ones(2))
    with pytest.raises(da.ReverseModeUnsupported, match="do not nest|does not nest"):
        da.jacobian(
            lambda a: da.gradient(lambda x: np.sum(a * x), np.ones(2), mode="reverse"),
            np.ones(2),
        )
    # the same in auto mode: forward over forward, right
    np.testing.assert_array_equal(
        da.jacobian(lambda a: da.gradient(lambda x: np.sum(a * x), np.ones(99)), np.ones(99)),
        np.eye(99),
    )


def test_missing_rule_and_read_only_views_in_reverse_mode():
    with pytest.raises(da.DualError, match=r"no derivative for np\.fft\.hfft.*register_rule"):
        da.gradient(lambda x: np.sum(np.fft.hfft(x)), np.ones(3), mode="reverse")
    with pytest.raises(ValueError, match="read-only"):
        da.gradient(lambda x: np.diagonal(np.outer(x, x)).__setitem__(0, 1.0), np.ones(3),
                    mode="reverse")  # fmt: skip


def test_reverse_mode_with_engine_numba_compiles_f():  # compiled reverse mode (issue 12)
    with pytest.raises(TypeError, match="compiles a Python function or a numba.njit"):
        da.gradient(np.sum, np.ones(3), mode="reverse", engine="numba")


def test_no_warning_for_plain_auto_gradients():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        da.gradient(lambda x: np.sum(np.tanh(x) ** 2), np.ones(100))  # reverse
        da.jacobian(np.tanh, np.ones(100))  # traced, then forward: square
