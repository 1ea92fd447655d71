"""The reverse engine: one evaluation recorded on a tape, cotangents pulled back through it.

A :class:`Tracer` holds a value and the index of the tape node that made it.  NumPy code runs on
it unchanged through the same protocols as a Dual (it is a :class:`~dualad.dual.Carrier`):
elementwise primitives record their rule from :mod:`dualad.rules` and their inputs, structural
functions record their transpose from :mod:`dualad.transposes`, and compositions of those
(``structural.COMPOSITES``) simply run.  The pullback walks the tape backwards once per chunk of
cotangents, evaluating each rule's partial derivatives on the recorded values: no derivative
formula is written here.

Cotangents carry a trailing direction axis, like forward-mode partials: a chunk of ``k`` output
rows moves backwards through every node as one array operation.

Values on the tape never change once recorded.  Item assignment into a Tracer writes into a copy
and re-points the Tracer at a new node; a Tracer that is a view of another (a slice, a reshape)
refuses writes, and is refused once the array it views has been written to, because NumPy would
share memory between them where the tape does not.
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from . import pytrees, rules, structural
from .dual import (
    NONDIFF,
    Carrier,
    Dual,
    DualError,
    ReverseModeUnsupported,
    _normalize_index,
    _scale,
    check_output,
    mixed_modes,
    user_code,
)
from .dual import apply_rule as dual_apply_rule
from .rules import Rule

__all__ = ["Tracer", "Trace", "trace", "pullback"]


class Tape:
    """The nodes of one evaluation: ``(vjp, parent node ids, payload)``; node 0 is the input.

    ``vjp(ct, payload)`` returns one cotangent (or None) per parent id; an id below 0 is a
    constant, whose cotangent is dropped.
    """

    __slots__ = ("nodes", "live", "level", "complex")

    def __init__(self, level: int) -> None:
        self.nodes: list[Any] = [None]
        self.live = True
        self.level = level  # from the counter of forward-mode tags: which began first
        #: ids of the nodes with complex values (None while there are none): a real node takes
        #: the real part of a complex cotangent (README, "Complex numbers").
        self.complex: set[int] | None = None

    def mark_complex(self, node: int) -> None:
        if self.complex is None:
            self.complex = set()
        self.complex.add(node)


class Tracer(Carrier):
    """An array traced for reverse mode: its value and the tape node that computed it.

    Users meet Tracers only inside a function that dualad differentiates in reverse mode;
    ``da.primal(t)`` gives the value.
    """

    #: ``_base``: None, or for a view (base Tracer, its version then, write_back, how): a write
    #: into the view calls ``write_back(base, view, how)`` to carry it into the base.
    __slots__ = ("_value", "_node", "_tape", "_base", "_version")
    _label = "a traced array (reverse mode)"
    _plural = "traced arrays (reverse mode)"

    @classmethod
    def _make(cls, tape: Tape, value: Any, node: int, base: Any = None) -> Tracer:
        t = object.__new__(cls)
        t._value = value
        t._node = node
        t._tape = tape
        t._base = base
        t._version = 0
        return t

    def __repr__(self) -> str:
        return f"Tracer(value={self._value!r}, node={self._node})"

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        if Dual in types:  # a forward derivative taken inside this trace: its Duals lead
            return NotImplemented
        return structural.array_function(func, args, kwargs, self)

    def _zeros(self, shape: tuple[int, ...], dtype: np.dtype) -> Tracer:
        """Constant zeros on this Tracer's tape (what np.zeros_like(x) makes)."""
        return Tracer._make(self._tape, np.zeros(shape, dtype), -1)

    def copy(self) -> Tracer:
        _check_operand(self)
        return Tracer._make(self._tape, self._value, self._node)  # values never change in place

    def astype(self, dtype: Any, copy: bool = True) -> Tracer:
        dtype = np.dtype(dtype)
        if dtype.kind not in "fc" or (dtype.kind == "f" and self._value.dtype.kind == "c"):
            raise DualError(
                f"Casting {self._label} to {dtype} would drop the derivative it carries. Use "
                "da.primal(x) to take the value when that is intended."
            )
        value = self._value.astype(dtype)
        return _record(self._tape, value, (self,), _cast_vjp, self._value.dtype)

    # --- indexing --------------------------------------------------------------------------------
    def __getitem__(self, index: Any) -> Tracer:
        _check_operand(self)
        if index.__class__ is not int and index.__class__ is not slice:
            index = _normalize_index(index, self._value.ndim)
        value = self._value[index]
        basic = _is_basic(index)
        base = (self, self._version, _write_at, index) if basic and np.ndim(value) > 0 else None
        if self._node < 0:
            return Tracer._make(self._tape, value, -1, base)
        payload = (index if basic else _integer_index(index), basic, self._value.shape)
        return _record(self._tape, value, (self,), _getitem_vjp, payload, base)

    def __setitem__(self, index: Any, item: Any) -> None:
        _check_operand(self)
        if self._base is not None and self._base[2] is None:
            raise ValueError(f"assignment destination is read-only ({self._base[3]})")
        index = _normalize_index(index, self._value.ndim)
        is_tracer = item.__class__ is Tracer
        if is_tracer:
            _check_operand(item, self._tape)
        elif isinstance(item, Carrier):
            raise mixed_modes()
        value = np.array(self._value)  # a copy: the tape keeps the old value unchanged
        value[index] = item._value if is_tracer else item
        item_shape = np.shape(item._value if is_tracer else item)
        ids = (self._node, item._node if is_tracer else -1)
        if ids[0] < 0 and ids[1] < 0:
            node = -1
        else:
            if _is_basic(index):
                payload: Any = (index, True, item_shape)
            else:  # which element of the item each entry holds, so duplicates go to the last
                owner = np.full(value.shape, -1, dtype=np.intp)
                owner[index] = np.arange(math.prod(item_shape)).reshape(item_shape)
                payload = (owner, False, item_shape)
            self._tape.nodes.append((_setitem_vjp, ids, payload))
            node = len(self._tape.nodes) - 1
            if value.dtype.kind == "c":
                self._tape.mark_complex(node)
        self._value, self._node = value, node
        self._version += 1
        if self._base is not None:  # a view: the write reaches the array it views, as in NumPy
            base, _, write_back, how = self._base
            write_back(base, self, how)
            self._base = (base, base._version, write_back, how)

    def _inplace(self, result: Any) -> Tracer:
        if np.shape(result) != self.shape:
            raise ValueError(
                f"in-place operation would change the shape {self.shape} to {np.shape(result)}"
            )
        self[...] = result
        return self


