"""Jacobians and gradients with respect to complex inputs (README, "Complex numbers").

A function of complex ``z = x + i y`` is differentiated as the function of the real pair (x, y)
that it is: ``h(r) = f(r[0] + 1j * r[1])`` goes through the real-input transforms, in either
mode, and gives ``Jx = df/dx`` and ``Jy = df/dy``.  From them:

* a real-valued f has the gradient ``Jx - i Jy`` (JAX's convention: the cotangent of 1 pulled
  back with the pairing ``Re(c * t)``; its conjugate is the direction of steepest ascent);
* a holomorphic f (``Jy == i Jx``, the Cauchy-Riemann equations) has the derivative ``Jx``;
* any other complex-valued f has no complex derivative: a clear error says what to use instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .dual import DualError, primal

#: Cauchy-Riemann holds when |Jy - i Jx| <= this times the largest |Jx| entry (rounding only).
HOLOMORPHIC_RTOL = 1e-9


def is_complex_point(x: Any) -> bool:
    """True for a complex number or array (a Dual of one too); lists are looked into."""
    x = primal(x)
    dtype = getattr(x, "dtype", None)
    if dtype is not None:
        return dtype.kind == "c"
    if isinstance(x, complex):
        return True
    if isinstance(x, (list, tuple)):
        try:
            return np.asarray(x).dtype.kind == "c"
        except Exception:  # noqa: BLE001 - lists of Duals: let the real path say what it says
            return False
    return False


def refuse(who: str) -> DualError:
    return DualError(
        f"{who} does not support complex numbers; split the real and imaginary parts into "
        "separate real inputs, or use da.jacobian / da.gradient / da.jvp / da.vjp (NumPy engine)"
    )


def value_and_jacobian(value_and_jacobian_real: Any, f: Any, z: Any, args: tuple, **options: Any):
    """``(f(z), J)`` for complex ``z`` by the real transform ``value_and_jacobian_real``."""
    z = np.asarray(z) if not hasattr(z, "shape") else z

    def h(r: Any, *rest: Any) -> Any:
        return f(r[0] + 1j * r[1], *rest)

    point = np.stack([np.real(z), np.imag(z)])
    value, jac = value_and_jacobian_real(h, point, args=args, **options)
    out_ndim = np.ndim(primal(value))
    jx = np.take(jac, 0, axis=out_ndim)
    jy = np.take(jac, 1, axis=out_ndim)
    if not np.iscomplexobj(primal(value)):
        return value, jx - 1j * jy
    jx_plain, jy_plain = primal(jx), primal(jy)
    scale = np.max(np.abs(jx_plain), initial=0.0) + np.max(np.abs(jy_plain), initial=0.0)
    if np.any(np.abs(jy_plain - 1j * jx_plain) > HOLOMORPHIC_RTOL * scale):
        raise DualError(
            "f is complex-valued and not holomorphic at this complex x (its derivative along the "
            "imaginary direction is not i times that along the real one: conj, abs, real, imag "
            "... break this), so no complex Jacobian exists. Use da.jvp(f, z, v) or da.vjp(f, z) "
            "for the R-linear map, or differentiate the real-valued np.real(f(z)) and "
            "np.imag(f(z)) with da.gradient (README, 'Complex numbers')"
        )
    return value, jx
