"""Whole-array operators and ufuncs on DualArrays inside compiled code, with broadcasting.

Nothing here knows a derivative: an array operation is a loop over the broadcast output that
applies the scalar overload of the same function (generated from :mod:`dualad.rules` by
:mod:`.scalars`) to one element of each operand.  For ``x * c`` with x a 2-D DualArray and c a
float 1-D array, at K = 2 the loop that :func:`elementwise` lowers reads, as Python::

    for i0 in range(n0):
        for i1 in range(n1):
            e0 = make_dual(v0[i0 * s0_0, i1 * s0_1], (p0[i0 * s0_0, i1 * s0_1, 0], ...))
            e1 = v1[i1 * s1_1]
            y = fn(e0, e1)          # the scalar rule of multiply
            ...

where ``s<operand>_<axis>`` is 0 on an axis of extent 1 (NumPy's broadcasting) and 1 otherwise.
An operand may be a DualArray, a float array, a Dual or a real number; the result is a DualArray
whenever a Dual takes part, so a float array times a DualArray is a DualArray.  Comparisons and
value-only functions (``np.floor``, ``np.sign``) act on the values and return plain arrays.

Cost inside a loop (``d = x[i] - x[j]`` per pair): the result is one allocation (values and
partials in one block, :func:`.dualtypes.new_dual_array`).  The rest was Numba's reference
counting, atomic on this path: an implementation written in Python binds each operand to a
variable (a count on each of a DualArray's two arrays, released at its end), and Numba's pruning
of such pairs gives up when a path that may raise (a broadcast mismatch) lies between them.  So
the loop is an intrinsic, lowered in the caller with its operands borrowed, and the drivers hand
f its input without a reference (:func:`.dualtypes.borrowed`).  Per pair of the Lennard-Jones
loop of ``benchmarks/array_expressions.py`` there remain ``d``'s allocation and its release
(``np.sum(d * d)`` makes no array, see :class:`FuseSum`).  Inlining the implementations into
the caller's Numba IR, the measured alternative, typed every implementation twice (first-call
CPU +18% on bratu_mixed, +60% on lj_mixed); the intrinsic compiles less than they did.
"""

from __future__ import annotations

import builtins
import operator
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
from numba import types
from numba.core import cgutils, errors
from numba.core.rewrites import Rewrite, register_rewrite
from numba.extending import intrinsic

from .. import rules
from .dualtypes import (
    DualArrayType,
    DualType,
    generate,
    numpy_ufuncs,
    overload_first,
    overload_scalar,
)
from .scalars import _COMPARISONS, _OPERATORS, _names, refuse

_REAL = (types.Float, types.Integer, types.Boolean)

_LOST_IN_FLOAT_ARRAY = (
    "an in-place operation would write Duals into a float array and drop their derivative. "
    "Allocate the array from the input (np.zeros_like(x), np.zeros(m, dtype=x.dtype)), or "
    "write the result to a new name: y = y + ...; or, to leave the function unchanged, "
    "differentiate dualad.numba.promote(f)."
)
_WRITE_INTO_INPUT = (
    "the function updates its input array in place. In compiled code the input is read-only "
    "(its buffers are shared between passes); copy it first, x = x.copy()."
)

_VALUE_ONLY_ON_VALUES = (
    "np.{name} of a DualArray is not supported in compiled code; take it of the values, "
    "np.{name}(da.primal(x)) (its derivative is zero), or use an operator such as x > 0."
)


def _kind(t: Any) -> str | None:
    if isinstance(t, DualArrayType):
        return "DA"
    if isinstance(t, types.Array):
        return "A"
    if isinstance(t, DualType):
        return "D"
    if isinstance(t, _REAL):
        return "R"
    return None


def applies(argtypes: tuple[Any, ...]) -> bool:
    """True when an array and a Dual (array or scalar) meet, every operand of a known kind."""
    kinds = [_kind(t) for t in argtypes]
    if None in kinds:
        return False
    has_array = any(k in ("DA", "A") for k in kinds)
    has_dual = any(k in ("DA", "D") for k in kinds)
    if has_array and any(isinstance(t, DualType) and t.base != types.float64 for t in argtypes):
        refuse(NESTED_WITH_ARRAY)  # else Numba's own loop would store Duals in a float array
    return has_array and has_dual


