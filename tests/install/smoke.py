"""Smoke test of an installed dualad, run from outside the source tree by ``make check-dist``.

Its argument is the clone's ``src/`` folder.  It fails when the install is incomplete (a wheel
without ``dualad.numba`` or ``py.typed``) or when ``dualad`` is imported from the clone instead
of site-packages.
"""

import importlib.resources
import sys
from pathlib import Path

import numba
import numpy as np

import dualad as da

source = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else None
where = Path(da.__file__).resolve()
assert "site-packages" in where.parts, f"dualad imported from {where}, not from the installed wheel"
if source is not None:
    assert source not in where.parents, f"dualad imported from the source folder {where}"
assert importlib.resources.files("dualad").joinpath("py.typed").is_file(), "py.typed not shipped"


@numba.njit
def rosenbrock(x):
    s = 0.0
    for i in range(len(x) - 1):
        s += 100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2
    return s


g = da.gradient(rosenbrock, np.array([1.0, 1.0, 1.0]), engine="numba")  # the compiled engine
assert np.array_equal(g, np.zeros(3)), g

x = np.linspace(0.1, 1.0, 1000)  # n = 1000 takes the NumPy engine's fused compiled kernels
J = da.jacobian(lambda u: np.sin(u) * u, x, mode="forward", engine="numpy")
assert np.allclose(np.diag(J), np.cos(x) * x + np.sin(x))
gr = da.gradient(lambda u: np.sum(u**2), x, mode="reverse")
assert np.allclose(gr, 2 * x)
print(f"smoke test passed: dualad from {where.parent}")
