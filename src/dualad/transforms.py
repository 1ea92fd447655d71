"""The forward-mode API: seeding, chunking, tags and extraction around the Dual engine.

Every differentiation call takes a fresh tag from a counter that only grows, so a call made inside
another one (a Hessian, or a closure that differentiates) always has the larger tag and its Duals
form the outer layer.  Inputs are seeded with a chunk of basis directions; the function runs once
per chunk; the partials of the outermost layer, read off the output, are the columns of J.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import itertools
import math
import operator
import types
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from . import pytrees, reverse, wirtinger
from .dual import (
    Carrier,
    Dual,
    DualError,
    ReverseModeUnsupported,
    _as_float_array,
    assignment_error,
    check_output,
    primal,
)
from .pysource import python_source

__all__ = [
    "derivative",
    "gradient",
    "jacobian",
    "jvp",
    "hessian",
    "hvp",
    "batch_jacobian",
    "batch_jvp",
    "value_and_gradient",
    "value_and_jacobian",
    "vjp",
    "stop_gradient",
]

_tags = itertools.count(1)

#: Largest number of partial-derivative entries (inputs x directions) one pass may carry, about
#: 32 MB of float64 per array of the input's size.  A Jacobian whose seed fits moves in one pass.
MEMORY_BUDGET_ENTRIES = 4_000_000


#: Tags of the differentiations under way in this thread (context), innermost last.  Tag 0 marks
#: Duals users build.  Per context, so that a da.* call in one thread neither sees another
#: thread's differentiations as enclosing it (mode="auto" would go forward) nor theirs as live.
_live_tags: contextvars.ContextVar[tuple[int, ...]] = contextvars.ContextVar(
    "dualad_live_tags", default=(0,)
)


@contextlib.contextmanager
def _differentiation() -> Iterator[int]:
    """A fresh tag, live while the function runs, so that its Duals are told from leaked ones."""
    tag = next(_tags)  # itertools.count: one step is atomic, so tags stay unique across threads
    _live_tags.set(_live_tags.get() + (tag,))
    try:
        yield tag
    finally:
        _live_tags.set(tuple(t for t in _live_tags.get() if t != tag))


def _check_live(a: Any) -> None:
    """Refuse Duals of a differentiation that has finished: their derivative has no meaning here."""
    while isinstance(a, Dual):
        if a.tag not in _live_tags.get():
            raise DualError(
                "the function used a Dual of a differentiation that has already finished (it "
                "leaked out of an earlier da.* call, e.g. stored in a list or global) or that "
                "runs in another thread (take a derivative inside f in f's own thread); use its "
                "value, da.primal(...), instead"
            )
        a = a.value


def _as_input(x: Any) -> Any:
    """The point of differentiation as a float array (or a Dual of an enclosing differentiation).

    Integers and booleans become float64; float32 stays float32; complex input is refused.
    """
    return _as_float_array(x)


def _inner_width(x: Any) -> int:
    """Entries each element of ``x`` already carries (1 for a plain array, more when nested)."""
    width = 1
    while isinstance(x, Dual):
        width *= x.nderiv
        x = x.value
    return width


def checked_chunk_size(chunk_size: Any) -> int:
    """``chunk_size`` as a positive int, or a ValueError that says what was given.

    Only integers: a float such as 2.5 is refused rather than rounded down without a word.
    """
    try:
        size = operator.index(chunk_size)
    except TypeError:
        size = 0
    if size < 1 or isinstance(chunk_size, (bool, np.bool_)):
        raise ValueError(
            f"chunk_size must be a positive integer (or None for the default); got {chunk_size!r}"
        )
    return size


def chunk_width(n: int, chunk_size: int | None, width: int = 1) -> int:
    """Directions per pass: all ``n`` while the seed fits the budget, else balanced chunks."""
    if n == 0:
        return 1
    if chunk_size is not None:
        return min(checked_chunk_size(chunk_size), n)
    widest = max(1, MEMORY_BUDGET_ENTRIES // (n * width))
    passes = math.ceil(n / min(widest, n))
    return math.ceil(n / passes)


#: Seeds of at most this many entries (256 KB of float64) are kept for reuse, 64 of them at most:
#: a cache of larger ones would hold on to up to the memory budget per entry after the call.
BASIS_CACHE_ENTRIES = 1 << 15


def _basis(n: int, start: int, k: int, dtype: np.dtype) -> np.ndarray:
    """Columns ``start ... start + k - 1`` of the n x n identity, read-only so it can be shared."""
    if n * k <= BASIS_CACHE_ENTRIES:
        return _small_basis(n, start, k, dtype)
    return _new_basis(n, start, k, dtype)


def _new_basis(n: int, start: int, k: int, dtype: np.dtype) -> np.ndarray:
    dirs = np.zeros((n, k), dtype=dtype)
    cols = np.arange(min(k, n - start))
    dirs[start + cols, cols] = 1.0
    dirs.flags.writeable = False  # a write into x (x[0] = ...) copies the partials first
    return dirs


_small_basis = functools.lru_cache(maxsize=64)(_new_basis)


def _seed(x: Any, tag: int, start: int, k: int) -> Dual:
    """``x`` carrying the basis directions ``start ... start + k - 1`` (of ``x.ravel()``)."""
    plain = primal(x)
    dirs = _basis(plain.size, start, k, plain.dtype)
    return Dual._make(tag, x, dirs.reshape(plain.shape + (k,)))


def _as_output(y: Any) -> Any:
    if isinstance(y, Dual):
        return y
    check_output(y)
    if isinstance(y, (list, tuple, dict)):
        return np.asarray(reverse._one_array_output(y), dtype=float)
    return y


def _extract(y: Any, tag: int, k: int) -> tuple[Any, Any]:
    """(value, partials of shape ``value.shape + (k,)``) of an output at ``tag``.

    An output that does not carry ``tag`` is constant in these directions: its partials are zero.
    """
    y = _as_output(y)
    _check_live(y)
    if isinstance(y, Dual) and y.tag == tag:
        _check_live(y.partials)
        return y.value, y.partials
    value = y if isinstance(y, Dual) else _as_input(y)
    return value, np.zeros(np.shape(value) + (k,), dtype=primal(value).dtype)


def _scalar(a: Any) -> Any:
    """0-d arrays as NumPy scalars, the way NumPy returns reductions."""
    return a[()] if getattr(a, "ndim", None) == 0 else a


def _call(f: Callable[..., Any], x: Any, args: tuple[Any, ...]) -> Any:
    try:  # as dual.user_code() and numba_helpers_explained(), without a context per pass
        return f(x, *args)
    except ValueError as error:
        ours = assignment_error(error)
        if ours is None:
            raise
        raise ours from error
    except Exception as error:
        problem = numba_helper_error(error)
        if problem is None:
            raise
        raise problem from error


def numba_helper_error(error: Exception) -> DualError | None:
    """For Numba's "cannot type" error when f hands a Dual (or tracer) to a numba.njit helper
    that was not redirected to its Python source, an error that says what to do; else None."""
    message = str(error)
    if not type(error).__module__.startswith("numba") or (
        "non-precise type pyobject" not in message
        and "Cannot determine Numba type of" not in message
    ):
        return None
    return DualError(
        "f called a numba.njit function with a dualad value (a Dual or a tracer), which Numba "
        "cannot type. dualad runs the Python source of the helpers f names directly (by a "
        "global or closure name); this one was reached another way, e.g. as module.helper(x) "
        "or from a list. Import it by name (from module import helper), or use engine='numba' "
        "(forward mode) so that all of f is compiled for Duals."
    )


@contextlib.contextmanager
def numba_helpers_explained() -> Iterator[None]:
    """Numba's raw typing error for an unreached helper becomes ``numba_helper_error``'s."""
    try:
        yield
    except Exception as error:
        problem = numba_helper_error(error)
        if problem is None:
            raise
        raise problem from error


def _trace(f: Callable[..., Any], point: Any, args: tuple[Any, ...]) -> reverse.Trace:
    """``reverse.trace`` of f's Python source, with the error above for an unreached helper."""
    with numba_helpers_explained():
        return reverse.trace(_python_function(f), point, args, next(_tags))


