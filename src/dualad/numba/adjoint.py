"""Compiled reverse mode: adjoint numbers on a tape inside Numba nopython code.

An ``Adj`` is a float64 value and ``scale * variable[index]`` (index -1: a constant, a float
widened to an Adj), with a raw pointer to the call's tape.  Variable ``k`` of the tape is input
``k`` for ``k < n`` and node ``k - n`` otherwise.  Each operation computes the value and the
rule's local partials (the same compiled partials as the forward overloads,
:func:`dualad.numba.scalars._compiled_partial`); a one-input operation only multiplies the scale
(no node), a two-input one records a node ``c_a * a + c_b * b`` when both inputs are live and
distinct (:func:`link`).  A zero scale makes a constant, so a zero derivative stays zero through
an infinite local partial, as in forward mode.  The nodes are in evaluation order and the backward
sweep is one reverse loop: ``adj[parent] += partial * adj[node]``.

An ``AdjArray`` is a value array, an index array and a scale array of one shape: indexing reads
all three, writes store all three, so a local array from ``np.empty_like(x)`` holds adjoint
numbers; ufuncs and operators apply the scalar overloads entry by entry, and sum, mean, dot and
``@`` are loops of them.  The input's arrays are typed read-only, so a write into the input is
refused at compile time.

The tape is a jitclass made by the driver for one call (no tape outlives its call; the vjp's
pullback holds its own) over arrays lent by the calling thread's :class:`Workspace`.  An Adj
holds only the tape's data pointer (no reference count per operation): the driver's own
reference keeps it alive, and :func:`record` writes the node with a few LLVM stores.  A node
costs 32 bytes (two int64 parents, two float64 partials), its adjoint 8 more; the node arrays
double when full.

Second order (forward over reverse)
-----------------------------------
``AdjType`` is parametrized by the type of its value and scale: float64, or a forward-mode
``Dual(K)`` of :mod:`.dualtypes`.  Everything above is written once for both: an operation's
value is the primal of the values (the forward overloads when they are Duals), its local partials
are the rule's compiled partials evaluated on those values
(:func:`dualad.numba.scalars.partial_on_values`), so on Duals they carry their own derivative
along the K seeded directions, and the scale products are Dual products.  No second-derivative
formula is written anywhere.  An AdjArray of Duals holds DualArrays as its value and scale arrays,
so the array overloads (indexing, np.empty_like, ufuncs, sum, dot) carry over; a float Adj (a
sum's 0) widens to a Dual one by unification.  A zero test of a scale or partial (:func:`scaled`,
:func:`link`) is of all its entries: a partial of zero value can carry a second derivative.

The tape is the same jitclass with ``width`` = K + 1 floats per partial (value, then tangents);
:func:`sweep_tangents` pulls Dual adjoints back, ``width`` floats per variable.  Seeding the
inputs' tangents with directions V and the output's adjoint with its scale, the inputs' adjoints
end as ``grad f + eps * (H @ V)``: one recording and one sweep give K Hessian-vector products.
:func:`make_hvp` loops over chunks of K directions in compiled code, reusing the tape, so
``da.hvp`` is one pass for up to 12 directions and ``da.hessian`` (V = I) ceil(n / K) passes of
cost O(K * cost of f): O(n^2) for Rosenbrock against O(n^3) for nested Duals.
:data:`HESSIAN_CHUNK` = 8: at n = 100 (loop Rosenbrock, load 4.4 on 2 cores, scalar operations
inlined and the sweep generated for its K) K = 8, 10, 12 and 16 took 293, 308, 342 and 347 us
per Hessian (the work is n tangents per operation whatever K; Numba leaves LLVM's SLP vectorizer
off, so a Dual's K tangents are K scalar operations and more of them only add register
pressure), and 12-19 s of CPU to compile each larger K.
What this cannot record (a refusal, or Numba failing to type an operation on Duals) goes to the
nested-Dual path of :mod:`.second` with its own errors (``transforms._forward_over_reverse``).
"""

from __future__ import annotations

import builtins
import math
import operator
import threading
from typing import Any, NamedTuple

import numba
import numpy as np
from numba import types
from numba.core import cgutils, errors
from numba.experimental import jitclass
from numba.experimental.jitclass.base import _mangle_attr
from numba.extending import (
    intrinsic,
    lower_cast,
    make_attribute_wrapper,
    models,
    overload,
    overload_attribute,
    overload_method,
    register_model,
)

from .. import rules
from ..dual import DualError, label, primal
from ..transforms import stop_gradient
from . import NotCompilable, cache, scalars
from .drivers import _cached
from .dualtypes import (
    HELPER_OPTIONS,
    SCALAR_OPTIONS,
    DualArrayType,
    DualType,
    _k_of,
    generate,
    make_dual_array,
    numpy_ufuncs,
    overload_first,
    overload_scalar,
    readonly,
    tuple_source,
)
from .scalars import is_zero
from .second import _NOT_SCALAR

_REAL = (types.Float, types.Integer, types.Boolean)

#: Bytes a tape node takes (indices and partials) and the adjoint of its variable.
BYTES_PER_NODE = 32
BYTES_PER_ADJOINT = 8


@jitclass(
    [
        ("parents", numba.int64[::1]),
        ("partials", numba.float64[::1]),
        ("n", numba.int64),
        ("base", numba.int64),
        ("width", numba.int64),
    ]
)
class Tape:
    """The nodes of one evaluation: node k has parents ``parents[2k], parents[2k + 1]`` (two
    distinct variables, both recorded, see :func:`link`) with partials ``partials[2k], ...``;
    each partial is ``width`` floats (1, or a Dual's value and K tangents; see Second order)."""

    def __init__(self, base, parents, partials, width):  # noqa: ANN001
        self.parents = parents  # the call's workspace (see Workspace), grown when full
        self.partials = partials  # at least width * parents.size entries
        self.n = 0
        self.base = base
        self.width = width

    def nbytes(self):  # noqa: ANN201
        return 8 * (self.parents.size + self.partials.size)


TAPE = Tape.class_type.instance_type


def _grow(tape):  # noqa: ANN001, ANN202 - compiled into record's rare branch
    used = 2 * tape.n
    parents = np.empty(2 * tape.parents.size, np.int64)
    partials = np.empty(2 * tape.partials.size, np.float64)
    # loops, not parents[:used] = ...: Numba's array-into-slice assignment compiles its shape
    # error message (string formatting), seconds of a first call
    for i in range(used):
        parents[i] = tape.parents[i]
    for i in range(used * tape.width):
        partials[i] = tape.partials[i]
    tape.parents = parents
    tape.partials = partials


def _field(data, name: str):  # noqa: ANN001, ANN202
    return getattr(data, _mangle_attr(name))


@intrinsic
def tape_pointer(typingctx, tape):  # noqa: ANN001
    """The tape's data as a raw pointer: what an Adj carries, so that passing, copying and
    storing Adj values costs no reference counting (the driver's reference keeps it alive)."""
    if tape != TAPE:
        return None

    def codegen(context, builder, sig, args):  # noqa: ANN001
        inst = cgutils.create_struct_proxy(TAPE)(context, builder, value=args[0])
        return builder.bitcast(inst.data, context.get_value_type(types.voidptr))

    return types.voidptr(TAPE), codegen


