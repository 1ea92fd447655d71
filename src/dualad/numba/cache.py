"""Compiled drivers cached on disk across processes.

Numba caches a function next to its source file, so each driver (one user function, one kind,
one K) is written as a small Python file into a cache folder and compiled from there with
``cache=True``; a later process imports the same file and Numba loads the machine code instead
of compiling the user's function for Duals again.

The file is named by a key of everything the compiled code depends on: dualad's version, the
source of dualad's rules and compiled engine, every rule in the table (registered ones included),
Numba's and Python's versions, and the user's function (its code, the code of the functions it
calls by name, and the numbers, strings and arrays it reads as globals).  A change of any of them
gives another file, so a stale driver is never loaded; Numba itself also checks the file's
timestamp and its own version.  Files of other keys are left alone (delete the folder to reclaim
the space).

The folder is ``$DUALAD_CACHE_DIR`` when set (``DUALAD_CACHE_DIR=off`` turns the cache off), else
the user's cache folder (``$XDG_CACHE_HOME/dualad`` or ``~/.cache/dualad``; ``~/Library/Caches``
on macOS, ``%LOCALAPPDATA%`` on Windows), never the installed package.  A folder that cannot be
written means no disk cache: compiling still works.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import inspect
import os
import pickle
import sys
import tempfile
import textwrap
import types
import warnings
from pathlib import Path
from typing import Any

import numba
import numpy as np

from .. import rules
from ..pysource import _names, is_dispatcher

__all__ = ["ENV_VAR", "cache_folder", "cached", "function_key", "raised_while_loading"]

ENV_VAR = "DUALAD_CACHE_DIR"
_OFF = ("", "0", "off", "none", "false")

#: What loading a cache entry back can raise (an environment whose module is gone, a truncated
#: file): the caller then compiles without the cache.
LOAD_ERRORS = (ImportError, AttributeError, EOFError, pickle.UnpicklingError)

_LOADER = os.path.join("numba", "core", "caching.py")


def raised_while_loading(error: BaseException) -> bool:
    """True when ``error`` (one of :data:`LOAD_ERRORS`) means an entry that would not load.
    An AttributeError counts only when it came out of Numba's cache loader: Numba's own typing
    templates can raise one on a dualad type (``np.argmax`` read ``.dtype``), which is a function
    the engine cannot compile, not a stale cache entry."""
    if not isinstance(error, AttributeError):
        return True
    trace = error.__traceback__
    while trace is not None:
        if trace.tb_frame.f_code.co_filename.endswith(_LOADER):
            return True
        trace = trace.tb_next
    return False


#: Set once a cache entry could not be loaded: this process then compiles without the cache.
_disabled: list[bool] = []


def disable() -> None:
    """Stop using the disk cache in this process (after an entry that would not load)."""
    _disabled.append(True)


def abandon(error: BaseException, what: str, drivers: dict, f: Any) -> None:
    """After a cache entry that would not load: say so, compile without the cache in this
    process from now on, and forget ``f``'s drivers (made from the cache) so they are made again."""
    warnings.warn(
        f"dualad could not load a compiled {what} from its disk cache ({error!r}); "
        f"compiling without the cache in this process (set {ENV_VAR}=off to "
        "silence this, or delete the cache folder)",
        stacklevel=5,
    )
    disable()
    for key in [key for key in drivers if key[0] is f]:
        del drivers[key]


def enabled() -> bool:
    """True while a cache folder is in use."""
    return not _disabled and cache_folder() is not None


def _default_root() -> Path:
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "dualad" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "dualad"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dualad"


@functools.lru_cache(maxsize=1)
def _engine_sources() -> str:
    """Digest of the code that generates the compiled code: rules.py, dual.py, dualad.numba."""
    here = Path(__file__).resolve().parent
    files = sorted(here.glob("*.py")) + [here.parent / "rules.py", here.parent / "dual.py"]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    from .. import __version__

    versions = (__version__, numba.__version__, np.__version__, sys.version, sys.platform)
    digest.update(repr(versions).encode())
    return digest.hexdigest()


