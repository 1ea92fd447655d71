"""Complex numbers in the NumPy engines (README, "Complex numbers").

Every derivative is checked against central differences in the real and the imaginary direction
separately (a function C -> C seen as R^2 -> R^2), and against JAX where it is installed.  The
convention: a cotangent c pairs with a tangent t as Re(c * t) (JAX's), so the gradient of a real
f of complex z is df/dx - i df/dy, a holomorphic f has the Jacobian f'(z), and the pullback of
any f satisfies Re(<u, J v>) == Re(<vjp(u), v>).
"""

from __future__ import annotations

import numpy as np
import pytest

import dualad as da

H = 1e-6
RNG = np.random.default_rng(7)
Z = np.array([0.6 + 0.8j, -0.4 + 0.3j, 1.2 - 0.5j])
MODES = ["forward", "reverse"]


def _jax():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    return jax, jax.numpy


def d_real(f, z):
    """df/dx by central differences, shape f(z).shape + z.shape (z real or complex)."""
    z = np.asarray(z)
    cols = []
    for i in range(z.size):
        e = np.zeros(z.size, dtype=z.dtype)
        e[i] = H
        e = e.reshape(z.shape)
        cols.append((np.asarray(f(z + e)) - np.asarray(f(z - e))) / (2 * H))
    return np.moveaxis(np.array(cols), 0, -1).reshape(np.shape(f(z)) + z.shape)


def d_imag_direct(f, z):
    z = np.asarray(z, dtype=complex)
    cols = []
    for i in range(z.size):
        e = np.zeros(z.size, dtype=complex)
        e[i] = 1j * H
        e = e.reshape(z.shape)
        cols.append((np.asarray(f(z + e)) - np.asarray(f(z - e))) / (2 * H))
    return np.moveaxis(np.array(cols), 0, -1).reshape(np.shape(f(z)) + z.shape)


# --- holomorphic functions: the Jacobian is f'(z) -----------------------------------------------

HOLOMORPHIC = {
    "exp": np.exp,
    "expm1": np.expm1,
    "exp2": np.exp2,
    "log": np.log,
    "log1p": np.log1p,
    "log2": np.log2,
    "log10": np.log10,
    "sqrt": np.sqrt,
    "square": np.square,
    "reciprocal": np.reciprocal,
    "sin": np.sin,
    "cos": np.cos,
    "tan": np.tan,
    "arcsin": np.arcsin,
    "arccos": np.arccos,
    "arctan": np.arctan,
    "sinh": np.sinh,
    "cosh": np.cosh,
    "tanh": np.tanh,
    "arcsinh": np.arcsinh,
    "arccosh": np.arccosh,
    "arctanh": np.arctanh,
    "z**3": lambda z: z**3,
    "z**2.5": lambda z: z**2.5,
    "z**(1+1j)": lambda z: z ** (1 + 1j),
    "2**z": lambda z: 2.0**z,
    "z**z": lambda z: z**z,
    "z/(1+z*z)": lambda z: z / (1 + z * z),
    "-z+1j": lambda z: -z + 1j,
    "polynomial": lambda z: np.polyval([1.0, -2j, 3.0], z),
    "cumsum*z": lambda z: np.cumsum(z) * z[::-1],
    "matmul": lambda z: np.outer(z, z + 1j) @ z,
    "sum of products": lambda z: np.sum(z[:, None] * z[None, :], axis=0),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(HOLOMORPHIC))
