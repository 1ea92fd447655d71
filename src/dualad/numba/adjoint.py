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
That is what ``da.hvp`` runs.  ``da.hessian`` records f once in local mode instead
(:func:`make_local_hessian`): every chunk's recording had the same nodes and partial values,
and tangents linear in the seed, so one recording that keeps each node's partials with their
derivatives along its two parents (:func:`_local_node`: the rule's partials on ``Dual(2)``
values) gives every column by sweeps over the tape (:func:`local_hessian_sweeps`).  At n = 100
(loop Rosenbrock, load 6 on 2 cores, CPU time) it took 86 us against 212 us for K = 8 passes.
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
    lower_builtin,
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
from .arrayops import INPLACE_OPERATORS
from .arrays import getiter_first_axis
from .drivers import _cached
from .dualtypes import (
    HELPER_OPTIONS,
    SCALAR_OPTIONS,
    DualArrayIteratorType,
    DualArrayType,
    DualType,
    _k_of,
    generate,
    make_dual,
    make_dual_array,
    numpy_ufuncs,
    overload_first,
    overload_scalar,
    readonly,
    tuple_source,
)
from .scalars import is_zero
from .second import _NOT_SCALAR
from .shapes import as_shape, interp_one

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


class LocalTapeType(types.Opaque):
    """The tape pointer of a recording for a Hessian by local second derivatives (see
    :func:`make_local_hessian`): the same pointer as ``voidptr``, its own type so that the
    adjoint numbers recorded on it (an ``AdjType`` with ``local``) know their mode."""


LOCAL_TAPE = LocalTapeType("LocalTape")
register_model(LocalTapeType)(models.OpaqueModel)

#: The tape pointer types: that of first-order and forward-over-reverse recordings, and local.
TAPE_POINTERS = (types.voidptr, LOCAL_TAPE)


@intrinsic
def local_tape_pointer(typingctx, tape):  # noqa: ANN001
    """:func:`tape_pointer`, typed as the local mode's pointer."""
    if tape != TAPE:
        return None

    def codegen(context, builder, sig, args):  # noqa: ANN001
        inst = cgutils.create_struct_proxy(TAPE)(context, builder, value=args[0])
        return builder.bitcast(inst.data, context.get_value_type(LOCAL_TAPE))

    return LOCAL_TAPE(TAPE), codegen


@intrinsic
def record(typingctx, tape, a, ca, b, cb):  # noqa: ANN001
    """Append the node ``ca * a + cb * b`` (variables a, b >= 0) to the tape at pointer
    ``tape``; the index of its variable.  Written in LLVM so that it is a handful of loads and
    stores (a jitclass method reference-counts each array it reads)."""
    if tape not in TAPE_POINTERS:
        return None
    if isinstance(ca, types.Float) and isinstance(cb, types.Float):
        part = types.float64
    elif isinstance(ca, DualType) and ca == cb and ca.base == types.float64:
        part = ca  # a Dual partial: its value and K tangents, one after another
    else:
        return None
    sig = types.int64(tape, types.int64, part, types.int64, part)
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

    def __init__(self, base: Any = types.float64, local: bool = False) -> None:
        self.base, self.local = base, local
        name = "Adj" if base == types.float64 else f"Adj({base})"
        super().__init__(name=f"Local{name}" if local else name)

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


class AdjArrayType(types.IterableType):
    """An array of reverse-mode numbers: value, index and scale arrays of one shape (the value
    and scale arrays are DualArrays when the values are Duals)."""

    def __init__(
        self, value_type: Any, index_type: types.Array, scale_type: Any, local: bool = False
    ) -> None:
        self.value_type, self.index_type, self.scale_type = value_type, index_type, scale_type
        self.ndim = value_type.ndim
        self.base, self.local = _base_of(value_type), local
        self.mutable = value_type.mutable  # a += b then writes into a (see DualArrayType)
        name = f"AdjArray({value_type}, {index_type}, {scale_type})"
        super().__init__(name=f"Local{name}" if local else name)

    @property
    def iterator_type(self) -> DualArrayIteratorType:
        """``for v in a``: the first axis, by the iterator DualArrays use (len and a[i])."""
        return DualArrayIteratorType(self)

    def row_type(self) -> Any:
        """The type of ``a[i]`` for an integer i: an Adj, or an AdjArray of one less axis."""
        if self.ndim == 1:
            return AdjType(self.base, self.local)

        def row(t: Any) -> Any:
            if isinstance(t, DualArrayType):
                return t.row_type()
            return t.copy(ndim=t.ndim - 1, layout="C" if t.layout == "C" else "A")

        rows = (row(self.value_type), row(self.index_type), row(self.scale_type))
        return AdjArrayType(*rows, self.local)


