"""The njit helpers a function calls, as compiled for Duals.

A helper's own options stay with it when the function calling it is compiled for Duals; Numba's
``parallel=True`` cannot reduce Duals in a ``prange`` loop (its reduction lowering knows only
numbers), so a parallel helper is called as a serial copy of its source there, as the user's own
function is.  Other options (``fastmath``, ``cache``) are harmless and kept.
"""

from __future__ import annotations

import types as pytypes
from typing import Any

import numba
from numba.core.registry import CPUDispatcher

_serial: dict[Any, Any] = {}


def _is_parallel(value: Any) -> bool:
    return isinstance(value, CPUDispatcher) and bool(value.targetoptions.get("parallel"))


def serial_source(fn: Any) -> Any:
    """``fn`` (a Python function) with each parallel njit helper it names replaced by a serial
    dispatcher of that helper's source, recursively; ``fn`` itself when it names none."""
    if fn in _serial:
        return _serial[fn]
    _serial[fn] = fn  # a recursive helper refers to itself as it is
    names = set(fn.__code__.co_names) & fn.__globals__.keys()
    replaced: dict[str, Any] = {}
    for name in names:
        value = fn.__globals__[name]
        if isinstance(value, CPUDispatcher):
            inner = serial_source(value.py_func)
            if _is_parallel(value) or inner is not value.py_func:
                replaced[name] = numba.njit(inner)
    if replaced:
        namespace = dict(fn.__globals__)
        namespace.update(replaced)
        _serial[fn] = pytypes.FunctionType(
            fn.__code__, namespace, fn.__name__, fn.__defaults__, fn.__closure__
        )
    return _serial[fn]
