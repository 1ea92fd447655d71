"""Fused kernels for the NumPy engine's hot path: tangent = sum of (local derivative x partials).

NumPy evaluates ``p1 * d1[..., None] + p2 * d2[..., None]`` in three passes with two temporaries
the size of the partials; these loops make one pass and no temporary.  The NumPy engine calls them
only for large float64 partials (see ``dual.FUSED_MIN_ENTRIES``), where they win, and imports them
(and Numba) on first use.  A zero tangent stays zero whatever the local derivative, as in
``dual._scale``.
"""

from __future__ import annotations

import numba
import numpy as np


def _compiled(kernel):  # noqa: ANN001, ANN202
    """Compiled, and cached on disk where Numba finds a writable place (else per process)."""
    try:
        return numba.njit(cache=True)(kernel)
    except RuntimeError:  # no cache locator: a read-only install without a user cache dir
        return numba.njit(kernel)


@_compiled
def scaled(d, p):  # noqa: ANN001, ANN201
    """``d[i] * p[i, :]`` for d of shape (m,) and p of shape (m, k)."""
    out = np.empty_like(p)
    for i in range(p.shape[0]):
        c = d[i]
        for j in range(p.shape[1]):
            q = p[i, j]
            out[i, j] = q * c if q != 0.0 else 0.0
    return out


@_compiled
def combined(d1, p1, d2, p2):  # noqa: ANN001, ANN201
    """``d1[i] * p1[i, :] + d2[i] * p2[i, :]``, shapes as for :func:`scaled`."""
    out = np.empty_like(p1)
    for i in range(p1.shape[0]):
        c1 = d1[i]
        c2 = d2[i]
        for j in range(p1.shape[1]):
            q1 = p1[i, j]
            q2 = p2[i, j]
            out[i, j] = (q1 * c1 if q1 != 0.0 else 0.0) + (q2 * c2 if q2 != 0.0 else 0.0)
    return out