#: The refusal of an array operation on second-order Duals: the nested-Dual Hessian cannot
#: compile such code, and da.hessian then falls back (a NotCompilable, not a DualError).
NESTED_WITH_ARRAY = (
    "an array operation met a second-order Dual (da.hessian or da.hvp): the compiled "
    "second-order engine takes loops over elements only. With engine='auto' such a function's "
    "Hessian runs on the NumPy engine; or write the array expression as a loop"
)


def _K(argtypes: tuple[Any, ...]) -> int:
    return next(t.K for t in argtypes if isinstance(t, (DualType, DualArrayType)))


_impls: dict[Any, Callable[..., Any]] = {}


def elementwise_impl(
    fn: Any,
    argtypes: tuple[Any, ...],
    inplace: bool = False,
    values_only: bool | str = False,
    params: str | None = None,
) -> Callable[..., Any]:
    """The broadcast loop applying ``fn`` to elements of ``argtypes`` (see the module docstring).

    ``inplace`` writes into the first operand (a DualArray) and returns it; ``values_only``
    applies ``fn`` to the values and returns a plain array (comparisons, zero derivative).
    ``values_only="dual"`` returns those values as a DualArray with zero partials.
    ``params`` names the implementation's parameters as the overloaded function does.
    """
    key = (fn, argtypes, inplace, values_only, params)
    if key in _impls:
        return _impls[key]
    names = _names(len(argtypes))
    body = f"    {names}, = {params}\n" if params else ""
    source = f"def impl({params or names}):\n{body}    return op({names})\n"
    op = elementwise(fn, len(argtypes), inplace, values_only)
    _impls[key] = generate(source, label="array operation", op=op)
    return _impls[key]


_intrinsics: dict[Any, Any] = {}


def _element_type(t: Any, values: bool) -> Any:
    """The type of one element of an operand as the scalar rule sees it (the value of a Dual
    when ``values``)."""
    if isinstance(t, DualArrayType):
        return types.float64 if values else DualType(t.K)
    if isinstance(t, types.Array):
        return t.dtype
    if isinstance(t, DualType) and values:
        return t.base
    return t


def elementwise(
    fn: Any, nin: int, inplace: bool = False, values_only: bool | str = False, summed: bool = False
) -> Any:
    """The intrinsic applying ``fn`` elementwise to ``nin`` operands (see the module docstring),
    lowered as one loop nest in its caller; with ``summed``, the sum of those results (a Dual),
    ``np.sum(a * b)`` without the array ``a * b`` (see :class:`FuseSum`).

    An intrinsic binds no operand to a variable of its own: a generated implementation
    did, and each binding was an atomic reference count on each array of each DualArray,
    which Numba's pruning keeps when an operation that may raise lies between the count and
    its release (measured: about half the time of ``d = x[i] - x[j]`` in a pair loop).
    """
    key = (fn, nin, inplace, values_only, summed)
    if key in _intrinsics:
        return _intrinsics[key]

    def typer(typingctx, argtypes):  # noqa: ANN001, ANN202
        if not applies(argtypes):
            return None
        elements = tuple(_element_type(t, bool(values_only)) for t in argtypes)
        rule = typingctx.resolve_function_type(typingctx.resolve_value_type(fn), elements, {})
        if rule is None:
            return None
        D = max(t.ndim for t in argtypes if isinstance(t, (types.Array, DualArrayType)))
        K = _K(argtypes)
        if summed:
            result = DualType(K)
        elif inplace:
            result = argtypes[0]
        elif values_only is True:
            result = types.Array(numba.from_dtype(_values_dtype(fn, argtypes)), D, "C")
        else:
            result = DualArrayType(
                types.Array(types.float64, D, "C"), types.Array(types.float64, D + 1, "C"), K
            )
        return result(*argtypes), _codegen(fn, rule, inplace, values_only, summed)

    names = _names(nin)
    source = f"def op(typingctx, {names}):\n    return typer(typingctx, ({names},))\n"
    env: dict[str, Any] = {"typer": typer}
    exec(compile(source, "<dualad array operation>", "exec"), env)  # noqa: S102
    _intrinsics[key] = intrinsic(env["op"])
    return _intrinsics[key]


