"""Jacobian sparsity patterns: which inputs each value computed by ``f`` depends on.

:func:`jacobian_sparsity` runs ``f`` once on a :class:`Deps`: an array-like that carries its value
and, for each element, the sorted indices of the inputs (entries of ``x.ravel()``) it depends on,
stored like the rows of a CSR matrix without data.  Every NumPy call on it propagates that
dependence, with no derivative computed:

* an elementwise rule of :mod:`dualad.rules` makes each output element depend on the union of the
  inputs of its broadcast arguments (an argument whose partial is ``None`` contributes nothing);
* functions that move elements (indexing, reshape, roll, concatenate, where ...) are applied to an
  array of element indices, which says where each output element comes from;
* reductions and products (sum, cumsum, einsum and so matmul, dot, ...) take the union over the
  elements the operator combines; the compositions of :data:`dualad.structural.COMPOSITES` (mean,
  var, prod, clip, diff, norm, ...) are reused as they are written.

Values of ``x`` and of constants never remove a dependence: ``x * 0.0`` still depends on ``x``,
and ``A @ x`` with a constant dense ``A`` depends on all of ``x`` even where ``A`` is zero.

Two kinds of pattern, chosen by ``local``:

* global (the default) holds at every ``x``: both sides of every selection (``np.where``,
  ``maximum``, ``sort``, ``max``) count, and a Python ``if``/``while``, an index or an ``int()``
  taken from a value computed from ``x`` is refused with an error that says so;
* local (``local=True``) follows the branches ``f`` takes at this ``x``: comparisons give plain
  booleans, ``if`` works, ``np.where`` selects by its condition at ``x``, sort and max follow the
  order at ``x``.  It holds wherever ``f`` takes the same branches, not beyond.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from typing import Any

import numpy as np

from . import rules
from . import structural as _structural
from .dual import (
    Carrier,
    DualError,
    _no_rule,
    check_output,
    label,
    primal,
    user_code,
    with_assignment_error,
)

__all__ = ["Deps", "SparsityError", "jacobian_sparsity"]


class SparsityError(DualError):
    """Something ``f`` does that a sparsity pattern cannot follow (or cannot follow globally)."""


# --- dependence rows: CSR without data -----------------------------------------------------------


class _Rows:
    """For each element (in C order), the sorted, distinct inputs it depends on.

    Immutable: an operation makes new rows, so that results may share them freely.
    """

    __slots__ = ("indptr", "indices")

    def __init__(self, indptr: np.ndarray, indices: np.ndarray) -> None:
        self.indptr = indptr
        self.indices = indices

    @property
    def count(self) -> int:
        return len(self.indptr) - 1

    def row(self, i: int) -> np.ndarray:
        return self.indices[self.indptr[i] : self.indptr[i + 1]]


_INT = np.int64


_NONE = np.zeros(0, _INT)


def _no_rows(m: int) -> _Rows:
    return _Rows(np.zeros(m + 1, _INT), np.zeros(0, _INT))


def _one_row(cols: np.ndarray) -> _Rows:
    return _Rows(np.array([0, len(cols)], _INT), cols)


def _stack(parts: list[_Rows]) -> tuple[_Rows, list[int]]:
    """All rows of ``parts`` one after another, and where each part starts."""
    if len(parts) == 1:
        return parts[0], [0]
    offsets, ends, pointers = [], 0, [np.zeros(1, _INT)]
    nnz = 0
    for p in parts:
        offsets.append(ends)
        ends += p.count
        pointers.append(p.indptr[1:] + nnz)
        nnz += len(p.indices)
    return _Rows(np.concatenate(pointers), np.concatenate([p.indices for p in parts])), offsets


def _gather(rows: _Rows, ids: np.ndarray, n: int) -> _Rows:
    """Row ``e`` of the result is the union of rows ``ids[e, :]`` of ``rows`` (-1: none)."""
    m = ids.shape[0]
    if m == 0:  # an empty array: no rows
        return _Rows(np.zeros(1, _INT), np.zeros(0, _INT))
    flat = ids.reshape(-1)
    absent = flat < 0
    safe = np.where(absent, 0, flat)
    starts = rows.indptr[safe]
    lens = rows.indptr[safe + 1] - starts
    lens[absent] = 0
    if m == 1:  # a scalar: the union of a few short rows
        pieces = [rows.indices[s : s + k] for s, k in zip(starts.tolist(), lens.tolist()) if k]
        if len(pieces) <= 1:
            return _one_row(pieces[0] if pieces else np.zeros(0, _INT))
        return _one_row(np.unique(np.concatenate(pieces)))
    per_group = lens.reshape(m, -1)
    counts = per_group.sum(axis=1)
    indptr = np.zeros(m + 1, _INT)
    np.cumsum(counts, out=indptr[1:])
    segment_starts = np.cumsum(lens) - lens
    cols = rows.indices[np.arange(indptr[-1]) + np.repeat(starts - segment_starts, lens)]
    if per_group.shape[1] > 1 and np.count_nonzero(per_group, axis=1).max(initial=0) > 1:
        keys = np.unique(np.repeat(np.arange(m, dtype=_INT), counts) * n + cols)
        out_rows, cols = np.divmod(keys, n)
        indptr = np.zeros(m + 1, _INT)
        np.cumsum(np.bincount(out_rows, minlength=m), out=indptr[1:])
    return _Rows(indptr, cols)


def _all_of(rows_list: list[_Rows], m: int) -> _Rows:
    """Every one of ``m`` rows depends on everything any of ``rows_list`` depends on."""
    cols = np.unique(np.concatenate([r.indices for r in rows_list]))
    return _Rows(np.arange(m + 1, dtype=_INT) * len(cols), np.tile(cols, m))


# --- the traced value ----------------------------------------------------------------------------


class _Trace:
    """What all values of one trace share: the number of inputs and the kind of pattern."""

    __slots__ = ("n", "local")

    def __init__(self, n: int, local: bool) -> None:
        self.n = n
        self.local = local


_BRANCH = (
    "jacobian_sparsity: f {what}, so the pattern depends on where f is evaluated. The default "
    "(global) pattern must hold at every x and cannot follow that; pass local=True for the "
    "pattern at this x (it holds wherever f takes the same branches; sparse_jacobian then checks "
    "each Jacobian along one extra direction), or pass the pattern as sparsity=."
)


def _branch(what: str) -> SparsityError:
    return SparsityError(_BRANCH.format(what=what))


def _unsupported(name: str) -> SparsityError:
    return SparsityError(
        f"jacobian_sparsity cannot follow {name} (dualad differentiates it, but its sparsity "
        "is not known to the tracer); pass the pattern as sparsity=, or write that step with "
        "supported NumPy operations."
    )


class Deps(Carrier):
    """A value traced for its Jacobian sparsity: the value, and what each element depends on.

    A Deps is either a root, which owns its rows (plus scalar writes not yet merged, so that a
    loop writing ``out[i] = ...`` costs O(1) per write), or a view of a root (from basic indexing,
    reshape, transpose ...), which reads the root's rows through ``_ids`` (flat positions in the
    root) so that writes through either are seen by both, as for NumPy views.
    """

    __slots__ = ("_value", "_trace", "_own", "_writes", "_version", "_root", "_ids", "_cache")
    _label = "a traced value"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("Deps values are made by jacobian_sparsity, not by hand")

    @classmethod
    def _make(cls, trace: _Trace, value: Any, rows: _Rows) -> Deps:
        d = object.__new__(cls)
        d._value, d._trace, d._own, d._writes, d._version = value, trace, rows, {}, 0
        d._root = d._ids = d._cache = None
        return d

    @classmethod
    def _view(cls, root: Deps, value: np.ndarray, ids: np.ndarray) -> Deps:
        d = object.__new__(cls)
        d._value, d._trace, d._own, d._writes, d._version = value, root._trace, None, None, 0
        d._root, d._ids, d._cache = root, ids, None
        return d

    # --- rows ------------------------------------------------------------------------------------
    def rows(self) -> _Rows:
        """The dependence rows of this value's elements, in C order."""
        root = self._root
        if root is None:
            if self._writes:
                self._merge_writes()
            return self._own
        if self._cache is None or self._cache[0] != root._version:
            self._cache = (root._version, _gather(root.rows(), self._ids.reshape(-1, 1), 0))
        return self._cache[1]

    def _merge_writes(self) -> None:
        positions = np.fromiter(self._writes.keys(), _INT, len(self._writes))
        written = list(self._writes.values())
        self._writes = {}
        lengths = np.fromiter((len(w) for w in written), _INT, len(written))
        indptr = np.zeros(len(written) + 1, _INT)
        np.cumsum(lengths, out=indptr[1:])
        self._replace(positions, _Rows(indptr, np.concatenate(written)))

    def _replace(self, positions: np.ndarray, new: _Rows) -> None:
        """Rows at flat ``positions`` become the rows of ``new`` (in order; the last one wins)."""
        own = self.rows()
        m = own.count
        stacked, _ = _stack([own, new])
        idmap = np.arange(m, dtype=_INT)
        idmap[positions] = m + np.arange(len(positions), dtype=_INT)
        self._own = _gather(stacked, idmap[:, None], self._trace.n)
        self._version += 1

    def _flat_ids(self) -> np.ndarray:
        """Flat positions in the root of this value's elements (its own positions for a root)."""
        if self._root is not None:
            return self._ids
        return np.arange(np.size(self._value), dtype=_INT).reshape(np.shape(self._value))

    def _row_at(self, index: tuple[int, ...]) -> np.ndarray:
        """The inputs one element depends on (a full tuple of integer indices)."""
        if self._root is not None:
            return self._root._row_at_flat(int(self._ids[index]))
        shape = np.shape(self._value)
        flat = 0
        for i, extent in zip(index, shape):
            flat = flat * extent + (i + extent if i < 0 else i)
        return self._row_at_flat(flat)

    def _row_at_flat(self, flat: int) -> np.ndarray:
        written = self._writes.get(flat)
        return written if written is not None else self._own.row(flat)

    def __repr__(self) -> str:
        rows = self.rows()
        return f"Deps(shape={np.shape(self._value)}, dependences={len(rows.indices)})"

    # --- NumPy protocols -------------------------------------------------------------------------
    @staticmethod
    def _apply(rule: rules.Rule, args: tuple[Any, ...]) -> Any:
        return _elementwise(rule, args)

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        out = kwargs.pop("out", None)
        if method == "__call__":
            for key in ("dtype", "casting", "order", "subok"):
                kwargs.pop(key, None)
            if kwargs.pop("where", True) is not True or kwargs:
                raise SparsityError(
                    f"jacobian_sparsity: np.{ufunc.__name__} with keyword arguments "
                    f"{sorted(kwargs) or ['where']} is not supported"
                )
            if ufunc in _structural.LINEAR_UFUNCS:
                result = _structural.LINEAR_UFUNCS[ufunc](*inputs)
            else:
                result = _call_ufunc(ufunc, inputs)
        else:
            result = _structural.ufunc_method(ufunc, method, inputs, kwargs)
        if out is None:
            return result
        return _write_out(out[0] if isinstance(out, tuple) else out, result)

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        return _array_function(func, args, kwargs, self)

    # --- indexing --------------------------------------------------------------------------------
    def __getitem__(self, index: Any) -> Any:
        _check_index(index, self._trace)
        value = self._value[index]
        if isinstance(value, np.generic) or np.ndim(value) == 0 and _all_ints(index):
            full = index if isinstance(index, tuple) else (index,)
            if len(full) == np.ndim(self._value) and _all_ints(full):
                return Deps._make(self._trace, value, _one_row(self._row_at(full)))
        return _derived(self, value, self._flat_ids()[index])

    def __setitem__(self, index: Any, item: Any) -> None:
        _check_index(index, self._trace)
        if isinstance(self._value, np.generic):
            self._value = np.array(self._value)  # a scalar from x[i] becomes a writeable 0-d
        self._value[index] = primal(item)  # NumPy checks the shapes and broadcasting
        root = self._root if self._root is not None else self
        targets = self._flat_ids()[index]
        if np.ndim(targets) == 0 and np.size(item) == 1 and isinstance(item, Deps | float | int):
            written = item.rows().indices if isinstance(item, Deps) else np.zeros(0, _INT)
            root._writes[int(targets)] = written
            root._version += 1
            return
        shape = np.shape(targets)
        if isinstance(item, Deps):
            item_shape = np.shape(item._value)
            while len(item_shape) > len(shape) and item_shape[0] == 1:
                item_shape = item_shape[1:]  # NumPy drops leading 1s of the item
            ids = np.broadcast_to(np.arange(item.size, dtype=_INT).reshape(item_shape), shape)
            new = _gather(item.rows(), ids.reshape(-1, 1), self._trace.n)
        else:
            new = _no_rows(int(np.prod(shape, dtype=_INT)))
        root._replace(np.reshape(targets, -1), new)

    def _inplace(self, result: Any) -> Deps:
        if isinstance(self._value, np.generic) and self._root is None:
            if isinstance(result, Deps) and np.ndim(result._value) == 0:
                self._value, self._own, self._writes = result._value, result.rows(), {}
                return self  # a scalar is never a view: rebinding is the whole update
        if np.shape(result) != self.shape:
            raise ValueError(
                f"in-place operation would change the shape {self.shape} to {np.shape(result)}"
            )
        self[...] = result
        return self

    # --- what reads values -----------------------------------------------------------------------
    def __bool__(self) -> bool:
        if not self._trace.local:
            raise _branch("branches on a value computed from x (if, while, and/or, bool())")
        return bool(self._value)

    def __index__(self) -> int:
        if not self._trace.local:
            raise _branch("uses a value computed from x as an index or int")
        raise _tracer_lost("Using a traced float as an index")

    __int__ = __index__

    def __float__(self) -> float:
        raise with_assignment_error(
            _tracer_lost("float() or a math.* function of a traced value", _MATH_HINT),
            SparsityError(
                "Writing a traced value into an element of a plain float array (out[i] = y) "
                "loses what it depends on: allocate arrays that hold traced values with "
                "np.zeros_like(x) or np.zeros(n, like=x), or pass the pattern as sparsity= if f "
                "cannot be written that way."
            ),
        )

    def __complex__(self) -> complex:
        raise _tracer_lost("complex() of a traced value")

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise _tracer_lost(
            "Converting a traced value to a NumPy array (np.asarray, or assigning it into a plain "
            "float array)",
            "allocate arrays that hold traced values with np.zeros_like(x) or np.zeros(n, like=x) "
            "and combine them with np.stack or np.concatenate",
        )

    def item(self, *args: Any) -> Any:
        raise _tracer_lost("traced_value.item()")

    def tolist(self) -> Any:
        raise _tracer_lost("traced_value.tolist()")

    def __round__(self, ndigits: int | None = None) -> Any:
        if not self._trace.local:
            raise _branch("rounds a value computed from x to a Python number")
        return round(primal(self).item(), ndigits)

    def __lt__(self, other: Any) -> Any:
        return np.less(self, other)

    def __le__(self, other: Any) -> Any:
        return np.less_equal(self, other)

    def __gt__(self, other: Any) -> Any:
        return np.greater(self, other)

    def __ge__(self, other: Any) -> Any:
        return np.greater_equal(self, other)

    def __eq__(self, other: Any) -> Any:  # type: ignore[override]
        return np.equal(self, other)

    def __ne__(self, other: Any) -> Any:  # type: ignore[override]
        return np.not_equal(self, other)

    def argmax(self, axis: Any = None) -> Any:
        return np.argmax(self, axis=axis)

    def argmin(self, axis: Any = None) -> Any:
        return np.argmin(self, axis=axis)

    def any(self, axis: Any = None) -> Any:
        return np.any(self, axis=axis)

    def all(self, axis: Any = None) -> Any:
        return np.all(self, axis=axis)

    def copy(self) -> Deps:
        return Deps._make(self._trace, np.array(self._value, copy=True), self.rows())

    def astype(self, dtype: Any, copy: bool = True) -> Any:
        if np.dtype(dtype).kind == "f":
            return Deps._make(self._trace, self._value.astype(dtype), self.rows())
        return _value_only(lambda v: v.astype(dtype), (self,), {})