class AdjDtypeType(types.Type):
    """``x.dtype`` of an AdjArray: tells ``np.zeros(m, dtype=x.dtype)`` to record on x's tape."""

    def __init__(self, base: Any = types.float64, local: bool = False) -> None:
        self.base, self.local = base, local
        name = "AdjDtype" if base == types.float64 else f"AdjDtype({base})"
        super().__init__(name=f"Local{name}" if local else name)


@register_model(AdjType)
class _AdjModel(models.StructModel):
    def __init__(self, dmm, fe_type):  # noqa: ANN001
        members = [
            ("value", fe_type.base),
            ("index", types.int64),
            ("scale", fe_type.base),
            ("tape", LOCAL_TAPE if fe_type.local else types.voidptr),
        ]
        super().__init__(dmm, fe_type, members)


@register_model(AdjArrayType)
class _AdjArrayModel(models.StructModel):
    def __init__(self, dmm, fe_type):  # noqa: ANN001
        members = [
            ("value", fe_type.value_type),
            ("index", fe_type.index_type),
            ("scale", fe_type.scale_type),
            ("tape", LOCAL_TAPE if fe_type.local else types.voidptr),
        ]
        super().__init__(dmm, fe_type, members)


lower_builtin("getiter", AdjArrayType)(getiter_first_axis)


@register_model(AdjDtypeType)
class _AdjDtypeModel(models.StructModel):
    def __init__(self, dmm, fe_type):  # noqa: ANN001
        tape = LOCAL_TAPE if fe_type.local else types.voidptr
        super().__init__(dmm, fe_type, [("tape", tape)])


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
        or tape not in TAPE_POINTERS
    ):
        return None
    result = AdjType(base, tape == LOCAL_TAPE)
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
    if _base_of(value) != _base_of(scale) or tape not in TAPE_POINTERS:
        return None
    result = AdjArrayType(value, index, scale, tape == LOCAL_TAPE)
    return result(value, index, scale, tape), _struct(result, ("value", "index", "scale", "tape"))


@intrinsic
def adj_dtype(typingctx, tape, like):  # noqa: ANN001
    """``dtype`` of the AdjArray ``like``, recording on ``tape``."""
    if tape not in TAPE_POINTERS or not isinstance(like, AdjArrayType):
        return None
    result = AdjDtypeType(like.base, like.local)

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
        if any(isinstance(t, AdjType) and t.local for t in argtypes):
            body = _local_node(rule, primal_fn, argtypes, a, b, env) + body
        body += [
            f"tape = x{a}.tape if x{a}.index >= 0 else x{b}.tape",
            f"i, s = link(tape, x{a}.index, x{a}.scale * c{a}, x{b}.index, x{b}.scale * c{b})",
            "return make_adj(y, i, s, tape)",
        ]
    names = ", ".join(f"x{i}" for i in range(len(argtypes)))
    source = f"def impl({names}):\n" + "".join(f"    {line}\n" for line in body)
    _impls[key] = generate(source, label=f"adjoint {rule.name}", **env)
    return _impls[key]


