"""Overloads of operators, ``math.*`` and scalar ``np.*`` functions for Duals, generated from rules.

For each rule in :mod:`dualad.rules` and each pattern of Dual and plain arguments, the source of a
small implementation is generated with the K partials unrolled, e.g. for ``x * c`` at K = 2::

    def impl(x1, x2):
        v1 = x1.value; p1 = x1.partials; v2 = x2
        y = primal(v1, v2)
        c1 = d1(v1, v2, y)
        ...
        return make_dual(y, (p1[0] * c1, p1[1] * c1))

``d1`` is the rule's own partial, compiled by Numba: no derivative formula is written here.
A zero tangent stays 0 even where the local derivative is infinite or NaN, as in the NumPy
engine.

Duals of floats (the common, first-order case) take a shorter path, tried first: the same
arithmetic emitted as LLVM IR inside the caller (:func:`_direct_rule`, registered with
:func:`~dualad.numba.dualtypes.lower_directly`), because Numba compiles every overload
implementation as a function of its own (typed, lowered, optimised, made machine code of: 40-60
ms of a first call each, per rule and argument types) before the caller inlines it.  Nested Duals,
mixed K, registered Python functions and refusals go through the generated implementations.
"""

from __future__ import annotations

import builtins
import contextvars
import dis
import math
import operator
import threading
import types as pytypes
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils, errors
from numba.core.registry import CPUDispatcher
from numba.extending import intrinsic

from .. import rules
from ..dual import label
from . import special as compiled_special
from .dualtypes import (
    CALLED_FROM_COMPILED_CODE,
    SCALAR_OPTIONS,
    DualArrayType,
    DualType,
    generate,
    lower_directly,
    numpy_ufuncs,
    overload_scalar,
    tuple_source,
)

#: Messages of dualad's own refusals met while typing in this thread (context); the driver
#: reports them instead of Numba's long list of candidate signatures.  Typing runs in the thread
#: that calls the driver, so a refusal met compiling in one thread is never reported in another.
problems: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar(
    "dualad_numba_problems", default=()
)

_REAL = (types.Float, types.Integer, types.Boolean)


#: Every refusal message so far: Numba re-raises a failed compilation from its cache without
#: typing again (in any thread), and the driver finds dualad's message in the text then.  Like
#: Numba's cache this is knowledge about compiled code, shared by all threads, not state of one
#: call; it only grows (one entry per distinct message), behind a lock.
_refusals: set[str] = set()
_refusals_lock = threading.Lock()


def refuse(message: str) -> None:
    """Record a dualad error and stop typing (Numba then reports the call as untypeable)."""
    problems.set(problems.get() + (message,))
    with _refusals_lock:
        _refusals.add(message)
    raise errors.TypingError(message)


def take_problem(message: str) -> str | None:
    """dualad's own refusal behind Numba's ``message`` (met in this thread first), or None; this
    thread's record of refusals is cleared for the next call."""
    met = problems.get()
    problems.set(())
    if met:
        return met[0]
    with _refusals_lock:
        known = [m for m in _refusals if m in message]
    return known[0] if known else None


# --- compiling the rules' partials ---------------------------------------------------------------

#: Python helpers of rules.py replaced by what they are in compiled code, where every value is
#: a plain float (depth 0) or a Dual (depth 1, the partials of a nested Dual), by depth.
_SUBSTITUTES: dict[int, dict[Any, Any]] = {}
_jitted: dict[tuple[Any, int], Any] = {}


def _substitutes(depth: int = 0) -> dict[Any, Any]:
    if depth not in _SUBSTITUTES:
        subs = _SUBSTITUTES[depth] = {}
        subs[rules._is_plain_number] = numba.njit(lambda p: True, inline="always")
        if depth == 0:
            # Every value is a real number here: x ** float(p) is pow(), as np.power computes
            # it in the NumPy engine.  Numba computes x ** p for an integer p by a loop of
            # multiplications, compiled on first use: 0.2-0.3 s of a first call that has
            # x ** 2 (the power rule's partial p * x ** (p - 1) has an integer p - 1).
            power = numba.njit(lambda x, p: x ** (p + 0.0), error_model="numpy", inline="always")
        else:  # Duals among the values: their own power overload
            power = numba.njit(lambda x, p: x**p, error_model="numpy", inline="always")
        subs[np.power] = power
    return _SUBSTITUTES[depth]


_scalar_numpy: dict[int, Any] = {}