@intrinsic
def record(typingctx, tape, a, ca, b, cb):  # noqa: ANN001
    """Append the node ``ca * a + cb * b`` (variables a, b >= 0) to the tape at pointer
    ``tape``; the index of its variable.  Written in LLVM so that it is a handful of loads and
    stores (a jitclass method reference-counts each array it reads)."""
    if tape != types.voidptr:
        return None
    if isinstance(ca, types.Float) and isinstance(cb, types.Float):
        part = types.float64
    elif isinstance(ca, DualType) and ca == cb and ca.base == types.float64:
        part = ca  # a Dual partial: its value and K tangents, one after another
    else:
        return None
    sig = types.int64(types.voidptr, types.int64, part, types.int64, part)
    width = 1 if part == types.float64 else part.K + 1

    def floats(context, builder, c):  # noqa: ANN001, ANN202
        if part == types.float64:
            return [c]
        dual = cgutils.create_struct_proxy(part)(context, builder, value=c)
        return [dual.value] + [builder.extract_value(dual.partials, k) for k in range(part.K)]

    def codegen(context, builder, sig, args):  # noqa: ANN001
        ptr, a, ca, b, cb = args
        data_type = TAPE.get_data_type()
        ref = builder.bitcast(ptr, context.get_value_type(data_type).as_pointer())
        data = context.make_data_helper(builder, data_type, ref=ref)
        n = _field(data, "n")
        twice = builder.mul(n, context.get_constant(types.int64, 2))
        parents_type, partials_type = TAPE.struct["parents"], TAPE.struct["partials"]
        parents = context.make_array(parents_type)(context, builder, _field(data, "parents"))
        with builder.if_then(builder.icmp_signed("==", twice, parents.nitems), likely=False):
            borrowed = cgutils.create_struct_proxy(TAPE)(context, builder)
            borrowed.meminfo = cgutils.get_null_value(borrowed.meminfo.type)
            borrowed.data = builder.bitcast(ptr, borrowed.data.type)
            context.compile_internal(builder, _grow, types.none(TAPE), [borrowed._getvalue()])
        parents = context.make_array(parents_type)(context, builder, _field(data, "parents"))
        partials = context.make_array(partials_type)(context, builder, _field(data, "partials"))
        second = builder.add(twice, context.get_constant(types.int64, 1))
        builder.store(a, builder.gep(parents.data, [twice]))
        builder.store(b, builder.gep(parents.data, [second]))
        at = builder.mul(twice, context.get_constant(types.int64, width))
        for k, value in enumerate(floats(context, builder, ca) + floats(context, builder, cb)):
            place = builder.add(at, context.get_constant(types.int64, k))
            builder.store(value, builder.gep(partials.data, [place]))
        setattr(data, _mangle_attr("n"), builder.add(n, context.get_constant(types.int64, 1)))
        return builder.add(_field(data, "base"), n)

    return sig, codegen


@numba.njit(**SCALAR_OPTIONS)
def scaled(index, scale):  # noqa: ANN001, ANN201
    """(index, scale) of ``scale * variable``: a constant (-1, 0.0) when the scale is zero, so a
    zero derivative stays zero through an infinite local partial (as in forward mode).  A Dual
    scale is zero when all its entries are: one of zero value can carry a second derivative."""
    if index < 0 or is_zero(scale):
        return -1, 0.0
    return index, scale


@numba.njit(**SCALAR_OPTIONS)
def link(tape, a, ca, b, cb):  # noqa: ANN001, ANN201
    """(index, scale) of ``ca * a + cb * b``: a tape node only when both terms are live and
    distinct; else the live term itself (no node), or a constant."""
    if a < 0 or is_zero(ca):
        return scaled(b, cb)
    if b < 0 or is_zero(cb):
        return a, ca
    if a == b:
        return scaled(a, ca + cb)
    return record(tape, a, ca, b, cb), 1.0


@numba.njit
def sweep(tape, adj):  # noqa: ANN001, ANN201
    """Pull the adjoints ``adj`` (one per tape variable) back to the inputs, in place; ``tape``
    is a recording's ``(base, count, parents, partials)`` (see :func:`tape_arrays`)."""
    base, count, parents, partials = tape
    for k in range(count - 1, -1, -1):
        g = adj[base + k]
        if g != 0.0:  # a zero adjoint stays zero even through an infinite local partial
            adj[parents[2 * k]] += partials[2 * k] * g
            adj[parents[2 * k + 1]] += partials[2 * k + 1] * g


@numba.njit
def tape_arrays(tape):  # noqa: ANN001, ANN201
    """``(base, count, parents, partials)`` of a Tape: what a driver returns instead of the
    jitclass, whose boxing bakes the address of a Python class into the machine code (a
    "dynamic global", which Numba will not cache on disk)."""
    return tape.base, tape.n, tape.parents, tape.partials


class Recording(NamedTuple):
    """A recorded tape as plain arrays, kept by a pullback: variables ``0 .. base - 1`` are the
    inputs, node ``k < count`` has parents ``parents[2k], parents[2k + 1]``."""

    base: int
    count: int
    parents: np.ndarray
    partials: np.ndarray

    @property
    def n(self) -> int:
        """The number of nodes."""
        return self.count

    def nbytes(self) -> int:
        """Bytes of the node arrays (filled or not)."""
        return self.parents.nbytes + self.partials.nbytes


# --- types ---------------------------------------------------------------------------------------


class AdjType(types.Type):
    """A reverse-mode number inside compiled code: value, tape index, scale, tape.  It stands
    for ``scale * variable[index]`` (index -1: a constant), so a chain of one-input operations
    multiplies the scale and records nothing.  ``base`` is the type of the value and the scale:
    float64, or a forward-mode Dual (second order, see the module's docstring)."""

    def __init__(self, base: Any = types.float64) -> None:
        self.base = base
        super().__init__(name="Adj" if base == types.float64 else f"Adj({base})")

    def unify(self, typingctx, other):  # noqa: ANN001 - numba's protocol
        if isinstance(other, _REAL) or self._widens(other):
            return self
        return None

    def can_convert_from(self, typingctx, other):  # noqa: ANN001 - numba's protocol
        return types.Conversion.safe if self._widens(other) else None

    def _widens(self, other: Any) -> bool:
        """A float Adj (a constant made by dualad's loops, e.g. a sum's 0) becomes a Dual one."""
        return (
            isinstance(other, AdjType)
            and other.base == types.float64
            and self.base != types.float64
        )


ADJ = AdjType()


def _base_of(array: Any) -> Any:
    """The adjoint value type of a value array: float64, or the Dual of a DualArray."""
    return DualType(array.K) if isinstance(array, DualArrayType) else types.float64


class AdjArrayType(types.Type):
    """An array of reverse-mode numbers: value, index and scale arrays of one shape (the value
    and scale arrays are DualArrays when the values are Duals)."""

    def __init__(self, value_type: Any, index_type: types.Array, scale_type: Any) -> None:
        self.value_type, self.index_type, self.scale_type = value_type, index_type, scale_type
        self.ndim = value_type.ndim
        self.base = _base_of(value_type)
        super().__init__(name=f"AdjArray({value_type}, {index_type}, {scale_type})")