def _source_key(f: Callable[..., Any]) -> Callable[..., Any]:
    """What a memo of f's compilation results is keyed by: its Python function, which stays the
    same object across calls (``_python_function`` rebuilds f's source for each call)."""
    return getattr(f, "py_func", f)


def _python_function(f: Callable[..., Any]) -> Callable[..., Any]:
    """What the NumPy engine runs for ``f``: its Python source (a numba dispatcher's ``py_func``),
    with the numba helpers it calls redirected to their Python source for this call."""
    return python_source(f)


ENGINES = ("auto", "numba", "numpy")


def _check_engine(engine: Any) -> None:
    """Refuse an unknown ``engine`` with the values that exist."""
    if engine not in ENGINES:
        raise ValueError(
            f"engine must be 'auto', 'numba' or 'numpy'; got {engine!r} ('auto' compiles a "
            "numba.njit function and runs any other on the NumPy engine)"
        )


#: Types of the callables that are Numba functions (dispatchers), found once per type.
_numba_types: dict[type, bool] = {}


def _is_numba_function(f: Any) -> bool:
    kind = type(f)
    known = _numba_types.get(kind)
    if known is None:
        known = _numba_types[kind] = kind.__module__.startswith("numba") and hasattr(f, "py_func")
    return known


def _any_carrier(args: tuple[Any, ...]) -> bool:
    for a in args:
        if isinstance(a, Carrier):
            return True
    return False


def _compiled_engine(f: Any, x: Any, args: tuple[Any, ...], engine: str) -> Any:
    """The compiled engine (``dualad.numba``) when it should run ``f``, else None.

    ``"auto"`` picks it for a ``numba.njit`` function at a plain point; ``"numba"`` also compiles
    a plain Python function; ``"numpy"`` never picks it.  A Dual point or argument (a derivative
    taken inside another one, as in a Hessian) always goes to the NumPy engine.
    """
    if engine == "auto":
        if not _is_numba_function(f):
            return None
    elif engine == "numpy":
        return None
    else:
        _check_engine(engine)
    if wirtinger.is_complex_point(x):  # the compiled engine is real-only
        if engine == "numba":
            raise _compiled_complex()
        return None
    if isinstance(x, Carrier) or _any_carrier(args):
        if engine == "numba":
            raise DualError(
                "engine='numba' cannot differentiate at a Dual point (a derivative inside another "
                "derivative, as in da.hessian); leave engine='auto' to use the NumPy engine there"
            )
        return None
    compiled = _compiled or _load_compiled()
    if engine == "auto" and (_source_key(f), np.ndim(x)) in compiled.failed:
        return None
    return compiled


_compiled: Any = None


def _load_compiled() -> Any:
    """Import the compiled engine (and Numba) the first time it is needed."""
    global _compiled
    from . import numba as compiled

    _compiled = compiled
    return compiled


def _fall_back(f: Any, error: Exception) -> None:
    """Warn that ``f`` goes to the NumPy engine because Numba could not compile it for Duals."""
    from .numba import summary

    warnings.warn(
        f"dualad could not compile {getattr(f, '__name__', f)} for dual numbers "
        f"({summary(str(error))}), so it differentiates its Python source "
        "with the NumPy engine instead. Pass engine='numba' to see Numba's full message, or "
        "engine='numpy' to choose the NumPy engine without this warning.",
        stacklevel=3,
    )


_FLOAT64 = np.dtype(np.float64)