def _numpy_for_scalars(depth: int = 0) -> Any:
    """NumPy as the partials see it in compiled code: ``np.where(c, a, b)`` is ``a if c else b``.

    Every value there is a scalar, and Numba's own np.where would build 0-d arrays, costing about
    a second of compilation for the power rule alone.
    """
    if depth not in _scalar_numpy:
        module = _scalar_numpy[depth] = pytypes.ModuleType("numpy")
        module.__dict__.update(np.__dict__)
        module.where = numba.njit(lambda c, a, b: a if c else b, inline="always")
    return _scalar_numpy[depth]


def _compiled_value(value: Any, depth: int = 0) -> Any:
    """What a global or closure variable of a partial becomes in compiled code."""
    if value is np:
        return _numpy_for_scalars(depth)
    if isinstance(value, pytypes.ModuleType) and value.__name__ == "scipy.special":
        return compiled_special.namespace(value)
    if isinstance(value, pytypes.FunctionType):
        return jit_function(value, depth)
    try:
        return _substitutes(depth).get(value, value)
    except TypeError:  # unhashable: an array or list constant
        return value


def jit_function(fn: Callable[..., Any], depth: int = 0) -> Any:
    """``fn`` compiled by Numba, with the plain Python functions it calls compiled first.

    The rules' partials call helpers (``_quotient_of``) and closures over other partials
    (``_swap``); Numba can call those only as compiled functions, so the helpers named among
    ``fn``'s globals and closure cells are replaced by their compiled versions, recursively.
    ``depth`` 1 gives separate dispatchers for partials evaluated on Duals (nested Duals): the
    overloads they call use the depth-0 ones, and Numba takes a call of a dispatcher that is
    being compiled (for any types) for recursion.
    """
    subs = _substitutes(depth)
    if fn in subs:
        return subs[fn]
    if (fn, depth) in _jitted:
        return _jitted[fn, depth]
    if not isinstance(fn, pytypes.FunctionType):
        return fn  # a ufunc, a math function, a dispatcher: Numba knows it
    namespace = dict(fn.__globals__)
    for name in set(fn.__code__.co_names) & namespace.keys():
        namespace[name] = _compiled_value(namespace[name], depth)
    cells = None
    if fn.__closure__:
        cells = tuple(
            pytypes.CellType(_compiled_value(c.cell_contents, depth)) for c in fn.__closure__
        )
    rebuilt = pytypes.FunctionType(fn.__code__, namespace, fn.__name__, fn.__defaults__, cells)
    # NumPy's error model: a local derivative 0.5 / sqrt(0) is inf (then masked), not an error.
    _jitted[fn, depth] = numba.njit(
        rebuilt, error_model="numpy", **{**SCALAR_OPTIONS, **CALLED_FROM_COMPILED_CODE}
    )
    return _jitted[fn, depth]


def _depth(t: Any) -> int:
    """0 for a real number, 1 for a Dual, 2 for a Dual of Duals."""
    return 1 + _depth(t.base) if isinstance(t, DualType) else 0


def _compiled_partial(rule: rules.Rule, i: int, argtypes: tuple[Any, ...]) -> Any:
    """The i-th partial of ``rule`` compiled for these argument types, or a clear refusal."""
    # One level down: a Dual's value is a float, a nested Dual's value a Dual (then the partial,
    # evaluated on Duals, also carries its own derivative: the second-order terms).
    # A constant argument (the 2 of x ** 2) is compiled as its plain type: one partial for all.
    plain = tuple(t.base if isinstance(t, DualType) else types.unliteral(t) for t in argtypes)
    return partial_on_values(rule, i, plain)


def partial_on_values(rule: rules.Rule, i: int, plain: tuple[Any, ...]) -> Any:
    """The i-th partial of ``rule`` compiled for the value types ``plain``: floats, or Duals,
    whose own partials then carry the partial's derivative (compiled reverse mode records the
    partials of its values, floats or Duals), or a clear refusal."""
    depth = max((_depth(t) for t in plain), default=0)
    dispatcher = jit_function(rule.partials[i], depth)
    value_type = next((t for t in plain if isinstance(t, DualType)), types.float64)
    try:
        dispatcher.compile(plain + (value_type,))
    except errors.NumbaError as exc:
        first = str(exc).strip().splitlines()[0]
        refuse(
            f"the derivative rule of {rule.name} cannot run in compiled code (Numba: {first}). "
            "Use engine='numpy' for this function, or register a rule for it whose partials "
            "Numba can compile."
        )
    return dispatcher