class AdjDtypeType(types.Type):
    """``x.dtype`` of an AdjArray: tells ``np.zeros(m, dtype=x.dtype)`` to record on x's tape."""

    def __init__(self, base: Any = types.float64) -> None:
        self.base = base
        super().__init__(name="AdjDtype" if base == types.float64 else f"AdjDtype({base})")


@register_model(AdjType)
class _AdjModel(models.StructModel):
    def __init__(self, dmm, fe_type):  # noqa: ANN001
        members = [
            ("value", fe_type.base),
            ("index", types.int64),
            ("scale", fe_type.base),
            ("tape", types.voidptr),
        ]
        super().__init__(dmm, fe_type, members)


@register_model(AdjArrayType)
class _AdjArrayModel(models.StructModel):
    def __init__(self, dmm, fe_type):  # noqa: ANN001
        members = [
            ("value", fe_type.value_type),
            ("index", fe_type.index_type),
            ("scale", fe_type.scale_type),
            ("tape", types.voidptr),
        ]
        super().__init__(dmm, fe_type, members)


@register_model(AdjDtypeType)
class _AdjDtypeModel(models.StructModel):
    def __init__(self, dmm, fe_type):  # noqa: ANN001
        super().__init__(dmm, fe_type, [("tape", types.voidptr)])


for _t in (AdjType, AdjArrayType):
    for _name in ("value", "index", "scale", "tape"):
        make_attribute_wrapper(_t, _name, _name)
make_attribute_wrapper(AdjDtypeType, "tape", "tape")


def _struct(result: types.Type, names: tuple[str, ...]):  # noqa: ANN202
    def codegen(context, builder, sig, args):  # noqa: ANN001
        s = cgutils.create_struct_proxy(result)(context, builder)
        for name, arg, ty in zip(names, args, sig.args, strict=True):
            if name == "tape":  # a raw pointer: the driver's reference keeps the tape alive
                s.tape = arg
            elif isinstance(result, AdjArrayType):
                setattr(s, name, arg)
                context.nrt.incref(builder, ty, arg)
            else:
                target = types.int64 if name == "index" else result.base
                setattr(s, name, context.cast(builder, arg, ty, target))
        return s._getvalue()

    return codegen


@intrinsic
def make_adj(typingctx, value, index, scale, tape):  # noqa: ANN001
    """An Adj from a value, an integer index, a scale and a tape: reals (an Adj of float64), or
    a Dual value with a Dual or real scale (an Adj of that Dual)."""
    if isinstance(value, DualType) and value.base == types.float64:
        base = value
    elif isinstance(value, _REAL):
        base = types.float64
    else:
        return None
    if (
        not isinstance(index, types.Integer)
        or not (isinstance(scale, _REAL) or scale == base)
        or tape != types.voidptr
    ):
        return None
    result = AdjType(base)
    return result(value, index, scale, tape), _struct(result, ("value", "index", "scale", "tape"))


def _value_array(t: Any) -> bool:
    return isinstance(t, types.Array) or (
        isinstance(t, DualArrayType) and isinstance(t.value_type, types.Array)
    )


@intrinsic
def make_adj_array(typingctx, value, index, scale, tape):  # noqa: ANN001
    """An AdjArray from value, int64 index and scale arrays of one shape: float64 arrays, or
    DualArrays (values and scales) of one K."""
    if not all(_value_array(t) for t in (value, index, scale)):
        return None
    if _base_of(value) != _base_of(scale):
        return None
    result = AdjArrayType(value, index, scale)
    return result(value, index, scale, tape), _struct(result, ("value", "index", "scale", "tape"))


@intrinsic
def adj_dtype(typingctx, tape, like):  # noqa: ANN001
    """``dtype`` of the AdjArray ``like``, recording on ``tape``."""
    if tape != types.voidptr or not isinstance(like, AdjArrayType):
        return None
    result = AdjDtypeType(like.base)

    def codegen(context, builder, sig, args):  # noqa: ANN001
        s = cgutils.create_struct_proxy(result)(context, builder)
        s.tape = args[0]
        return s._getvalue()

    return result(tape, like), codegen


@lower_cast(types.Float, AdjType)
@lower_cast(types.Integer, AdjType)
@lower_cast(types.Boolean, AdjType)
def _real_to_adj(context, builder, fromty, toty, val):  # noqa: ANN001
    """A constant: index -1 and no tape (a null one, never read since the index says so)."""
    s = cgutils.create_struct_proxy(toty)(context, builder)
    s.value = context.cast(builder, val, fromty, toty.base)
    s.index = context.get_constant(types.int64, -1)
    zero = context.get_constant(types.float64, 0.0)
    s.scale = context.cast(builder, zero, types.float64, toty.base)
    s.tape = context.get_constant_null(types.voidptr)
    return s._getvalue()


@lower_cast(AdjType, AdjType)
def _widen_adj(context, builder, fromty, toty, val):  # noqa: ANN001
    """A float Adj as a Dual one: value and scale with zero tangents (see AdjType.unify)."""
    if not toty._widens(fromty):
        raise errors.NumbaNotImplementedError(f"cannot convert {fromty} to {toty}")
    old = cgutils.create_struct_proxy(fromty)(context, builder, value=val)
    s = cgutils.create_struct_proxy(toty)(context, builder)
    s.value = context.cast(builder, old.value, fromty.base, toty.base)
    s.index = old.index
    s.scale = context.cast(builder, old.scale, fromty.base, toty.base)
    s.tape = old.tape
    return s._getvalue()


def as_values(v, like):  # noqa: ANN001, ANN201
    """The float array ``v`` as value (or scale) array of ``like``'s adjoint numbers (an Adj,
    AdjArray or AdjDtype): itself, or a DualArray of it with zero tangents."""


@overload(as_values)
def _as_values(v, like):  # noqa: ANN001
    if like.base == types.float64:
        return lambda v, like: v
    K = like.base.K
    return generate(
        f"def impl(v, like):\n    return make_dual_array(v, np.zeros(v.shape + ({K},)), {K})\n"
    )


def zero_adj(like):  # noqa: ANN001, ANN201
    """A constant 0 of ``like``'s adjoint type, on its tape (a sum's start)."""


@overload(zero_adj)
def _zero_adj(like):  # noqa: ANN001
    if like.base == types.float64:
        return lambda like: make_adj(0.0, -1, 0.0, like.tape)
    zeros = tuple_source(["0.0"] * like.base.K)
    return generate(
        f"def impl(like):\n    return make_adj(make_dual(0.0, {zeros}), -1, 0.0, like.tape)\n",
        make_adj=make_adj,
    )


# --- scalar operations from the rule table -------------------------------------------------------

_impls: dict[Any, Any] = {}