def _local_node(
    rule: rules.Rule, primal_fn: Any, argtypes: tuple[Any, ...], a: int, b: int, env: dict
) -> list[str]:
    """Source lines that record a node of two distinct live variables in local mode (see
    :func:`make_local_hessian`), returning before the first-order lines that follow them.

    In local mode an adjoint number's value and scale are ``Dual(1)``: their derivative along
    its own variable.  The operation is evaluated again on ``Dual(2)`` values, the tangent of
    input ``a`` in slot 0 and that of ``b`` in slot 1, so that the rule's partials, times the
    scales, are the node's partials with their derivatives along both parents: the node's
    local second derivatives, by the rule's own partials on Duals (no formula written here).
    Where one partial is zero with its derivatives, the result is a function of the other
    variable alone (no node), as :func:`link` does."""
    plain = tuple(DualType(2) if isinstance(t, AdjType) else t for t in argtypes)
    lines = [
        f"if x{a}.index >= 0 and x{b}.index >= 0 and x{a}.index != x{b}.index:",
        f"    w{a} = make_dual(x{a}.value.value, (x{a}.value.partials[0], 0.0))",
        f"    w{b} = make_dual(x{b}.value.value, (0.0, x{b}.value.partials[0]))",
    ]
    lines += [f"    w{i} = x{i}" for i in range(len(argtypes)) if i not in (a, b)]
    values = ", ".join(f"w{i}" for i in range(len(argtypes)))
    lines.append(f"    z = primal({values})")
    for i in (a, b):
        partial = rule.partials[i]
        if callable(partial):
            env[f"e{i}"] = scalars.partial_on_values(rule, i, plain)
            lines.append(f"    q{i} = e{i}({values}, z)")
        else:
            lines.append(f"    q{i} = {float(partial)!r}")
    lines += [
        f"    pa = make_dual(x{a}.scale.value, (x{a}.scale.partials[0], 0.0)) * q{a}",
        f"    pb = make_dual(x{b}.scale.value, (0.0, x{b}.scale.partials[0])) * q{b}",
        f"    tape = x{a}.tape",
        "    if is_zero(pa):",
        "        if is_zero(pb):",
        "            return make_adj(make_dual(z.value, (0.0,)), -1, 0.0, tape)",
        "        return make_adj(make_dual(z.value, (z.partials[1],)),"
        f" x{b}.index, make_dual(pb.value, (pb.partials[1],)), tape)",
        "    if is_zero(pb):",
        "        return make_adj(make_dual(z.value, (z.partials[0],)),"
        f" x{a}.index, make_dual(pa.value, (pa.partials[0],)), tape)",
        f"    node = record(tape, x{a}.index, pa, x{b}.index, pb)",
        "    return make_adj(make_dual(z.value, (1.0,)), node, make_dual(1.0, (0.0,)), tape)",
    ]
    env["is_zero"] = is_zero
    env["record"] = record
    return lines


def _adj_args(argtypes: tuple[Any, ...]) -> bool:
    return any(isinstance(t, AdjType) for t in argtypes) and all(
        isinstance(t, (AdjType, *_REAL)) for t in argtypes
    )