# --- generating implementations ------------------------------------------------------------------


def _returned_argument(partial: Any, nargs: int) -> int | None:
    """The position of the argument that ``partial`` returns unchanged (multiply's
    ``lambda x1, x2, y: x2``, exp's ``lambda x, y: y``), read off its bytecode; else None.

    Such a partial is emitted as that argument: compiling it as a function of its own (once per
    argument types) costs more than all the rest of its rule's implementation.
    """
    code = getattr(partial, "__code__", None)
    if code is None or code.co_argcount != nargs or code.co_flags & (0x04 | 0x08):
        return None  # not a plain function of exactly the arguments given (no *args, **kwargs)
    ops = [op for op in dis.get_instructions(code) if op.opname not in ("RESUME", "NOP", "CACHE")]
    if len(ops) != 2 or ops[1].opname != "RETURN_VALUE":
        return None
    if ops[0].opname not in ("LOAD_FAST", "LOAD_FAST_CHECK", "LOAD_FAST_BORROW"):
        return None
    names = code.co_varnames[:nargs]
    return names.index(ops[0].argval) if ops[0].argval in names else None


def _zero_safe(p: str, c: str, nested: bool = False) -> str:
    """``p * c``, but 0 for a zero tangent ``p`` even where ``c`` is infinite or NaN.

    A select rather than a branch on ``c``, so that loops over Duals can still be vectorised.
    A nested tangent (a Dual) is zero when all its entries are.
    """
    if nested:
        return f"({p} * {c} if not is_zero({p}) else 0.0)"
    return f"({p} * {c} if {p} != 0.0 else 0.0)"


def is_zero(p):  # noqa: ANN001, ANN201 - compiled-code helper, typed by the overload below
    """True when the real number, or every entry of the (nested) Dual, is zero."""


@overload_scalar(is_zero)
def _is_zero(p):  # noqa: ANN001
    if isinstance(p, DualType):
        checks = " and ".join(
            ["is_zero(p.value)"] + [f"is_zero(p.partials[{k}])" for k in range(p.K)]
        )
        return generate(f"def impl(p):\n    return {checks}\n", is_zero=is_zero)
    if isinstance(p, _REAL):
        return lambda p: p == 0.0
    return None


_impls: dict[Any, Callable[..., Any]] = {}


def rule_impl(rule: rules.Rule, primal: Any, argtypes: tuple[Any, ...]) -> Callable[..., Any]:
    """The compiled implementation of ``rule`` for these argument types (Dual or real)."""
    mask = tuple(isinstance(t, DualType) for t in argtypes)
    K = next(t.K for t in argtypes if isinstance(t, DualType))
    nested = any(isinstance(t, DualType) and isinstance(t.base, DualType) for t in argtypes)
    key = (id(rule), primal, tuple(argtypes), K)
    if key in _impls:
        return _impls[key]
    env: dict[str, Any] = {"primal": primal, "is_zero": is_zero, "tangent": tangent}
    values = ", ".join(f"v{i}" for i in range(len(argtypes)))
    body = []
    for i, (dual, t) in enumerate(zip(mask, argtypes)):
        if isinstance(t, types.Literal):  # the partials take it as a plain value (+ 0 does)
            body.append(f"v{i} = x{i} + 0")
        else:
            body.append(f"v{i} = x{i}.value" if dual else f"v{i} = x{i}")
        if dual:
            body.append(f"p{i} = x{i}.partials")
    if primal in _LITERAL_FIRST and _literal_power(argtypes):
        body.extend(_unrolled_power("v0", argtypes[1].literal_value))
    else:
        body.append(f"y = primal({values})")
    terms: list[list[str]] = [[] for _ in range(K)]
    scaled: list[tuple[str, str, bool]] = []  # (partials, coefficient, zero-safe) of each input
    for i, dual in enumerate(mask):
        partial = rule.partials[i]
        if not dual or partial is None:
            continue
        if partial is rules.NONDIFF:
            refuse(f"{rule.name} is not differentiable in its input {i + 1}; pass a plain number")
        if not callable(partial):
            c = float(partial)
            scaled.append((f"p{i}", repr(c), False))
            for k in range(K):
                p = f"p{i}[{k}]"
                terms[k].append(p if c == 1.0 else f"-{p}" if c == -1.0 else f"{p} * {c!r}")
            continue
        returned = None if nested else _returned_argument(partial, len(argtypes) + 1)
        if returned is not None:  # the partial is one of its arguments: no function to compile
            scaled.append((f"p{i}", f"v{returned}" if returned < len(argtypes) else "y", True))
            continue
        env[f"d{i}"] = _compiled_partial(rule, i, argtypes)
        body.append(f"c{i} = d{i}({values}, y)")
        scaled.append((f"p{i}", f"c{i}", True))
        if not nested:
            continue
        body.append(f"if math.isfinite(c{i}):")  # math.isfinite of a nested c reads its value
        body.extend(f"    t{i}_{k} = p{i}[{k}] * c{i}" for k in range(K))
        body.append("else:")
        body.extend(f"    t{i}_{k} = {_zero_safe(f'p{i}[{k}]', f'c{i}', nested)}" for k in range(K))
        for k in range(K):
            terms[k].append(f"t{i}_{k}")
    if not nested and scaled:
        # One intrinsic makes the K sums in LLVM IR: K unrolled statements per input cost
        # Numba's typing and lowering far more (each rule is compiled per argument types and K).
        partials = tuple_source([p for p, _, _ in scaled])
        coefficients = tuple_source([c for _, c, _ in scaled])
        guarded = sum(1 << j for j, (_, _, safe) in enumerate(scaled) if safe)
        body.append(f"return make_dual(y, tangent({partials}, {coefficients}, {guarded}))")
    else:
        # One statement per entry: Numba mis-reads a tuple display of more than 30 expressions.
        body.extend(
            f"s{k} = " + (" + ".join(t).replace("+ -", "- ") if t else "0.0")
            for k, t in enumerate(terms)
        )
        body.append(f"return make_dual(y, {tuple_source([f's{k}' for k in range(K)])})")
    source = f"def impl({_names(len(argtypes))}):\n" + "".join(f"    {line}\n" for line in body)
    _impls[key] = generate(source, label=f"rule {rule.name}", **env)
    return _impls[key]