def adjoint_impl(rule: rules.Rule, primal_fn: Any, argtypes: tuple[Any, ...]) -> Any:
    """The compiled implementation of ``rule`` on Adj (and real) arguments: value, local
    partials from the rule (compiled as for the forward engine) and one tape node."""
    key = (id(rule), primal_fn, tuple(argtypes))
    if key in _impls:
        return _impls[key]
    mask = [isinstance(t, AdjType) for t in argtypes]
    if sum(mask) > 2:
        scalars.refuse(f"compiled reverse mode records at most two adjoint inputs ({rule.name})")
    plain = tuple(t.base if m else t for m, t in zip(mask, argtypes, strict=True))
    env: dict[str, Any] = {"primal": primal_fn, "scaled": scaled, "link": link}
    env["make_adj"] = make_adj
    values = ", ".join(f"v{i}" for i in range(len(argtypes)))
    body = [f"v{i} = x{i}.value" if m else f"v{i} = x{i}" for i, m in enumerate(mask)]
    body.append(f"y = primal({values})")
    active = []
    for i, m in enumerate(mask):
        if not m:
            continue
        partial = rule.partials[i]
        if partial is None:
            continue
        if partial is rules.NONDIFF:
            scalars.refuse(
                f"{rule.name} is not differentiable in its input {i + 1}; pass a plain number"
            )
        if callable(partial):
            env[f"d{i}"] = scalars.partial_on_values(rule, i, plain)
            body.append(f"c{i} = d{i}({values}, y)")
        else:
            body.append(f"c{i} = {float(partial)!r}")
        active.append(i)
    first = next(i for i, m in enumerate(mask) if m)
    if not active:
        body.append(f"return make_adj(y, -1, 0.0, x{first}.tape)")
    elif len(active) == 1:
        (a,) = active
        body += [
            f"i, s = scaled(x{a}.index, x{a}.scale * c{a})",
            f"return make_adj(y, i, s, x{a}.tape)",
        ]
    else:
        a, b = active
        body += [
            f"tape = x{a}.tape if x{a}.index >= 0 else x{b}.tape",
            f"i, s = link(tape, x{a}.index, x{a}.scale * c{a}, x{b}.index, x{b}.scale * c{b})",
            "return make_adj(y, i, s, tape)",
        ]
    names = ", ".join(f"x{i}" for i in range(len(argtypes)))
    source = f"def impl({names}):\n" + "".join(f"    {line}\n" for line in body)
    _impls[key] = generate(source, label=f"adjoint {rule.name}", **env)
    return _impls[key]


def _adj_args(argtypes: tuple[Any, ...]) -> bool:
    return any(isinstance(t, AdjType) for t in argtypes) and all(
        isinstance(t, (AdjType, *_REAL)) for t in argtypes
    )


def _typer(func_label: str, rule_of: Any, primal_fn: Any, nin: int, elementwise: Any = None):  # noqa: ANN202, E501
    """The overload of a scalar function on Adj arguments; with ``elementwise`` (the ufunc or
    operator itself) also on AdjArrays, entry by entry through the scalar overload."""

    def select(*argtypes: Any) -> Any:
        if elementwise is not None and _array_args(argtypes):
            rule = rules.lookup(elementwise) if isinstance(elementwise, np.ufunc) else rule_of()
            if rule is not None:
                return _elementwise_impl(elementwise, argtypes)
            if rules.is_zero_derivative(primal_fn):
                return _on_values_impl(elementwise, argtypes)
            return None
        if not _adj_args(argtypes):
            return None
        rule = rule_of()
        if rule is not None:
            return adjoint_impl(rule, primal_fn, argtypes)
        if rules.is_zero_derivative(primal_fn):
            return _on_values_impl(primal_fn, argtypes)
        scalars.refuse(scalars._no_rule_message(func_label))

    return scalars._with_arity(nin, select)


def _array_args(argtypes: tuple[Any, ...]) -> bool:
    return any(isinstance(t, AdjArrayType) for t in argtypes) and all(
        isinstance(t, (AdjType, AdjArrayType, types.Array, *_REAL)) for t in argtypes
    )


_BROADCAST = (
    "compiled reverse mode applies {} to adjoint arrays entry by entry, with arrays of one "
    "shape or scalars; got arrays of {} dimensions. Broadcast by a loop, or use mode='forward'."
)


def _elementwise_impl(fn: Any, argtypes: tuple[Any, ...]) -> Any:
    """``fn`` over AdjArrays (with arrays of one shape and scalars) by the scalar overload at
    each entry: the rule table's partials, one node per entry where two inputs are live."""
    arrays = [i for i, t in enumerate(argtypes) if isinstance(t, (AdjArrayType, types.Array))]
    if len({argtypes[i].ndim for i in arrays}) > 1:
        scalars.refuse(_BROADCAST.format(label(fn), sorted({argtypes[i].ndim for i in arrays})))
    first = next(i for i, t in enumerate(argtypes) if isinstance(t, AdjArrayType))
    names = ", ".join(f"x{i}" for i in range(len(argtypes)))
    reads = ", ".join(f"x{i}[idx]" if i in arrays else f"x{i}" for i in range(len(argtypes)))
    body = [f"shape = x{first}.shape"]
    for i in arrays:
        body += [f"if x{i}.shape != shape:", "    raise ValueError('arrays of different shapes')"]
    body += [
        f"value = as_values(np.empty(shape), x{first})",
        "index = np.empty(shape, np.int64)",
        f"scale = as_values(np.empty(shape), x{first})",
        "for idx in np.ndindex(shape):",
        f"    r = fn({reads})",
        "    value[idx] = r.value",
        "    index[idx] = r.index",
        "    scale[idx] = r.scale",
        f"return make_adj_array(value, index, scale, x{first}.tape)",
    ]
    source = f"def impl({names}):\n" + "".join(f"    {line}\n" for line in body)
    return generate(
        source,
        label=f"adjoint array {label(fn)}",
        fn=fn,
        make_adj_array=make_adj_array,
        as_values=as_values,
    )


def _on_values_impl(fn: Any, argtypes: tuple[Any, ...]) -> Any:
    """A function of zero derivative (a comparison, floor) on the values alone, of adjoint
    numbers or arrays."""
    reads = [
        f"x{i}.value" if isinstance(t, (AdjType, AdjArrayType)) else f"x{i}"
        for i, t in enumerate(argtypes)
    ]
    names = ", ".join(f"x{i}" for i in range(len(argtypes)))
    return generate(f"def impl({names}):\n    return fn({', '.join(reads)})\n", fn=fn)


def _value_only(fn: Any, nin: int):  # noqa: ANN202
    def select(*argtypes: Any) -> Any:
        if _array_args(argtypes):
            return _on_values_impl(fn, argtypes)
        if not any(isinstance(t, AdjType) for t in argtypes):
            return None
        return _on_values_impl(fn, argtypes)

    return scalars._with_arity(nin, select)


def _refusal(message: str):  # noqa: ANN202
    def typer(*xs):  # noqa: ANN002, ANN202
        if any(isinstance(t, (AdjType, AdjArrayType)) for t in xs):
            scalars.refuse(message)
        return None

    return typer


def _ufunc_typer(ufunc: np.ufunc):  # noqa: ANN202
    def rule_of() -> rules.Rule | None:
        rule = rules.lookup(ufunc)
        if rule is None and not rules.is_zero_derivative(ufunc):
            scalars.refuse(scalars._no_rule_message(label(ufunc)))
        return rule

    return _typer(label(ufunc), rule_of, ufunc, ufunc.nin, elementwise=ufunc)


