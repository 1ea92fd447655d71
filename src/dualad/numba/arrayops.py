"""Whole-array operators and ufuncs on DualArrays inside compiled code, with broadcasting.

Nothing here knows a derivative: an array operation is a loop over the broadcast output that
applies the scalar overload of the same function (generated from :mod:`dualad.rules` by
:mod:`.scalars`) to one element of each operand.  For ``x * c`` with x a 2-D DualArray and c a
float 1-D array, at K = 2 the generated loop reads::

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
partials in one block, :func:`.dualtypes.new_dual_array`) and the operation is inlined by LLVM.
What remains is mostly Numba's reference counting: each array argument bound by the
implementation and each row view is incref'd and decref'd atomically (two arrays per
DualArray), and LLVM's pruning of those pairs gives up because a raising path (a broadcast
mismatch, an allocation failure) lies between them.  Measured on the Lennard-Jones pair loop of
``benchmarks/array_expressions.py`` (loops ~60 us): 320 us; 150 us with the operations inlined
into the caller's Numba IR in loops (``overload(..., inline=<cost model>)``, which binds no
argument again), not done because Numba then types every implementation twice (first-call CPU
+18% on bratu_mixed, +60% on lj_mixed) and its inliner left a phi of ``0 if .. else 1`` out of
scope (a NumbaIRAssumptionWarning).
"""

from __future__ import annotations

import builtins
import operator
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
from numba import types

from .. import rules
from .dualtypes import (
    DualArrayType,
    DualType,
    generate,
    numpy_ufuncs,
    overload_first,
    overload_scalar,
    tuple_source,
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


@numba.njit
def _extent(a, b):  # noqa: ANN001, ANN202
    """The broadcast extent of two extents, or NumPy's error."""
    if a == b or b == 1:
        return a
    if a == 1:
        return b
    raise ValueError("operands could not be broadcast together (dualad: a DualArray operation)")


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
    return has_array and has_dual


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
    K = _K(argtypes)
    kinds = [_kind(t) for t in argtypes]
    D = max(t.ndim for t in argtypes if isinstance(t, (types.Array, DualArrayType)))
    body: list[str] = [f"{_names(len(argtypes))}, = {params}"] if params else []
    arrays = []
    for j, k in enumerate(kinds):
        if k == "DA":
            body.append(f"v{j} = x{j}.value")
            body.append(f"p{j} = x{j}.partials")
        elif k == "A":
            body.append(f"v{j} = x{j}")
        elif k == "D" and values_only:
            body.append(f"v{j} = x{j}.value")
        else:
            body.append(f"v{j} = x{j}")
        if k in ("DA", "A"):
            arrays.append((j, argtypes[j].ndim))
    for axis in range(D):
        parts = [f"v{j}.shape[{axis - (D - nd)}]" for j, nd in arrays if axis - (D - nd) >= 0]
        expr = parts[0]
        for p in parts[1:]:
            expr = f"_extent({expr}, {p})"
        body.append(f"n{axis} = {expr}")
        for j, nd in arrays:
            a = axis - (D - nd)
            if a >= 0:
                body.append(f"s{j}_{axis} = 0 if v{j}.shape[{a}] == 1 else 1")
    shape = tuple_source([f"n{a}" for a in range(D)])
    if inplace:
        body.append(f"if {shape} != x0.shape:")
        body.append(
            "    raise ValueError('the result of an in-place operation does not have the shape "
            "of its target (dualad: a DualArray operation)')"
        )
        body.append("out_v = x0.value")
        body.append("out_p = x0.partials")
    elif values_only:
        body.append(f"out_v = np.empty({shape}, dtype=dtype)")
    else:
        body.append(f"out = new_dual_array({shape}, {K}, False)")  # one allocation
        body.append("out_v = out.value")
        body.append("out_p = out.partials")
    indent = "    " * (D + 1)
    loops = [f"{'    ' * (a + 1)}for i{a} in range(n{a}):" for a in range(D)]
    inner: list[str] = []
    for j, k in enumerate(kinds):
        if k in ("DA", "A"):
            nd = argtypes[j].ndim
            lead = ", ".join(f"i{D - nd + a} * s{j}_{D - nd + a}" for a in range(nd))
            at = lead if nd else "()"
            if k == "DA" and not values_only:
                reads = tuple_source([f"p{j}[{lead + ', ' if nd else ''}{q}]" for q in range(K)])
                inner.append(f"e{j} = make_dual(v{j}[{at}], {reads})")
            else:
                inner.append(f"e{j} = v{j}[{at}]")
        else:
            inner.append(f"e{j} = v{j}")
    out_at = ", ".join(f"i{a}" for a in range(D)) if D else "()"
    inner.append(f"y = fn({', '.join(f'e{j}' for j in range(len(kinds)))})")
    if values_only:
        inner.append(f"out_v[{out_at}] = y")
    else:
        inner.append("y = as_dual(y)")
        inner.append(f"out_v[{out_at}] = y.value")
        inner.append("q = y.partials")
        sep = ", " if D else ""
        lead_out = ", ".join(f"i{a}" for a in range(D))
        inner.extend(f"out_p[{lead_out}{sep}{q}] = q[{q}]" for q in range(K))
    lines = ["    " + line for line in body]
    lines += loops
    lines += [indent + line for line in inner]
    if inplace:
        lines.append("    return x0")
    elif values_only and values_only != "dual":
        lines.append("    return out_v")
    elif values_only:  # zero partials: see _array_typer
        zeros = f"new_array(out_v.shape + ({K},), True)"
        lines.append(f"    return make_dual_array(out_v, {zeros}, {K})")
    else:
        lines.append("    return out")
    source = f"def impl({params or _names(len(argtypes))}):\n" + "\n".join(lines) + "\n"
    env = {"fn": fn, "_extent": _extent, "as_dual": as_dual}
    if values_only:
        env["dtype"] = _values_dtype(fn, argtypes)
    _impls[key] = generate(source, label="array operation", **env)
    return _impls[key]


def _values_dtype(fn: Any, argtypes: tuple[Any, ...]) -> Any:
    """The NumPy dtype of ``fn`` on float values (bool for a comparison, float for floor)."""
    return np.asarray(fn(*[np.float64(1.0)] * len(argtypes))).dtype


def as_dual(y):  # noqa: ANN001, ANN201 - compiled-code helper, typed by the overload below
    """A Dual (a real result widened with zero partials)."""


def _as_dual(y):  # noqa: ANN001
    if isinstance(y, DualType):
        return lambda y: y
    return None


overload_first(as_dual)(_as_dual)


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


_INPLACE = {
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
        if op in _INPLACE:
            _overload(op, _inplace_typer(_INPLACE[op]))
        else:
            _overload(op, _array_typer(op, ufunc.nin))
    for op in _COMPARISONS:
        if op is operator.ifloordiv:
            continue
        _overload(op, _array_typer(op, 2, values_only=True))