def _compiled_complex() -> DualError:
    return DualError(
        "the compiled engine (engine='numba') does not support complex numbers; pass "
        "engine='numpy' (or leave engine='auto') to differentiate complex input with the NumPy "
        "engine"
    )


def _float64_point(x: Any) -> np.ndarray:
    """The point as the contiguous float64 array the compiled engine takes (and only reads)."""
    if type(x) is np.ndarray and x.dtype is _FLOAT64 and x.flags.c_contiguous:
        return x
    if wirtinger.is_complex_point(x):
        raise _compiled_complex()
    point = np.asarray(_as_input(x), dtype=np.float64)  # a 0-d point stays 0-d: f gets a Dual
    return point if point.flags.c_contiguous else point.copy()


def _check_mode(mode: str, engine: str = "auto") -> None:
    _check_engine(engine)
    if mode not in ("auto", "forward", "reverse"):
        raise ValueError(f"mode must be 'auto', 'forward' or 'reverse'; got {mode!r}")


#: ``mode="auto"`` takes a Jacobian in reverse mode when f has more inputs than this and at most
#: one output per ``AUTO_INPUTS_PER_OUTPUT`` inputs (both read off ``make bench``; README).
AUTO_REVERSE_MIN_INPUTS = 64
AUTO_INPUTS_PER_OUTPUT = 2


def _nested(x: Any, args: tuple[Any, ...]) -> bool:
    """True inside another differentiation (a Dual or Tracer may be anywhere, closures too)."""
    return (
        len(_live_tags.get()) > 1
        or bool(reverse.live_tapes.get())
        or isinstance(x, Carrier)
        or _any_carrier(args)
    )


def _auto_trace(f: Any, x: Any, args: tuple[Any, ...]) -> reverse.Trace | None:
    """For ``mode="auto"``: f's reverse-mode trace when reverse mode should take the Jacobian.

    Forward mode (None) for few inputs, inside another differentiation, when f turns out to have
    too many outputs for its inputs (the trace is then one wasted evaluation), or when the reverse
    engine cannot run f (forward mode then runs it, and reports any error of f's own).
    """
    n = np.size(primal(x))
    if n <= AUTO_REVERSE_MIN_INPUTS or _nested(x, args):
        return None
    try:
        traced = _trace(f, _reverse_point(x), args)
    except ReverseModeUnsupported as error:
        warnings.warn(
            f"dualad's reverse mode cannot differentiate {getattr(f, '__name__', f)} ({error}), "
            "so mode='auto' uses forward mode. Pass mode='forward' to choose it without this "
            "warning.",
            stacklevel=4,
        )
        return None
    except Exception:  # noqa: BLE001 - forward mode reruns f and raises what is f's own error
        return None
    if np.size(traced.value) * AUTO_INPUTS_PER_OUTPUT > n:
        return None
    return traced


def _reverse_point(x: Any) -> np.ndarray:
    """The point as a float array; a Dual or Tracer point is a derivative inside another one."""
    if isinstance(x, Carrier):
        raise ReverseModeUnsupported(
            f"reverse mode cannot differentiate at a point that is {x._label} (a derivative "
            "inside another derivative); use mode='forward' for the inner one"
        )
    return _as_input(x)