_registered: set[Any] = set()
_fixed_done = False


def _overload(func: Any, typer: Any) -> None:
    if func not in _registered:
        _registered.add(func)
        overload_scalar(func)(typer)


def register_table() -> None:
    """Overload, for Adj arguments, what the forward engine overloads for Duals (same tables)."""
    for key, rule in list(rules.RULES.items()):
        if isinstance(key, np.ufunc):
            _overload(key, _ufunc_typer(key))
        elif rule.func is key:
            # the value by the function's forward overload: its compiled source on floats, its
            # rule on Duals (second order), never the source's own derivative
            _overload(key, _typer(label(key), lambda k=key: rules.lookup(k), key, rule.nin))
    global _fixed_done
    if _fixed_done:
        return
    _fixed_done = True
    for ufunc in numpy_ufuncs():
        _overload(ufunc, _ufunc_typer(ufunc))
    for op, ufunc in scalars._OPERATORS.items():
        rule_of = lambda u=ufunc: rules.lookup(u)  # noqa: E731
        _overload(op, _typer(label(ufunc), rule_of, op, ufunc.nin, elementwise=op))
    for name, ufunc in scalars._MATH.items():
        if hasattr(math, name):
            prim = ufunc if name in scalars._MATH_NOT_IN_NUMBA else getattr(math, name)
            rule_of = lambda u=ufunc: rules.lookup(u)  # noqa: E731
            _overload(getattr(math, name), _typer(f"math.{name}", rule_of, prim, ufunc.nin))
    for name, special in scalars._MATH_SCIPY.items():
        _overload(
            getattr(math, name),
            _typer(f"math.{name}", scalars._scipy_rule(special), getattr(math, name), 1),
        )
    for op in scalars._COMPARISONS:
        _overload(op, _value_only(op, 2))
    for fn in (np.round, np.around):
        _overload(fn, _value_only(fn, 1))
    for name in scalars._MATH_VALUE_ONLY:
        _overload(getattr(math, name), _value_only(getattr(math, name), 1))
    _overload(builtins.round, _value_only(builtins.round, 1))
    lost = (
        "{} of a reverse-mode value would drop its derivative. Use da.primal(x) to take the "
        "value when that is intended."
    )
    _overload(builtins.float, _refusal(lost.format("float()")))
    _overload(builtins.int, _refusal(lost.format("int()")))
    for name in dir(math):
        fn = getattr(math, name)
        if callable(fn) and fn not in _registered and not name.startswith("_"):
            _overload(fn, _refusal(scalars._no_rule_message(f"math.{name}")))


# --- arrays --------------------------------------------------------------------------------------


def _is_element(a: AdjArrayType, idx: Any) -> bool:
    if isinstance(idx, types.Integer):
        return a.ndim == 1
    return (
        isinstance(idx, types.BaseTuple)
        and len(idx) == a.ndim
        and all(isinstance(t, types.Integer) for t in idx)
    )


@overload_first(operator.getitem)
def _getitem(a, idx):  # noqa: ANN001
    if not isinstance(a, AdjArrayType):
        return None
    if _is_element(a, idx):
        return lambda a, idx: make_adj(a.value[idx], a.index[idx], a.scale[idx], a.tape)
    return lambda a, idx: make_adj_array(a.value[idx], a.index[idx], a.scale[idx], a.tape)


_LOST_IN_FLOAT_ARRAY = (
    "writing a reverse-mode value into a float array would drop its derivative. Allocate the "
    "array from the input instead: np.empty_like(x), np.zeros_like(x), or "
    "np.zeros(m, dtype=x.dtype), which record on the tape when x does."
)

_WRITE_INTO_INPUT = (
    "the function writes into its input array, which compiled reverse mode cannot record (the "
    "input is read-only); copy it first, x = x.copy(), or write into np.empty_like(x)."
)


@overload_first(operator.setitem)
def _setitem(a, idx, val):  # noqa: ANN001
    if isinstance(a, types.Array) and isinstance(val, (AdjType, AdjArrayType)):
        scalars.refuse(_LOST_IN_FLOAT_ARRAY)
    if not isinstance(a, AdjArrayType):
        return None
    values = a.value_type.value_type if isinstance(a.value_type, DualArrayType) else a.value_type
    if not values.mutable:
        scalars.refuse(_WRITE_INTO_INPUT)
    if isinstance(val, (AdjType, AdjArrayType)):

        def store(a, idx, val):  # noqa: ANN001, ANN202
            a.value[idx] = val.value
            a.index[idx] = val.index
            a.scale[idx] = val.scale

        return store
    if isinstance(val, (*_REAL, types.Array)):

        def store_constant(a, idx, val):  # noqa: ANN001, ANN202
            a.value[idx] = val
            a.index[idx] = -1
            a.scale[idx] = 0.0

        return store_constant
    return None


@overload_first(len)
def _len(a):  # noqa: ANN001
    if isinstance(a, AdjArrayType):
        return lambda a: len(a.value)
    return None


for _name in ("shape", "size", "ndim"):
    overload_attribute(AdjArrayType, _name)(
        generate(f"def impl(a):\n    return lambda a: a.value.{_name}\n")
    )


@overload_attribute(AdjArrayType, "T")
def _transpose(a):  # noqa: ANN001
    return lambda a: make_adj_array(a.value.T, a.index.T, a.scale.T, a.tape)


@overload_attribute(AdjArrayType, "dtype")
def _dtype(a):  # noqa: ANN001
    return lambda a: adj_dtype(a.tape, a)


@overload_method(AdjArrayType, "copy")
def _copy(a):  # noqa: ANN001
    return lambda a: make_adj_array(a.value.copy(), a.index.copy(), a.scale.copy(), a.tape)


def _like(fill: str):  # noqa: ANN202
    def typer(a):  # noqa: ANN001
        if not isinstance(a, AdjArrayType):
            return None
        return generate(
            f"def impl(a):\n    v = np.{fill}(a.shape)\n"
            "    return make_adj_array(as_values(v, a), np.full(v.shape, -1, np.int64), "
            "as_values(np.zeros(v.shape), a), a.tape)\n",
            make_adj_array=make_adj_array,
            as_values=as_values,
        )

    return typer


overload_first(np.empty_like)(_like("empty"))
overload_first(np.zeros_like)(_like("zeros"))
overload_first(np.ones_like)(_like("ones"))


def _allocate(fill: str):  # noqa: ANN202
    def typer(shape, dtype=None):  # noqa: ANN001
        if not isinstance(dtype, AdjDtypeType):
            return None
        lead = "(shape,)" if isinstance(shape, types.Integer) else "shape"
        return generate(
            f"def impl(shape, dtype=None):\n    v = np.{fill}({lead})\n"
            "    return make_adj_array(as_values(v, dtype), np.full(v.shape, -1, np.int64), "
            "as_values(np.zeros(v.shape), dtype), dtype.tape)\n",
            make_adj_array=make_adj_array,
            as_values=as_values,
        )

    return typer


overload_first(np.empty)(_allocate("empty"))
overload_first(np.zeros)(_allocate("zeros"))
overload_first(np.ones)(_allocate("ones"))