def _tracer_lost(
    what: str, hint: str = "jacobian_sparsity follows NumPy calls on arrays"
) -> SparsityError:
    return SparsityError(
        f"{what}: {hint}, so it cannot see what this value depends on from here. Pass the "
        "pattern as sparsity= if f cannot be written that way."
    )


_MATH_HINT = "write np.sin, not math.sin: jacobian_sparsity follows NumPy calls on arrays"


def _all_ints(index: Any) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return all(isinstance(i, int | np.integer) and not isinstance(i, bool) for i in items)


def _check_index(index: Any, trace: _Trace) -> None:
    for item in index if isinstance(index, tuple) else (index,):
        if isinstance(item, Carrier):
            if not trace.local:
                raise _branch("indexes with a value computed from x")
            raise _tracer_lost("Indexing with a traced float")


def _derived(a: Deps, value: Any, ids: np.ndarray) -> Deps:
    """The result of moving elements of ``a``: ``ids`` are root positions (-1: a constant).

    A view of the root when NumPy's value is one (so later writes show through), else a copy.
    """
    root = a._root if a._root is not None else a
    if (
        isinstance(value, np.ndarray)
        and isinstance(root._value, np.ndarray)
        and np.may_share_memory(value, root._value)
    ):
        return Deps._view(root, value, ids)
    return Deps._make(a._trace, value, _gather(root.rows(), np.reshape(ids, (-1, 1)), a._trace.n))