def test_holomorphic_jacobian_is_the_complex_derivative(name, mode):
    f = HOLOMORPHIC[name]
    jac = da.jacobian(f, Z, mode=mode)
    assert jac.dtype == np.complex128
    # holomorphic: d/dx f = f' and d/dy f = i f'
    np.testing.assert_allclose(jac, d_real(f, Z), rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(1j * jac, d_imag_direct(f, Z), rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("name", ["exp", "log", "sqrt", "tan", "arcsinh", "z**z", "matmul"])
def test_holomorphic_against_jax(name):
    jax, jnp = _jax()
    jf = {
        "exp": jnp.exp,
        "log": jnp.log,
        "sqrt": jnp.sqrt,
        "tan": jnp.tan,
        "arcsinh": jnp.arcsinh,
        "z**z": lambda z: z**z,
        "matmul": lambda z: jnp.outer(z, z + 1j) @ z,
    }[name]
    expected = np.asarray(jax.jacfwd(jf, holomorphic=True)(Z))
    for mode in MODES:
        np.testing.assert_allclose(da.jacobian(HOLOMORPHIC[name], Z, mode=mode), expected, 1e-12)
    expected = np.asarray(jax.jacrev(jf, holomorphic=True)(Z))
    np.testing.assert_allclose(da.jacobian(HOLOMORPHIC[name], Z, mode="reverse"), expected, 1e-12)


def test_derivative_of_a_complex_scalar():
    assert da.derivative(lambda z: z**2, 1 + 2j) == pytest.approx(2 + 4j)
    assert da.derivative(np.exp, 1j) == pytest.approx(np.exp(1j))


def test_complex64_stays_complex64():
    z = Z.astype(np.complex64)
    for mode in MODES:
        assert da.jacobian(np.sin, z, mode=mode).dtype == np.complex64
        assert da.gradient(lambda w: np.sum(np.abs(w)), z, mode=mode).dtype == np.complex64


# --- real-valued functions of complex input: gradient df/dx - i df/dy (JAX's) ---------------------

REAL_VALUED = {
    "|z|^2": lambda z: np.sum(np.abs(z) ** 2),
    "abs": lambda z: np.sum(np.abs(z)),
    "real*imag": lambda z: np.sum(np.real(z) * np.imag(z) ** 2),
    "angle": lambda z: np.sum(np.angle(z)),
    "angle deg": lambda z: np.sum(np.angle(z, deg=True)),
    "z*conj(z)": lambda z: np.sum(z * np.conj(z)).real,
    "methods": lambda z: np.sum(z.real * z.conj().imag + z.conjugate().real),
    "Re(exp(z))": lambda z: np.real(np.sum(np.exp(z) * z)),
    "Im(log z)": lambda z: np.imag(np.sum(np.log(z))),
    "norm": lambda z: np.linalg.norm(z),
    "norm 1": lambda z: np.linalg.norm(z, 1),
    "abs of sum": lambda z: np.abs(np.sum(z**2)),
    "real of conj product": lambda z: np.real(np.vdot(z, z * (1 + 2j))),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(REAL_VALUED))
def test_gradient_of_real_valued_function(name, mode):
    f = REAL_VALUED[name]
    g = da.gradient(f, Z, mode=mode)
    expected = d_real(f, Z) - 1j * d_imag_direct(f, Z).real
    np.testing.assert_allclose(g, expected, rtol=1e-7, atol=1e-8)
    _, pullback = da.vjp(f, Z)
    np.testing.assert_allclose(pullback(1.0), g, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("name", ["|z|^2", "abs", "angle", "Re(exp(z))", "norm"])
def test_gradient_against_jax(name):
    jax, jnp = _jax()
    jf = {
        "|z|^2": lambda z: jnp.sum(jnp.abs(z) ** 2),
        "abs": lambda z: jnp.sum(jnp.abs(z)),
        "angle": lambda z: jnp.sum(jnp.angle(z)),
        "Re(exp(z))": lambda z: jnp.real(jnp.sum(jnp.exp(z) * z)),
        "norm": lambda z: jnp.linalg.norm(z),
    }[name]
    expected = np.asarray(jax.grad(jf)(Z))
    for mode in MODES:
        np.testing.assert_allclose(da.gradient(REAL_VALUED[name], Z, mode=mode), expected, 1e-12)


# --- non-holomorphic complex-valued functions: jvp and vjp, and a clear refusal for a Jacobian ----

NON_HOLOMORPHIC = {
    "conj": np.conj,
    "conjugate": np.conjugate,
    "real+0j": lambda z: np.real(z) + 0j,
    "imag*z": lambda z: np.imag(z) * z,
    "abs*z": lambda z: np.abs(z) * z,
    "exp(i angle)": lambda z: np.exp(1j * np.angle(z)),
    "z*conj(z)^2": lambda z: z * np.conj(z) ** 2,
    "x + 1j*y": lambda z: np.sin(z.real) + 1j * np.cos(z.imag),
}


@pytest.mark.parametrize("name", list(NON_HOLOMORPHIC))
def test_jvp_and_vjp_of_non_holomorphic_functions(name):
    f = NON_HOLOMORPHIC[name]
    v = np.array([0.3 - 0.7j, 1.1 + 0.2j, -0.5 + 0.9j])
    u = np.array([0.8 + 0.1j, -0.2 + 1.3j, 0.4 - 0.6j])
    value, tangent = da.jvp(f, Z, v)
    np.testing.assert_allclose(value, f(Z), rtol=1e-15)
    expected = (f(Z + H * v) - f(Z - H * v)) / (2 * H)  # the R-linear map, any direction
    np.testing.assert_allclose(tangent, expected, rtol=1e-7, atol=1e-8)
    _, pullback = da.vjp(f, Z)
    ct = pullback(u)
    # the pairing Re(c * t): Re(sum(u * Jv)) == Re(sum(vjp(u) * v)) for all u, v
    assert np.real(np.sum(u * tangent)) == pytest.approx(np.real(np.sum(ct * v)), rel=1e-12)
    # and ct itself, entry by entry: Re(u J e_i) - i Re(u J (i e_i))
    jx, jy = d_real(f, Z), d_imag_direct(f, Z)
    np.testing.assert_allclose(ct, np.real(u @ jx) - 1j * np.real(u @ jy), rtol=1e-7, atol=1e-8)
    for mode in MODES:
        with pytest.raises(da.DualError, match="not holomorphic.*da.jvp.*da.vjp"):
            da.jacobian(f, Z, mode=mode)


def test_non_holomorphic_vjp_against_jax():
    jax, jnp = _jax()
    u = np.array([0.8 + 0.1j, -0.2 + 1.3j, 0.4 - 0.6j])
    for f, jf in [
        (np.conj, jnp.conj),
        (lambda z: np.abs(z) * z, lambda z: jnp.abs(z) * z),
        (lambda z: z * np.conj(z) ** 2, lambda z: z * jnp.conj(z) ** 2),
    ]:
        expected = np.asarray(jax.vjp(jf, Z)[1](u)[0])
        np.testing.assert_allclose(da.vjp(f, Z)[1](u), expected, rtol=1e-12)
        v = u[::-1]
        expected = np.asarray(jax.jvp(jf, (Z,), (v,))[1])
        np.testing.assert_allclose(da.jvp(f, Z, v)[1], expected, rtol=1e-12)


def test_derivative_of_conj_is_refused_clearly():
    with pytest.raises(da.DualError, match="not holomorphic.*no complex Jacobian exists"):
        da.derivative(np.conj, 1 + 2j)


# --- real input, complex values inside or out ---------------------------------------------------

X = np.array([0.3, -1.2, 2.0])

REAL_TO_COMPLEX = {
    "exp(i x)": lambda x: np.exp(1j * x),
    "x + 1j*y": lambda x: x[0] + 1j * x[1:],
    "abs(x + i x^2)": lambda x: np.abs(x + 1j * x**2),
    "angle": lambda x: np.angle(x + 1j * (x**2 + 0.1)),
    "sqrt(x + 0j)": lambda x: np.sqrt(x + 0j),
    "real(exp(i x) * (1+2j))": lambda x: np.real(np.exp(1j * x) * (1 + 2j)),
    "imag of a product": lambda x: np.imag((x + 1j) * (x - 2j) * x),
    "complex array built": lambda x: np.concatenate([x * 1j, x + 0j]) * (2 - 1j),
    "matmul by complex": lambda x: np.array([[1j, 2.0, 0.0], [0.0, 1 - 1j, 3j]]) @ x,
    "astype": lambda x: (x.astype(complex) * 1j) ** 2,
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(REAL_TO_COMPLEX))
def test_real_input(name, mode):
    f = REAL_TO_COMPLEX[name]
    jac = da.jacobian(f, X, mode=mode)
    np.testing.assert_allclose(jac, d_real(f, X), rtol=1e-7, atol=1e-8)
    v, u = np.array([0.5, -1.0, 2.0]), np.ones(np.shape(f(X))) * (1 - 0.5j)
    np.testing.assert_allclose(da.jvp(f, X, v)[1], jac @ v, rtol=1e-12, atol=1e-14)
    ct = da.vjp(f, X)[1](u)
    assert ct.dtype == np.float64  # a real input has a real cotangent: Re(u J)
    np.testing.assert_allclose(ct, np.real(u @ jac), rtol=1e-12, atol=1e-14)


def test_real_input_against_jax():
    jax, jnp = _jax()
    expected = np.asarray(jax.jacfwd(lambda x: jnp.exp(1j * x) * x)(X))
    for mode in MODES:
        np.testing.assert_allclose(da.jacobian(lambda x: np.exp(1j * x) * x, X, mode=mode),
                                   expected, rtol=1e-13)  # fmt: skip
    expected = np.asarray(jax.grad(lambda x: jnp.abs(jnp.sum(jnp.exp(1j * x) * x)))(X))
    for mode in MODES:
        got = da.gradient(lambda x: np.abs(np.sum(np.exp(1j * x) * x)), X, mode=mode)
        np.testing.assert_allclose(got, expected, rtol=1e-13)


def test_complex_direction_for_real_x_is_refused():
    with pytest.raises(da.DualError, match="direction v is complex but x is real"):
        da.jvp(np.sin, X, X + 1j)


def test_writing_into_a_complex_array():
    def f(x):
        out = np.zeros(3, dtype=complex, like=x)
        out[0] = x[0] * 1j
        out[1:] = x[1:] ** 2
        return out * (1 + 1j)

    for mode in MODES:
        np.testing.assert_allclose(da.jacobian(f, X, mode=mode), d_real(f, X),
                                   rtol=1e-7, atol=1e-8)  # fmt: skip


# --- FFTs: the same linear map on the tangent, its transpose in reverse mode ----------------------

FFT_CASES = {
    "fft": lambda a: np.fft.fft(a),
    "fft n=5": lambda a: np.fft.fft(a, 5),
    "fft n=3 ortho": lambda a: np.fft.fft(a, n=3, norm="ortho"),
    "ifft": lambda a: np.fft.ifft(a),
    "ifft n=6 forward": lambda a: np.fft.ifft(a, 6, norm="forward"),
    "fft2": lambda a: np.fft.fft2(a.reshape(2, 2)),
    "ifft2 s": lambda a: np.fft.ifft2(a.reshape(2, 2), s=(3, 2)),
    "fftn axes": lambda a: np.fft.fftn(a.reshape(2, 2), axes=(0,)),
    "fft axis 0": lambda a: np.fft.fft(a.reshape(2, 2), axis=0),
}
REAL_FFT_CASES = {
    "rfft": lambda a: np.fft.rfft(a),
    "rfft n=7": lambda a: np.fft.rfft(a, 7),
    "rfft n=2 ortho": lambda a: np.fft.rfft(a, n=2, norm="ortho"),
    "rfft 2-d axis 0": lambda a: np.fft.rfft(a.reshape(2, 2), axis=0),
}
A4 = np.array([0.3, -1.0, 2.5, 0.7])
C4 = A4 + 1j * np.array([1.0, 0.2, -0.4, 0.9])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(FFT_CASES) + list(REAL_FFT_CASES))
def test_fft_of_real_input(name, mode):
    f = {**FFT_CASES, **REAL_FFT_CASES}[name]
    jac = da.jacobian(f, A4, mode=mode)
    np.testing.assert_allclose(jac, d_real(f, A4), rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(da.value_and_jacobian(f, A4)[0], f(A4), rtol=1e-15)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(FFT_CASES))
def test_fft_of_complex_input_is_holomorphic(name, mode):
    f = FFT_CASES[name]
    jac = da.jacobian(f, C4, mode=mode)
    np.testing.assert_allclose(jac, d_real(f, C4), rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(1j * jac, d_imag_direct(f, C4), rtol=1e-7, atol=1e-8)


IRFFT_CASES = {
    "irfft": lambda c: np.fft.irfft(c),
    "irfft n=5": lambda c: np.fft.irfft(c, 5),
    "irfft n=8 ortho": lambda c: np.fft.irfft(c, n=8, norm="ortho"),
    "irfft n=3 forward": lambda c: np.fft.irfft(c, 3, norm="forward"),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(IRFFT_CASES))
def test_irfft(name, mode):
    """irfft reads its input as a Hermitian half-spectrum: R-linear, not holomorphic."""
    f = IRFFT_CASES[name]
    jx, jy = d_real(f, C4), d_imag_direct(f, C4)
    g = da.gradient(lambda c: np.sum(f(c) * np.arange(1.0, f(c).size + 1)), C4, mode=mode)
    weights = np.arange(1.0, f(C4).size + 1)
    np.testing.assert_allclose(g, weights @ jx - 1j * (weights @ jy), rtol=1e-7, atol=1e-8)
    v = np.array([0.2 + 1j, -1.0, 0.5j, 1.0 - 1j])
    np.testing.assert_allclose(da.jvp(f, C4, v)[1], jx @ v.real + jy @ v.imag, rtol=1e-7, atol=1e-8)
    # real input: irfft of real x is an ordinary real linear map
    np.testing.assert_allclose(da.jacobian(f, A4, mode=mode), jx, rtol=1e-7, atol=1e-8)


def test_fft_against_jax():
    jax, jnp = _jax()
    for f, jf, point in [
        (lambda a: np.abs(np.fft.fft(a)) ** 2, lambda a: jnp.abs(jnp.fft.fft(a)) ** 2, C4),
        (lambda a: np.real(np.fft.rfft(a, 6)), lambda a: jnp.real(jnp.fft.rfft(a, 6)), A4),
        (lambda c: np.fft.irfft(c, 5) ** 2, lambda c: jnp.fft.irfft(c, 5) ** 2, C4),
    ]:
        u = np.linspace(0.5, 1.5, np.size(f(point)))
        expected = np.asarray(jax.vjp(jf, point)[1](u)[0])
        np.testing.assert_allclose(da.vjp(f, point)[1](u), expected, rtol=1e-12, atol=1e-14)
        for mode in MODES:
            got = da.gradient(lambda a, u=u, f=f: np.sum(u * f(a)), point, mode=mode)
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)


def test_rfft_refuses_complex_input():
    for mode in MODES:
        with pytest.raises(TypeError, match="rfft takes real input"):
            da.gradient(lambda c: np.sum(np.fft.rfft(c)).real, C4, mode=mode)


# --- what stays unsupported says so ---------------------------------------------------------------


def test_unsupported_complex_cases_are_refused_clearly(restore_rules):
    with pytest.raises(da.DualError, match=r"da\.hessian does not support complex numbers"):
        da.hessian(lambda z: np.sum(np.abs(z) ** 2), Z)
    with pytest.raises(da.DualError, match=r"da\.sparse_jacobian does not support complex"):
        da.sparse_jacobian(np.sin, Z)
    with pytest.raises(da.DualError, match=r"da\.jacobian_sparsity does not support complex"):
        da.jacobian_sparsity(np.sin, Z)
    with pytest.raises(da.DualError, match=r"np\.linalg\.eigh for real matrices only"):
        da.gradient(lambda z: np.sum(np.linalg.eigh(np.outer(z, z))[0]).real, Z)
    with pytest.raises(da.DualError, match=r"np\.maximum for real arguments only"):
        da.jacobian(lambda z: np.maximum(z, 0.5), Z)
    with pytest.raises(da.DualError, match="complex leaves in a container"):
        da.gradient(lambda t: np.sum(np.abs(t[0]) * t[1]), (Z, X))
    with pytest.raises(da.DualError, match="Casting a Dual of dtype complex128 to float64"):
        da.jvp(lambda z: z.astype(float), Z, Z)
    sq = da.register_rule(lambda x: x * x, lambda x, y: 2 * x, name="my_square")
    with pytest.raises(da.DualError, match="my_square for real arguments only"):
        da.jacobian(sq, Z)


def test_linalg_solve_inv_det_take_complex_matrices():
    A = np.array([[2.0 + 1j, 0.5], [0.3j, 1.5 - 0.2j]])

    def f(z):
        M = A + np.outer(z[:2], z[1:])
        return np.linalg.solve(M, z[:2]) + np.linalg.inv(M)[0] * np.linalg.det(M)

    for mode in MODES:
        jac = da.jacobian(f, Z, mode=mode)
        np.testing.assert_allclose(jac, d_real(f, Z), rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(1j * jac, d_imag_direct(f, Z), rtol=1e-6, atol=1e-8)


def test_random_compositions_pairing_identity():
    """Re(<u, J v>) == Re(<vjp(u), v>) on random compositions of the supported operations."""
    ops = [np.sin, np.exp, np.conj, np.abs, lambda z: z * np.real(z), np.sqrt, np.tanh,
           lambda z: np.fft.fft(z), lambda z: z[::-1] * 1j, lambda z: np.angle(z) + z]  # fmt: skip
    for seed in range(20):
        rng = np.random.default_rng(seed)
        chain = [ops[i] for i in rng.integers(0, len(ops), 4)]

        def f(z, chain=chain):
            for op in chain:
                z = op(z) + 0.1
            return z

        z = rng.normal(size=3) + 1j * rng.normal(size=3)
        u = rng.normal(size=3) + 1j * rng.normal(size=3)
        v = rng.normal(size=3) + 1j * rng.normal(size=3)
        tangent = da.jvp(f, z, v)[1]
        ct = da.vjp(f, z)[1](u)
        lhs, rhs = np.real(np.sum(u * tangent)), np.real(np.sum(ct * v))
        assert lhs == pytest.approx(rhs, rel=1e-10, abs=1e-12)
        fd = (f(z + H * v) - f(z - H * v)) / (2 * H)
        np.testing.assert_allclose(tangent, fd, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("outer", MODES)
def test_derivative_of_a_complex_gradient(outer):
    """A complex gradient inside another derivative (nested Duals, and reverse over forward)."""

    def f(x):
        return da.gradient(lambda z: np.sum(np.abs(z) ** 2 * z.real), x * (1 + 1j), mode="forward")

    x = np.array([0.5, 1.5])
    expected = np.stack([(f(x + H * e) - f(x - H * e)) / (2 * H) for e in np.eye(2)], -1)
    np.testing.assert_allclose(da.jacobian(f, x, mode=outer), expected, rtol=1e-7, atol=1e-8)