def _primal(x):  # noqa: ANN001
    """The value, as floats: a Dual value's tangents are derivatives too (second order)."""
    if isinstance(x, (AdjType, AdjArrayType)):
        return lambda x: primal(x.value)
    return None


overload_first(primal)(_primal)
overload_first(stop_gradient)(_primal)


def _sum_impl(a):  # noqa: ANN001, ANN202
    s = zero_adj(a)
    for idx in np.ndindex(a.shape):
        s = s + a[idx]
    return s


@overload_first(np.sum)
def _sum(a):  # noqa: ANN001
    """The sum of all entries (one node per live entry); an axis is not recorded."""
    return _sum_impl if isinstance(a, AdjArrayType) else None


@overload_first(np.mean)
def _mean(a):  # noqa: ANN001
    if isinstance(a, AdjArrayType):
        return lambda a: np.sum(a) / a.size
    return None


overload_method(AdjArrayType, "sum")(lambda a: _sum_impl)
overload_method(AdjArrayType, "mean")(lambda a: lambda a: np.sum(a) / a.size)


_MATMUL = "compiled reverse mode records dot and @ of 1-D and 2-D arrays; got {} and {} dimensions"


def _product(a, b):  # noqa: ANN001, ANN202
    """``np.dot(a, b)`` / ``a @ b`` with an AdjArray among 1-D or 2-D operands, by the scalar
    overloads: each product scales its live factor, each sum of two live terms is one node."""
    if not _array_args((a, b)):
        return None
    if a.ndim not in (1, 2) or b.ndim not in (1, 2):
        scalars.refuse(_MATMUL.format(a.ndim, b.ndim))
    like = "a" if isinstance(a, AdjArrayType) else "b"
    tape = f"{like}.tape"
    row = "i, k" if a.ndim == 2 else "k"
    col = "k, j" if b.ndim == 2 else "k"
    out = {(1, 1): "()", (2, 1): "(m,)", (1, 2): "(p,)", (2, 2): "(m, p)"}[a.ndim, b.ndim]
    at = {(1, 1): "", (2, 1): "i", (1, 2): "j", (2, 2): "i, j"}[a.ndim, b.ndim]
    lines = [
        f"inner = a.shape[{a.ndim - 1}]",
        "if b.shape[0] != inner:",
        "    raise ValueError('dot: shapes not aligned')",
        f"m = a.shape[0] if {a.ndim} == 2 else 1",
        f"p = b.shape[1] if {b.ndim} == 2 else 1",
        f"value = as_values(np.empty({out}), {like})",
        f"index = np.empty({out}, np.int64)",
        f"scale = as_values(np.empty({out}), {like})",
        "for i in range(m):",
        "    for j in range(p):",
        f"        s = zero_adj({like})",
        "        for k in range(inner):",
        f"            s = s + a[{row}] * b[{col}]",
    ]
    if out == "()":
        lines.append("        return s")
        lines.append(f"return zero_adj({like})")
    else:
        lines += [
            f"        value[{at}] = s.value",
            f"        index[{at}] = s.index",
            f"        scale[{at}] = s.scale",
            f"return make_adj_array(value, index, scale, {tape})",
        ]
    source = "def impl(a, b):\n" + "".join(f"    {line}\n" for line in lines)
    return generate(
        source,
        label="adjoint dot",
        make_adj_array=make_adj_array,
        as_values=as_values,
        zero_adj=zero_adj,
    )


overload_first(np.dot)(_product)
overload_first(operator.matmul)(_product)


# --- drivers -------------------------------------------------------------------------------------


def as_input(point, tape):  # noqa: ANN001, ANN201
    """What f receives: an AdjArray of variables 0 .. n-1, or an Adj for a 0-d point."""


@overload(as_input)
def _as_input(point, tape):  # noqa: ANN001
    if point.ndim > 0:

        def array(point, tape):  # noqa: ANN001, ANN202
            index = np.arange(point.size).reshape(point.shape)
            scale = np.ones(point.shape)
            return make_adj_array(
                readonly(point), readonly(index), readonly(scale), tape_pointer(tape)
            )

        return array
    return lambda point, tape: make_adj(point[()], 0, 1.0, tape_pointer(tape))


def out_value(y):  # noqa: ANN001, ANN201
    """The output's value as a float64 array of its shape, not shared with the caller."""


@overload(out_value)
def _out_value(y):  # noqa: ANN001
    if isinstance(y, AdjArrayType):
        return lambda y: y.value.copy()
    if isinstance(y, AdjType):
        return lambda y: np.full((), y.value)
    if isinstance(y, types.Array):
        return lambda y: y.astype(np.float64)
    return lambda y: np.full((), np.float64(y))


def out_index(y):  # noqa: ANN001, ANN201
    """The tape index and scale of each output entry, flat (index -1: independent of x)."""


@overload(out_index)
def _out_index(y):  # noqa: ANN001
    if isinstance(y, AdjArrayType):

        def array(y):  # noqa: ANN001, ANN202
            return (
                np.ascontiguousarray(y.index).ravel().copy(),
                np.ascontiguousarray(y.scale).ravel().copy(),
            )

        return array
    if isinstance(y, AdjType):
        return lambda y: (np.full(1, y.index), np.full(1, y.scale))
    if isinstance(y, types.Array):
        return lambda y: (np.full(y.size, -1, np.int64), np.zeros(y.size))
    return lambda y: (np.full(1, -1, np.int64), np.zeros(1))


def make_value(f):  # noqa: ANN001, ANN201
    """A driver ``(x, *args) -> f(x)`` on floats, by which mode="auto" learns the output's
    size: kept on disk with the other drivers, where the user's own dispatcher is compiled
    again in each process (about half a second, most of a first call that loads the rest)."""

    @numba.njit
    def value_of(x, *args):  # noqa: ANN001, ANN202
        return f(x, *args)

    return value_of


def make_record(f):  # noqa: ANN001, ANN201
    """A driver ``(x, parents, partials, *args) -> (f(x), (output indices, scales), tape)``
    recording into the given arrays (and bigger ones when they fill up); the tape as the arrays
    of :func:`tape_arrays`, so that the driver can be cached on disk."""

    @numba.njit
    def record_f(x, parents, partials, *args):  # noqa: ANN001, ANN202
        tape = Tape(x.size, parents, partials, 1)
        y = f(as_input(x, tape), *args)
        return out_value(y), out_index(y), tape_arrays(tape)

    return record_f


@_cached
def pull(tape, outs, cts):  # noqa: ANN001, ANN201
    """``cts.T @ J`` for cotangents ``cts`` of shape (m, k): the gradients, shape (n, k).
    Kept in Numba's disk cache: it is the same for every f, and compiling it again in each
    process cost a vjp about 2 s of a first call whose drivers were loaded from disk."""
    index, scale = outs
    n, count = tape[0], tape[1]
    k = cts.shape[1]
    result = np.empty((n, k))
    adj = np.empty(n + count)
    for c in range(k):
        adj[:] = 0.0
        for j in range(index.size):
            if index[j] >= 0:
                adj[index[j]] += scale[j] * cts[j, c]
        sweep(tape, adj)
        for i in range(n):
            result[i, c] = adj[i]
    return result