def _products(builder: Any, entries: list[Any], c: Any, safe: bool) -> list[Any]:
    """LLVM IR of ``e * c`` for each entry e; with ``safe``, 0 where e is 0 (c may be inf)."""
    if not safe:
        return [builder.fmul(e, c) for e in entries]
    zero = ir.Constant(ir.DoubleType(), 0.0)
    return [
        builder.select(builder.fcmp_unordered("!=", e, zero), builder.fmul(e, c), zero)
        for e in entries
    ]


def _chain_sums(context: Any, builder: Any, terms: list[tuple[Any, ...]], K: int) -> list[Any]:
    """LLVM IR of the K sums ``sum_i partials_i[k] * c_i`` of a rule's chain rule.

    ``terms`` holds (K-tuple of float64 partials, coefficient, its Numba type, guarded) per
    Dual input; a guarded coefficient may be infinite or NaN: its term is then 0 for a zero
    tangent entry (as :func:`_zero_safe` says), by selects after one branch on the coefficient
    being finite.  No terms: K zeros.
    """
    sums: list[Any] = [None] * K
    for p, c, ctype, guarded in terms:
        c = context.cast(builder, c, ctype, types.float64)
        entries = [builder.extract_value(p, k) for k in range(K)]
        if not guarded:
            products = _products(builder, entries, c, False)
        elif K == 1:
            products = _products(builder, entries, c, True)
        else:  # a branch on c once, plain products when it is finite (c - c is 0, not NaN)
            difference = builder.fsub(c, c)
            finite = builder.fcmp_ordered("ord", difference, difference)
            with builder.if_else(finite, likely=True) as (then, otherwise):
                with then:
                    plain, plain_block = _products(builder, entries, c, False), builder.block
                with otherwise:
                    safe, safe_block = _products(builder, entries, c, True), builder.block
            products = []
            for a, b in zip(plain, safe):
                phi = builder.phi(a.type)
                phi.add_incoming(a, plain_block)
                phi.add_incoming(b, safe_block)
                products.append(phi)
        for k, term in enumerate(products):
            sums[k] = term if sums[k] is None else builder.fadd(sums[k], term)
    zero = ir.Constant(ir.DoubleType(), 0.0)
    return [zero if total is None else total for total in sums]


