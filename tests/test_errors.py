"""Every way of losing or corrupting a derivative raises an error that says what to do."""

import math

import numpy as np
import pytest

import dualad as da

pytestmark = pytest.mark.usefixtures("both_modes")  # each test runs forward and reverse

X = np.array([1.0, 2.0, 3.0])

LOST = "would drop the derivative"


def _inside(f, x=X):
    """Run ``f`` on a Dual inside a differentiation, where users meet these errors."""
    return da.jacobian(f, x)


@pytest.mark.parametrize(
    "convert",
    [
        pytest.param(lambda x: float(x[0]), id="float"),
        pytest.param(lambda x: int(x[0]), id="int"),
        pytest.param(lambda x: math.sin(x[0]), id="math.sin"),
        pytest.param(lambda x: math.exp(x[1]), id="math.exp"),
        pytest.param(lambda x: x[0].item(), id="item"),
        pytest.param(lambda x: x.tolist(), id="tolist"),
        pytest.param(lambda x: x.astype(int), id="astype-int"),
    ],
)
def test_scalar_conversions_name_primal(convert):
    with pytest.raises(TypeError, match=LOST) as info:
        _inside(convert)
    assert "da.primal" in str(info.value)
    assert isinstance(info.value, da.DualError)


@pytest.mark.parametrize(
    "convert",
    [
        pytest.param(lambda x: np.asarray(x), id="asarray"),
        pytest.param(lambda x: np.array(x), id="array"),
        pytest.param(lambda x: np.array([x[0], x[1]]), id="array-of-duals"),
    ],
)
def test_array_conversions_name_primal_and_allocation(convert):
    with pytest.raises(TypeError, match=LOST) as info:
        _inside(convert)
    message = str(info.value)
    assert "da.primal" in message
    assert "np.zeros_like(x)" in message and "like=x" in message


def test_writing_dual_into_float_array_slice():
    def f(x):
        out = np.zeros(3)
        out[:] = x * 2
        return out

    with pytest.raises(TypeError, match=LOST) as info:
        _inside(f)
    assert "np.zeros_like(x)" in str(info.value)


def test_writing_dual_into_float_array_element_raises_ours_with_numpys_as_cause():
    # NumPy turns a failure of a[i] = obj for a sequence-like obj into its own ValueError; the
    # differentiation boundary puts dualad's message back in front.
    def f(x):
        out = np.zeros(3)
        out[0] = x[0]
        return out

    with pytest.raises(da.DualError, match="into an element of a plain float array") as info:
        _inside(f)
    assert "da.primal" in str(info.value) and "np.zeros_like(x)" in str(info.value)
    assert isinstance(info.value.__cause__, ValueError)


def test_out_argument_plain_array_receiving_a_dual():
    def f(x):
        out = np.empty(3)
        np.sin(x, out=out)
        return out

    with pytest.raises(TypeError, match="out=") as info:
        _inside(f)
    assert "da.primal" in str(info.value)


def test_ufunc_without_rule_names_it_and_register_rule():
    with pytest.raises(TypeError, match=r"np\.spacing") as info:
        _inside(np.spacing)
    assert "da.register_rule(np.spacing" in str(info.value)


def test_array_function_without_implementation_names_it():
    with pytest.raises(TypeError, match=r"np\.fft\.hfft") as info:
        _inside(np.fft.hfft)
    assert "register_rule" in str(info.value)


def test_nondifferentiable_argument():
    pytest.importorskip("scipy")
    from scipy import special

    with pytest.raises(TypeError, match="zeta is not differentiable"):
        da.derivative(lambda s: special.zeta(s, 2.0), 3.0)
    # ... while the derivative in q is fine: d/dq zeta(3, q) = -3 zeta(4, q)
    assert da.derivative(lambda q: special.zeta(3.0, q), 2.0) == pytest.approx(
        -3 * special.zeta(4.0, 2.0), rel=1e-14
    )


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda: da.hessian(lambda x: np.sum(x * x), np.array([1.0 + 2.0j])), id="H"),
        pytest.param(lambda: da.hvp(lambda x: np.sum(x * x), 1j, 1.0), id="hvp"),
        pytest.param(lambda: da.derivative(np.conj, 1.0 + 2.0j), id="conj-not-holomorphic"),
        pytest.param(lambda: da.jacobian(lambda x: np.maximum(x, 1j), X), id="maximum"),
        pytest.param(lambda: da.jacobian(lambda x: np.sinc(x + 1j), X), id="sinc"),
    ],
)
def test_complex_where_unsupported_is_refused_clearly(call):
    with pytest.raises(TypeError, match="complex|holomorphic"):
        call()


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(3,\).*\(4,\)"):
        _inside(lambda x: x + np.ones(4))
    with pytest.raises(ValueError, match=r"\(3,\).*\(2,\)"):
        da.jvp(lambda x: x, X, np.ones(2))
    with pytest.raises(ValueError, match=r"\(2,\).*\(2, 3, 1\)"):
        da.Dual(np.ones(2), np.ones((2, 3, 1)))


def test_gradient_of_vector_output_points_to_jacobian():
    with pytest.raises(ValueError, match=r"returned shape \(3,\).*da\.jacobian"):
        da.gradient(lambda x: x * 2, X)


def test_derivative_of_vector_input_points_to_jacobian():
    with pytest.raises(ValueError, match=r"scalar x; got shape \(3,\).*da\.jacobian"):
        da.derivative(np.sin, X)


def test_mode_and_chunk_size_are_checked():
    with pytest.raises(ValueError, match="mode must be"):
        da.jacobian(np.sin, X, mode="sideways")
    with pytest.raises(TypeError, match="compiles a Python function or a numba.njit"):
        da.jacobian(np.sin, X, mode="reverse", engine="numba")
    with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
        da.jacobian(np.sin, X, chunk_size=0)


def test_dual_as_index_is_rejected():
    with pytest.raises(TypeError, match="index"):
        _inside(lambda x: x[x[0]])


def test_ufunc_where_keyword_is_rejected():
    with pytest.raises(TypeError, match="where="):
        _inside(lambda x: np.sin(x, where=np.array([True, False, True])))


def test_leaked_inner_dual_is_reported():
    leaked = []

    def inner(y):
        leaked.append(y)
        return y * 2

    da.derivative(inner, 1.0)
    with pytest.raises(TypeError, match="leaked out"):
        da.derivative(lambda x: x * leaked[0], 1.0)
