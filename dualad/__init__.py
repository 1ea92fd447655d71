"""dualad: exact derivatives of NumPy code by dual numbers (forward-mode automatic differentiation).

>>> import numpy as np, dualad as da
>>> da.gradient(lambda x: x[0] * x[1] + np.sin(x[0]), [2.0, 3.0])
array([2.58385316, 2.        ])
"""

from . import rules
from .dual import Dual, DualError, apply_rule, primal, tangent
from .rules import NONDIFF, register_rule
from .transforms import (
    batch_jacobian,
    batch_jvp,
    derivative,
    grad,
    gradient,
    hessian,
    hvp,
    jacfwd,
    jacobian,
    jvp,
    stop_gradient,
    value_and_gradient,
    value_and_jacobian,
)

rules._dispatch_hook = apply_rule
rules._carries_derivative = lambda a: isinstance(a, Dual)

__version__ = "0.1.0"

__all__ = [
    "batch_jacobian",
    "batch_jvp",
    "Dual",
    "DualError",
    "NONDIFF",
    "derivative",
    "gradient",
    "grad",
    "hessian",
    "hvp",
    "jacfwd",
    "jacobian",
    "jvp",
    "primal",
    "register_rule",
    "stop_gradient",
    "tangent",
    "value_and_gradient",
    "value_and_jacobian",
]