def _trace_of(items: Any) -> _Trace:
    for a in items:
        if isinstance(a, Deps):
            return a._trace
        if isinstance(a, list | tuple):
            found = _trace_of(a)
            if found is not None:
                return found
    return None  # type: ignore[return-value]


def _constant(trace: _Trace, value: Any) -> Deps:
    return Deps._make(trace, value, _no_rows(int(np.size(value))))


def _union(trace: _Trace, value: Any, sources: list[Deps]) -> Any:
    """``value`` depending, element by element, on its broadcast ``sources``."""
    shape = np.shape(value)
    if not sources:
        return _constant(trace, value)
    if len(sources) == 1 and np.shape(sources[0]._value) == shape:
        return Deps._make(trace, value, sources[0].rows())
    if shape == ():  # scalar code (loops over x[i]): merge a few short rows directly
        parts = [r for r in (s.rows().indices for s in sources) if len(r)]
        merged = parts[0] if len(parts) == 1 else np.unique(np.concatenate(parts or [_NONE]))
        return Deps._make(trace, value, _one_row(merged))
    stacked, offsets = _stack([s.rows() for s in sources])
    columns = []
    for s, offset in zip(sources, offsets):
        ids = np.arange(s.size, dtype=_INT).reshape(np.shape(s._value)) + offset
        columns.append(np.broadcast_to(ids, shape).reshape(-1))
    return Deps._make(trace, value, _gather(stacked, np.stack(columns, axis=1), trace.n))