# --- checks --------------------------------------------------------------------------------------


def _leaked() -> DualError:
    return DualError(
        "the function used a traced array of a reverse-mode differentiation that has already "
        "finished (it leaked out of an earlier da.* call, e.g. stored in a list or global); use "
        "its value, da.primal(...), instead"
    )


def _two_tapes() -> ReverseModeUnsupported:
    return ReverseModeUnsupported(
        "reverse mode inside reverse mode is not supported; use mode='forward' for the inner "
        "derivative"
    )


def _check_operand(a: Tracer, tape: Tape | None = None) -> None:
    """Refuse a Tracer of a finished trace, of another trace, or a view its base has outgrown."""
    if not a._tape.live:
        raise _leaked()
    if tape is not None and a._tape is not tape:
        raise _two_tapes()
    if a._base is not None and a._base[0]._version != a._base[1]:
        raise ReverseModeUnsupported(
            "a view of a traced array (a slice, row or reshape of it) was used after the array "
            "was written to other than through it; NumPy would show the write in the view, the "
            "tape does not. Index the array again after writing to it, or use mode='forward'"
        )


def _write_at(base: Tracer, view: Tracer, index: Any) -> None:
    """A slice or row written to: the base takes its new value there."""
    base[index] = view


def write_whole(base: Tracer, view: Tracer, inverse: Callable[[Any], Any]) -> None:
    """A reshape, transpose or flip written to: the base becomes the inverse map of it."""
    base[...] = inverse(view)


def tape_of(args: Any) -> Tape | None:
    """The tape of the Tracers among ``args`` (and nested lists), checked; None if none."""
    tape = None
    for a in args:
        if a.__class__ is Tracer:
            _check_operand(a, tape)
            tape = a._tape
        elif isinstance(a, (list, tuple)):
            inner = tape_of(a)
            if inner is not None:
                if tape is not None and inner is not tape:
                    raise _two_tapes()
                tape = inner
        elif isinstance(a, Carrier):
            raise mixed_modes()
    return tape


