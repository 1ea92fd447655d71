"""The Python source of a function, with its calls of Numba functions sent to their Python source.

The NumPy engine, the reverse engine and the sparsity tracer run a ``numba.njit`` function's
``py_func`` on their own array types.  When that source calls another ``numba.njit`` helper, the
helper is still a Numba dispatcher, which cannot type a Dual (Numba's "non-precise type
pyobject").  :func:`python_source` rebuilds the function (and, recursively, the helpers it names)
with a copy of its globals and closure cells in which every Numba dispatcher is replaced by its
rebuilt ``py_func``; a function that names no dispatcher is returned as it is.  The rebuild is
kept per function and reused while every global and closure cell it read (in the originals and
in the copies) still holds the same object, so a call sees the globals as they are at that call;
a changed one rebuilds.  (A rebuilt function that assigns a global, ``global count``, assigns it
in its copy, which then no longer matches: the next call rebuilds from the module's value.)
dualad's own functions (the wrappers around f) are searched through their closure cells only:
they never reach a user's function by a global name, and walking dualad's module graph on every
call cost half of a small ``engine="numpy"`` gradient.  A helper reached as a module attribute
(``helpers.sq(x)``) is not redirected: import it by name (``from helpers import sq``) for the
NumPy engine to differentiate through it.
"""

from __future__ import annotations

import types
import weakref
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
        #: (namespace or cell, name, object) of every read the result depends on
        self.reads: list[tuple[Any, str | None, Any]] = []

    def _referenced(self, fn: types.FunctionType) -> Iterator[Any]:
        namespace = fn.__globals__
        # dualad's own functions reach the user's code only through their closure cells (the
        # wrappers of f), never by a global name: their globals are not searched
        names = () if _ours(fn) else set(_names(fn.__code__))
        for name in names:
            value = namespace.get(name, _MISSING)
            self.reads.append((namespace, name, value))
            if value is not _MISSING:
                yield value
        for cell in fn.__closure__ or ():
            value = _contents(cell)
            self.reads.append((cell, None, value))
            if value is not _MISSING:
                yield value

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
        for name in set(_names(fn.__code__)):
            value = fn.__globals__.get(name, _MISSING)
            self.reads.append((fn.__globals__, name, value))
            if value is not _MISSING:
                namespace[name] = self._replacement(value)
                self.reads.append((namespace, name, namespace[name]))
        for old, new in zip(fn.__closure__ or (), cells or (), strict=True):
            value = _contents(old)
            self.reads.append((old, None, value))
            if value is not _MISSING:
                new.cell_contents = self._replacement(value)
                self.reads.append((new, None, new.cell_contents))
        return rebuilt


_MISSING = object()


def _ours(fn: types.FunctionType) -> bool:
    """True for a function of dualad itself."""
    return (fn.__module__ or "").partition(".")[0] == "dualad"


def _contents(cell: types.CellType) -> Any:
    try:
        return cell.cell_contents
    except ValueError:  # an empty cell (a name assigned later)
        return _MISSING


def _unchanged(reads: list[tuple[Any, str | None, Any]]) -> bool:
    """True while every namespace entry and cell read still holds the same object."""
    for where, name, value in reads:
        now = _contents(where) if name is None else where.get(name, _MISSING)
        if now is not value:
            return False
    return True


#: function -> (its rebuild or None for itself, the reads it depends on); an entry goes with
#: its function.
_rebuilt: weakref.WeakKeyDictionary[types.FunctionType, tuple[Any, list[Any]]] = (
    weakref.WeakKeyDictionary()
)


def python_source(f: Callable[..., Any]) -> Callable[..., Any]:
    """The Python function the NumPy engine runs for ``f``.

    A Numba dispatcher gives its ``py_func``; a plain function itself.  Either way, the Numba
    functions it calls by a global or closure name are redirected to their own Python source,
    recursively, for this call only.  Other callables (ufuncs, objects) are returned unchanged.
    """
    fn = f.py_func if is_dispatcher(f) else f
    if not isinstance(fn, types.FunctionType):
        return fn
    known = _rebuilt.get(fn)
    if known is not None and _unchanged(known[1]):
        return known[0] or fn
    rebuild = _Rebuild()
    result = rebuild.function(fn)
    # fn itself is kept as None: the entry must not hold its own key alive
    _rebuilt[fn] = (None if result is fn else result, rebuild.reads)
    return result