_BROADCAST_ERROR = "operands could not be broadcast together (dualad: a DualArray operation)"
_INPLACE_ERROR = (
    "the result of an in-place operation does not have the shape of its target "
    "(dualad: a DualArray operation)"
)


def _codegen(
    fn: Any, rule: Any, inplace: bool, values_only: bool | str, summed: bool
) -> Callable[..., Any]:
    """Lowering of :func:`elementwise` for one signature of the scalar ``rule``."""

    def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
        from numba.np.arrayobj import _empty_nd_impl, load_item, make_array, store_item

        from .dualtypes import allocate_dual_array

        intp = types.intp
        zero = context.get_constant(intp, 0)
        one = context.get_constant(intp, 1)
        argtypes = sig.args
        D = max(t.ndim for t in argtypes if isinstance(t, (types.Array, DualArrayType)))
        operands = []  # (kind, type, value array, partials array or None, scalar)
        for t, v in zip(argtypes, args):
            if isinstance(t, DualArrayType):
                pair = cgutils.create_struct_proxy(t)(context, builder, value=v)
                values = make_array(t.value_type)(context, builder, pair.value)
                partials = make_array(t.partials_type)(context, builder, pair.partials)
                operands.append(("DA", t, values, partials, None))
            elif isinstance(t, types.Array):
                operands.append(("A", t, make_array(t)(context, builder, v), None, None))
            else:
                operands.append(("S", t, None, None, v))
        shapes = {}
        for j, (kind, t, values, _, _) in enumerate(operands):
            if kind != "S":
                nd = t.value_type.ndim if kind == "DA" else t.ndim
                shapes[j] = cgutils.unpack_tuple(builder, values.shape, nd)
        extents = []
        bad = cgutils.false_bit
        for axis in range(D):
            n = None
            for shape in shapes.values():
                a = axis - (D - len(shape))
                if a < 0:
                    continue
                e = shape[a]
                if n is None:
                    n = e
                    continue
                fits = builder.or_(builder.icmp_signed("==", n, e),
                                   builder.icmp_signed("==", e, one))  # fmt: skip
                bad = builder.or_(bad, builder.and_(builder.not_(fits),
                                                    builder.icmp_signed("!=", n, one)))  # fmt: skip
                n = builder.select(builder.icmp_signed("==", n, one), e, n)
            extents.append(n)
        with builder.if_then(bad, likely=False):
            context.call_conv.return_user_exc(builder, ValueError, (_BROADCAST_ERROR,))
        result = sig.return_type
        if summed:  # in the order of np.sum of the array: C order, from 0.0
            total = [cgutils.alloca_once_value(builder, context.get_constant(types.float64, 0.0))
                     for _ in range(result.K + 1)]  # fmt: skip
            out = None
        elif inplace:
            target = operands[0]
            differs = cgutils.false_bit
            for n, e in zip(extents, shapes[0]):
                differs = builder.or_(differs, builder.icmp_signed("!=", n, e))
            if len(shapes[0]) != D:
                differs = cgutils.true_bit
            with builder.if_then(differs, likely=False):
                context.call_conv.return_user_exc(builder, ValueError, (_INPLACE_ERROR,))
            out_values, out_partials = target[2], target[3]
            out_vtype, out_ptype = result.value_type, result.partials_type
            out = args[0]
            context.nrt.incref(builder, result, out)  # returned: a new reference
        elif values_only is True:
            out_values = _empty_nd_impl(context, builder, result, extents)
            out_partials = None
            out_vtype, out_ptype = result, None
            out = out_values._getvalue()
        else:
            out = allocate_dual_array(context, builder, result, extents, values_only == "dual")
            pair = cgutils.create_struct_proxy(result)(context, builder, value=out)
            out_values = make_array(result.value_type)(context, builder, pair.value)
            out_partials = make_array(result.partials_type)(context, builder, pair.partials)
            out_vtype, out_ptype = result.value_type, result.partials_type
        implementation = context.get_function(context.typing_context.resolve_value_type(fn), rule)
        K = context.get_constant(intp, getattr(result, "K", 0))

        def pointer(array_type, array, shape, index):  # noqa: ANN001, ANN202
            return _pointer(context, builder, array_type, array, shape, index)

        with cgutils.loop_nest(builder, extents, context.get_value_type(intp)) as index:
            elements = []
            for j, (kind, t, values, partials, scalar) in enumerate(operands):
                if kind == "S":
                    if values_only and isinstance(t, DualType):
                        scalar = cgutils.create_struct_proxy(t)(context, builder, scalar).value
                    elements.append(scalar)
                    continue
                shape = shapes[j]
                lead = [  # index 0 on an axis of extent 1: NumPy's broadcasting
                    builder.select(builder.icmp_signed("==", e, one), zero, i)
                    for e, i in zip(shape, index[D - len(shape) :])
                ]
                vtype = t.value_type if kind == "DA" else t
                value = load_item(context, builder, vtype, pointer(vtype, values, shape, lead))
                if kind == "A" or values_only:
                    elements.append(value)
                    continue
                ptype, pshape = t.partials_type, [*shape, context.get_constant(intp, t.K)]
                items = [
                    load_item(context, builder, ptype, pointer(ptype, partials, pshape, [*lead, k]))
                    for k in (context.get_constant(intp, k) for k in range(t.K))
                ]
                dual = cgutils.create_struct_proxy(DualType(t.K))(context, builder)
                dual.value = value
                dual.partials = context.make_tuple(builder, DualType(t.K).partials_type, items)
                elements.append(dual._getvalue())
            y = implementation(builder, elements)
            at = list(index)
            if summed:
                dual_type = DualType(result.K)
                y = context.cast(builder, y, rule.return_type, dual_type)
                dual = cgutils.create_struct_proxy(dual_type)(context, builder, value=y)
                parts = [
                    dual.value,
                    *(builder.extract_value(dual.partials, k) for k in range(result.K)),
                ]
                for cell, part in zip(total, parts):
                    builder.store(builder.fadd(builder.load(cell), part), cell)
            elif values_only:
                y = context.cast(builder, y, rule.return_type, out_vtype.dtype)
                where = pointer(out_vtype, out_values, extents, at)
                store_item(context, builder, out_vtype, y, where)
            else:
                dual_type = DualType(result.K)
                y = context.cast(builder, y, rule.return_type, dual_type)  # a real: zero partials
                dual = cgutils.create_struct_proxy(dual_type)(context, builder, value=y)
                where = pointer(out_vtype, out_values, extents, at)
                store_item(context, builder, out_vtype, dual.value, where)
                for k in range(result.K):
                    item = builder.extract_value(dual.partials, k)
                    index_k = [*at, context.get_constant(intp, k)]
                    where = pointer(out_ptype, out_partials, [*extents, K], index_k)
                    store_item(context, builder, out_ptype, item, where)
        if summed:
            dual = cgutils.create_struct_proxy(result)(context, builder)
            dual.value = builder.load(total[0])
            items = [builder.load(cell) for cell in total[1:]]
            dual.partials = context.make_tuple(builder, result.partials_type, items)
            return dual._getvalue()
        return out

    return codegen


