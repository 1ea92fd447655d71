"""``np.linalg.solve``, ``inv`` and ``det`` of DualArrays inside compiled code.

Each is computed on the values by Numba's own LAPACK-backed function, and its partials by the
linearisation of the same function (a structural operation, as in the NumPy engine's registry):
``d(A^-1 b) = A^-1 (db - dA x)``, ``d(A^-1) = -A^-1 dA A^-1``, ``d det A = det A tr(A^-1 dA)``,
one direction at a time, with the factorisation's solves done for all K directions at once.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import types

from .dualtypes import DualArrayType, generate, overload_first, tuple_source
from .scalars import refuse


def _gen(source: str, **names: Any) -> Any:
    return generate(source, label="linear algebra", **names)


def _square(name: str, a: Any) -> None:
    if a.ndim != 2:
        refuse(f"np.linalg.{name} of a DualArray takes one square matrix (2-D) in compiled code")


@overload_first(np.linalg.solve)
def _solve(a, b):  # noqa: ANN001
    duals = [t for t in (a, b) if isinstance(t, DualArrayType)]
    if not duals or not all(isinstance(t, (DualArrayType, types.Array)) for t in (a, b)):
        return None
    K = duals[0].K
    if a.ndim != 2 or b.ndim not in (1, 2):
        refuse("np.linalg.solve of DualArrays takes a square matrix and a 1-D or 2-D right side")
    av = "a.value" if isinstance(a, DualArrayType) else "a"
    bv = "b.value" if isinstance(b, DualArrayType) else "b"
    lines = [
        "def impl(a, b):",
        f"    av = np.ascontiguousarray({av})",
        f"    x = np.linalg.solve(av, np.ascontiguousarray({bv}))",
        "    n = x.shape[0]",
        f"    rhs = np.zeros(x.shape + ({K},))",
        f"    for k in range({K}):",
    ]
    if isinstance(b, DualArrayType):
        lines.append("        rhs[..., k] += b.partials[..., k]")
    if isinstance(a, DualArrayType):
        lines.append("        rhs[..., k] -= np.dot(np.ascontiguousarray(a.partials[..., k]), x)")
    lines += [
        "    dx = np.linalg.solve(av, rhs.reshape((n, -1)))",
        f"    return make_dual_array(x, dx.reshape(x.shape + ({K},)), {K})",
    ]
    return _gen("\n".join(lines) + "\n")


@overload_first(np.linalg.inv)
def _inv(a):  # noqa: ANN001
    if not isinstance(a, DualArrayType):
        return None
    _square("inv", a)
    return _gen(
        "def impl(a):\n"
        "    x = np.linalg.inv(np.ascontiguousarray(a.value))\n"
        f"    dx = np.empty(x.shape + ({a.K},))\n"
        f"    for k in range({a.K}):\n"
        "        dx[..., k] = -np.dot(np.dot(x, np.ascontiguousarray(a.partials[..., k])), x)\n"
        f"    return make_dual_array(x, dx, {a.K})\n"
    )


@overload_first(np.linalg.det)
def _det(a):  # noqa: ANN001
    if not isinstance(a, DualArrayType):
        return None
    _square("det", a)
    names = tuple_source([f"p[{k}]" for k in range(a.K)])
    return _gen(
        "def impl(a):\n"
        "    av = np.ascontiguousarray(a.value)\n"
        "    d = np.linalg.det(av)\n"
        "    n = av.shape[0]\n"
        f"    p = np.zeros({a.K})\n"
        "    if d != 0.0:\n"
        "        inv = np.linalg.inv(av)\n"
        f"        for k in range({a.K}):\n"
        "            s = 0.0\n"
        "            for i in range(n):\n"
        "                for j in range(n):\n"
        "                    s += inv[j, i] * a.partials[i, j, k]\n"
        "            p[k] = d * s\n"
        "    else:\n"
        "        raise ValueError('np.linalg.det of a singular DualArray: its derivative (the "
        "adjugate) is not computed in compiled code (dualad)')\n"
        f"    return make_dual(d, {names})\n"
    )