@intrinsic
def tangent(typingctx, partials, coefficients, guarded):  # noqa: ANN001
    """The K sums ``sum_i partials[i][k] * coefficients[i]`` of a rule's chain rule, as a K-tuple.

    ``partials`` holds the K-tuples of float64 partials of the Dual inputs, ``coefficients`` the
    local derivatives (real numbers).  Bit i of the literal ``guarded`` marks a coefficient
    that may be infinite or NaN: its term is then 0 for a zero tangent entry (as
    :func:`_zero_safe` says), by selects after one branch on the coefficient being finite.
    """
    if not (
        isinstance(partials, types.BaseTuple)
        and isinstance(coefficients, types.BaseTuple)
        and isinstance(guarded, types.IntegerLiteral)
        and len(partials) == len(coefficients) > 0
        and all(isinstance(c, _REAL) for c in coefficients)
    ):
        return None
    K = len(partials[0])
    if any(p != types.UniTuple(types.float64, K) for p in partials):
        return None
    result = types.UniTuple(types.float64, K)
    mask = guarded.literal_value

    def codegen(context, builder, sig, args):  # noqa: ANN001
        terms = [
            (
                builder.extract_value(args[0], i),
                builder.extract_value(args[1], i),
                ctype,
                bool(mask >> i & 1),
            )
            for i, ctype in enumerate(sig.args[1])
        ]
        return context.make_tuple(builder, result, _chain_sums(context, builder, terms, K))

    return result(partials, coefficients, guarded), codegen


def _dual_args(argtypes: tuple[Any, ...]) -> bool:
    """True when some argument is a Dual and all are Duals or real numbers."""
    return any(isinstance(t, DualType) for t in argtypes) and all(
        isinstance(t, (DualType, *_REAL)) for t in argtypes
    )


def _names(n: int) -> str:
    return ", ".join(f"x{i}" for i in range(n))


def _with_arity(nin: int, select: Callable[..., Any]) -> Callable[..., Any]:
    """A typer of ``nin`` named arguments (x0, x1, ...) calling ``select`` with their types.

    Numba requires a typer and its implementation to name their arguments alike.
    """
    source = f"def typer({_names(nin)}):\n    return select({_names(nin)})\n"
    return generate(source, "typer", select=select)


def _typer(func_label: str, rule_of: Callable[[], rules.Rule | None], primal: Any, nin: int):
    """An overload typer that applies a rule to Duals (mixed with real numbers)."""

    def select(*argtypes: Any) -> Any:
        if isinstance(primal, CPUDispatcher) and all(isinstance(t, _REAL) for t in argtypes):
            return _generate_call(primal, len(argtypes))  # a registered function on floats
        if not _dual_args(argtypes):
            return None
        if any(isinstance(t, types.Literal) for t in argtypes) and not _literal_power(argtypes):
            return None  # Numba asks again with the plain types (one implementation for all)
        rule = rule_of()
        if rule is not None:
            return rule_impl(rule, primal, argtypes)
        if rules.is_zero_derivative(primal):
            return _value_only_impl(primal, argtypes)
        refuse(_no_rule_message(func_label))

    return _with_arity(nin, select)


#: Operators whose overloads are typed first with literal arguments: ``x ** 2`` on a Dual, see
#: :func:`_literal_power`.
_LITERAL_FIRST = (operator.pow, operator.ipow, builtins.pow)

#: The largest integer exponent that gets an implementation of its own.
_LITERAL_POWER_MAX = 8


def _literal_power(argtypes: tuple[Any, ...]) -> bool:
    """True for a Dual of floats to a small constant power n >= 0 (``x ** 2``).

    Its value is then computed by the multiplications of Numba's loop for ``float ** int``
    (the user's float code computes the same value), unrolled (:func:`_unrolled_power`): Numba
    compiles that loop on its first use, 0.2-0.3 s of a first call, for a constant exponent
    too.  One implementation per exponent; others take the general path.
    """
    base, exponent = (argtypes + (None, None))[:2]
    return (
        len(argtypes) == 2
        and isinstance(base, DualType)
        and base.base == types.float64
        and isinstance(exponent, types.IntegerLiteral)
        and 0 <= exponent.literal_value <= _LITERAL_POWER_MAX
    )


def _unrolled_power(base: str, n: int) -> list[str]:
    """Source lines setting ``y`` to ``base ** n`` for a constant integer n >= 0, by the
    multiplications Numba's own loop for ``float ** int`` makes, in its order (the same
    value as the user's float code), unrolled: that loop costs 0.2-0.3 s to compile."""
    lines, result, square = [], None, base
    while n:
        if n & 1:
            lines.append(f"r = {square}" if result is None else f"r = r * {square}")
            result = "r"
        n >>= 1
        if n:
            lines.append(f"a{len(lines)} = {square} * {square}")
            square = f"a{len(lines) - 1}"
    lines.append(f"y = {result or '1.0'}")  # the base is a float64: so is y
    return lines