def _pointer(context, builder, array_type, array, shape, index):  # noqa: ANN001, ANN202
    """The pointer to ``array[index]`` (in bounds: broadcast indices)."""
    strides = cgutils.unpack_tuple(builder, array.strides, array_type.ndim)
    return cgutils.get_item_pointer2(
        context, builder, array.data, shape, strides, array_type.layout, index,
        wraparound=False,
    )  # fmt: skip


def _values_dtype(fn: Any, argtypes: tuple[Any, ...]) -> Any:
    """The NumPy dtype of ``fn`` on float values (bool for a comparison, float for floor)."""
    return np.asarray(fn(*[np.float64(1.0)] * len(argtypes))).dtype


def _rounded(a, decimals=0):  # noqa: ANN001, ANN202
    """np.round of a DualArray: the rounded values, zero partials (as np.rint's ufunc gives)."""
    if not isinstance(a, DualArrayType):
        return None
    return generate(
        "def impl(a, decimals=0):\n"
        "    return make_dual_array(np.round(a.value, decimals), np.zeros_like(a.partials), "
        f"{a.K})\n"
    )


overload_first(np.round)(_rounded)
overload_first(np.around)(_rounded)


def _array_typer(fn: Any, nin: int, values_only: bool = False) -> Callable[..., Any]:
    """A typer of ``nin`` arguments taking over when an array and a Dual meet."""

    def select(*argtypes: Any) -> Any:
        if not applies(argtypes):
            return None
        if values_only:
            return elementwise_impl(fn, tuple(argtypes), values_only=True)
        if isinstance(fn, np.ufunc) and rules.lookup(fn) is None and rules.is_zero_derivative(fn):
            # Numba's array-expression rewrite fuses a ufunc call whose result is a plain array,
            # and cannot read a DualArray operand then: the result is a DualArray (zero partials)
            if _values_dtype(fn, argtypes) != np.float64:
                refuse(_VALUE_ONLY_ON_VALUES.format(name=fn.__name__))
            return elementwise_impl(fn, tuple(argtypes), values_only="dual")
        return elementwise_impl(fn, tuple(argtypes))

    source = f"def typer({_names(nin)}):\n    return select({_names(nin)})\n"
    return generate(source, "typer", select=select)


