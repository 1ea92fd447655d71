"""The compiled engine: dual numbers inside Numba nopython code.

The user's function (a ``numba.njit`` dispatcher, or a plain function with ``engine="numba"``) is
compiled again from its Python source for DualArray inputs; the operators and functions it calls
on Duals are overloads generated from :mod:`dualad.rules`.  The drivers in :mod:`.drivers` seed
the input, loop over chunks of K directions and extract the Jacobian in compiled code.

Importing this package imports Numba and registers the overloads; :mod:`dualad` imports it only
when a compiled function is first differentiated.
"""

from __future__ import annotations

import math
import re
import time
import weakref
from collections.abc import Callable
from typing import Any

import numba
from numba.core import errors

from ..dual import DualError
from ..transforms import checked_chunk_size
from . import arrayops, arrays, drivers, helpers, reductions, scalars, shapes  # noqa: F401
from .dualtypes import DualArrayType, DualType
from .promotion import promote

__all__ = [
    "CHUNK_THRESHOLD",
    "DualArrayType",
    "DualType",
    "NotCompilable",
    "chunk_size_for",
    "compile_times",
    "promote",
    "run",
]

#: Directions carried in one pass when the caller does not say: all of them up to this many
#: inputs, else balanced chunks of at most this many (ForwardDiff.jl's rule, with its default).
CHUNK_THRESHOLD = 12

#: Seconds spent in the first call of each (function, driver, K), for the benchmark's report.
compile_times: dict[tuple[str, str, int], float] = {}

_for_duals: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
#: Drivers by (function, kind, K). Like Numba's own dispatchers they live as long as the process.
_drivers: dict[tuple[Any, str, int], Any] = {}


def chunk_size_for(n: int, chunk_size: int | None = None) -> int:
    """K for n inputs: ``chunk_size`` if given, else n up to the threshold, else balanced."""
    if chunk_size is not None:
        return max(1, min(checked_chunk_size(chunk_size), n))
    if n <= CHUNK_THRESHOLD:
        return max(n, 1)
    return math.ceil(n / math.ceil(n / CHUNK_THRESHOLD))


def for_duals(f: Callable[..., Any]) -> Any:
    """A Numba dispatcher of ``f``'s Python source, kept apart from the user's own dispatcher
    (whose options, such as ``parallel`` or ``cache``, are for float code)."""
    source = getattr(f, "py_func", f)
    dispatcher = _for_duals.get(source)
    if dispatcher is None:
        dispatcher = _for_duals[source] = numba.njit(helpers.serial_source(source))
    return dispatcher


_LOCATION = re.compile(r'File "([^"]+)", line (\d+):')


def _where(message: str) -> str:
    """The first source location outside dualad that Numba's message names (the user's line)."""
    for path, line in _LOCATION.findall(message):
        generated = path.startswith("<")  # dualad's generated overloads
        if not generated and "dualad" not in path.replace("\\", "/").split("/")[-3:-1]:
            return f" (at {path}, line {line})"
    return ""


class NotCompilable(errors.TypingError):
    """Numba could not compile the function for Dual inputs, for a reason that is not dualad's."""


#: Functions Numba could not compile for Duals, with the reason, so that engine="auto" does not
#: pay for a failing compilation again.
failed: dict[Any, str] = {}


_OPERATION = re.compile(r"^\s*>>> (.+)$", re.MULTILINE)


def summary(message: str) -> str:
    """The operation Numba could not type (its ``>>> op(types)`` line), or its first reason."""
    found = _OPERATION.search(message)
    if found:
        return f"no implementation of {found.group(1).strip()}"
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    reasons = [ln for ln in lines if not ln.startswith("Failed in")]
    return (reasons or lines or ["no reason given"])[0]


def driver(f: Callable[..., Any], kind: str, K: int) -> Any:
    """The compiled driver of ``kind`` for ``f`` and K, made once and then reused."""
    key = (f, kind, K)
    if key not in _drivers:
        scalars.register_table()
        arrayops.register_table()
        if kind == "value_and_jacobian":
            _drivers[key] = drivers.make_value_and_jacobian(for_duals(f), (0.0,) * K)
        elif kind == "jacobian":
            _drivers[key] = drivers.make_jacobian(driver(f, "value_and_jacobian", K))
        elif kind == "jvp":
            _drivers[key] = drivers.make_jvp(for_duals(f), (0.0,) * K)
        elif kind == "batch_jvp":
            _drivers[key] = drivers.make_batch_jvp(driver(f, "jvp", K))
        else:
            _drivers[key] = drivers.make_batch_jacobian(driver(f, "value_and_jacobian", K))
    return _drivers[key]


def run(f: Callable[..., Any], kind: str, K: int, *arguments: Any) -> Any:
    """Call the driver of ``kind`` for ``f`` and K, compiling it on first use (timed)."""
    compiled = _drivers.get((f, kind, K))
    if compiled is None:
        compiled = driver(f, kind, K)
        start = time.perf_counter()
        result = _call(compiled, f, K, arguments)
        compile_times[getattr(f, "__name__", "f"), kind, K] = time.perf_counter() - start
        return result
    return _call(compiled, f, K, arguments)


def _call(compiled: Any, f: Callable[..., Any], K: int, arguments: tuple[Any, ...]) -> Any:
    """Call a driver; on a typing failure, say what dualad knows about it."""
    try:
        return compiled(*arguments)
    except Exception as exc:
        # Numba's in-place operator template for a float array lhs crashes (AttributeError) on
        # a DualArray rhs after dualad's overload refused it: the refusal is the answer then.
        if not isinstance(exc, errors.TypingError) and not scalars.problems:
            raise
        message = str(exc)
        known = [m for m in scalars.refusals if m in message]
        problem = scalars.problems[0] if scalars.problems else known[0] if known else None
        scalars.problems.clear()
        if problem is not None:
            raise DualError(problem + _where(message)) from None
        failed[getattr(f, "py_func", f)] = message
        raise NotCompilable(
            f"{message}\n\ndualad: compiling {getattr(f, '__name__', 'f')} for Dual inputs "
            f"(K = {K}) stopped at {summary(message)}{_where(message)}. The compiled engine "
            "takes loops, elementwise NumPy on arrays and the common reductions (see the README); "
            "other NumPy calls on Duals need engine='numpy'."
        ) from None
