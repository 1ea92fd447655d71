"""Module-level functions for tests/test_pickling.py: a spawned worker imports them by name."""

from __future__ import annotations

from typing import Any

import numpy as np


def banded(u: np.ndarray) -> np.ndarray:
    """A tridiagonal residual (its Jacobian is sparse)."""
    return np.concatenate([u[:1], u[1:-1] ** 2 - u[:-2] * u[2:], u[-1:] * 2.0])


def rosenbrock(x: np.ndarray) -> Any:
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def apply(task: tuple[Any, ...]) -> Any:
    """Call ``task[0]`` on the rest; sparse results come back dense, to compare simply."""
    fn, *arguments = task
    result = fn(*arguments)
    return result.toarray() if hasattr(result, "toarray") else result