def _code_object_digest(code: types.CodeType, digest: Any) -> None:
    """Add a code object to ``digest`` by what it says: its bytecode, names, constants (nested
    code too) and line table.  Not ``marshal.dumps``, whose bytes mark an object seen twice by
    its reference count, so compiling a function (which keeps its constants) changed them."""
    digest.update(code.co_code)
    digest.update(code.co_linetable)
    signature = (
        code.co_name,
        code.co_firstlineno,
        code.co_flags,
        code.co_argcount,
        code.co_posonlyargcount,
        code.co_kwonlyargcount,
        code.co_names,
        code.co_varnames,
        code.co_freevars,
        code.co_cellvars,
    )
    digest.update(repr(signature).encode())
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            _code_object_digest(constant, digest)
        else:
            digest.update(_constant_repr(constant).encode())


def _constant_repr(constant: Any) -> str:
    """A code constant's text, the same in every process (a frozenset's order follows string
    hashing, which differs per process: its items are sorted)."""
    if isinstance(constant, frozenset):
        return "frozenset(" + ",".join(sorted(_constant_repr(item) for item in constant)) + ")"
    if isinstance(constant, tuple):
        return "(" + ",".join(_constant_repr(item) for item in constant) + ",)"
    return f"{type(constant).__name__}:{constant!r}"


def _code_digest(fn: Any, digest: Any) -> None:
    """Add a Python function's code, defaults and closure constants to ``digest``."""
    _code_object_digest(fn.__code__, digest)
    digest.update(repr(fn.__defaults__).encode())
    for cell in fn.__closure__ or ():
        try:
            _value_digest(cell.cell_contents, digest)
        except ValueError:  # an empty cell
            digest.update(b"<empty>")


def _value_digest(value: Any, digest: Any) -> None:
    """What compiled code freezes of a global: numbers, strings, tuples, arrays, functions."""
    if isinstance(value, np.ndarray):
        digest.update(repr((value.dtype.str, value.shape)).encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, (int, float, complex, bool, str, bytes, type(None))):
        digest.update(repr(value).encode())
    elif isinstance(value, (tuple, list)):
        digest.update(type(value).__name__.encode())
        for item in value:
            _value_digest(item, digest)
    elif isinstance(value, dict):
        for key in sorted(value, key=repr):
            _value_digest(key, digest)
            _value_digest(value[key], digest)
    elif isinstance(value, rules.Rule):  # a registered function's rule: by what it says
        _rule_digest(value, digest)
    elif isinstance(value, (types.ModuleType, type)) or callable(value):
        # a function's code is keyed by function_key itself; a module, class, ufunc or
        # dispatcher by its name (their reprs may hold addresses)
        name = getattr(value, "__qualname__", None) or getattr(value, "__name__", "")
        digest.update(f"{type(value).__qualname__}:{name}".encode())
    else:  # anything else by its repr: at worst a miss (an address in it), never stale
        digest.update(f"{type(value).__qualname__}:{value!r}".encode())


def _rule_digest(rule: rules.Rule, digest: Any) -> None:
    """A rule by its name and its partials' code (its repr holds function addresses)."""
    digest.update(rule.name.encode())
    for partial in rule.partials:
        if isinstance(partial, types.FunctionType):
            _code_digest(partial, digest)
        else:
            digest.update(repr(partial).encode())


def _rules_digest(digest: Any) -> None:
    """The rules given by register_rule (they change the compiled code).  Not the built-in
    ones: they are dualad's source, in the engine digest, and SciPy's load on first use, so
    keying them made a driver's key depend on whether this process had used SciPy yet."""
    for rule in rules.RULES.values():
        if rule.registered:
            _rule_digest(rule, digest)


def function_key(f: Any) -> str | None:
    """Digest of the user's function and what it reaches by name; None if it has no code or
    a function in it belongs to no importable module."""
    fn = getattr(f, "py_func", f)
    if not isinstance(fn, types.FunctionType):
        return None
    digest = hashlib.sha256()
    seen: set[Any] = set()
    todo = [fn]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        if current.__module__ not in sys.modules:
            return None  # made by exec without a module: Numba could not load it back
        seen.add(current)
        digest.update(f"{current.__module__}.{current.__qualname__}".encode())
        _code_digest(current, digest)
        namespace = current.__globals__
        for name in sorted(set(_names(current.__code__))):
            if name not in namespace:
                continue
            value = namespace[name]
            digest.update(name.encode())
            if is_dispatcher(value):
                value = value.py_func
            if isinstance(value, types.FunctionType):
                todo.append(value)
            _value_digest(value, digest)
        for cell in current.__closure__ or ():
            try:
                value = cell.cell_contents
            except ValueError:
                continue
            value = value.py_func if is_dispatcher(value) else value
            if isinstance(value, types.FunctionType):
                todo.append(value)
    return digest.hexdigest()


