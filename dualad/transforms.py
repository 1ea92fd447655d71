"""The forward-mode API: seeding, chunking, tags and extraction around the Dual engine.

Every differentiation call takes a fresh tag from a counter that only grows, so a call made inside
another one (a Hessian, or a closure that differentiates) always has the larger tag and its Duals
form the outer layer.  Inputs are seeded with a chunk of basis directions; the function runs once
per chunk; the partials of the outermost layer, read off the output, are the columns of J.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from .dual import Dual, DualError, _as_float_array, primal

__all__ = [
    "derivative",
    "gradient",
    "jacobian",
    "jvp",
    "hessian",
    "hvp",
    "value_and_gradient",
    "value_and_jacobian",
    "jacfwd",
    "grad",
    "stop_gradient",
]

_tags = itertools.count(1)

#: Largest number of partial-derivative entries (inputs x directions) one pass may carry, about
#: 32 MB of float64 per array of the input's size.  A Jacobian whose seed fits moves in one pass.
MEMORY_BUDGET_ENTRIES = 4_000_000


#: Tags of the differentiations under way, innermost last.  Tag 0 marks Duals users build.
_live_tags: list[int] = [0]


@contextlib.contextmanager
def _differentiation() -> Iterator[int]:
    """A fresh tag, live while the function runs, so that its Duals are told from leaked ones."""
    tag = next(_tags)
    _live_tags.append(tag)
    try:
        yield tag
    finally:
        _live_tags.remove(tag)


def _check_live(a: Any) -> None:
    """Refuse Duals of a differentiation that has finished: their derivative has no meaning here."""
    while isinstance(a, Dual):
        if a.tag not in _live_tags:
            raise DualError(
                "the function used a Dual of a differentiation that has already finished (it "
                "leaked out of an earlier da.* call, e.g. stored in a list or global); use its "
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


def chunk_width(n: int, chunk_size: int | None, width: int = 1) -> int:
    """Directions per pass: all ``n`` while the seed fits the budget, else balanced chunks."""
    if n == 0:
        return 1
    if chunk_size is not None:
        if int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be a positive integer; got {chunk_size!r}")
        return min(int(chunk_size), n)
    widest = max(1, MEMORY_BUDGET_ENTRIES // (n * width))
    passes = math.ceil(n / min(widest, n))
    return math.ceil(n / passes)


@functools.lru_cache(maxsize=64)
def _basis(n: int, start: int, k: int, dtype: np.dtype) -> np.ndarray:
    """Columns ``start ... start + k - 1`` of the n x n identity, read-only so it can be shared."""
    dirs = np.zeros((n, k), dtype=dtype)
    cols = np.arange(min(k, n - start))
    dirs[start + cols, cols] = 1.0
    dirs.flags.writeable = False  # a write into x (x[0] = ...) copies the partials first
    return dirs


def _seed(x: Any, tag: int, start: int, k: int) -> Dual:
    """``x`` carrying the basis directions ``start ... start + k - 1`` (of ``x.ravel()``)."""
    plain = primal(x)
    dirs = _basis(plain.size, start, k, plain.dtype)
    return Dual._make(tag, x, dirs.reshape(plain.shape + (k,)))


def _as_output(y: Any) -> Any:
    if isinstance(y, Dual):
        return y
    if isinstance(y, (list, tuple)):
        if any(isinstance(item, Dual) for item in y):
            return np.stack(y)
        return np.asarray(y, dtype=float)
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
    return f(x, *args)


def _python_function(f: Callable[..., Any]) -> Callable[..., Any]:
    """A numba dispatcher runs its Python source on Duals (until the compiled engine takes it)."""
    return getattr(f, "py_func", f)


def _check_mode(mode: str) -> None:
    if mode not in ("auto", "forward", "reverse"):
        raise ValueError(f"mode must be 'auto', 'forward' or 'reverse'; got {mode!r}")
    if mode == "reverse":
        raise NotImplementedError(
            "mode='reverse' is not available yet in dualad; use mode='forward' (or 'auto')"
        )


def value_and_jacobian(
    f: Callable[..., Any],
    x: Any,
    *,
    mode: str = "auto",
    chunk_size: int | None = None,
    args: tuple[Any, ...] = (),
) -> tuple[Any, Any]:
    """``f(x)`` and its Jacobian, shape ``f(x).shape + x.shape``, from the same passes.

    Parameters
    ----------
    f
        ``f(x, *args)`` written with NumPy (or a ``numba.njit`` function).
    x
        Point of differentiation: a scalar, list or array (integers are promoted to float64).
    mode
        ``"forward"`` or ``"auto"`` (forward for now).
    chunk_size
        Directions per pass; by default all of them while the seed fits a memory budget.
    args
        Extra arguments passed to ``f`` and not differentiated, as in SciPy.
    """
    _check_mode(mode)
    f = _python_function(f)
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
    if isinstance(jac, np.ndarray) and not jac.flags.writeable:
        jac = jac.copy()  # f returned its input: do not hand out the shared seed
    return _scalar(value), _scalar(jac.reshape(np.shape(value) + shape))


def jacobian(
    f: Callable[..., Any],
    x: Any,
    *,
    mode: str = "auto",
    chunk_size: int | None = None,
    args: tuple[Any, ...] = (),
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
    return value_and_jacobian(f, x, mode=mode, chunk_size=chunk_size, args=args)[1]


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
    chunk_size: int | None = None,
    args: tuple[Any, ...] = (),
) -> tuple[Any, Any]:
    """``f(x)`` and its gradient (shape of ``x``) for a scalar-valued ``f``."""
    value, jac = value_and_jacobian(f, x, chunk_size=chunk_size, args=args)
    _require_scalar_output(value, "gradient")
    return value, _scalar(jac)


def gradient(
    f: Callable[..., Any], x: Any, *, chunk_size: int | None = None, args: tuple[Any, ...] = ()
) -> Any:
    """Gradient of a scalar-valued ``f`` at ``x``; same shape as ``x``.

    Examples
    --------
    >>> import numpy as np, dualad as da
    >>> da.gradient(lambda x: np.sum(x**3), np.array([1.0, 2.0]))
    array([ 3., 12.])
    """
    return value_and_gradient(f, x, chunk_size=chunk_size, args=args)[1]


def derivative(f: Callable[..., Any], x: Any, *, args: tuple[Any, ...] = ()) -> Any:
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
    return jacobian(f, x, args=args)


def jvp(f: Callable[..., Any], x: Any, v: Any, *, args: tuple[Any, ...] = ()) -> tuple[Any, Any]:
    """``(f(x), J(x) @ v)`` from one pass.

    ``v`` has the shape of ``x`` (one direction; the result has the shape of ``f(x)``) or
    ``x.shape + (k,)`` (k directions at once; the result has shape ``f(x).shape + (k,)``).
    """
    f = _python_function(f)
    x = _as_input(x)
    shape = np.shape(primal(x))
    v = _as_input(v)
    vshape = np.shape(primal(v))
    if vshape == shape:
        directions, single = np.reshape(v, shape + (1,)), True
    elif vshape[:-1] == shape and len(vshape) == len(shape) + 1:
        directions, single = v, False
    else:
        raise ValueError(
            f"jvp: v must have the shape of x {shape} or x.shape + (k,); got v of shape {vshape}"
        )
    if isinstance(directions, Dual):
        raise DualError("jvp: the direction v must be a plain array, not a Dual")
    k = np.shape(directions)[-1]
    with _differentiation() as tag:
        seeded = Dual._make(tag, x, np.asarray(directions, dtype=primal(x).dtype))
        value, partials = _extract(_call(f, seeded, args), tag, k)
    tangent = partials[..., 0] if single else partials
    return _scalar(value), _scalar(tangent)


def hessian(
    f: Callable[..., Any], x: Any, *, chunk_size: int | None = None, args: tuple[Any, ...] = ()
) -> Any:
    """Hessian of a scalar-valued ``f``, shape ``x.shape + x.shape``, by forward over forward.

    The outer pass carries ``chunk_size`` directions (by default as many as keep the nested
    partials, ``n * n * chunk`` entries, inside the memory budget); the inner gradient all ``n``.
    """
    x = _as_input(x)
    n = np.size(primal(x))
    if chunk_size is None:
        chunk_size = max(1, MEMORY_BUDGET_ENTRIES // max(n * n, 1))
    inner = _python_function(f)
    return jacobian(lambda z: gradient(inner, z, args=args), x, chunk_size=chunk_size)


def hvp(f: Callable[..., Any], x: Any, v: Any, *, args: tuple[Any, ...] = ()) -> Any:
    """Hessian-vector product ``H(x) @ v`` of a scalar-valued ``f``; shape of ``x``."""
    inner = _python_function(f)
    return jvp(lambda z: gradient(inner, z, args=args), x, v)[1]


def jacfwd(f: Callable[..., Any], *, chunk_size: int | None = None) -> Callable[..., Any]:
    """``f``'s Jacobian as a function ``jac(x, *args)``, ready for SciPy's ``jac=`` arguments."""

    def jac(x: Any, *args: Any) -> Any:
        return jacobian(f, x, mode="forward", chunk_size=chunk_size, args=args)

    jac.__name__ = f"jacfwd({getattr(f, '__name__', 'f')})"
    return jac


def grad(f: Callable[..., Any], *, chunk_size: int | None = None) -> Callable[..., Any]:
    """``f``'s gradient as a function ``g(x, *args)``, e.g. for ``minimize(jac=)``."""

    def g(x: Any, *args: Any) -> Any:
        return gradient(f, x, chunk_size=chunk_size, args=args)

    g.__name__ = f"grad({getattr(f, '__name__', 'f')})"
    return g


def stop_gradient(x: Any) -> Any:
    """``x`` as a constant: its value, with no derivative flowing through it (any nesting)."""
    return primal(x)
