"""The Python source of a function, with its calls of Numba functions sent to their Python source.

The NumPy engine, the reverse engine and the sparsity tracer run a ``numba.njit`` function's
``py_func`` on their own array types.  When that source calls another ``numba.njit`` helper, the
helper is still a Numba dispatcher, which cannot type a Dual (Numba's "non-precise type
pyobject").  :func:`python_source` rebuilds the function (and, recursively, the helpers it names)
with a copy of its globals and closure cells in which every Numba dispatcher is replaced by its
rebuilt ``py_func``.  The copy is made per call and shared with nobody, so it is thread-safe and
sees the globals as they are at that call; a function that names no dispatcher is returned as it
is.  (A rebuilt function that assigns a global, ``global count``, assigns it in that copy.)
A helper reached as a module attribute (``helpers.sq(x)``) is not redirected: import it by
name (``from helpers import sq``) for the NumPy engine to differentiate through it.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["is_dispatcher", "python_source"]


def is_dispatcher(f: Any) -> bool:
    """True for a Numba function (``numba.njit`` dispatcher): it has a ``py_func`` to run."""
    return type(f).__module__.startswith("numba") and hasattr(f, "py_func")


def _names(code: types.CodeType) -> Iterator[str]:
    """Global names the code (and the functions, lambdas, comprehensions in it) may read."""
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _names(const)


def _source_of(value: Any) -> Any:
    """A dispatcher's Python function, a plain function as it is, anything else None."""
    if is_dispatcher(value):
        return value.py_func
    if isinstance(value, types.FunctionType):
        return value
    return None


class _Rebuild:
    """One redirection: every function is rebuilt at most once, cycles (recursion) included."""

    def __init__(self) -> None:
        self.needs: dict[types.FunctionType, bool] = {}
        self.done: dict[types.FunctionType, types.FunctionType] = {}

    def _referenced(self, fn: types.FunctionType) -> Iterator[Any]:
        namespace = fn.__globals__
        for name in set(_names(fn.__code__)):
            if name in namespace:
                yield namespace[name]
        for cell in fn.__closure__ or ():
            try:
                yield cell.cell_contents
            except ValueError:  # an empty cell (a name assigned later)
                continue

    def need(self, fn: types.FunctionType) -> bool:
        """True when ``fn`` reaches a Numba dispatcher through the names it reads."""
        known = self.needs.get(fn)
        if known is not None:
            return known
        self.needs[fn] = False  # in progress: a cycle adds nothing
        for value in self._referenced(fn):
            if is_dispatcher(value):
                self.needs[fn] = True
                return True
            if isinstance(value, types.FunctionType) and self.need(value):
                self.needs[fn] = True
                return True
        return False

    def _replacement(self, value: Any) -> Any:
        source = _source_of(value)
        if source is None or not (is_dispatcher(value) or self.need(source)):
            return value
        return self.function(source)

    def function(self, fn: types.FunctionType) -> types.FunctionType:
        """``fn`` with the dispatchers it reaches replaced (``fn`` itself when it reaches none)."""
        if fn in self.done:
            return self.done[fn]
        if not self.need(fn):
            self.done[fn] = fn
            return fn
        namespace = dict(fn.__globals__)
        cells = None
        if fn.__closure__:
            cells = tuple(types.CellType() for _ in fn.__closure__)
        rebuilt = types.FunctionType(fn.__code__, namespace, fn.__name__, fn.__defaults__, cells)
        rebuilt.__kwdefaults__ = fn.__kwdefaults__
        rebuilt.__qualname__, rebuilt.__module__ = fn.__qualname__, fn.__module__
        rebuilt.__doc__ = fn.__doc__
        self.done[fn] = rebuilt  # before the helpers: a recursive call finds it
        for name in set(_names(fn.__code__)) & namespace.keys():
            namespace[name] = self._replacement(namespace[name])
        for old, new in zip(fn.__closure__ or (), cells or (), strict=True):
            try:
                new.cell_contents = self._replacement(old.cell_contents)
            except ValueError:
                continue
        return rebuilt


def python_source(f: Callable[..., Any]) -> Callable[..., Any]:
    """The Python function the NumPy engine runs for ``f``.

    A Numba dispatcher gives its ``py_func``; a plain function itself.  Either way, the Numba
    functions it calls by a global or closure name are redirected to their own Python source,
    recursively, for this call only.  Other callables (ufuncs, objects) are returned unchanged.
    """
    fn = f.py_func if is_dispatcher(f) else f
    if not isinstance(fn, types.FunctionType):
        return fn
    return _Rebuild().function(fn)