def cache_folder() -> Path | None:
    """The writable folder for this engine's drivers, or None (no disk cache)."""
    setting = os.environ.get(ENV_VAR)
    if _disabled or (setting is not None and setting.strip().lower() in _OFF):
        return None
    root = Path(setting) if setting else _default_root()
    folder = root / f"drivers-{_engine_sources()[:16]}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return folder if os.access(folder, os.W_OK) else None


def _driver_source(fn: types.FunctionType, parallel: bool) -> str:
    """A module defining ``fn`` (a driver made by a ``make_*`` function) at top level, its
    closure variables as globals set after import, compiled with ``cache=True``."""
    lines = textwrap.dedent(inspect.getsource(fn)).splitlines()
    while lines and lines[0].startswith("@"):
        lines.pop(0)
    options = "cache=True, parallel=True" if parallel else "cache=True"
    free = "".join(f"{name} = None\n" for name in fn.__code__.co_freevars)
    return (
        "# Generated by dualad: one compiled driver, cached by Numba beside this file.\n"
        "import importlib as _importlib\n\n"
        f"globals().update({{k: v for k, v in vars(_importlib.import_module({fn.__module__!r}))"
        ".items() if not k.startswith('__')})\n"
        f"{free}\n\n@numba.njit({options})\n" + "\n".join(lines) + "\n"
    )


def _write_once(path: Path, text: str) -> None:
    """Write ``path`` atomically unless it holds ``text`` already (its timestamp then stays,
    which Numba's cache checks)."""
    try:
        if path.read_text() == text:
            return
    except OSError:
        pass
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(handle, "w") as stream:
        stream.write(text)
    os.replace(temporary, path)


def _uncached_driver(value: Any) -> bool:
    """True for one of dualad's drivers compiled without the disk cache."""
    module = getattr(getattr(value, "py_func", None), "__module__", "")
    return is_dispatcher(value) and module.startswith(__package__ + ".")


def cached(driver: Any, f: Any, kind: str, K: Any, parallel: bool = False) -> Any:
    """The same driver as ``driver`` (a fresh, not yet compiled dispatcher of a ``make_*``
    function), compiled from a file in the cache folder so that Numba keeps it on disk; or
    ``driver`` itself when there is no cache folder or ``f`` has no code to key it by."""
    folder = cache_folder()
    user = function_key(f)
    if folder is None or user is None:
        return driver
    fn = driver.py_func
    if any(_uncached_driver(cell.cell_contents) for cell in fn.__closure__ or ()):
        # its disk entry would name the inner driver's cache module, which this process never
        # imported (the inner one was made while the cache was off): Numba could not load it
        return driver
    digest = hashlib.sha256()
    digest.update(user.encode())
    digest.update(repr((kind, K, fn.__module__, fn.__qualname__)).encode())
    for value in fn.__closure__ or ():
        if is_dispatcher(value.cell_contents):  # the inner driver or f: keyed above
            continue
        _value_digest(value.cell_contents, digest)
    _rules_digest(digest)
    name = "".join(c if c.isalnum() else "_" for c in getattr(f, "__name__", "f"))[:40]
    stem = f"{name}_{kind}_{digest.hexdigest()[:24]}"
    path = folder / f"{stem}.py"
    try:
        _write_once(path, _driver_source(fn, parallel))
        module_name = f"dualad_cached_{stem}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        # registered before it runs: Numba names the module of a cached function and imports it
        # when loading the function in a later process
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    except (OSError, TypeError, ImportError, SyntaxError):  # no source (a zip), a full disk
        return driver
    for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or (), strict=True):
        setattr(module, name, cell.cell_contents)
    return getattr(module, fn.__name__)