def _elementwise(rule: rules.Rule, args: tuple[Any, ...]) -> Any:
    trace = _trace_of(args)
    if any(isinstance(a, Carrier) and not isinstance(a, Deps) for a in args):
        raise SparsityError("jacobian_sparsity: f mixes traced values with dual numbers")
    value = rule.func(*[primal(a) for a in args])
    sources = []
    for a, partial in zip(args, rule.partials):
        if not isinstance(a, Deps) or partial is None:
            continue
        if partial is rules.NONDIFF:
            raise DualError(f"{rule.name} is not differentiable in this argument")
        if isinstance(partial, int | float) and partial == 0:
            continue
        sources.append(a)
    return _union(trace, value, sources)


def _value_only(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """A function with zero derivative: plain values locally, values that may not be read (no
    dependence) globally."""
    trace = _trace_of(tuple(args) + tuple(kwargs.values()))
    value = func(*[primal(a) for a in args], **{k: primal(v) for k, v in kwargs.items()})
    if trace is None or trace.local:
        return value
    if isinstance(value, tuple):
        return tuple(_constant(trace, v) for v in value)
    return _constant(trace, value)


def _call_ufunc(ufunc: np.ufunc, inputs: tuple[Any, ...]) -> Any:
    rule = rules.lookup(ufunc)
    if rule is not None:
        return _elementwise(rule, inputs)
    if rules.is_zero_derivative(ufunc):
        return _value_only(ufunc, inputs, {})
    raise _no_rule(label(ufunc))


def _write_out(out: Any, result: Any) -> Any:
    if isinstance(out, Deps):
        out[...] = result
        return out
    if isinstance(result, Deps):
        raise _tracer_lost("Writing a traced value into a plain array via out=")
    np.copyto(out, result)
    return out


# --- NumPy functions -----------------------------------------------------------------------------

_FUNCTIONS: dict[Any, Callable[..., Any]] = {}


_implements = _structural.registrar(_FUNCTIONS)


def _mover(func: Any) -> Callable[..., Any]:
    """A function that only moves elements: applied alike to the value and to element ids."""

    def impl(a: Any, *args: Any, **kwargs: Any) -> Any:
        value = func(primal(a), *args, **kwargs)
        if not isinstance(a, Deps):
            return value
        return _derived(a, value, func(a._flat_ids(), *args, **kwargs))

    return impl


for _f in (
    np.reshape, np.ravel, np.transpose, np.swapaxes, np.moveaxis, np.squeeze, np.expand_dims,
    np.broadcast_to, np.copy, np.roll, np.flip, np.fliplr, np.flipud, np.take,
    np.take_along_axis, np.repeat, np.diagonal, np.atleast_1d, np.atleast_2d,
):  # fmt: skip
    _FUNCTIONS[_f] = _mover(_f)


def _splitter(func: Any) -> Callable[..., Any]:
    def impl(ary: Deps, *args: Any, **kwargs: Any) -> list[Deps]:
        values = func(primal(ary), *args, **kwargs)
        ids = func(ary._flat_ids(), *args, **kwargs)
        return [_derived(ary, v, i) for v, i in zip(values, ids)]

    return impl


_FUNCTIONS[np.split] = _splitter(np.split)
_FUNCTIONS[np.array_split] = _splitter(np.array_split)


def _joined(func: Any, arrays: list[Any], *args: Any, **kwargs: Any) -> Any:
    """``func`` of several arrays, some traced and some constant, through offset element ids."""
    trace = _trace_of(arrays)
    sources = [a for a in arrays if isinstance(a, Deps)]
    stacked, offsets = _stack([s.rows() for s in sources])
    start = iter(offsets)
    ids = [
        np.arange(a.size, dtype=_INT).reshape(np.shape(a._value)) + next(start) + 1
        if isinstance(a, Deps)
        else np.zeros(np.shape(a), _INT)
        for a in arrays
    ]
    value = func([primal(a) for a in arrays], *args, **kwargs)
    where = func(ids, *args, **kwargs) - 1
    return Deps._make(trace, value, _gather(stacked, np.reshape(where, (-1, 1)), trace.n))


@_implements(np.concatenate)
def _concatenate(arrays: Any, axis: Any = 0, **kw: Any) -> Any:
    return _joined(np.concatenate, list(arrays), axis=axis)


@_implements(np.stack)
def _stack_arrays(arrays: Any, axis: int = 0, **kw: Any) -> Any:
    return _joined(np.stack, list(arrays), axis=axis)


def _own_ids(a: Deps) -> np.ndarray:
    """Positions of ``a``'s elements in its own rows."""
    return np.arange(a.size, dtype=_INT).reshape(np.shape(a._value))


@_implements(np.where)
def _where(condition: Any, x: Any = None, y: Any = None) -> Any:
    if x is None and y is None:
        return _value_only(np.where, (condition,), {})
    if x is None or y is None:
        raise ValueError("np.where: either both or neither of x and y should be given")
    trace = _trace_of((condition, x, y))
    value = np.where(primal(condition), primal(x), primal(y))
    if isinstance(condition, Deps) and not trace.local:  # either side may be taken at some x
        return _union(trace, value, [a for a in (x, y) if isinstance(a, Deps)])
    picked = np.where(primal(condition), 1, 2) * np.ones(np.shape(value), _INT)
    return _joined(lambda pair: np.choose(picked - 1, pair), [x, y])


def _axes(axis: Any, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    return tuple(
        int(a) % max(ndim, 1) for a in (axis if isinstance(axis, tuple | list) else (axis,))
    )


def _lines(a: Deps, axes: tuple[int, ...]) -> np.ndarray:
    """Element ids of ``a`` as (number of lines, elements per line), the ``axes`` last."""
    nd = np.ndim(a._value)
    moved = np.moveaxis(_own_ids(a), axes, tuple(range(nd - len(axes), nd)))
    per_line = int(np.prod([np.shape(a._value)[i] for i in axes], dtype=_INT))
    return moved.reshape(-1, per_line) if per_line else np.zeros((moved.size, 0), _INT)


def _reduction(func: Any) -> Callable[..., Any]:
    """sum-like reductions: each output element depends on the elements it combines."""

    def impl(a: Any, axis: Any = None, *args: Any, keepdims: bool = False, **kw: Any) -> Any:
        where = kw.pop("where", True)
        if where is not True:
            a = np.where(where, a, 0.0)
        value = func(primal(a), axis, *args, keepdims=keepdims, **kw)
        if not isinstance(a, Deps):
            return value
        lines = _lines(a, _axes(axis, np.ndim(a._value)))
        if np.size(value) != lines.shape[0]:
            lines = lines.reshape(np.size(value), -1)
        return Deps._make(a._trace, value, _gather(a.rows(), lines, a._trace.n))

    return impl


_FUNCTIONS[np.sum] = _reduction(np.sum)


def _by_values(func: Any, global_impl: Callable[..., Any]) -> Callable[..., Any]:
    """A function whose result follows values (max, sort ...): NumPy's composition on Duals at
    this x when local, ``global_impl`` (every element it could pick) when global."""

    def impl(a: Any, *args: Any, **kwargs: Any) -> Any:
        trace = _trace_of((a,) + args)
        if trace.local:
            return _structural.COMPOSITES[func](a, *args, **kwargs)
        return global_impl(a, *args, **kwargs)

    return impl


for _f in (np.max, np.amax, np.min, np.amin):
    _FUNCTIONS[_f] = _by_values(_f, _reduction(_f))
_FUNCTIONS[np.nansum] = _by_values(np.nansum, _reduction(np.nansum))


def _sort_global(a: Deps, axis: Any = -1, kind: Any = None, order: Any = None, **kw: Any) -> Deps:
    """Each sorted element may be any element of its line."""
    if axis is None:
        a, axis = np.ravel(a), 0
    value = np.sort(primal(a), axis=axis, kind=kind)
    nd = np.ndim(value)
    axis = int(axis) % nd
    per_line = _gather(a.rows(), _lines(a, (axis,)), a._trace.n)
    rest = np.delete(np.shape(value), axis)
    line = np.arange(per_line.count, dtype=_INT).reshape(tuple(rest) + (1,))
    line = np.moveaxis(np.broadcast_to(line, tuple(rest) + (np.shape(value)[axis],)), -1, axis)
    return Deps._make(a._trace, value, _gather(per_line, line.reshape(-1, 1), 0))


_FUNCTIONS[np.sort] = _by_values(np.sort, _sort_global)


def _interp_global(x: Deps, xp: Any, fp: Any, *args: Any, **kwargs: Any) -> Deps:
    if isinstance(xp, Carrier) or isinstance(fp, Carrier):
        raise _unsupported("np.interp with a traced table xp or fp")
    return _union(x._trace, np.interp(primal(x), xp, fp, *args, **kwargs), [x])


_FUNCTIONS[np.interp] = _by_values(np.interp, _interp_global)


@_implements(np.cumsum)
def _cumsum(a: Deps, axis: Any = None, dtype: Any = None) -> Deps:
    """Element i along the axis depends on elements 0 ... i."""
    if axis is None:
        a, axis = np.ravel(a), 0
    value = np.cumsum(primal(a), axis=axis)
    axis = int(axis) % np.ndim(value)
    lines = _lines(a, (axis,))
    length = lines.shape[1]
    prefixes = np.where(np.tri(length, dtype=bool), lines[:, None, :], -1)
    in_line_order = _gather(a.rows(), prefixes.reshape(-1, length), a._trace.n)
    order = np.moveaxis(_own_ids(a), axis, -1).reshape(-1)  # C position of each line element
    back = np.empty_like(order)
    back[order] = np.arange(len(order), dtype=_INT)
    return Deps._make(a._trace, value, _gather(in_line_order, back.reshape(-1, 1), 0))


# --- einsum: every product (matmul, dot, tensordot ...) is one ----------------------------------


def _einsum_letters(subscripts: str, shapes: list[tuple[int, ...]]) -> tuple[list[str], str]:
    """Explicit subscripts, with each ellipsis spelled out as letters (right-aligned, as NumPy
    broadcasts them)."""
    subscripts = subscripts.replace(" ", "")
    inputs, _, output = subscripts.partition("->")
    specs = inputs.split(",")
    free = [c for c in string.ascii_letters if c not in subscripts]
    widths = [len(s) - len(sp) + 3 for sp, s in zip(specs, shapes) if "..." in sp]
    ellipsis = "".join(free[: max(widths, default=0)])
    expanded = []
    for spec, shape in zip(specs, shapes):
        if "..." in spec:
            width = len(shape) - len(spec) + 3
            spec = spec.replace("...", ellipsis[len(ellipsis) - width :])
        expanded.append(spec)
    if "->" in subscripts:
        return expanded, output.replace("...", ellipsis)
    letters = "".join(specs).replace(".", "")
    return expanded, ellipsis + "".join(sorted(c for c in set(letters) if letters.count(c) == 1))


@_implements(np.einsum)
def _einsum(subscripts: Any, *operands: Any, optimize: Any = False, **kw: Any) -> Any:
    """Output element e depends on every element of each traced operand that its sum visits."""
    subscripts, operands = _structural.einsum_subscripts(subscripts, operands)
    trace = _trace_of(operands)
    value = np.einsum(subscripts, *[primal(o) for o in operands])
    specs, output = _einsum_letters(subscripts, [np.shape(o) for o in operands])
    sizes: dict[str, int] = {}
    for spec, o in zip(specs, operands):
        for c, extent in zip(spec, np.shape(o)):
            sizes[c] = max(sizes.get(c, 1), extent)
    sources = [(spec, o) for spec, o in zip(specs, operands) if isinstance(o, Deps)]
    stacked, offsets = _stack([o.rows() for _, o in sources])
    groups = []
    for (spec, o), offset in zip(sources, offsets):
        distinct = "".join(dict.fromkeys(spec))
        ids = _own_ids(o) + offset
        if distinct != spec:  # a repeated letter reads a diagonal
            ids = np.einsum(f"{spec}->{distinct}", ids)
        order = [c for c in output if c in distinct] + [c for c in distinct if c not in output]
        ids = np.transpose(ids, [distinct.index(c) for c in order])
        target = list(output) + [c for c in distinct if c not in output]
        ids = ids.reshape([np.shape(ids)[order.index(c)] if c in order else 1 for c in target])
        full = np.broadcast_to(ids, [sizes[c] for c in target])
        groups.append(full.reshape(int(np.size(value)), -1))
    return Deps._make(trace, value, _gather(stacked, np.concatenate(groups, axis=1), trace.n))


# --- linear algebra: every output entry depends on every input entry -----------------------------


def _dense(func: Any) -> Callable[..., Any]:
    def impl(*args: Any, **kwargs: Any) -> Any:
        trace = _trace_of(args)
        value = func(*[primal(a) for a in args], **kwargs)
        everything = [a.rows() for a in args if isinstance(a, Deps)]
        if func is np.linalg.slogdet:
            sign, logabs = value
            return type(value)(
                _value_only(lambda s: s, (sign,), {}) if not trace.local else sign,
                Deps._make(trace, logabs, _all_of(everything, int(np.size(logabs)))),
            )
        if isinstance(value, tuple):  # a decomposition: each of its parts depends on all
            return type(value)(
                *(Deps._make(trace, v, _all_of(everything, int(np.size(v)))) for v in value)
            )
        return Deps._make(trace, value, _all_of(everything, int(np.size(value))))

    return impl


def _real_eig(a: Any) -> Any:
    return _structural.EigResult(*_structural.real_eig(a))


def _checked_svd(a: Any, full_matrices: bool = True, compute_uv: bool = True, **kw: Any) -> Any:
    _structural.svd_check(np.shape(a), full_matrices and compute_uv, kw.get("hermitian", False))
    return np.linalg.svd(a, full_matrices, compute_uv, **kw)


def _checked_qr(a: Any, mode: str = "reduced") -> Any:
    _structural.qr_check(np.shape(a), mode)
    return np.linalg.qr(a, mode)


for _f in (
    np.linalg.solve, np.linalg.inv, np.linalg.det, np.linalg.slogdet, np.linalg.cholesky,
    np.linalg.eigh, np.linalg.pinv,
):  # fmt: skip
    _FUNCTIONS[_f] = _dense(_f)
_FUNCTIONS[np.linalg.eig] = _dense(_real_eig)
_FUNCTIONS[np.linalg.svd] = _dense(_checked_svd)
_FUNCTIONS[np.linalg.qr] = _dense(_checked_qr)


# --- creation: arrays that will hold traced values ----------------------------------------------


def _like(func: Any) -> Callable[..., Any]:
    def impl(a: Any, *args: Any, **kwargs: Any) -> Any:
        fill = args[0] if args and func is np.full_like else kwargs.get("fill_value")
        if func is np.full_like and isinstance(fill, Carrier):
            value = func(primal(a), primal(fill), *args[1:], **kwargs)
            return _union(_trace_of((a, fill)), value, [fill])
        value = func(primal(a), *args, **kwargs)
        if np.asarray(value).dtype.kind != "f":
            return value
        return _constant(_trace_of((a,)), value)

    return impl


for _f in (np.zeros_like, np.empty_like, np.ones_like, np.full_like):
    _FUNCTIONS[_f] = _like(_f)

_CREATION = {np.zeros, np.empty, np.ones, np.full}
_ARRAYS = {np.array, np.asarray, np.asanyarray}


def _create(func: Any, like: Deps, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``np.zeros(n, like=x)`` and ``np.array([...], like=x)``."""
    kwargs.pop("like", None)
    if func in _ARRAYS:
        obj = args[0] if args else kwargs.pop("object")
        if isinstance(obj, list | tuple) and _trace_of(obj) is not None:
            return np.stack([_create(func, like, (o,), {}) for o in obj])
        if isinstance(obj, Deps):
            return obj
    value = func(*args, **kwargs)
    if np.asarray(value).dtype.kind != "f":
        return value
    return _constant(like._trace, value)


# --- dispatch ------------------------------------------------------------------------------------

#: Functions that read only shapes and types: the same in both kinds of pattern.
_SHAPE_ONLY = {np.shape, np.ndim, np.size, np.result_type, np.isscalar, np.isreal, np.iscomplex}
_VALUE_ONLY = {np.any, np.all}

#: The compositions of dualad.structural that read no values, so that they are valid globally
#: (checked one by one; a composition added later needs local=True until it is checked).
_GLOBAL_COMPOSITES = {
    np.ravel, np.atleast_1d, np.atleast_2d, np.hstack, np.vstack, np.fliplr, np.flipud, np.diag,
    np.trace, np.polyval, np.cross, np.mean, np.var, np.std, np.prod, np.clip, np.diff,
    np.matmul, np.dot, np.vdot, np.inner, np.outer, np.tensordot, np.linalg.norm,
    getattr(np, "vecdot", np.dot),
    np.atleast_3d, np.tile, np.rot90, np.rollaxis, np.pad, np.tril, np.triu, np.kron,
    np.column_stack, np.dstack, np.append, np.vsplit, np.hsplit, np.dsplit, np.linspace,
    np.gradient, np.linalg.eigvalsh, np.linalg.eigvals, np.linalg.matrix_power,
}  # fmt: skip


def _array_function(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], like: Deps) -> Any:
    impl = _FUNCTIONS.get(func)
    if impl is not None:
        _no_traced_indices(func, args[1:], kwargs, like._trace)
        out = kwargs.pop("out", None)
        result = impl(*args, **kwargs)
        return result if out is None else _write_out(out, result)
    if func in _CREATION or func in _ARRAYS:
        return _create(func, like, args, dict(kwargs))
    composite = _structural.COMPOSITES.get(func)
    if composite is not None:
        if not (like._trace.local or func in _GLOBAL_COMPOSITES):
            raise _branch(f"calls {label(func)}, whose global pattern dualad has not checked")
        return composite(*args, **kwargs)
    rule = rules.lookup(func)
    if rule is not None:
        if kwargs:
            raise SparsityError(f"jacobian_sparsity: {rule.name} with keyword arguments")
        return _elementwise(rule, args)
    if func in _SHAPE_ONLY:
        return func(*[primal(a) for a in args], **kwargs)
    if rules.is_zero_derivative(func) or func in _VALUE_ONLY:
        return _value_only(func, args, kwargs)
    if func in _structural._FUNCTIONS:
        raise _unsupported(label(func))
    raise DualError(
        f"dualad has no derivative for {label(func)}. Write it with supported NumPy "
        "operations, apply it to da.primal(x) if its derivative is not needed, or, if it acts "
        f"elementwise, register a rule with da.register_rule({label(func)}, "
        "<partial for each input>)."
    )


def _no_traced_indices(func: Any, rest: tuple[Any, ...], kwargs: dict[str, Any], trace: _Trace):
    """Arguments after the array of an element-moving function (indices, shifts, shapes) must
    not come from x."""
    if func in (np.concatenate, np.stack, np.where, np.einsum) or func in _DATA_ARGS:
        return
    for a in rest + tuple(kwargs.values()):
        if isinstance(a, Carrier):
            _check_index((a,), trace)


#: Functions whose later arguments are data, not indices (fill values, tables, masks).
_DATA_ARGS = {np.full_like, np.interp, np.linalg.solve, np.sum, np.nansum}


# --- the public function -------------------------------------------------------------------------


def _output(y: Any, trace: _Trace) -> Any:
    check_output(y)
    if isinstance(y, list | tuple) and _trace_of(y) is not None:
        return np.stack(y)
    return y


def jacobian_sparsity(
    f: Callable[..., Any],
    x: Any,
    *,
    args: tuple[Any, ...] = (),
    local: bool = False,
    engine: str = "auto",
) -> Any:
    """Boolean sparsity pattern of the Jacobian of ``f`` at ``x``, found by tracing dependence.

    ``f`` runs once on a traced copy of ``x`` (the NumPy engine; for a ``numba.njit`` function,
    its Python source).  Entry ``(i, j)`` is True when output ``i`` (of ``f(x).ravel()``)
    depends on input ``j`` (of ``x.ravel()``) through the operations ``f`` performs.  Values never
    remove an entry: ``x * 0`` and ``A @ x`` with zeros in a constant ``A`` still count.

    Parameters
    ----------
    f
        ``f(x, *args)`` written with NumPy.
    x
        The point: its shape (and, for ``local=True``, its values) matter.
    args
        Extra arguments of ``f``, constants of the pattern.
    local
        False (default): a global pattern, valid at every ``x``; both sides of every selection
        count, and ``f`` may not branch on values computed from ``x`` (that raises, saying so).
        True: the pattern at this ``x``, following the branches ``f`` takes here; valid wherever
        ``f`` takes the same branches.
    engine
        Accepted as by every function that takes ``f`` (``"auto"``, ``"numba"``, ``"numpy"``);
        the pattern is always traced on the Python source, ``numba.njit`` helpers included.

    Returns
    -------
    scipy.sparse.csr_array
        Boolean, shape ``(f(x).size, x.size)``.

    Examples
    --------
    >>> import numpy as np
    >>> from dualad.sparse import jacobian_sparsity
    >>> def f(u):
    ...     return np.concatenate([u[:1], u[1:] * u[:-1]])
    >>> jacobian_sparsity(f, np.ones(4)).toarray().astype(int)
    array([[1, 0, 0, 0],
           [1, 1, 0, 0],
           [0, 1, 1, 0],
           [0, 0, 1, 1]])
    """
    from .coloring import scipy_sparse
    from .transforms import _as_input, _check_engine, _python_function, numba_helpers_explained

    _check_engine(engine)
    sparse = scipy_sparse()

    point = np.array(primal(_as_input(x)), copy=True)
    if np.iscomplexobj(point):
        from .wirtinger import refuse

        raise refuse("da.jacobian_sparsity")
    n = point.size
    trace = _Trace(n, bool(local))
    identity = _Rows(np.arange(n + 1, dtype=_INT), np.arange(n, dtype=_INT))
    with user_code(), numba_helpers_explained():
        y = _python_function(f)(Deps._make(trace, point, identity), *args)
    y = _output(y, trace)
    rows = y.rows() if isinstance(y, Deps) else _no_rows(int(np.size(y)))
    data = np.ones(len(rows.indices), dtype=bool)
    return sparse.csr_array((data, rows.indices, rows.indptr), shape=(rows.count, n))