def value_of(a: Any) -> Any:
    """The value of a Tracer, or the argument itself (a Dual here is a mixing of modes)."""
    if a.__class__ is Tracer:
        return a._value
    if isinstance(a, Carrier):
        raise mixed_modes()
    return a


def node_of(a: Any) -> int:
    return a._node if a.__class__ is Tracer else -1


def _record(
    tape: Tape,
    value: Any,
    operands: tuple[Any, ...],
    vjp: Callable[[Any, Any], list[Any]],
    payload: Any,
    base: Any = None,
) -> Tracer:
    """A Tracer for ``value``, with a node pulling its cotangent back to the Tracer operands."""
    ids = tuple(node_of(a) for a in operands)
    if max(ids, default=-1) < 0:  # every operand is constant
        return Tracer._make(tape, value, -1, base)
    tape.nodes.append((vjp, ids, payload))
    if getattr(value, "dtype", None) is not None and value.dtype.kind == "c":
        tape.mark_complex(len(tape.nodes) - 1)
    return Tracer._make(tape, value, len(tape.nodes) - 1, base)


# --- elementwise primitives: the rule table ------------------------------------------------------


def apply_rule(rule: Rule, args: tuple[Any, ...]) -> Any:
    """Apply an elementwise rule and record it; the partials are evaluated in the pullback."""
    tape = None
    dual_tag = -1
    for a in args:
        cls = a.__class__
        if cls is Tracer:
            if a._base is not None or not a._tape.live or (tape and a._tape is not tape):
                _check_operand(a, tape)
            tape = a._tape
        elif cls is Dual and a._tag > dual_tag:
            dual_tag = a._tag
    if dual_tag >= 0:  # a Dual of a forward derivative taken inside the trace leads (its values
        if tape is None or dual_tag > tape.level:  # are Tracers); one from before it cannot
            return dual_apply_rule(rule, args)
        raise mixed_modes()
    if tape is None:
        return rule.func(*args)
    vals = [a._value if a.__class__ is Tracer else a for a in args]
    if rule.on_complex is not None and any(rules.is_complex(v) for v in vals):
        return rule.on_complex(*args)  # not holomorphic: written with real and imag instead
    y = rule.func(*vals)
    if y.__class__ is not np.ndarray and not isinstance(y, np.generic):
        y = np.asarray(y)
    ids = []
    positions = []
    for i, (a, partial) in enumerate(zip(args, rule.partials)):
        if a.__class__ is Tracer and a._node >= 0 and partial is not None:
            if partial is NONDIFF:
                raise DualError(f"{rule.name} is not differentiable in this argument")
            ids.append(a._node)
            positions.append(i)
    if not ids:
        return Tracer._make(tape, y, -1)
    tape.nodes.append((_elementwise_vjp, tuple(ids), (rule, vals, y, positions)))
    if y.dtype.kind == "c":
        tape.mark_complex(len(tape.nodes) - 1)
    return Tracer._make(tape, y, len(tape.nodes) - 1)


Tracer._apply = staticmethod(apply_rule)


def _elementwise_vjp(ct: Any, payload: Any) -> list[Any]:
    """Cotangent times each partial, summed back over broadcasting; zero cotangents stay zero.

    ``dual._scale`` is the forward engine's partial-times-tangent, and it is exactly what is
    needed here: the cotangent has the layout of a tangent (direction axis last), and a zero
    cotangent times an infinite local derivative must give 0, not NaN.
    """
    rule, vals, y, positions = payload
    grads = []
    for i in positions:
        partial = rule.partials[i]
        d = partial(*vals, y) if callable(partial) else partial
        g = ct if d.__class__ is float and d == 1.0 else _scale(d, ct)
        grads.append(unbroadcast(g, np.shape(vals[i])))
    return grads


def unbroadcast(g: Any, shape: tuple[int, ...]) -> Any:
    """Sum the cotangent ``g`` (shape ``S + (k,)``) back to an operand of shape ``shape``."""
    if g.shape[:-1] == shape:
        return g
    lead = g.ndim - 1 - len(shape)
    if lead > 0:
        g = g.sum(axis=tuple(range(lead)))
    elif lead < 0:  # NumPy drops leading ones when assigning shape (1, n) into (n,)
        g = g.reshape((1,) * -lead + g.shape)
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g