def make_value_and_jacobian(record_f):  # noqa: ANN001, ANN201
    """A driver ``(x, parents, partials, adj, *args) -> (f(x), J, parents, partials, adj)``:
    one sweep per output entry, J flat (m, n); the arrays it ends with, for the workspace."""

    @numba.njit
    def value_and_jacobian(x, parents, partials, adj, *args):  # noqa: ANN001, ANN202
        value, outs, tape = record_f(x, parents, partials, *args)
        index, scale = outs
        n, count = tape[0], tape[1]
        m = index.size
        jac = np.zeros((m, n))
        if adj.size < n + count:
            adj = np.empty(2 * (n + count))
        for j in range(m):
            if index[j] < 0:
                continue
            adj[: n + count] = 0.0
            adj[index[j]] = scale[j]
            sweep(tape, adj)
            for i in range(n):
                jac[j, i] = adj[i]
        return value, jac, tape[2], tape[3], adj

    return value_and_jacobian


# --- second order: forward over reverse ---------------------------------------------------------


def seeded_input(point, seed, tape, k_marker):  # noqa: ANN001, ANN201
    """What f receives for a second-order pass: an AdjArray of variables 0 .. n-1 whose values
    are Duals with tangents ``seed`` (shape ``x.shape + (K,)``) and scales 1, or an Adj."""


@overload(seeded_input)
def _seeded_input(point, seed, tape, k_marker):  # noqa: ANN001
    K = _k_of(k_marker)
    if point.ndim > 0:

        def array(point, seed, tape, k_marker):  # noqa: ANN001, ANN202
            index = np.arange(point.size).reshape(point.shape)
            value = make_dual_array(readonly(point), readonly(seed), k_marker)
            ones = readonly(np.ones(point.shape))
            scale = make_dual_array(ones, readonly(np.zeros(seed.shape)), k_marker)
            return make_adj_array(value, readonly(index), scale, tape_pointer(tape))

        return array
    seeds = tuple_source([f"seed[{k}]" for k in range(K)])
    return generate(
        "def impl(point, seed, tape, k_marker):\n"
        f"    value = make_dual(point[()], {seeds})\n"
        "    return make_adj(value, 0, 1.0, tape_pointer(tape))\n",
        make_adj=make_adj,
        tape_pointer=tape_pointer,
    )


def seed_output(y, adj, width):  # noqa: ANN001, ANN201
    """Start the sweep from f's scalar output: its variable's adjoint (``width`` floats per
    variable in the flat ``adj``) is y's scale, a Dual whose tangents differentiate it."""


@overload(seed_output)
def _seed_output(y, adj, width):  # noqa: ANN001
    if isinstance(y, AdjType) and y.base != types.float64:
        stores = "".join(
            f"        adj[at + {k + 1}] = y.scale.partials[{k}]\n" for k in range(y.base.K)
        )
        return generate(
            "def impl(y, adj, width):\n    if y.index >= 0:\n        at = y.index * width\n"
            "        adj[at] = y.scale.value\n" + stores
        )
    if isinstance(y, AdjType):  # a float Adj here is a constant
        return lambda y, adj, width: None
    if isinstance(y, _REAL):
        return lambda y, adj, width: None  # f does not depend on x: zero Hessian
    if isinstance(y, (AdjArrayType, types.Array, types.BaseTuple)):
        scalars.refuse(_NOT_SCALAR.format(f"an array or tuple ({y})"))
    return None


def sweep_tangents(tape, adj, k_marker):  # noqa: ANN001, ANN201
    """:func:`sweep` on Dual adjoints of K tangents (``K + 1`` floats each in the flat ``adj``):
    the product of two Duals, a zero entry of the adjoint staying zero through an infinite
    partial."""


@overload(sweep_tangents, jit_options=HELPER_OPTIONS)
def _sweep_tangents(tape, adj, k_marker):  # noqa: ANN001
    """Generated for one K: the node's adjoint is read into K + 1 locals before its parents'
    are updated, so that LLVM unrolls the K-loops and keeps them in registers (a loop over a
    run-time width that re-reads ``adj`` behind each store, with a branch per entry, took 4x
    longer).  The zero guard is a select, not a branch: ``g_j * c0`` is added only where the
    tangent g_j is nonzero, and the partial's tangents only when the value g_0 is."""
    K = _k_of(k_marker)
    w = K + 1
    loads = "".join(f"        g{j} = adj[g + {j}]\n" for j in range(1, w))
    live = " or ".join(f"g{j} != 0.0" for j in range(1, w))
    updates = "".join(
        f"            adj[p + {j}] = adj[p + {j}] + (partials[c + {j}] * g0 if g0 != 0.0 else 0.0)"
        f" + (g{j} * c0 if g{j} != 0.0 else 0.0)\n"
        for j in range(1, w)
    )
    return generate(
        "def impl(tape, adj, k_marker):\n"
        "    base, parents, partials = tape.base, tape.parents, tape.partials\n"
        "    for k in range(tape.n - 1, -1, -1):\n"
        f"        g = (base + k) * {w}\n"
        "        g0 = adj[g]\n"
        + loads
        + f"        if g0 == 0.0 and not ({live}):\n"
        "            continue\n"
        "        for e in range(2 * k, 2 * k + 2):\n"
        f"            c = e * {w}\n"
        f"            p = parents[e] * {w}\n"
        "            c0 = partials[c]\n"
        "            if g0 != 0.0:\n"
        "                adj[p] += c0 * g0\n"
        + updates,
        label="adjoint sweep",
    )


def make_hvp(f, k_marker):  # noqa: ANN001, ANN201
    """A driver ``(x, parents, partials, adj, vs, identity, *args) -> (H @ vs, parents,
    partials, adj)`` for directions ``vs`` of shape (n, m): one recording and one sweep per
    chunk of K.  With ``identity`` true, ``vs`` is ignored and the result is H itself, seeded
    column by column and made exactly symmetric (the entries below the diagonal are those above
    it, one number for both triangles as in the nested-Dual path) in the same compiled call:
    making np.eye(n) and mirroring by another call were 10% of the n = 100 Rosenbrock Hessian."""

    @numba.njit
    def hvp(x, parents, partials, adj, vs, identity, *args):  # noqa: ANN001, ANN202
        n = x.size
        m = n if identity else vs.shape[1]
        K = len(k_marker)
        w = K + 1
        if partials.size < w * parents.size:
            partials = np.empty(w * parents.size)
        tape = Tape(n, parents, partials, w)
        seed = np.zeros(x.shape + (K,))
        flat = seed.reshape((n, K))
        out = np.empty((n, m))
        for c0 in range(0, m, K):
            wc = min(K, m - c0)
            for i in range(n):
                for k in range(K):
                    if identity:
                        flat[i, k] = 1.0 if i == c0 + k else 0.0
                    else:
                        flat[i, k] = vs[i, c0 + k] if k < wc else 0.0
            tape.n = 0
            y = f(seeded_input(x, seed, tape, k_marker), *args)
            used = (n + tape.n) * w
            if adj.size < used:
                adj = np.empty(2 * used)
            adj[:used] = 0.0
            seed_output(y, adj, w)
            sweep_tangents(tape, adj, k_marker)
            for i in range(n):
                for k in range(wc):
                    out[i, c0 + k] = adj[i * w + 1 + k]
        if identity:
            for i in range(n):
                for j in range(i + 1, n):
                    out[j, i] = out[i, j]
        return out, tape.parents, tape.partials, adj

    return hvp