def _power_ir(builder: Any, base: Any, n: int) -> Any:
    """LLVM IR of ``base ** n`` for a constant integer n >= 0: the multiplications of
    :func:`_unrolled_power`, in its order (the value of the user's float code)."""
    result, square = None, base
    while n:
        if n & 1:
            result = square if result is None else builder.fmul(result, square)
        n >>= 1
        if n:
            square = builder.fmul(square, square)
    return ir.Constant(ir.DoubleType(), 1.0) if result is None else result


#: (primal, argument types) -> (rule, signature, codegen) of the rules lowered directly: like
#: Numba's own caches, knowledge about compiled code, not state of one call; only grows.
_direct: dict[Any, tuple[Any, Any, Any]] = {}


def _real_signature(sig: Any, n: int) -> bool:
    """True for a signature of n real arguments returning a real number (not ``max(*args)``'s
    star-argument tuple, which the overload's implementation handles)."""
    return (
        sig is not None
        and isinstance(sig.return_type, _REAL)
        and len(sig.args) == n
        and all(isinstance(t, _REAL) for t in sig.args)
    )


def _direct_rule(rule_of: Callable[[], rules.Rule | None], primal: Any):
    """A plan (see :func:`lower_directly`) applying a rule to Duals of floats (mixed with real
    numbers) inside the caller: the value by ``primal``, the local derivatives by the rule's
    partials (compiled on their own, as in :func:`rule_impl`, unless a partial is a constant or
    one of its arguments), the chain rule by :func:`_chain_sums`.  The same arithmetic as
    :func:`rule_impl`'s implementation, without a function of its own per rule and argument
    types.  Nested Duals, mixed K, registered Python functions and rules with an input that is
    not differentiable are left to the overload (None)."""

    def plan(typingctx: Any, *argtypes: Any) -> Any:
        if isinstance(primal, CPUDispatcher) or not _dual_args(argtypes):
            return None
        duals = [t for t in argtypes if isinstance(t, DualType)]
        K = duals[0].K
        if any(t.K != K or t.base != types.float64 for t in duals):
            return None
        power = primal in _LITERAL_FIRST and _literal_power(argtypes)
        if not power and any(isinstance(t, types.Literal) for t in argtypes):
            return None  # Numba asks again with the plain types
        rule = rule_of()
        if rule is None:
            return None
        known = _direct.get((primal, argtypes))
        if known is not None and known[0] is rule:
            return known[1:]
        n = len(argtypes)
        values = tuple(
            types.float64 if isinstance(t, DualType) else types.unliteral(t) for t in argtypes
        )
        call = None
        if not power:
            fnty = typingctx.resolve_value_type(primal)
            call = (fnty, typingctx.resolve_function_type(fnty, values, {}))
            if not _real_signature(call[1], n):
                return None
        terms: list[tuple[int, str, Any]] = []
        for i, t in enumerate(argtypes):
            partial = rule.partials[i]
            if not isinstance(t, DualType) or partial is None:
                continue
            if partial is rules.NONDIFF:
                return None
            if not callable(partial):
                terms.append((i, "constant", float(partial)))
                continue
            returned = _returned_argument(partial, n + 1)
            if returned is not None:
                terms.append((i, "argument", returned))
                continue
            fnty = types.Dispatcher(_compiled_partial(rule, i, argtypes))
            psig = typingctx.resolve_function_type(fnty, values + (types.float64,), {})
            if not _real_signature(psig, n + 1):
                return None
            terms.append((i, "partial", (fnty, psig)))
        result = DualType(K)

        def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
            vals, tangents = [], {}
            for i, (t, a) in enumerate(zip(sig.args, args)):
                if isinstance(t, DualType):
                    dual = cgutils.create_struct_proxy(t)(context, builder, value=a)
                    vals.append(dual.value)
                    tangents[i] = dual.partials
                else:
                    vals.append(context.cast(builder, a, t, values[i]))
            if call is None:
                y = _power_ir(builder, vals[0], argtypes[1].literal_value)
            else:
                fnty, csig = call
                y = context.get_function(fnty, csig)(builder, [
                    context.cast(builder, v, t, c) for v, t, c in zip(vals, values, csig.args)
                ])  # fmt: skip
                y = context.cast(builder, y, csig.return_type, types.float64)
            chain = []
            for i, kind, payload in terms:
                if kind == "constant":
                    c = context.get_constant(types.float64, payload)
                    chain.append((tangents[i], c, types.float64, False))
                elif kind == "argument":
                    if payload < n:
                        chain.append((tangents[i], vals[payload], values[payload], True))
                    else:
                        chain.append((tangents[i], y, types.float64, True))
                else:
                    fnty, psig = payload
                    inputs = zip(vals + [y], values + (types.float64,), psig.args)
                    c = context.get_function(fnty, psig)(
                        builder, [context.cast(builder, v, t, a) for v, t, a in inputs]
                    )
                    chain.append((tangents[i], c, psig.return_type, True))
            out = cgutils.create_struct_proxy(result)(context, builder)
            out.value = y
            sums = _chain_sums(context, builder, chain, K)
            out.partials = context.make_tuple(builder, result.partials_type, sums)
            return out._getvalue()

        _direct[primal, argtypes] = (rule, result(*argtypes), codegen)
        return _direct[primal, argtypes][1:]

    return plan