def _cast_vjp(ct: Any, dtype: Any) -> list[Any]:
    if ct.dtype.kind == "c" and dtype.kind != "c":  # real to complex: Re(c t) for real t
        ct = ct.real
    return [ct.astype(dtype)]


# --- indexing ------------------------------------------------------------------------------------


def _is_basic(index: Any) -> bool:
    """True when ``index`` is ints, slices, None and ellipses only: no entry is taken twice."""
    if not isinstance(index, tuple):
        index = (index,)
    for item in index:
        if not (
            item is None
            or item is Ellipsis
            or isinstance(item, (int, np.integer, slice))
            and not isinstance(item, bool)
        ):
            return False
    return True


def _integer_index(index: tuple[Any, ...]) -> tuple[Any, ...]:
    """Boolean masks spelled out as integer arrays, the form np.add.at takes."""
    out: list[Any] = []
    for item in index:
        if isinstance(item, np.ndarray) and item.dtype == bool:
            out.extend(np.nonzero(item))
        else:
            out.append(item)
    return tuple(out)


class _Scatter:
    """A cotangent that is zero except at ``index``: added into its node's cotangent in place."""

    __slots__ = ("index", "basic", "shape", "ct")

    def __init__(self, index: Any, basic: bool, shape: tuple[int, ...], ct: Any) -> None:
        self.index, self.basic, self.shape, self.ct = index, basic, shape, ct

    def add_into(self, g: Any) -> Any:
        if self.basic:
            g[self.index] += self.ct
        else:
            np.add.at(g, self.index, self.ct)
        return g


def _getitem_vjp(ct: Any, payload: Any) -> list[Any]:
    index, basic, shape = payload
    return [_Scatter(index, basic, shape, ct)]


def _setitem_vjp(ct: Any, payload: Any) -> list[Any]:
    where, basic, item_shape = payload
    k = ct.shape[-1]
    if basic:
        old = ct.copy()
        old[where] = 0.0
        return [old, unbroadcast(ct[where], item_shape)]
    owner = where
    written = owner >= 0
    old = np.where(written[..., None], 0.0, ct)
    item = np.zeros((math.prod(item_shape), k), dtype=ct.dtype)
    np.add.at(item, owner[written], ct[written])
    return [old, item.reshape(item_shape + (k,))]


# --- the pullback --------------------------------------------------------------------------------


def pullback(tape: Tape, out_node: int, ct: Any, in_shape: tuple[int, ...], consume: bool) -> Any:
    """The cotangent of the input (shape ``in_shape + (k,)``) for output cotangent ``ct``.

    ``consume`` frees each node as soon as it has been pulled back through (the last sweep
    over a tape); otherwise the tape can be swept again.
    """
    k = ct.shape[-1]
    if out_node < 0:
        return np.zeros(in_shape + (k,), dtype=ct.dtype)
    nodes = tape.nodes
    complex_nodes = tape.complex
    cts: list[Any] = [None] * (out_node + 1)
    owned = bytearray(out_node + 1)  # 1 where cts[i] is a buffer of ours, safe to add into
    cts[out_node] = ct
    for i in range(out_node, 0, -1):
        g = cts[i]
        if g is None:
            continue
        cts[i] = None
        vjp, ids, payload = nodes[i]
        if consume:
            nodes[i] = None
        for j, gj in zip(ids, vjp(g, payload)):
            if j < 0 or gj is None:
                continue
            if complex_nodes is not None and j not in complex_nodes:
                gj = _real_part(gj)  # a real node's cotangent: Re(c t) for real t
            prev = cts[j]
            if gj.__class__ is _Scatter:
                if not owned[j]:
                    prev = (
                        np.zeros(gj.shape + (k,), dtype=gj.ct.dtype)
                        if prev is None
                        else np.array(prev, dtype=np.result_type(prev, gj.ct))
                    )
                    owned[j] = 1
                cts[j] = gj.add_into(prev)
            elif prev is None:
                cts[j] = gj
            elif owned[j]:
                prev += gj
            else:
                cts[j] = prev + gj
                owned[j] = 1
    if consume:
        tape.nodes = []
    g = cts[0]
    if g is None:
        return np.zeros(in_shape + (k,), dtype=ct.dtype)
    if g.__class__ is _Scatter:  # the output is the input itself
        g = g.add_into(np.zeros(g.shape + (k,), dtype=g.ct.dtype))
    return g