def _inplace_typer(fn: Any) -> Callable[..., Any]:
    """``a op= b``: written into a DualArray ``a``; refused into a float array given Duals."""

    def typer(x0, x1):  # noqa: ANN001, ANN202
        argtypes = (x0, x1)
        if not applies(argtypes):
            return None
        if isinstance(x0, types.Array):
            refuse(_LOST_IN_FLOAT_ARRAY)
        if not isinstance(x0, DualArrayType):  # a scalar updated by an array: a new array
            return elementwise_impl(fn, argtypes)
        if not x0.value_type.mutable:
            refuse(_WRITE_INTO_INPUT)
        return elementwise_impl(fn, argtypes, inplace=True)

    return typer


#: Each in-place operator and the operator it applies before writing the result back.
INPLACE_OPERATORS = {
    operator.iadd: operator.add, operator.isub: operator.sub, operator.imul: operator.mul,
    operator.itruediv: operator.truediv, operator.ipow: operator.pow, operator.imod: operator.mod,
}  # fmt: skip
_NOT_ELEMENTWISE_ON_ARRAYS = (builtins.min, builtins.max)

_registered: set[Any] = set()


def _overload(func: Any, typer: Callable[..., Any]) -> None:
    if func not in _registered:
        _registered.add(func)
        overload_scalar(func)(typer)


def register_table() -> None:
    """Overload every ufunc, operator and registered function of the table for arrays."""
    for u in numpy_ufuncs():
        if u.nin in (1, 2):
            _overload(u, _array_typer(u, u.nin))
    for key, rule in list(rules.RULES.items()):
        if not isinstance(key, np.ufunc) and rule.func is key:
            _overload(key, _array_typer(key, rule.nin))
    for op, ufunc in _OPERATORS.items():
        if op in _NOT_ELEMENTWISE_ON_ARRAYS:
            continue
        if op in INPLACE_OPERATORS:
            _overload(op, _inplace_typer(INPLACE_OPERATORS[op]))
        else:
            _overload(op, _array_typer(op, ufunc.nin))
    for op in _COMPARISONS:
        if op is operator.ifloordiv:
            continue
        _overload(op, _array_typer(op, 2, values_only=True))


# --- np.sum of an elementwise operation, without its array ---------------------------------------

#: Operators whose array result a sum may take without making it (binary ones, as ``a * b``).
_FUSABLE_BINOPS = (operator.add, operator.sub, operator.mul, operator.truediv, operator.pow)