def _generate_call(fn: Any, nin: int) -> Callable[..., Any]:
    return generate(f"def impl({_names(nin)}):\n    return fn({_names(nin)})\n", fn=fn)


def _no_rule_message(name: str) -> str:
    return (
        f"dualad has no derivative rule for {name}. Register one with "
        f"da.register_rule({name}, <partial for each input>), or apply it to da.primal(x) "
        "if its derivative is not needed."
    )


def _value_only_impl(fn: Any, argtypes: tuple[Any, ...]) -> Callable[..., Any]:
    """``fn`` of the values of the Dual arguments (the others as they are)."""
    reads = [f"x{i}.value" if isinstance(t, DualType) else f"x{i}" for i, t in enumerate(argtypes)]
    source = f"def impl({_names(len(argtypes))}):\n    return fn({', '.join(reads)})\n"
    return generate(source, fn=fn)


def _value_only(fn: Any, nin: int):
    """An overload typer computing ``fn`` on the values of Duals (zero derivative)."""

    def select(*argtypes: Any) -> Any:
        if not any(isinstance(t, DualType) for t in argtypes):
            return None
        return _value_only_impl(fn, argtypes)

    return _with_arity(nin, select)


def _refusal(message: str):
    def typer(*xs):  # noqa: ANN002, ANN202 - its signature must match the implementation's
        argtypes = xs
        if any(isinstance(t, (DualType, DualArrayType)) for t in argtypes):
            refuse(message)
        return None

    return typer


# --- what maps to which rule ---------------------------------------------------------------------

_OPERATORS = {
    operator.add: np.add, operator.iadd: np.add,
    operator.sub: np.subtract, operator.isub: np.subtract,
    operator.mul: np.multiply, operator.imul: np.multiply,
    operator.truediv: np.true_divide, operator.itruediv: np.true_divide,
    operator.pow: np.power, operator.ipow: np.power,
    operator.mod: np.remainder, operator.imod: np.remainder,
    operator.neg: np.negative, operator.pos: np.positive,
    builtins.abs: np.absolute, builtins.pow: np.power,
    builtins.min: np.minimum, builtins.max: np.maximum,
}  # fmt: skip

#: math functions and the NumPy (or SciPy) function whose rule they share; the math function
#: itself computes the value.
_MATH = {
    "sin": np.sin, "cos": np.cos, "tan": np.tan, "asin": np.arcsin, "acos": np.arccos,
    "atan": np.arctan, "atan2": np.arctan2, "sinh": np.sinh, "cosh": np.cosh, "tanh": np.tanh,
    "asinh": np.arcsinh, "acosh": np.arccosh, "atanh": np.arctanh, "exp": np.exp,
    "expm1": np.expm1, "log2": np.log2, "log10": np.log10, "log1p": np.log1p, "sqrt": np.sqrt,
    "fabs": np.fabs, "pow": np.power, "hypot": np.hypot, "copysign": np.copysign,
    "fmod": np.fmod, "degrees": np.rad2deg, "radians": np.deg2rad, "log": np.log,
    "exp2": np.exp2, "cbrt": np.cbrt,
}  # fmt: skip
#: math functions Numba cannot compile even on floats: the NumPy twin computes their value.
_MATH_NOT_IN_NUMBA = ("fmod", "cbrt")
_MATH_SCIPY = {"erf": "erf", "erfc": "erfc", "lgamma": "gammaln", "gamma": "gamma"}
_MATH_VALUE_ONLY = ("floor", "ceil", "trunc", "isnan", "isinf", "isfinite")