#: Tangent directions per pass of a compiled Hessian by forward over reverse (n inputs take
#: ceil(n / K) recordings and sweeps); see the module's docstring for the measurement.
HESSIAN_CHUNK = 8


#: Bytes of tape arrays a thread keeps between its calls (see Workspace).
WORKSPACE_BYTES = 64 * 2**20


class Workspace(threading.local):
    """The memory one thread's calls record into, lent to one call at a time and kept (up to
    :data:`WORKSPACE_BYTES`) for the next: the tape of a call is its own (it starts empty), but
    fresh memory costs a page fault per 4 KiB, which made a tape of 10^5 nodes 20x slower than
    recording into warm arrays.  A nested call in the same thread finds it lent and allocates."""

    arrays: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def take(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        arrays, self.arrays = self.arrays, None
        if arrays is None:
            nodes = max(1024, 2 * n)
            arrays = (np.empty(2 * nodes, np.int64), np.empty(2 * nodes), np.empty(n + nodes))
        return arrays

    def give_back(self, arrays: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        if sum(a.nbytes for a in arrays) <= WORKSPACE_BYTES:
            self.arrays = arrays

    def clear(self) -> None:
        """Free this thread's kept arrays."""
        self.arrays = None


workspace = Workspace()


_drivers: dict[tuple[Any, Any], Any] = {}


def driver(f: Any, kind: Any) -> Any:
    """The compiled reverse driver of ``kind`` ("record", "jacobian", "value": f on floats, or
    ("hvp", K)) for f, made once and kept on disk across processes (see :mod:`.cache`) as the
    forward engine's drivers are."""
    key = (f, kind)
    ready = _drivers.get(key)
    if ready is not None:
        return ready
    from . import _compiling, for_duals

    with _compiling:
        if key not in _drivers:
            scalars.register_table()
            register_table()
            if kind == "record":
                made = make_record(for_duals(f))
            elif kind == "value":
                made = make_value(for_duals(f))
            elif kind == "jacobian":
                made = make_value_and_jacobian(driver(f, "record"))
            else:  # ("hvp", K)
                made = make_hvp(for_duals(f), (0.0,) * kind[1])
            named = (f"reverse_{kind}", None) if isinstance(kind, str) else ("reverse_hvp", kind[1])
            _drivers[key] = cache.cached(made, f, *named)
    return _drivers[key]


def _call(f: Any, kind: Any, *arguments: Any) -> Any:
    """Call the driver of ``kind`` for f; a disk cache entry that will not load (a stale
    environment) means compiling without the cache from then on, as for the forward drivers."""
    try:
        return driver(f, kind)(*arguments)
    except cache.LOAD_ERRORS as error:
        if not cache.enabled():
            raise
        cache.abandon(error, "reverse driver", _drivers, f)
        return driver(f, kind)(*arguments)


class NotRecordable(NotCompilable):
    """Compiled reverse mode could not record the function (Numba could not type it)."""


#: Functions compiled reverse mode could not record, so that mode="auto" does not try again.
failed: dict[Any, str] = {}

#: Functions forward over reverse could not record (on Duals), so that da.hessian and da.hvp
#: take the nested-Dual path without compiling again.
failed_second_order: dict[Any, str] = {}


def run(f: Any, kind: Any, point: np.ndarray, *args: Any) -> Any:
    """Run the reverse driver ``kind`` for f at ``point``: "record" gives (f(x), outputs, tape)
    with a tape of its own, "jacobian" (f(x), J) and ("hvp", K) ``H @ vs`` (``args`` starting
    with vs and identity, see :func:`make_hvp`) recorded in this thread's workspace.  dualad's
    own refusals become a DualError naming the user's line, any other typing failure a
    :class:`NotRecordable` that says where (remembered in :data:`failed` for first order)."""
    try:
        if kind == "record":
            nodes = max(1024, 2 * point.size)
            value, outs, tape = _call(
                f, kind, point, np.empty(2 * nodes, np.int64), np.empty(2 * nodes), *args
            )
            return value, outs, Recording(*tape)
        parents, partials, adj = workspace.take(point.size)
        *result, parents, partials, adj = _call(f, kind, point, parents, partials, adj, *args)
        workspace.give_back((parents, partials, adj))
        return tuple(result) if kind == "jacobian" else result[0]
    except errors.TypingError as exc:
        from . import _where, summary  # here: an import per call was 1-2 us of a small gradient

        message = str(exc)
        problem = scalars.take_problem(message)
        if problem is not None:
            raise DualError(problem + _where(message)) from None
        if kind in ("record", "jacobian"):
            failed[getattr(f, "py_func", f)] = message
        raise NotRecordable(
            f"{message}\n\ndualad: compiled reverse mode cannot record "
            f"{getattr(f, '__name__', 'f')}: it stopped at {summary(message)}{_where(message)}. "
            "It records loops over x[i], math and NumPy functions of numbers, and on arrays "
            "ufuncs, operators, slices, sum, mean, dot and @; use mode='forward', or "
            "engine='numpy' for other whole-array NumPy calls."
        ) from None


def value(f: Any, point: np.ndarray, args: tuple[Any, ...]) -> Any:
    """f(point) on floats, by the disk-cached copy of f (see :func:`make_value`)."""
    return _call(f, "value", point, *args)


def value_and_jacobian(f: Any, point: np.ndarray, args: tuple[Any, ...]) -> tuple[Any, Any]:
    """(f(x), J of shape f(x).shape + x.shape): one sweep for a scalar f, else one per row."""
    value, jac = run(f, "jacobian", point, *args)
    return value, jac.reshape(value.shape + point.shape)


def vjp(f: Any, point: np.ndarray, args: tuple[Any, ...]) -> tuple[Any, Any]:
    """(f(x), pullback) where ``pullback(cts)`` takes cotangents (m, k) to gradients (n, k)."""
    value, outs, tape = run(f, "record", point, *args)

    def pullback(cts: np.ndarray) -> np.ndarray:
        cts = np.ascontiguousarray(cts, dtype=np.float64).reshape(outs[0].size, -1)
        return pull(tuple(tape), outs, cts)

    return value, pullback


def hessian(f: Any, point: np.ndarray, K: int, args: tuple[Any, ...]) -> Any:
    """H (n, n) of a scalar f: the hvp driver on the identity, ceil(n / K) passes, exactly
    symmetric (see :func:`make_hvp`)."""
    return run(f, ("hvp", K), point, np.empty((0, 0)), True, *args)


def hvp(f: Any, point: np.ndarray, directions: np.ndarray, K: int, args: tuple[Any, ...]) -> Any:
    """``H @ directions`` (shape (n, m)) of a scalar f at ``point`` by forward over reverse:
    one recording on Duals of K tangents and one sweep per chunk of K directions."""
    directions = np.ascontiguousarray(directions, dtype=np.float64)
    return run(f, ("hvp", K), point, directions, False, *args)
