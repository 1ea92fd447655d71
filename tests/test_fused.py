"""The NumPy engine's fused kernels (dualad.numba.kernels) against its plain NumPy path.

The kernels run only for partials of at least ``dual.FUSED_MIN_ENTRIES`` entries; here the
threshold is lowered so that small cases take them, and every result must equal the NumPy path's
bit for bit (both multiply the same numbers and add them in the same order).
"""

import numpy as np
import pytest

import dualad as da
from dualad import dual


def residual(u):
    lap = np.zeros_like(u)
    lap[1:-1] = u[:-2] - 2.0 * u[1:-1] + u[2:]
    return lap + np.sin(u) * u - np.exp(u) / (1.0 + u**2)


def roots(x):
    return np.sqrt(x) * x[::-1] + np.hypot(x, 2.0 * x)


CASES = [
    (residual, np.linspace(0.1, 2.0, 9), "jacobian"),
    (roots, np.array([0.0, 1.0, 4.0]), "jacobian"),  # sqrt at 0: zero tangents stay zero
    (lambda x: np.sum(x**3 * np.cos(x)), np.linspace(-1.0, 1.0, 6), "hessian"),  # nested: NumPy
    (residual, np.linspace(0.1, 2.0, 9).astype(np.float32), "jacobian"),  # float32: NumPy path
]


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # sqrt-at-0: inf on purpose
@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # ... and 0 * inf in hypot
@pytest.mark.parametrize("f, x, kind", CASES, ids=["residual", "sqrt-at-0", "hessian", "float32"])
def test_fused_path_equals_numpy_path(monkeypatch, f, x, kind):
    derivative = getattr(da, kind)
    expected = derivative(f, x)
    monkeypatch.setattr(dual, "FUSED_MIN_ENTRIES", 1)
    np.testing.assert_array_equal(derivative(f, x), expected)


def test_fused_path_is_taken_for_large_partials(monkeypatch):
    calls = []
    monkeypatch.setattr(dual, "FUSED_MIN_ENTRIES", 1)
    real = dual._fused
    monkeypatch.setattr(dual, "_fused", lambda terms, y: calls.append(1) or real(terms, y))
    x = np.linspace(0.1, 2.0, 9)
    np.testing.assert_allclose(da.jacobian(residual, x), da.jacobian(residual, x, chunk_size=3))
    assert calls