_COMPARISONS = (
    operator.lt, operator.le, operator.gt, operator.ge, operator.eq, operator.ne,
    operator.floordiv, operator.ifloordiv,
)  # fmt: skip


_registered: set[Any] = set()
_fixed_done = False


def _scipy_rule(name: str) -> Callable[[], rules.Rule | None]:
    def rule_of() -> rules.Rule | None:
        try:
            from scipy import special
        except ImportError:  # pragma: no cover - scipy is optional
            return None
        return rules.lookup(getattr(special, name))

    return rule_of


def _overload(func: Any, typer: Callable[..., Any], direct: Any = None) -> None:
    """Overload ``func`` by ``typer``; with ``direct``, a plan for the calls it lowers directly
    (see :func:`lower_directly`), tried first."""
    if func not in _registered:
        _registered.add(func)
        if direct is not None:
            lower_directly(func, prefer_literal=func in _LITERAL_FIRST, by_types=False)(direct)
        overload_scalar(func, prefer_literal=func in _LITERAL_FIRST)(typer)


def _primal_of(key: Any) -> Any:
    """What computes the value in compiled code: a ufunc or NumPy function itself, or the
    compiled source of a Python function given to ``register_rule``."""
    raw = getattr(key, "_dualad_raw", None)
    return jit_function(raw) if raw is not None else key


def _ufunc_typer(ufunc: np.ufunc) -> Callable[..., Any]:
    """A ufunc on Duals: its rule as the table has it when the call is typed (so a rule
    registered later is seen), its value alone if it has zero derivative, else a refusal."""

    def rule_of() -> rules.Rule | None:
        rule = rules.lookup(ufunc)
        if rule is None and not rules.is_zero_derivative(ufunc):
            refuse(_no_rule_message(label(ufunc)))
        return rule

    return _typer(label(ufunc), rule_of, ufunc, ufunc.nin)


def register_table() -> None:
    """Overload what the rule table holds, including rules registered since the last call."""
    for key, rule in list(rules.RULES.items()):
        if isinstance(key, np.ufunc):
            _overload(key, _ufunc_typer(key), _direct_rule(lambda k=key: rules.lookup(k), key))
        elif rule.func is key:  # np.sinc, or what register_rule returned for a Python function
            _overload(
                key, _typer(label(key), lambda k=key: rules.lookup(k), _primal_of(key), rule.nin)
            )
    global _fixed_done
    if _fixed_done:
        return
    _fixed_done = True
    for ufunc in numpy_ufuncs():
        direct = _direct_rule(lambda u=ufunc: rules.lookup(u), ufunc)
        _overload(ufunc, _ufunc_typer(ufunc), direct)
    for op, ufunc in _OPERATORS.items():  # the value is computed as in the user's float code
        rule_of = lambda u=ufunc: rules.lookup(u)  # noqa: E731
        _overload(op, _typer(label(ufunc), rule_of, op, ufunc.nin), _direct_rule(rule_of, op))
    for name, ufunc in _MATH.items():
        if hasattr(math, name):
            primal = ufunc if name in _MATH_NOT_IN_NUMBA else getattr(math, name)
            rule_of = lambda u=ufunc: rules.lookup(u)  # noqa: E731
            typer = _typer(f"math.{name}", rule_of, primal, ufunc.nin)
            _overload(getattr(math, name), typer, _direct_rule(rule_of, primal))
    for name, special in _MATH_SCIPY.items():
        fn = getattr(math, name)
        rule_of = _scipy_rule(special)
        _overload(fn, _typer(f"math.{name}", rule_of, fn, 1), _direct_rule(rule_of, fn))
    for op in _COMPARISONS:
        _overload(op, _value_only(op, 2))
    for fn in (np.round, np.around):
        _overload(fn, _value_only(fn, 1))
    for name in _MATH_VALUE_ONLY:
        _overload(getattr(math, name), _value_only(getattr(math, name), 1))
    _overload(builtins.round, _value_only(builtins.round, 1))
    lost = (
        "{} of a Dual would drop the derivative it carries. Use da.primal(x) to take the value "
        "when that is intended."
    )
    _overload(builtins.float, _refusal(lost.format("float()")))
    _overload(builtins.int, _refusal(lost.format("int()")))
    for name in dir(math):
        fn = getattr(math, name)
        if callable(fn) and fn not in _registered and not name.startswith("_"):
            _overload(fn, _refusal(_no_rule_message(f"math.{name}")))
