"""The NumPy, reverse and compiled engines agree on random scalar-loop programs.

Hypothesis writes the Python source of a small function with a loop over ``x[i]``: a running
accumulator, a temporary, a branch on a value, and expressions of functions defined on the whole
real line.  The NumPy engine (forward mode) differentiates it, and so do reverse mode (the same
Python function traced), the compiled engine (the source compiled by ``numba.njit``) and
central differences, so the engines cannot drift apart silently.  Each compiled example costs a
compilation: that test draws few.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dualad as da

N = 4

LEAVES = ["x[i]", "x[(i + 1) % n]", "s", "t", "0.7", "1.3"]
UNARY = [
    "np.sin({})",
    "np.cos({})",
    "np.tanh({})",
    "np.arctan({})",
    "np.exp(np.sin({}))",
    "np.sqrt(1.0 + {0} * {0})",
    "np.log(1.0 + {0} * {0})",
    "({0} / (1.0 + {0} * {0}))",
    "({} ** 2)",
]
BINARY = ["({} + {})", "({} - {})", "({} * {})", "np.maximum({}, {})"]  # ties: ½ each


@st.composite
def expressions(draw: Any, depth: int = 3) -> str:
    if depth == 0 or draw(st.integers(0, 3)) == 0:
        return draw(st.sampled_from(LEAVES))
    if draw(st.booleans()):
        return draw(st.sampled_from(UNARY)).format(draw(expressions(depth - 1)))
    left, right = draw(expressions(depth - 1)), draw(expressions(depth - 1))
    return draw(st.sampled_from(BINARY)).format(left, right)


@st.composite
def programs(draw: Any, depth: int = 3) -> str:
    """The source of ``prog(x)``: a loop over the entries with an accumulator and a branch."""
    branch = draw(st.sampled_from(["x[i] > 0.37", "s < -0.61", "t > 0.2"]))
    lines = [
        "def prog(x):",
        "    n = x.size",
        "    y = np.zeros_like(x)",
        "    s = 0.0",
        "    t = 0.0",
        "    for i in range(n):",
        f"        t = {draw(expressions(depth))}",
        f"        if {branch}:",
        f"            s = s + {draw(expressions(depth))}",
        "        else:",
        f"            s = {draw(expressions(depth - 1))}",
        f"        y[i] = {draw(expressions(depth))}",
    ]
    lines.append("    return y" if draw(st.booleans()) else "    return s * 0.5 + t")
    return "\n".join(lines) + "\n"


points = st.lists(st.floats(-1.5, 1.5), min_size=N, max_size=N).map(np.array)


def _compile(source: str) -> Any:
    namespace: dict[str, Any] = {"np": np}
    exec(compile(source, "<generated program>", "exec"), namespace)  # noqa: S102 - test input
    return namespace["prog"]


def _central_differences(f: Any, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    columns = []
    for j in range(x.size):
        e = np.zeros_like(x)
        e[j] = h
        columns.append((np.asarray(f(x + e)) - np.asarray(f(x - e))) / (2 * h))
    return np.stack(columns, axis=-1)


def _near_a_branch(prog: Any, x: np.ndarray, h: float = 1e-5) -> bool:
    """True when a small step changes a branch or a max (finite differences straddle a kink)."""
    plain = np.asarray(prog(x))
    for j in range(x.size):
        e = np.zeros_like(x)
        e[j] = h
        second = np.asarray(prog(x + e)) - 2 * plain + np.asarray(prog(x - e))
        if np.any(np.abs(second) > 1e3 * h * h * (1 + np.abs(plain))):
            return True
    return False


@settings(max_examples=60, deadline=None)
@given(programs(), points)
def test_numpy_forward_and_reverse_agree_with_each_other_and_differences(source, x):
    prog = _compile(source)
    forward = da.jacobian(prog, x, mode="forward", engine="numpy")
    reverse = da.jacobian(prog, x, mode="reverse")
    np.testing.assert_allclose(reverse, forward, rtol=1e-11, atol=1e-12, err_msg=source)
    if not _near_a_branch(prog, x):
        fd = _central_differences(prog, x)
        np.testing.assert_allclose(forward, fd, rtol=1e-5, atol=1e-5, err_msg=source)


numba = pytest.importorskip("numba")


def _compiled_agrees(source: str, x: np.ndarray) -> None:
    prog = _compile(source)
    compiled = da.jacobian(numba.njit(prog), x, engine="numba")
    forward = da.jacobian(prog, x, mode="forward", engine="numpy")
    np.testing.assert_allclose(compiled, forward, rtol=1e-11, atol=1e-12, err_msg=source)


@settings(max_examples=2, deadline=None)
@given(programs(depth=2), points)
def test_compiled_engine_agrees_with_numpy_engine(source, x):
    """Two programs only: each compiles (10-25 s on a loaded 2-core machine)."""
    _compiled_agrees(source, x)


@pytest.mark.slow
@settings(max_examples=25, deadline=None)
@given(programs(), points)
def test_compiled_engine_agrees_on_many_programs(request, source, x):
    if not (request.config.getoption("--slow", default=False) or os.environ.get("DUALAD_SLOW")):
        pytest.skip("25 compilations: run with --slow (or DUALAD_SLOW=1)")
    _compiled_agrees(source, x)