@register_rewrite("after-inference")
class FuseSum(Rewrite):
    """``np.sum(a * b)`` as one loop that sums ``a[i] * b[i]`` (:func:`elementwise` with
    ``summed``) when ``a * b`` is a DualArray used by nothing else: in a pair loop, the product
    was an allocation and two atomic releases per pair (``np.sum(d * d)``).

    It rewrites typed Numba IR of every function compiled in the process, so it matches only a
    temporary DualArray (a ``$`` name, used once) made by an operator of ``_FUSABLE_BINOPS`` or
    a ufunc with a rule, right before the sum, its operands unchanged in between; the sum is
    then in the same order as np.sum of the array (same rounding).
    """

    def __init__(self, state: Any) -> None:
        self.typingctx = state.typingctx

    def match(self, func_ir: Any, block: Any, typemap: Any, calltypes: Any) -> bool:
        self.block, self.typemap, self.calltypes = block, typemap, calltypes
        body = block.body
        for i, stmt in enumerate(body):
            found = self._candidate(func_ir, body, i, stmt)
            if found is not None:
                self.found = found
                return True
        return False

    def _candidate(self, func_ir: Any, body: list[Any], i: int, stmt: Any) -> Any:
        from numba.core import ir

        if not (isinstance(stmt, ir.Assign) and isinstance(stmt.value, ir.Expr)):
            return None
        call = stmt.value
        if call.op != "call" or len(call.args) != 1 or call.kws or call.vararg:
            return None
        fnty = self.typemap.get(call.func.name)
        if getattr(fnty, "typing_key", None) is not np.sum:
            return None
        temp = call.args[0]
        if not temp.name.startswith("$") or not isinstance(self.typemap[temp.name], DualArrayType):
            return None
        if not isinstance(self.typemap[stmt.target.name], DualType):
            return None
        for j in range(i - 1, -1, -1):  # the statement making the temporary
            made = body[j]
            if isinstance(made, ir.Assign) and made.target.name == temp.name:
                break
        else:
            return None
        expr = made.value
        if not isinstance(expr, ir.Expr):
            return None
        if expr.op == "binop" and expr.fn in _FUSABLE_BINOPS:
            fn, operands = expr.fn, [expr.lhs, expr.rhs]
        elif expr.op == "call" and not expr.kws and not expr.vararg:
            fn = getattr(self.typemap.get(expr.func.name), "typing_key", None)
            if not isinstance(fn, np.ufunc) or rules.lookup(fn) is None:
                return None
            operands = list(expr.args)
            if len(operands) != fn.nin:  # an output array among the arguments
                return None
        else:
            return None
        names = {v.name for v in operands}
        for between in body[j + 1 : i]:  # the operands keep their values up to the sum
            if isinstance(between, ir.Assign) and between.target.name in names:
                return None
        if _uses(func_ir, temp.name) != 1:
            return None
        argtypes = tuple(self.typemap[v.name] for v in operands)
        if not applies(argtypes):
            return None
        fused = elementwise(fn, len(operands), summed=True)
        self.typingctx.refresh()  # a new intrinsic registers its typing template
        fused_type = self.typingctx.resolve_value_type(fused)
        try:
            sig = fused_type.get_call_type(self.typingctx, argtypes, {})
        except errors.TypingError:  # the sum is left as it was typed
            return None
        if sig is None or sig.return_type != self.typemap[stmt.target.name]:
            return None
        return j, i, fused, fused_type, sig, operands

    def apply(self) -> Any:
        from numba.core import ir

        j, i, fused, fused_type, sig, operands = self.found
        block = self.block
        stmt = block.body[i]
        loc, scope = stmt.loc, block.scope
        name = scope.redefine("$fused_sum", loc)
        self.typemap[name.name] = fused_type
        call = ir.Expr.call(name, operands, (), loc)
        self.calltypes[call] = sig
        body = list(block.body)
        body[i] = ir.Assign(call, stmt.target, stmt.loc)
        body.insert(i, ir.Assign(ir.Global("fused_sum", fused, loc), name, loc))
        del body[j]  # the temporary is made no more
        del self.typemap[self.block.body[j].target.name]
        new = ir.Block(scope, block.loc)
        new.body = body
        return new


def _uses(func_ir: Any, name: str) -> int:
    """How many times the variable ``name`` is read in the function."""
    return (
        sum(
            1
            for block in func_ir.blocks.values()
            for stmt in block.body
            for var in stmt.list_vars()
            if var.name == name
        )
        - 1
    )  # fmt: skip  (its definition)