def _typer(func_label: str, rule_of: Any, primal_fn: Any, nin: int, elementwise: Any = None):  # noqa: ANN202, E501
    """The overload of a scalar function on Adj arguments; with ``elementwise`` (the ufunc or
    operator itself) also on AdjArrays, entry by entry through the scalar overload."""

    def select(*argtypes: Any) -> Any:
        if elementwise is not None and _array_args(argtypes):
            if elementwise in INPLACE_OPERATORS:
                return _inplace_impl(elementwise, argtypes)
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
    """An adjoint array among the operands, or a float array with an adjoint number
    (``data - mu``); every operand of a kind the entry-by-entry overloads take."""
    adjoint = any(isinstance(t, AdjArrayType) for t in argtypes) or (
        any(isinstance(t, AdjType) for t in argtypes)
        and any(isinstance(t, types.Array) for t in argtypes)
    )
    return adjoint and all(
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
    # the adjoint operand giving the tape and value type: an AdjArray, else an Adj number
    like = min(
        (i for i, t in enumerate(argtypes) if isinstance(t, (AdjArrayType, AdjType))),
        key=lambda i: not isinstance(argtypes[i], AdjArrayType),
    )
    names = ", ".join(f"x{i}" for i in range(len(argtypes)))
    reads = ", ".join(f"x{i}[idx]" if i in arrays else f"x{i}" for i in range(len(argtypes)))
    body = [f"shape = x{arrays[0]}.shape"]
    for i in arrays:
        body += [f"if x{i}.shape != shape:", "    raise ValueError('arrays of different shapes')"]
    body += [
        f"value = as_values(np.empty(shape), x{like})",
        "index = np.empty(shape, np.int64)",
        f"scale = as_values(np.empty(shape), x{like})",
        "for idx in np.ndindex(shape):",
        f"    r = fn({reads})",
        "    value[idx] = r.value",
        "    index[idx] = r.index",
        "    scale[idx] = r.scale",
        f"return make_adj_array(value, index, scale, x{like}.tape)",
    ]
    source = f"def impl({names}):\n" + "".join(f"    {line}\n" for line in body)
    return generate(
        source,
        label=f"adjoint array {label(fn)}",
        fn=fn,
        make_adj_array=make_adj_array,
        as_values=as_values,
    )


def _inplace_impl(op: Any, argtypes: tuple[Any, ...]) -> Any:
    """``a op= b`` with an adjoint operand: the result written back into an AdjArray ``a``
    entry by entry (a view's writes reach the array it views), refused into a float array,
    a new value for a scalar ``a``."""
    target = argtypes[0]
    if isinstance(target, types.Array):
        scalars.refuse(_LOST_IN_FLOAT_ARRAY)
    if not isinstance(target, AdjArrayType):
        return generate("def impl(x0, x1):\n    return op(x0, x1)\n", op=INPLACE_OPERATORS[op])
    return generate(
        "def impl(x0, x1):\n"
        "    r = op(x0, x1)\n"
        "    if r.shape != x0.shape:\n"
        "        raise ValueError('the result of an in-place operation does not have the shape "
        "of its target')\n"
        "    for idx in np.ndindex(x0.shape):\n"
        "        x0[idx] = r[idx]\n"
        "    return x0\n",
        op=INPLACE_OPERATORS[op],
    )


def _on_values_impl(fn: Any, argtypes: tuple[Any, ...]) -> Any:
    """A function of zero derivative (a comparison, floor) on the plain values alone, of
    adjoint numbers or arrays: its derivatives of every order are zero, so the Duals of
    second order are dropped too (the result is plain floats, as on floats)."""
    reads = [
        f"primal(x{i}.value)" if isinstance(t, (AdjType, AdjArrayType)) else f"x{i}"
        for i, t in enumerate(argtypes)
    ]
    names = ", ".join(f"x{i}" for i in range(len(argtypes)))
    source = f"def impl({names}):\n    return fn({', '.join(reads)})\n"
    return generate(source, fn=fn, primal=primal)


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


# np.argmax and its kin of an AdjArray: indices, from the plain values (nothing recorded)
for _fn in (np.argmax, np.argmin, np.argsort):
    overload_first(_fn)(_value_only(_fn, 1))
    overload_method(AdjArrayType, _fn.__name__)(_value_only(_fn, 1))


def _contiguous(t: Any, name: str) -> str:
    """Source of array ``name`` (of type ``t``) in C order: a DualArray's reshape copies a
    strided one itself; Numba's float reshape takes C-ordered arrays only."""
    return name if isinstance(t, DualArrayType) else f"np.ascontiguousarray({name})"


def _reshape(a, *shape):  # noqa: ANN001, ANN202
    """``a.reshape(...)``: the value, index and scale arrays reshaped alike (nothing recorded)."""
    if not isinstance(a, AdjArrayType) or not shape:
        return None
    if not all(isinstance(s, (types.Integer, types.BaseTuple)) for s in shape):
        return None
    value = _contiguous(a.value_type, "a.value")
    scale = _contiguous(a.scale_type, "a.scale")
    return generate(
        "def impl(a, *shape):\n"
        "    s = as_shape(shape)\n"
        f"    return make_adj_array({value}.reshape(s), np.ascontiguousarray(a.index).reshape(s), "
        f"{scale}.reshape(s), a.tape)\n",
        as_shape=as_shape,
        make_adj_array=make_adj_array,
    )


overload_method(AdjArrayType, "reshape")(_reshape)


def _ravel(a):  # noqa: ANN001, ANN202
    return (lambda a: a.reshape(-1)) if isinstance(a, AdjArrayType) else None


overload_method(AdjArrayType, "ravel")(_ravel)
overload_first(np.ravel)(_ravel)


@overload_first(np.reshape)
def _np_reshape(a, shape):  # noqa: ANN001
    return (lambda a, shape: a.reshape(shape)) if isinstance(a, AdjArrayType) else None


def _select(arg: str):  # noqa: ANN202
    """np.max and kin of an AdjArray (no axis): the entry the values pick, its node with it."""

    def typer(a):  # noqa: ANN001, ANN202
        if not isinstance(a, AdjArrayType):
            return None
        return generate(f"def impl(a):\n    f = a.reshape(-1)\n    return f[np.{arg}(f.value)]\n")

    return typer


for _fn, _arg in ((np.max, "argmax"), (np.min, "argmin"), (np.amax, "argmax"),
                  (np.amin, "argmin")):  # fmt: skip
    overload_first(_fn)(_select(_arg))
overload_method(AdjArrayType, "max")(_select("argmax"))
overload_method(AdjArrayType, "min")(_select("argmin"))


def _on_adj_array(impl: Any):  # noqa: ANN202
    def typer(a):  # noqa: ANN001, ANN202
        return impl if isinstance(a, AdjArrayType) else None

    return typer


def _var_impl(a):  # noqa: ANN001, ANN202
    d = a - np.mean(a)
    return np.sum(d * d) / a.size


def _std_impl(a):  # noqa: ANN001, ANN202
    return np.sqrt(np.var(a))


def _norm_impl(a):  # noqa: ANN001, ANN202
    return np.sqrt(np.sum(a * a))


for _fn, _impl in ((np.var, _var_impl), (np.std, _std_impl), (np.linalg.norm, _norm_impl)):
    overload_first(_fn)(_on_adj_array(_impl))
overload_method(AdjArrayType, "var")(_on_adj_array(_var_impl))
overload_method(AdjArrayType, "std")(_on_adj_array(_std_impl))


@overload_first(np.where)
def _where(condition, x, y):  # noqa: ANN001
    """Entry by entry from x or y, as condition says; operands of one shape, or scalars."""
    operands = (x, y)
    if not isinstance(condition, types.Array):
        return None
    if not any(isinstance(t, AdjArrayType) for t in operands):
        return None
    if not all(isinstance(t, (AdjType, AdjArrayType, types.Array, *_REAL)) for t in operands):
        return None
    like = "x" if isinstance(x, AdjArrayType) else "y"
    pick = [f"{n}[idx]" if isinstance(t, (AdjArrayType, types.Array)) else n
            for n, t in zip(("x", "y"), operands)]  # fmt: skip
    return generate(
        "def impl(condition, x, y):\n"
        f"    out = np.empty(condition.shape, dtype=adj_dtype({like}.tape, {like}))\n"
        "    for idx in np.ndindex(condition.shape):\n"
        f"        out[idx] = {pick[0]} if condition[idx] else {pick[1]}\n"
        "    return out\n",
        adj_dtype=adj_dtype,
    )


@overload_first(np.outer)
def _outer(a, b):  # noqa: ANN001
    """Products of every pair of entries, one node each where both are live."""
    operands = (a, b)
    if not any(isinstance(t, AdjArrayType) for t in operands):
        return None
    if not all(isinstance(t, (AdjArrayType, types.Array)) for t in operands):
        return None
    like = "a" if isinstance(a, AdjArrayType) else "b"
    return generate(
        "def impl(a, b):\n"
        "    fa = a.ravel()\n"
        "    fb = b.ravel()\n"
        f"    out = np.empty((fa.size, fb.size), dtype=adj_dtype({like}.tape, {like}))\n"
        "    for i in range(fa.size):\n"
        "        for j in range(fb.size):\n"
        "            out[i, j] = fa[i] * fb[j]\n"
        "    return out\n",
        adj_dtype=adj_dtype,
    )


@overload_first(np.interp)
def _interp(x, xp, fp):  # noqa: ANN001
    """By the forward engine's one-point interpolation, on adjoint numbers (x and fp)."""
    adjoint = (AdjType, AdjArrayType)
    if not any(isinstance(t, adjoint) for t in (x, fp)):
        return None
    if isinstance(xp, adjoint):
        scalars.refuse(
            "np.interp with reverse-mode values in xp (the sample points) is not supported: "
            "differentiate with respect to x or fp"
        )
    if not isinstance(xp, types.Array) or not isinstance(fp, (AdjArrayType, types.Array)):
        return None
    if isinstance(x, (AdjType, *_REAL)):
        return generate(
            "def impl(x, xp, fp):\n    return interp_one(x, primal(x), xp, fp)\n",
            interp_one=interp_one,
            primal=primal,
        )
    if not isinstance(x, (AdjArrayType, types.Array)) or x.ndim != 1:
        return None
    like = "x" if isinstance(x, AdjArrayType) else "fp"
    return generate(
        "def impl(x, xp, fp):\n"
        "    xv = primal(x)\n"
        f"    out = np.empty(xv.size, dtype=adj_dtype({like}.tape, {like}))\n"
        "    for i in range(xv.size):\n"
        "        out[i] = interp_one(x[i], xv[i], xp, fp)\n"
        "    return out\n",
        interp_one=interp_one,
        primal=primal,
        adj_dtype=adj_dtype,
    )


@overload_first(np.clip)
def _clip(a, a_min, a_max):  # noqa: ANN001
    """By np.maximum and np.minimum, whose rules give the derivative (zero where clipped)."""
    if isinstance(a, AdjArrayType):
        return lambda a, a_min, a_max: np.minimum(np.maximum(a, a_min), a_max)
    return None


def _prod_impl(a):  # noqa: ANN001, ANN202
    p = zero_adj(a) + 1.0
    f = a.reshape(-1)
    for i in range(f.size):
        p = p * f[i]
    return p


def _cumsum_impl(a):  # noqa: ANN001, ANN202
    f = a.reshape(-1)
    out = np.empty(f.size, dtype=a.dtype)
    s = zero_adj(a)
    for i in range(f.size):
        s = s + f[i]
        out[i] = s
    return out


def _sort_impl(a):  # noqa: ANN001, ANN202
    return a[np.argsort(a.value)]


for _fn, _impl in ((np.prod, _prod_impl), (np.cumsum, _cumsum_impl)):
    overload_first(_fn)(_on_adj_array(_impl))
    overload_method(AdjArrayType, _fn.__name__)(_on_adj_array(_impl))


@overload_first(np.sort)
def _sort(a):  # noqa: ANN001
    if not isinstance(a, AdjArrayType):
        return None
    if a.ndim != 1:
        scalars.refuse("np.sort of an adjoint array sorts 1-D arrays only; sort each row")
    return _sort_impl


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
        "        g0 = adj[g]\n" + loads + f"        if g0 == 0.0 and not ({live}):\n"
        "            continue\n"
        "        for e in range(2 * k, 2 * k + 2):\n"
        f"            c = e * {w}\n"
        f"            p = parents[e] * {w}\n"
        "            c0 = partials[c]\n"
        "            if g0 != 0.0:\n"
        "                adj[p] += c0 * g0\n" + updates,
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


# --- Hessians from one recording: local second derivatives --------------------------------------


def local_input(point, tape):  # noqa: ANN001, ANN201
    """What f receives for a local-mode recording: variables 0 .. n-1 whose values and scales
    are ``Dual(1)`` along the variable itself (value tangent 1, scale 1 with tangent 0)."""


@overload(local_input)
def _local_input(point, tape):  # noqa: ANN001
    if point.ndim > 0:

        def array(point, tape):  # noqa: ANN001, ANN202
            index = np.arange(point.size).reshape(point.shape)
            value = make_dual_array(readonly(point), readonly(np.ones(point.shape + (1,))), 1)
            scale = make_dual_array(
                readonly(np.ones(point.shape)), readonly(np.zeros(point.shape + (1,))), 1
            )
            return make_adj_array(value, readonly(index), scale, local_tape_pointer(tape))

        return array
    return lambda point, tape: make_adj(
        make_dual(point[()], (1.0,)), 0, make_dual(1.0, (0.0,)), local_tape_pointer(tape)
    )


def local_output(y):  # noqa: ANN001, ANN201
    """``(index, scale, its derivative)`` of f's scalar output in local mode; index -1 for an
    output that does not depend on x."""


@overload(local_output)
def _local_output(y):  # noqa: ANN001
    if isinstance(y, AdjType) and y.local:
        return lambda y: (y.index, y.scale.value, y.scale.partials[0])
    if isinstance(y, (AdjType, *_REAL)):  # a constant
        return lambda y: (-1, 0.0, 0.0)
    if isinstance(y, (AdjArrayType, types.Array, types.BaseTuple)):
        scalars.refuse(_NOT_SCALAR.format(f"an array or tuple ({y})"))
    return None


@_cached
def local_hessian_sweeps(n, count, parents, partials, out, work, block):  # noqa: ANN001, ANN201
    """H (n, n) from a local-mode recording (``partials``: value, derivative along the first
    parent and along the second, of each node's two partials) and its output ``out`` =
    (index, scale, the scale's derivative): per block of ``block`` columns of the identity, a
    forward sweep of the tangents ``T`` and a reverse one of the adjoints' tangents ``A``:
    ``A[p] += c_p * A[node] + adj[node] * (h_pa * T[a] + h_pb * T[b])`` for each parent p of a
    node with parents a, b.  Products with a zero factor (tangent or adjoint) are skipped, so a
    zero derivative stays zero through an infinite local partial, as in forward mode.

    T and A are (variables, ``block``) arrays in the scratch ``work`` (grown when short),
    indexed by entry: a view of a row per node reference-counted the buffer (80 ns a node).
    Returns H, exactly symmetric (the upper triangle mirrored), and work."""
    o, s0, s1 = out
    N = n + count
    if block <= 0:  # all columns at once, up to 2**20 entries (8 MB) in each of T and A
        block = min(n, max(1, 2**20 // N))
    need = N * (2 * block + 1)
    if work.size < need:
        work = np.empty(need)
    T = work[: N * block].reshape((N, block))
    A = work[N * block : 2 * N * block].reshape((N, block))
    adj = work[2 * N * block : need]
    h = np.zeros((n, n))
    if o < 0:
        return h, work
    adj[:] = 0.0
    adj[o] = s0
    for k in range(count - 1, -1, -1):
        g = adj[n + k]
        if g != 0.0:
            adj[parents[2 * k]] += partials[6 * k] * g
            adj[parents[2 * k + 1]] += partials[6 * k + 3] * g
    for c0 in range(0, n, block):
        wc = min(block, n - c0)
        T[:n, :] = 0.0
        for j in range(wc):
            T[c0 + j, j] = 1.0
        for k in range(count):
            a, b = parents[2 * k], parents[2 * k + 1]
            ca, cb = partials[6 * k], partials[6 * k + 3]
            t = n + k
            for j in range(block):
                x, y = T[a, j], T[b, j]
                T[t, j] = (ca * x if x != 0.0 else 0.0) + (cb * y if y != 0.0 else 0.0)
        A[:, :] = 0.0
        if s1 != 0.0:
            for j in range(block):
                if T[o, j] != 0.0:
                    A[o, j] = s1 * T[o, j]
        for k in range(count - 1, -1, -1):
            g = adj[n + k]
            a, b, t = parents[2 * k], parents[2 * k + 1], n + k
            ca, haa, hab = partials[6 * k], partials[6 * k + 1], partials[6 * k + 2]
            cb, hba, hbb = partials[6 * k + 3], partials[6 * k + 4], partials[6 * k + 5]
            if g != 0.0:
                for j in range(block):
                    u, x, y = A[t, j], T[a, j], T[b, j]
                    ga = (haa * x if x != 0.0 else 0.0) + (hab * y if y != 0.0 else 0.0)
                    gb = (hba * x if x != 0.0 else 0.0) + (hbb * y if y != 0.0 else 0.0)
                    A[a, j] += (ca * u if u != 0.0 else 0.0) + g * ga
                    A[b, j] += (cb * u if u != 0.0 else 0.0) + g * gb
            else:
                for j in range(block):
                    u = A[t, j]
                    if u != 0.0:
                        A[a, j] += ca * u
                        A[b, j] += cb * u
        for i in range(n):
            for j in range(wc):
                h[i, c0 + j] = A[i, j]
    for i in range(n):
        for j in range(i + 1, n):
            h[j, i] = h[i, j]
    return h, work


def make_local_hessian(f):  # noqa: ANN001, ANN201
    """A driver ``(x, parents, partials, work, block, *args) -> (H, parents, partials, work)``:
    one recording of f in local mode, then :func:`local_hessian_sweeps`.

    Forward over reverse records f once per chunk of K columns; but the tape's structure and
    its partials' values are the same in every chunk, and their tangents are linear in the
    seed.  In local mode (see :func:`_local_node`) each node also records the derivatives of
    its two partials along its two parents (one recording, on ``Dual(1)`` and, at the nodes,
    ``Dual(2)``), from which sweeps over the tape give every column: at n = 100 (loop
    Rosenbrock) a fraction of the K = 8 passes' time, the sweeps' loops over a block of
    columns being vectorised."""

    @numba.njit
    def local_hessian(x, parents, partials, work, block, *args):  # noqa: ANN001, ANN202
        n = x.size
        if partials.size < 3 * parents.size:
            partials = np.empty(3 * parents.size)
        tape = Tape(n, parents, partials, 3)
        y = f(local_input(x, tape), *args)
        h, work = local_hessian_sweeps(
            n, tape.n, tape.parents, tape.partials, local_output(y), work, block
        )
        return h, tape.parents, tape.partials, work

    return local_hessian


#: Tangent directions per pass of a Hessian by the forward-over-reverse driver (n inputs take
#: ceil(n / K) recordings and sweeps; see the module's docstring for the measurement): what
#: ``da.hessian`` ran before it recorded local second derivatives once.
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
            elif kind == "local_hessian":
                made = make_local_hessian(for_duals(f))
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
        if not cache.enabled() or not cache.raised_while_loading(error):
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
    except (errors.TypingError, AttributeError) as exc:
        # AttributeError: one of Numba's own typing templates failing on an AdjArray (a cache
        # entry that would not load was handled in _call)
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
            "ufuncs, operators, slices, reshape, sum, mean, var, std, max, min, prod, cumsum, "
            "sort, clip, where, interp, outer, dot and @; use mode='forward', or "
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


def hessian(f: Any, point: np.ndarray, block: int, args: tuple[Any, ...]) -> Any:
    """H (n, n) of a scalar f from one recording of its local second derivatives, swept for
    ``block`` columns at a time (0: as many as 8 MB of tangents hold), exactly symmetric (see
    :func:`make_local_hessian`)."""
    return run(f, "local_hessian", point, block, *args)


def hvp(f: Any, point: np.ndarray, directions: np.ndarray, K: int, args: tuple[Any, ...]) -> Any:
    """``H @ directions`` (shape (n, m)) of a scalar f at ``point`` by forward over reverse:
    one recording on Duals of K tangents and one sweep per chunk of K directions."""
    directions = np.ascontiguousarray(directions, dtype=np.float64)
    return run(f, ("hvp", K), point, directions, False, *args)
