"""SciPy's special functions that the rules' partials call, as Numba can compile them.

The rule of ``gammaln`` (and so of ``math.lgamma``) is ``digamma(x)``, and that of ``gamma`` is
``gamma(x) * digamma(x)``; Numba cannot call ``scipy.special`` itself, so a partial compiled for
Duals sees this module in its place.  Written as plain arithmetic, the functions here run on Duals
too, which gives the second derivatives of a compiled Hessian.
"""

from __future__ import annotations

import math
import types as pytypes
from typing import Any

import numba
import numpy as np

#: Coefficients of the asymptotic series psi(x) ~ log x - 1/(2x) - sum B_2k / (2k x^2k).
_ASYMPTOTIC = (1.0 / 12.0, -1.0 / 120.0, 1.0 / 252.0, -1.0 / 240.0, 1.0 / 132.0,
               -691.0 / 32760.0, 1.0 / 12.0)  # fmt: skip


@numba.njit(error_model="numpy")
def digamma(x):  # noqa: ANN001, ANN201
    """psi(x) to about 1e-15: reflection below 0.5, recurrence up to 10, then the series."""
    shift = 0.0 * x
    if x <= 0.0 and math.floor(x) == x:
        return np.nan + shift
    if x < 0.5:  # psi(1 - x) - psi(x) = pi / tan(pi x)
        return digamma(1.0 - x) - math.pi / np.tan(math.pi * x)
    acc = shift
    while x < 10.0:
        acc = acc - 1.0 / x
        x = x + 1.0
    inv2 = 1.0 / (x * x)
    series = shift
    power = inv2
    for c in _ASYMPTOTIC:
        series = series + c * power
        power = power * inv2
    return acc + np.log(x) - 0.5 / x - series


def namespace(module: Any) -> Any:
    """``scipy.special`` as the compiled partials see it: ``digamma`` replaced."""
    compiled = pytypes.ModuleType(module.__name__)
    compiled.__dict__.update(module.__dict__)
    compiled.digamma = digamma
    return compiled
