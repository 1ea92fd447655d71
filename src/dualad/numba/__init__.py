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
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
from numba.core import errors

from ..dual import DualError
from ..transforms import checked_chunk_size
from . import (  # noqa: F401 - each registers its overloads on import
    arrayops,
    arrays,
    cache,
    drivers,
    helpers,
    linalg,
    reductions,
    scalars,
    second,
    shapes,
)
from .dualtypes import CALLED_FROM_COMPILED_CODE, DualArrayType, DualType
from .promotion import promote

__all__ = [
    "CHUNK_THRESHOLD",
    "SECOND_ORDER_CHUNK",
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

#: Directions per level of a compiled Hessian's nested Duals (each pass fills a K x K block) when
#: the caller does not say: larger K makes fewer passes, but each costs (1 + K)**2 entries per
#: scalar and compiles for much longer (about 5x from K = 2 to K = 12).
SECOND_ORDER_CHUNK = 4

#: Seconds spent in the first call of each (function, driver, K), for the benchmark's report.
compile_times: dict[tuple[str, str, int], float] = {}

_for_duals: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
#: Drivers by (function, kind, K). Like Numba's own dispatchers they live as long as the process.
_drivers: dict[tuple[Any, str, int], Any] = {}


def chunk_size_for(n: int, chunk_size: int | None = None, threshold: int = CHUNK_THRESHOLD) -> int:
    """K for n inputs: ``chunk_size`` if given, else n up to the threshold, else balanced."""
    if chunk_size is not None:
        return max(1, min(checked_chunk_size(chunk_size), n))
    if n <= threshold:
        return max(n, 1)
    return math.ceil(n / math.ceil(n / threshold))


def reuse_chunk(f: Callable[..., Any], kind: str, n: int, K: int) -> int:
    """K, or a larger K already compiled for ``f`` and ``kind`` that takes the same number of
    passes over n inputs (so a sweep over n compiles fewer drivers, at no cost in passes; each
    pass carries the wider chunk).  A single pass keeps K = n: its Jacobian is the partials."""
    passes = -(-n // K)
    if passes < 2 or (f, kind, K) in _drivers:
        return K
    for g, done_kind, done_K in _drivers:
        if g is f and done_kind == kind and isinstance(done_K, int) and done_K > K:
            if -(-n // done_K) == passes:
                return done_K
    return K


def for_duals(f: Callable[..., Any]) -> Any:
    """A Numba dispatcher of ``f``'s Python source, kept apart from the user's own dispatcher
    (whose options, such as ``parallel`` or ``cache``, are for float code)."""
    source = getattr(f, "py_func", f)
    dispatcher = _for_duals.get(source)
    if dispatcher is None:
        # called only from dualad's compiled drivers: no CPython or C wrapper, which Numba would
        # otherwise generate, optimise and make machine code of for every input type
        dispatcher = _for_duals[source] = numba.njit(
            helpers.serial_source(source), **CALLED_FROM_COMPILED_CODE
        )
    return dispatcher


_LOCATION = re.compile(r'File "([^"]+)", line (\d+):')


def _where(message: str) -> str:
    """The first source location outside dualad that Numba's message names (the user's line)."""
    for path, line in _LOCATION.findall(message):
        generated = path.startswith("<")  # dualad's generated overloads
        parts = path.replace("\\", "/").split("/")
        driver = len(parts) > 1 and parts[-2].startswith("drivers-")  # a cached driver's source
        if not generated and not driver and "dualad" not in parts[-3:-1]:
            return f" (at {path}, line {line})"
    return ""


def _typed_at(exc: BaseException) -> str:
    """The user's line Numba was typing when ``exc`` escaped it without a location (its in-place
    operator template crashes after dualad refused an operand): the innermost ``loc`` of the
    typing frames in the traceback."""
    from numba.core import ir

    places = []
    tb = exc.__traceback__
    while tb is not None:
        names = tb.tb_frame.f_locals
        loc = names.get("loc", getattr(names.get("self"), "loc", None))
        if isinstance(loc, ir.Loc) and loc.filename:
            places.append(f'File "{loc.filename}", line {loc.line}:')
        tb = tb.tb_next
    return _where("\n".join(reversed(places)))


class NotCompilable(errors.TypingError):
    """Numba could not compile the function for Dual inputs, for a reason that is not dualad's."""


#: (function, ndim of the point) Numba could not compile for Duals, with the reason, so that
#: engine="auto" does not pay for a failing compilation again.  Per ndim: a call at a scalar
#: point that fails (f indexes x) must not send the function's array calls to the NumPy engine.
failed: dict[tuple[Any, int], str] = {}


_OPERATION = re.compile(r"^\s*>>> (.+)$", re.MULTILINE)


def summary(message: str) -> str:
    """The operation Numba could not type (its ``>>> op(types)`` line), or its first reason."""
    found = _OPERATION.search(message)
    if found:
        return f"no implementation of {found.group(1).strip()}"
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    reasons = [ln for ln in lines if not ln.startswith("Failed in")]
    return (reasons or lines or ["no reason given"])[0]


#: Held while a driver is made and first called (compiled), so that two threads asking for the
#: same driver at once compile it once: the second waits, then finds it ready.  Re-entrant,
#: since a driver is made from the drivers it calls.
_compiling = threading.RLock()


def driver(f: Callable[..., Any], kind: str, K: Any) -> Any:
    """The compiled driver of ``kind`` for ``f`` and K, made once and then reused (and kept on
    disk across processes, see :mod:`.cache`)."""
    key = (f, kind, K)
    ready = _drivers.get(key)
    if ready is not None:
        return ready
    with _compiling:
        return _make_driver(f, kind, K)


def _make_driver(f: Callable[..., Any], kind: str, K: Any) -> Any:
    key = (f, kind, K)
    if key not in _drivers:
        scalars.register_table()
        arrayops.register_table()
        if kind == "value_and_jacobian":
            made = drivers.make_value_and_jacobian(for_duals(f), (0.0,) * K)
        elif kind == "jacobian":
            # the value-and-Jacobian driver, its value dropped in Python: a compiled wrapper would
            # optimise and emit the whole program's machine code a second time (~0.5 s per f)
            _drivers[key] = drivers.second_of(driver(f, "value_and_jacobian", K))
            return _drivers[key]
        elif kind == "jvp":
            made = drivers.make_jvp(for_duals(f), (0.0,) * K)
        elif kind == "hessian":
            made = second.make_hessian(for_duals(f), (0.0,) * K)
        elif kind == "hvp":  # K is (inner chunk, directions)
            made = second.make_hvp(for_duals(f), (0.0,) * K[0], (0.0,) * K[1])
        elif kind == "batch_jvp":
            made = drivers.make_batch_jvp(driver(f, "jvp", K))
        else:
            made = drivers.make_batch_jacobian(driver(f, "value_and_jacobian", K))
        _drivers[key] = cache.cached(made, f, kind, K, parallel=kind.startswith("batch"))
    return _drivers[key]


#: Driver kinds on nested Duals: that one of them cannot compile says nothing of first order.
SECOND_ORDER_KINDS = ("hessian", "hvp")


def run(f: Callable[..., Any], kind: str, K: Any, *arguments: Any) -> Any:
    """Call the driver of ``kind`` for ``f`` and K, compiling it on first use (timed)."""
    compiled = _drivers.get((f, kind, K))
    if compiled is None:
        with _compiling:
            compiled = _drivers.get((f, kind, K))
            if compiled is None:  # not made by a thread that held the lock first
                return _first_call(f, kind, K, arguments)
    return _call(compiled, f, K, arguments, kind)


def _first_call(f: Callable[..., Any], kind: str, K: Any, arguments: tuple[Any, ...]) -> Any:
    """Make the driver and call it once (the call compiles it), timed; under ``_compiling``."""
    compiled = driver(f, kind, K)
    start = time.perf_counter()
    try:
        result = _call(compiled, f, K, arguments, kind)
    except cache.LOAD_ERRORS as error:
        if not cache.enabled() or not cache.raised_while_loading(error):
            raise
        cache.abandon(error, "driver", _drivers, f)  # compile without the disk cache from now on
        compiled = driver(f, kind, K)
        result = _call(compiled, f, K, arguments, kind)
    compile_times[getattr(f, "__name__", "f"), kind, K] = time.perf_counter() - start
    return result


def _call(
    compiled: Any, f: Callable[..., Any], K: Any, arguments: tuple[Any, ...], kind: str = ""
) -> Any:
    """Call a driver; on a typing failure, say what dualad knows about it."""
    if scalars.problems.get():  # left by a candidate overload that lost to another: not ours
        scalars.problems.set(())
    try:
        return compiled(*arguments)
    except Exception as exc:
        # Numba's in-place operator template for a float array lhs crashes (AttributeError) on
        # a DualArray rhs after dualad's overload refused it: the refusal is the answer then.
        # Other templates of Numba's crash so on a Dual type alone (a typing failure too).
        typing_crash = isinstance(exc, AttributeError) and not cache.raised_while_loading(exc)
        if not (isinstance(exc, errors.TypingError) or typing_crash or scalars.problems.get()):
            raise
        message = str(exc)
        problem = scalars.take_problem(message)
        if problem == arrayops.NESTED_WITH_ARRAY:  # what this engine cannot do: not an error
            raise NotCompilable(problem + (_where(message) or _typed_at(exc))) from None
        if problem is not None:
            raise DualError(problem + (_where(message) or _typed_at(exc))) from None
        if arguments and kind not in SECOND_ORDER_KINDS:  # a Hessian's failure is its own
            failed[getattr(f, "py_func", f), np.ndim(arguments[0])] = message
        raise NotCompilable(
            f"{message}\n\ndualad: compiling {getattr(f, '__name__', 'f')} for Dual inputs "
            f"(K = {K}) stopped at {summary(message)}{_where(message)}. The compiled engine "
            "takes loops, elementwise NumPy on arrays and the common reductions (see the README); "
            "other NumPy calls on Duals need engine='numpy'."
        ) from None