def _reverse_jacobian(
    f: Any, x: Any, chunk_size: int | None, args: tuple[Any, ...], traced: Any = None
) -> tuple[Any, Any]:
    """(f(x), Jacobian) by reverse mode: output rows pulled back in chunks, one sweep each."""
    point = _reverse_point(x)
    if traced is None:
        traced = _trace(f, point, args)
    value = traced.value
    out_shape = np.shape(value)
    m, n = math.prod(out_shape), point.size
    if m == 0:  # no outputs: nothing to sweep
        return _scalar(value), np.zeros(out_shape + point.shape, dtype=traced.dtype)
    k = chunk_width(m, chunk_size, max(1, -(-n // m)))  # entries a cotangent row spans
    rows = []
    for start in range(0, m, k):
        width = min(k, m - start)
        ct = _basis(m, start, width, traced.dtype).reshape(out_shape + (width,))
        if traced.dtype.kind == "c":  # Re(c t) with c = 1 reads Re J, with c = -i Im J
            g = traced.pull(ct) + 1j * traced.pull(-1j * ct, consume=start + k >= m)
        else:
            g = traced.pull(ct, consume=start + k >= m)
        rows.append(g.reshape(n, width).T)
    jac = rows[0] if len(rows) == 1 else np.concatenate(rows, axis=0)
    jac = _writeable(np.ascontiguousarray(jac))
    return _scalar(value), _scalar(jac.reshape(out_shape + point.shape))


def _writeable(a: np.ndarray) -> np.ndarray:
    """``a``, or a copy when it is a read-only view (of a seed, or broadcast): results are owned."""
    return a if a.flags.writeable else a.copy()


def _compiled_jacobian(
    compiled: Any,
    kind: str,
    f: Any,
    x: Any,
    chunk_size: int | None,
    args: tuple[Any, ...],
    engine: str,
) -> Any:
    """``value_and_jacobian`` or ``jacobian`` (the driver ``kind``) by the compiled engine.

    None when Numba cannot compile ``f`` for Duals and ``engine`` lets the NumPy engine take it.
    """
    point = _float64_point(x)
    K = compiled.chunk_size_for(point.size, chunk_size)
    if chunk_size is None:
        K = compiled.reuse_chunk(f, kind, point.size, K)
    try:
        result = compiled.run(f, kind, K, point, *args)
    except compiled.NotCompilable as error:
        if engine == "numba":
            raise
        _fall_back(f, error)
        return None
    if isinstance(result, tuple) and isinstance(result[0], tuple):  # f returned a tuple
        value, jac = _split_outputs(result[0], result[1], point.shape)
        return jac if kind == "jacobian" else (value, jac)
    if kind == "jacobian" and chunk_size is None and engine == "auto":
        _ready_jacobians[f] = (point.shape, compiled.driver(f, kind, K))
    return result


def _split_outputs(values: tuple[Any, ...], flat: Any, x_shape: tuple[int, ...]) -> Any:
    """A compiled tuple output's values (as NumPy scalars where 0-d) and its Jacobian, whose
    rows are the leaves' one after another, cut into the same tuple structure: one Jacobian
    per output, of shape ``leaf.shape + x.shape``, as the NumPy engine gives."""
    leaves, treedef = pytrees.flatten(values)
    rows = np.reshape(flat, (-1,) + x_shape)
    blocks, start = [], 0
    for leaf in leaves:
        size = np.size(leaf)
        blocks.append(_scalar(rows[start : start + size].reshape(np.shape(leaf) + x_shape)))
        start += size
    value = pytrees.unflatten(treedef, [_scalar(leaf) for leaf in leaves])
    return value, pytrees.unflatten(treedef, blocks)


#: The last compiled Jacobian driver that ran for f, with the shape of x it took, for calls with
#: the default options: the next such call goes straight to it, skipping the Python checks that
#: cost a small function like Lorenz's about as much as its compiled Jacobian.
_ready_jacobians: dict[Any, tuple[tuple[int, ...], Any]] = {}


#: The mode and shape of x of f's last compiled reverse run with the default options: the next
#: such call goes straight to the compiled reverse driver, skipping the Python checks (about
#: 15 us, all of a gradient at 100 inputs but 6 us) and, for mode="auto", the call of f on floats
#: that weighs its output size: that size is checked on the result instead.
_ready_reverse: dict[Any, tuple[str, tuple[int, ...]]] = {}


def _run_ready_reverse(
    f: Any, x: np.ndarray, args: tuple[Any, ...], mode: str
) -> tuple[Any, Any] | None:
    """(f(x), J) by the compiled reverse driver that ran for f before, or None (forgotten) when
    the full path should decide: a Dual argument, new argument types that do not record, or, in
    auto mode, an output now too large for reverse mode (the Jacobian is right, but forward
    mode is cheaper for the next call)."""
    if _any_carrier(args):
        return None
    try:
        value, jac = _compiled.adjoint.value_and_jacobian(f, x, args)
    except (DualError, _compiled.NotCompilable):
        del _ready_reverse[f]
        return None
    if mode == "auto" and value.size * AUTO_INPUTS_PER_OUTPUT > x.size:
        del _ready_reverse[f]
    return _scalar(value), _scalar(jac)


#: ``mode="auto"`` takes a compiled function's Jacobian by compiled reverse mode from this many
#: inputs on, when it has at most one output per ``AUTO_INPUTS_PER_OUTPUT`` inputs (README).
AUTO_COMPILED_REVERSE_MIN_INPUTS = 64


def _check_compilable(f: Any) -> None:
    """Compiled reverse mode compiles f's Python source: refuse what has none (a ufunc)."""
    if not isinstance(_source_key(f), types.FunctionType):
        raise TypeError(
            f"compiled reverse mode compiles a Python function or a numba.njit function; got "
            f"{getattr(f, '__name__', f)!r}. Wrap it, lambda x: f(x), or pass engine='numpy'"
        )


def _compiled_reverse(
    f: Any, x: Any, args: tuple[Any, ...], mode: str, engine: str = "auto"
) -> Any:
    """(f(x), J) by compiled reverse mode (``dualad.numba.adjoint``), or None when another
    path should take it: for ``"auto"``, forward mode (few inputs, many outputs, or f cannot be
    recorded); for ``"reverse"`` with ``engine="auto"``, the NumPy engine's reverse mode when f
    cannot be recorded (with a warning, as the compiled forward engine falls back)."""
    from .numba import adjoint

    _check_compilable(f)
    point = _float64_point(x)
    if mode == "auto":
        if point.size < AUTO_COMPILED_REVERSE_MIN_INPUTS or _source_key(f) in adjoint.failed:
            return None
        try:
            size = np.size(adjoint.value(f, point, args))  # f on floats tells the output size
        except Exception as error:  # f runs only on Duals (e.g. math.cbrt): forward mode takes it
            adjoint.failed[_source_key(f)] = f"f does not run on floats: {error}"
            return None
        if size * AUTO_INPUTS_PER_OUTPUT > point.size:
            return None  # many outputs: forward mode
        try:
            value, jac = adjoint.value_and_jacobian(f, point, args)
        except (adjoint.NotRecordable, DualError) as error:
            warnings.warn(
                f"dualad's compiled reverse mode cannot record {getattr(f, '__name__', f)} "
                f"({str(error).strip().splitlines()[-1]}), so mode='auto' uses compiled forward "
                "mode. Pass mode='forward' to choose it without this warning.",
                stacklevel=4,
            )
            adjoint.failed[_source_key(f)] = str(error)
            return None
        return value, jac
    try:
        return adjoint.value_and_jacobian(f, point, args)
    except adjoint.NotRecordable as error:
        if engine == "numba":
            raise
        _fall_back(f, error)
        return None


def value_and_jacobian(
    f: Callable[..., Any],
    x: Any,
    *,
    mode: str = "auto",
    chunk_size: int | None = None,
    args: tuple[Any, ...] = (),
    engine: str = "auto",
) -> tuple[Any, Any]:
    """``f(x)`` and its Jacobian, shape ``f(x).shape + x.shape``, from the same passes.

    Parameters
    ----------
    f
        ``f(x, *args)`` written with NumPy (or a ``numba.njit`` function).
    x
        Point of differentiation: a scalar, list or array (integers are promoted to float64).
    mode
        ``"forward"``, ``"reverse"`` (one backward sweep per chunk of output rows) or ``"auto"``:
        reverse when f has many inputs and at most one output per
        ``AUTO_INPUTS_PER_OUTPUT`` of them, forward otherwise (and always for a ``numba.njit``
        function, which the compiled forward engine takes, or inside another derivative).
    chunk_size
        Directions (forward) or output rows (reverse) per pass; by default all of them while
        the seed fits a memory budget.
    args
        Extra arguments passed to ``f`` and not differentiated, as in SciPy.
    engine
        ``"auto"`` (the compiled engine for a ``numba.njit`` function, else NumPy), ``"numba"``
        (compile ``f`` with Numba even if it is a plain function) or ``"numpy"``.  The compiled
        engine computes in float64 and carries at most ``dualad.numba.CHUNK_THRESHOLD``
        directions per pass unless ``chunk_size`` says otherwise.
    """
    if chunk_size is None and engine == "auto" and type(x) is np.ndarray and x.dtype is _FLOAT64:
        ready = _ready_reverse.get(f)
        if ready is not None and ready == (mode, x.shape) and x.flags.c_contiguous:
            result = _run_ready_reverse(f, x, args, mode)
            if result is not None:
                return result
    _check_mode(mode, engine)
    if wirtinger.is_complex_point(x):  # as the function of real and imaginary parts it is
        _compiled_engine(f, x, args, engine)  # refuses engine="numba"
        return wirtinger.value_and_jacobian(
            value_and_jacobian, _python_function(f), x, args,
            mode=mode, chunk_size=chunk_size, engine="numpy",
        )  # fmt: skip
    compiled = _compiled_engine(f, x, args, engine)
    if compiled is not None and mode != "forward":  # compiled reverse mode (issue 12)
        result = _compiled_reverse(f, x, args, mode, engine)
        if result is not None:
            if engine == "auto" and chunk_size is None:
                _ready_reverse[f] = (mode, np.shape(x))
            return _scalar(result[0]), _scalar(result[1])
    if mode == "reverse":
        return _reverse_jacobian(f, x, chunk_size, args)
    if compiled is not None:
        result = _compiled_jacobian(compiled, "value_and_jacobian", f, x, chunk_size, args, engine)
        if result is not None:
            return _scalar(result[0]), _scalar(result[1])
    f = _python_function(f)
    if mode == "auto":
        traced = _auto_trace(f, x, args)
        if traced is not None:
            return _reverse_jacobian(f, x, chunk_size, args, traced)
    x = _as_input(x)
    shape = np.shape(primal(x))
    n = math.prod(shape)
    k = chunk_width(n, chunk_size, _inner_width(x))
    value, blocks = None, []
    with _differentiation() as tag:
        for start in range(0, max(n, 1), k):
            width = min(k, n - start) if n else 0
            seeded = _seed(x, tag, start, max(width, 1))
            value, partials = _extract(_call(f, seeded, args), tag, max(width, 1))
            blocks.append(partials[..., :width])
    jac = blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=-1)
    if primal(jac).dtype != primal(x).dtype:  # a derivative has x's dtype, as in reverse mode
        jac = jac.astype(_precision_of(primal(x).dtype, primal(jac).dtype))
    if isinstance(jac, np.ndarray) and not jac.flags.writeable:
        jac = jac.copy()  # f returned its input: do not hand out the shared seed
    return _scalar(value), _scalar(jac.reshape(np.shape(value) + shape))


def _precision_of(x_dtype: np.dtype, dtype: np.dtype) -> np.dtype:
    """x's dtype, made complex for a complex derivative (of a complex-valued f of real x)."""
    return np.result_type(x_dtype, np.complex64) if dtype.kind == "c" else x_dtype


def jacobian(
    f: Callable[..., Any],
    x: Any,
    *,
    mode: str = "auto",
    chunk_size: int | None = None,
    args: tuple[Any, ...] = (),
    engine: str = "auto",
) -> Any:
    """Jacobian of ``f`` at ``x``: an array of shape ``f(x).shape + x.shape``.

    See :func:`value_and_jacobian` for the parameters.

    Examples
    --------
    >>> import numpy as np, dualad as da
    >>> da.jacobian(lambda x: x**2, np.array([1.0, 2.0]))
    array([[2., 0.],
           [0., 4.]])
    """
    if chunk_size is None and engine == "auto" and type(x) is np.ndarray and x.dtype is _FLOAT64:
        ready = _ready_jacobians.get(f)
        if ready is not None and ready[0] == x.shape and mode != "reverse" and x.flags.c_contiguous:
            # (a strided x takes the full path, which copies it: no second compilation)
            for a in args:  # a Dual argument (a nested derivative) takes the full path
                if a.__class__ is Dual:
                    break
            else:
                try:
                    jac = ready[1](x, *args)
                except _compiled.errors.TypingError:
                    pass  # new argument types that do not compile: the full path explains
                else:
                    return jac if jac.ndim else jac[()]
    _check_mode(mode, engine)
    compiled = None if mode == "reverse" else _compiled_engine(f, x, args, engine)
    if compiled is not None and mode == "auto" and np.size(x) >= AUTO_COMPILED_REVERSE_MIN_INPUTS:
        compiled = None  # value_and_jacobian weighs compiled reverse mode (issue 12)
    if compiled is not None:
        jac = _compiled_jacobian(compiled, "jacobian", f, x, chunk_size, args, engine)
        if jac is not None:
            return jac if isinstance(jac, tuple) or jac.ndim else jac[()]
    return value_and_jacobian(f, x, mode=mode, chunk_size=chunk_size, args=args, engine=engine)[1]


def _require_scalar_output(value: Any, who: str) -> None:
    if np.ndim(primal(value)) != 0:
        raise ValueError(
            f"{who} needs f to return a scalar; it returned shape {np.shape(primal(value))}. "
            "Use da.jacobian for vector outputs, or reduce the output (e.g. np.sum)."
        )


def value_and_gradient(
    f: Callable[..., Any],
    x: Any,
    *,
    mode: str = "auto",
    chunk_size: int | None = None,
    args: tuple[Any, ...] = (),
    engine: str = "auto",
) -> tuple[Any, Any]:
    """``f(x)`` and its gradient (shape of ``x``) for a scalar-valued ``f``.

    ``mode="auto"`` takes it in reverse mode (one backward sweep) for more than
    ``AUTO_REVERSE_MIN_INPUTS`` inputs; see :func:`value_and_jacobian` for the parameters.
    """
    value, jac = value_and_jacobian(
        f, x, mode=mode, chunk_size=chunk_size, args=args, engine=engine
    )
    _require_scalar_output(value, "gradient")
    return value, _scalar(jac)


def gradient(
    f: Callable[..., Any],
    x: Any,
    *,
    mode: str = "auto",
    chunk_size: int | None = None,
    args: tuple[Any, ...] = (),
    engine: str = "auto",
) -> Any:
    """Gradient of a scalar-valued ``f`` at ``x``; same shape as ``x``.

    See :func:`value_and_gradient` for the parameters.

    Examples
    --------
    >>> import numpy as np, dualad as da
    >>> da.gradient(lambda x: np.sum(x**3), np.array([1.0, 2.0]))
    array([ 3., 12.])
    """
    return value_and_gradient(f, x, mode=mode, chunk_size=chunk_size, args=args, engine=engine)[1]


def derivative(
    f: Callable[..., Any], x: Any, *, args: tuple[Any, ...] = (), engine: str = "auto"
) -> Any:
    """Derivative of ``f`` at a scalar ``x``; same shape as ``f(x)``.

    Examples
    --------
    >>> import numpy as np, dualad as da
    >>> float(da.derivative(np.sin, 0.0))
    1.0
    """
    if np.ndim(primal(x)) != 0:
        raise ValueError(
            f"derivative needs a scalar x; got shape {np.shape(primal(x))}. "
            "Use da.jacobian (or da.gradient) for array inputs."
        )
    return jacobian(f, x, args=args, engine=engine)


def _directions(
    shape: tuple[int, ...], v: Any, who: str = "jvp", of: str = "x", name: str = "v"
) -> tuple[Any, bool]:
    """``v`` as directions of shape ``shape + (k,)``, and whether it was a single direction."""
    if isinstance(v, Carrier):
        raise DualError(f"{who}: the direction {name} must be a plain array, not {v._label}")
    v = _as_input(v)
    vshape = np.shape(primal(v))
    if vshape == shape:
        return np.reshape(v, shape + (1,)), True
    if vshape[:-1] == shape and len(vshape) == len(shape) + 1:
        return v, False
    raise ValueError(
        f"{who}: {name} must have the shape of {of} {shape} or {of}.shape + (k,); got {name} of "
        f"shape {vshape}"
    )


def jvp(
    f: Callable[..., Any],
    x: Any,
    v: Any,
    *,
    args: tuple[Any, ...] = (),
    engine: str = "auto",
) -> tuple[Any, Any]:
    """``(f(x), J(x) @ v)`` from one pass.

    ``v`` has the shape of ``x`` (one direction; the result has the shape of ``f(x)``) or
    ``x.shape + (k,)`` (k directions at once; the result has shape ``f(x).shape + (k,)``).
    ``engine`` is as for :func:`value_and_jacobian`.
    """
    compiled = _compiled_engine(f, x, args, engine)
    if compiled is not None:
        point = _float64_point(x)
        directions, single = _directions(point.shape, v)
        directions = np.ascontiguousarray(directions, dtype=np.float64)
        k = directions.shape[-1]
        try:
            value, tangent = compiled.run(f, "jvp", k, point, directions, *args)
        except compiled.NotCompilable as error:
            if engine == "numba":
                raise
            _fall_back(f, error)
        else:
            if isinstance(value, tuple):  # a tuple output: a tuple of tangents
                values, treedef = pytrees.flatten(value)
                tangents = [
                    _scalar(t.reshape(np.shape(v) + (k,))[..., 0] if single else t)
                    for v, t in zip(values, pytrees.flatten(tangent)[0])
                ]
                value = pytrees.unflatten(treedef, [_scalar(v) for v in values])
                return value, pytrees.unflatten(treedef, tangents)
            tangent = tangent.reshape(value.shape + (k,))
            return _scalar(value), _scalar(tangent[..., 0] if single else tangent)
    f = _python_function(f)
    x = _as_input(x)
    shape = np.shape(primal(x))
    directions, single = _directions(shape, v)
    k = np.shape(directions)[-1]
    if wirtinger.is_complex_point(directions) and not wirtinger.is_complex_point(x):
        raise DualError(
            "jvp: the direction v is complex but x is real; a tangent of real x is real (pass "
            "x as a complex array, e.g. x + 0j, to move it in complex directions)"
        )
    with _differentiation() as tag:
        seeded = Dual._make(tag, x, np.asarray(directions, dtype=primal(x).dtype))
        value, partials = _extract(_call(f, seeded, args), tag, k)
    tangent = partials[..., 0] if single else partials
    return _scalar(value), _scalar(tangent)


def _batch_engine(
    f: Any, xs: Any, args: tuple[Any, ...], who: str, engine: str
) -> tuple[Any, np.ndarray]:
    """The compiled engine for a batch (None for ``engine="numpy"``) and the stacked points."""
    _check_engine(engine)
    if wirtinger.is_complex_point(xs):
        raise wirtinger.refuse(f"da.{who}")
    points = _float64_point(xs)
    if points.ndim == 0 or points.shape[0] == 0:
        raise ValueError(f"{who} needs points stacked along a first axis; got shape {points.shape}")
    if engine == "numpy":
        return None, points
    return _compiled_engine(f, points, args, "numba"), points


def batch_jvp(
    f: Callable[..., Any],
    xs: Any,
    vs: Any,
    *,
    args: tuple[Any, ...] = (),
    engine: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """``f(x)`` and ``J(x) @ v`` at many points at once, in parallel compiled code.

    ``xs`` stacks the points along its first axis (shape ``(B,) + x.shape``) and ``vs`` the
    directions (``(B,) + x.shape``, or ``(B,) + x.shape + (k,)`` for k per point).  ``f`` is
    compiled with Numba (a ``numba.njit`` function or a plain one), and the points are shared
    among threads with ``numba.prange``.  Returns ``(values, tangents)`` of shapes
    ``(B,) + f(x).shape`` and ``(B,) + f(x).shape`` (``+ (k,)``).  ``engine="numpy"`` runs the
    points one after another on the NumPy engine instead (for code Numba cannot compile).
    """
    compiled, points = _batch_engine(f, xs, args, "batch_jvp", engine)
    directions, single = _directions(points.shape, vs, "batch_jvp")
    if compiled is None:
        pairs = [jvp(f, p, d, args=args, engine="numpy") for p, d in zip(points, directions)]
        tangents = np.stack([np.asarray(t) for _, t in pairs])
        return np.stack([np.asarray(v) for v, _ in pairs]), tangents[..., 0] if single else tangents
    directions = np.ascontiguousarray(directions, dtype=np.float64)
    k = directions.shape[-1]
    value0, values, tangents = compiled.run(f, "batch_jvp", k, points, directions, *args)
    count = points.shape[0]
    tangents = tangents.reshape((count,) + value0.shape + (k,))
    return values.reshape((count,) + value0.shape), tangents[..., 0] if single else tangents


def batch_jacobian(
    f: Callable[..., Any],
    xs: Any,
    *,
    chunk_size: int | None = None,
    args: tuple[Any, ...] = (),
    engine: str = "auto",
) -> np.ndarray:
    """Jacobians of ``f`` at many points (stacked along the first axis of ``xs``), in parallel.

    As :func:`batch_jvp`; the result has shape ``(B,) + f(x).shape + x.shape``.
    """
    compiled, points = _batch_engine(f, xs, args, "batch_jacobian", engine)
    if compiled is None:
        return np.stack(
            [
                np.asarray(
                    jacobian(f, p, mode="forward", chunk_size=chunk_size, args=args, engine="numpy")
                )
                for p in points
            ]
        )
    K = compiled.chunk_size_for(math.prod(points.shape[1:]), chunk_size)
    value0, _, jacs = compiled.run(f, "batch_jacobian", K, points, *args)
    return jacs.reshape(points.shape[:1] + value0.shape + points.shape[1:])


def _compiled_second_order_wanted(f: Any, x: Any, args: tuple[Any, ...], engine: str) -> bool:
    """True when a Hessian or HVP should try the compiled engine (a Numba function, or
    engine="numba", at a plain point; engine="numba" at a Dual point is refused, saying why)."""
    if engine == "numpy":
        return False
    if isinstance(x, Carrier) or _any_carrier(args):
        _compiled_engine(f, x, args, engine)  # raises for engine="numba"
        return False
    return engine == "numba" or _is_numba_function(f)


def _compiled_second_order(
    f: Any, x: Any, args: tuple[Any, ...], engine: str, kind: str, K: Any, *arguments: Any
) -> Any:
    """A compiled Hessian or HVP (nested Duals in Numba), or None for the NumPy engine."""
    compiled = _compiled_engine(f, x, args, engine)
    if compiled is None:
        return None
    try:
        return compiled.run(f, kind, K, *arguments, *args)
    except compiled.NotCompilable as error:
        if engine == "numba":
            raise
        _fall_back(f, error)
        return None


def _forward_over_reverse(
    f: Any, point: np.ndarray, directions: np.ndarray | None, K: int, args: tuple[Any, ...]
) -> Any:
    """``H @ directions`` (n, m) by compiled forward over reverse, or H for
    ``directions=None`` from one recording of local second derivatives, swept ``K`` columns at
    a time (0: the engine's default) (``dualad.numba.adjoint``); or None when that cannot record
    f: the nested-Dual path then takes it, with its own errors and warnings (remembered per
    function, so a refusal costs one compilation)."""
    from .numba import adjoint

    key = _source_key(f)
    if not isinstance(key, types.FunctionType) or key in adjoint.failed_second_order:
        return None
    try:
        if directions is None:
            return adjoint.hessian(f, point, K, args)
        return adjoint.hvp(f, point, directions, K, args)
    except (adjoint.NotRecordable, DualError) as error:
        adjoint.failed_second_order[key] = str(error)
        return None


def hessian(
    f: Callable[..., Any],
    x: Any,
    *,
    chunk_size: int | None = None,
    args: tuple[Any, ...] = (),
    engine: str = "auto",
) -> Any:
    """Hessian of a scalar-valued ``f``, shape ``x.shape + x.shape``, by forward over forward.

    On the NumPy engine the outer pass carries ``chunk_size`` directions (by default as many as
    keep the nested partials, ``n * n * chunk`` entries, inside the memory budget); the inner
    gradient all ``n``.  A ``numba.njit`` function (or ``engine="numba"``) runs compiled, from
    one recording of f with each node's local second derivatives (taken by the rules' partials
    on Duals), then a forward and a backward sweep over the tape per block of ``chunk_size``
    columns (default: all that fit in 8 MB); where
    compiled reverse mode cannot record f, on nested Duals: one pass per block of
    ``chunk_size`` x ``chunk_size`` entries on or above the diagonal (default
    ``dualad.numba.SECOND_ORDER_CHUNK``).  Either way the result is exactly symmetric.
    ``engine`` is as for :func:`value_and_jacobian`.
    """
    _check_engine(engine)
    if wirtinger.is_complex_point(x):
        raise wirtinger.refuse("da.hessian")
    if _compiled_second_order_wanted(f, x, args, engine):
        point = _float64_point(x)
        compiled = _compiled or _load_compiled()
        # columns per sweep of the recorded local second derivatives (0: the engine's default)
        block = 0 if chunk_size is None else compiled.chunk_size_for(point.size, chunk_size)
        h = _forward_over_reverse(f, point, None, block, args)
        if h is not None:
            return _scalar(h.reshape(point.shape + point.shape))
        K = compiled.chunk_size_for(point.size, chunk_size, compiled.SECOND_ORDER_CHUNK)
        h = _compiled_second_order(f, point, args, engine, "hessian", K, point)
        if h is not None:
            return _scalar(h.reshape(point.shape + point.shape))
    inner = _python_function(f)
    x = _as_input(x)
    n = np.size(primal(x))
    if chunk_size is None:
        chunk_size = max(1, MEMORY_BUDGET_ENTRIES // max(n * n, 1))
    return jacobian(
        lambda z: gradient(inner, z, mode="forward", args=args, engine="numpy"),
        x,
        mode="forward",
        chunk_size=chunk_size,
        engine="numpy",
    )


def hvp(
    f: Callable[..., Any],
    x: Any,
    v: Any,
    *,
    args: tuple[Any, ...] = (),
    engine: str = "auto",
) -> Any:
    """Hessian-vector product ``H(x) @ v`` of a scalar-valued ``f``; shape of ``x``.

    ``v`` may carry a trailing axis of k directions (the result then has shape
    ``x.shape + (k,)``).  A ``numba.njit`` function runs compiled, by forward over reverse (one
    recording and one sweep per 12 directions), or on nested Duals whose outer directions are v
    where compiled reverse mode cannot record f; ``engine`` is as for :func:`value_and_jacobian`.
    """
    _check_engine(engine)
    if wirtinger.is_complex_point(x):
        raise wirtinger.refuse("da.hvp")
    if _compiled_second_order_wanted(f, x, args, engine):
        point = _float64_point(x)
        compiled = _compiled or _load_compiled()
        directions, single = _directions(point.shape, v, "hvp")
        directions = np.ascontiguousarray(directions, dtype=np.float64)
        m = directions.shape[-1]
        flat = directions.reshape(point.size, m)
        out = _forward_over_reverse(f, point, flat, compiled.chunk_size_for(m), args)
        if out is not None:
            out = out.reshape(point.shape + (m,))
            return _scalar(out[..., 0] if single else out)
        K = (
            compiled.chunk_size_for(point.size, None, compiled.SECOND_ORDER_CHUNK),
            directions.shape[-1],
        )
        out = _compiled_second_order(f, point, args, engine, "hvp", K, point, directions)
        if out is not None:
            out = out.reshape(point.shape + directions.shape[-1:])
            return _scalar(out[..., 0] if single else out)
    inner = _python_function(f)
    return jvp(
        lambda z: gradient(inner, z, mode="forward", args=args, engine="numpy"),
        x,
        v,
        engine="numpy",
    )[1]


def _compiled_vjp(f: Any, x: Any, args: tuple[Any, ...]) -> tuple[Any, Callable[[Any], Any]]:
    """:func:`vjp` by compiled reverse mode: the pullback holds the tape of one evaluation."""
    from .numba import adjoint

    point = _float64_point(x)
    value, pull = adjoint.vjp(f, point, args)

    def pullback(u: Any) -> Any:
        cotangents, single = _directions(value.shape, u, "vjp's pullback", "f(x)", "u")
        g = pull(np.asarray(cotangents, dtype=np.float64)).reshape(point.shape + (-1,))
        return _scalar(g[..., 0] if single else g)

    return _scalar(value), pullback


def vjp(
    f: Callable[..., Any], x: Any, *, args: tuple[Any, ...] = (), engine: str = "auto"
) -> tuple[Any, Callable[[Any], Any]]:
    """``(f(x), pullback)`` from one recorded evaluation (reverse mode).

    ``pullback(u)`` returns ``u @ J(x)`` with the shape of ``x`` for ``u`` of the shape of
    ``f(x)``, or ``x.shape + (k,)`` for ``u`` of shape ``f(x).shape + (k,)`` (k cotangents in one
    sweep).  It can be called many times; the tape is freed with it.  Reverse mode runs on the
    NumPy engine (a ``numba.njit`` function's Python source): ``engine`` may be ``"auto"`` or
    ``"numpy"``.

    Examples
    --------
    >>> import numpy as np, dualad as da
    >>> y, pullback = da.vjp(lambda x: x**2, np.array([1.0, 2.0]))
    >>> pullback(np.array([1.0, 10.0]))
    array([ 2., 40.])
    """
    _check_mode("reverse", engine)
    if engine == "numba":
        _check_compilable(f)
    if _compiled_engine(f, x, args, engine) is not None:  # compiled reverse mode (issue 12)
        return _compiled_vjp(f, x, args)
    traced = _trace(f, _reverse_point(x), args)
    out_shape = np.shape(traced.value)

    def pullback(u: Any) -> Any:
        cotangents, single = _directions(out_shape, u, "vjp's pullback", "f(x)", "u")
        if traced.dtype.kind != "c":  # only Re(u) pairs with a real output (README)
            cotangents = np.real(cotangents)
        cotangents = np.asarray(cotangents, dtype=traced.dtype)
        g = traced.pull(cotangents)
        g = g[..., 0] if single else g
        if not g.flags.writeable or np.may_share_memory(g, cotangents):  # f(x) = x, say
            g = g.copy()
        return _scalar(g)

    return _scalar(traced.value), pullback


def stop_gradient(x: Any) -> Any:
    """``x`` as a constant: its value, with no derivative flowing through it (any nesting)."""
    return primal(x)