def _real_part(g: Any) -> Any:
    if g.__class__ is _Scatter:
        if g.ct.dtype.kind == "c":
            return _Scatter(g.index, g.basic, g.shape, g.ct.real)
        return g
    return g.real if g.dtype.kind == "c" else g


# --- tracing -------------------------------------------------------------------------------------

#: Tapes being recorded in this thread (context), innermost last: mode="auto" goes forward while
#: one is live.  Per context, so that another thread's recording does not count.
live_tapes: contextvars.ContextVar[tuple[Tape, ...]] = contextvars.ContextVar(
    "dualad_live_tapes", default=()
)


@contextmanager
def _recording(level: int) -> Iterator[Tape]:
    tape = Tape(level)
    live_tapes.set(live_tapes.get() + (tape,))
    try:
        yield tape
    finally:
        live_tapes.set(tuple(t for t in live_tapes.get() if t is not tape))
        tape.live = False


class Trace:
    """One recorded evaluation: the output's value and how to pull cotangents back to the input."""

    __slots__ = ("tape", "value", "out_node", "in_shape", "dtype", "in_dtype")

    def __init__(
        self,
        tape: Tape,
        value: Any,
        out_node: int,
        in_shape: tuple[int, ...],
        in_dtype: Any = np.float64,
    ) -> None:
        self.tape, self.value, self.out_node, self.in_shape = tape, value, out_node, in_shape
        self.dtype = np.result_type(value, np.float32)
        self.in_dtype = np.dtype(in_dtype)

    def pull(self, ct: Any, consume: bool = False) -> Any:
        """Input cotangents ``x.shape + (k,)`` for output cotangents ``value.shape + (k,)``.

        They have the input's dtype (a derivative with respect to float32 input is float32),
        whatever precision the function computed in.
        """
        g = pullback(self.tape, self.out_node, ct, self.in_shape, consume)
        if g.dtype.kind == "c" and self.in_dtype.kind != "c":
            g = g.real  # Re(c t) for real t
        return g if g.dtype == self.in_dtype else g.astype(self.in_dtype)


def trace(f: Callable[..., Any], x: np.ndarray, args: tuple[Any, ...], level: int) -> Trace:
    """Run ``f(x, *args)`` on a Tracer of ``x`` and keep its tape.

    ``level`` orders the trace among forward-mode differentiations (a fresh tag): Duals of a
    later one, taken inside ``f``, may carry Tracers (forward over reverse is refused).
    """
    if tape_of(args) is not None:  # (a Dual among args is refused by tape_of itself)
        raise ReverseModeUnsupported(
            "reverse mode cannot differentiate with arguments that are themselves being "
            "differentiated (a derivative inside another one); use mode='forward'"
        )
    with _recording(level) as tape, user_code():
        if x.dtype.kind == "c":
            tape.mark_complex(0)
        y = f(Tracer._make(tape, x, 0), *args)
    check_output(y)
    if isinstance(y, (list, tuple, dict)):
        y = _one_array_output(y)
    if y.__class__ is Tracer:
        if y._tape is not tape:
            raise _leaked() if not y._tape.live else _two_tapes()
        return Trace(tape, y._value, y._node, x.shape, x.dtype)
    if isinstance(y, Carrier):
        raise mixed_modes()
    value = np.asarray(y, dtype=float) if isinstance(y, list) else y
    return Trace(tape, value, -1, x.shape, x.dtype)


def _one_array_output(y: Any) -> Any:
    """A list of plain numbers (one array), or an error: containers are never stacked here."""
    if isinstance(y, list) and pytrees.is_leaf(y):
        return y
    raise DualError(
        f"f returned a {type(y).__name__}; dualad never stacks a container into one array. The "
        "da.* transforms take containers, but this call went to an array-only path (a numba.njit "
        "function, or da.sparse_jacobian): pass engine='numpy' for a numba.njit function, or "
        "return one array (np.stack or np.concatenate of the items)"
    )


from . import transposes  # noqa: E402  (the structural table builds on the names above)

Tracer._functions = {**structural.COMPOSITES, **transposes.TRANSPOSES}
