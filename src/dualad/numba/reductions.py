"""Reductions and products of DualArrays inside compiled code: sum, prod, mean, var, std, max,
min, argmax, argmin, dot, ``@``, outer, cumsum, sort and ``np.linalg.norm``.

A sum is linear, so its partials are the sums of the partials (one pass over the contiguous
data).  Everything else is written as loops of scalar Dual arithmetic, whose rules come from
:mod:`dualad.rules` through the scalar overloads: no derivative formula is typed here.  ``max``
and ``min`` select the element by value (its partials come with it), ``argmax``/``argmin`` and
``argsort`` look at values only.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
from numba import types
from numba.extending import overload_method

from .dualtypes import DualArrayType, generate, overload_first, tuple_source
from .scalars import refuse


def _zeros(K: int) -> str:
    return tuple_source(["0.0"] * K)


def _gen(source: str, **names: Any) -> Any:
    return generate(source, label="reduction", **names)


def _is_none(t: Any) -> bool:
    return t is None or isinstance(t, (types.NoneType, types.Omitted))


def flat(a):  # noqa: ANN001, ANN201 - compiled-code helper, typed by the overload below
    """A 1-D C-contiguous DualArray of ``a``'s entries in C order (a view when it can be)."""


@overload_first(flat)
def _flat(a):  # noqa: ANN001
    if not isinstance(a, DualArrayType):
        return None
    if a.ndim == 1 and a.value_type.layout == "C" and a.partials_type.layout == "C":
        # already flat: Numba's ravel and reshape call its runtime's reshape helper, which
        # cost np.sum(d * d) of a 3-vector about 0.25 us per call in a pair loop
        return lambda a: a
    return _gen(
        "def impl(a):\n"
        "    v = np.ascontiguousarray(a.value).ravel()\n"
        f"    p = np.ascontiguousarray(a.partials).reshape((v.size, {a.K}))\n"
        f"    return make_dual_array(v, p, {a.K})\n"
    )


def _new(shape: str, K: int) -> str:
    """Source of an uninitialised DualArray of the tuple ``shape`` (source) with K partials."""
    return f"new_dual_array({shape}, {K}, False)"


def _sum_all(K: int) -> Any:
    reads = "".join(f"        s{k} += p[i, {k}]\n" for k in range(K))
    inits = "".join(f"    s{k} = 0.0\n" for k in range(K))
    names = tuple_source([f"s{k}" for k in range(K)])
    return (
        "    f = flat(a)\n    v = f.value\n    p = f.partials\n    t = 0.0\n" + inits
        + "    for i in range(v.size):\n        t += v[i]\n" + reads
        + f"    return make_dual(t, {names})\n"
    )  # fmt: skip


@overload_first(np.sum)
def _sum(a, axis=None):  # noqa: ANN001
    if not isinstance(a, DualArrayType):
        return None
    if _is_none(axis) or a.ndim == 1:
        return _gen("def impl(a, axis=None):\n" + _sum_all(a.K), flat=flat)
    if not isinstance(axis, types.Integer):
        return None
    return _gen(
        "def impl(a, axis=None):\n"
        f"    ax = axis if axis >= 0 else axis + {a.ndim}\n"
        "    v = np.sum(a.value, axis=ax)\n"
        f"    return make_dual_array(v, np.sum(a.partials, axis=ax), {a.K})\n"
    )


@overload_first(np.prod)
def _prod(a):  # noqa: ANN001
    if not isinstance(a, DualArrayType):
        return None
    return _gen(
        "def impl(a):\n    f = flat(a)\n"
        f"    acc = make_dual(1.0, {_zeros(a.K)})\n"
        "    for i in range(f.size):\n        acc = acc * f[i]\n    return acc\n",
        flat=flat,
    )


@overload_first(np.mean)
def _mean(a, axis=None):  # noqa: ANN001
    if not isinstance(a, DualArrayType):
        return None
    if _is_none(axis) or a.ndim == 1:
        return lambda a, axis=None: np.sum(a) / a.size
    if not isinstance(axis, types.Integer):
        return None
    return lambda a, axis=None: np.sum(a, axis) / a.shape[axis]


@overload_first(np.var)
def _var(a):  # noqa: ANN001
    if not isinstance(a, DualArrayType):
        return None

    def impl(a):  # noqa: ANN001, ANN202
        f = flat(a)
        d = f - np.sum(f) / f.size
        return np.sum(d * d) / f.size

    return impl


@overload_first(np.std)
def _std(a):  # noqa: ANN001
    if not isinstance(a, DualArrayType):
        return None
    return lambda a: np.sqrt(np.var(a))


def _select(arg: str):
    def typer(a, axis=None):  # noqa: ANN001, ANN202
        if not isinstance(a, DualArrayType):
            return None
        if not _is_none(axis):
            refuse(
                f"np.{arg[3:]}(x, axis=...) of a DualArray is not supported in compiled code; "
                f"take np.{arg[3:]}(x[i, :]) of each row (or column) in a loop instead."
            )
        return _gen(
            f"def impl(a, axis=None):\n    f = flat(a)\n    return f[np.{arg}(f.value)]\n",
            flat=flat,
        )

    return typer


for _fn, _arg in ((np.max, "argmax"), (np.min, "argmin"), (np.amax, "argmax"),
                  (np.amin, "argmin")):  # fmt: skip
    overload_first(_fn)(_select(_arg))


def _arg_of(fn: Any):
    def typer(a):  # noqa: ANN001, ANN202
        if isinstance(a, DualArrayType):
            return generate("def impl(a):\n    return fn(a.value)\n", fn=fn)
        return None

    return typer


for _fn in (np.argmax, np.argmin, np.argsort):
    overload_first(_fn)(_arg_of(_fn))


@overload_first(np.sort)
def _sort(a):  # noqa: ANN001
    if not isinstance(a, DualArrayType):
        return None
    if a.ndim != 1:
        refuse("np.sort of a DualArray sorts 1-D arrays only in compiled code; sort each row")

    def impl(a):  # noqa: ANN001, ANN202
        order = np.argsort(a.value)
        out = np.empty_like(a)
        for i in range(order.size):
            out[i] = a[order[i]]
        return out

    return impl


@overload_first(np.cumsum)
def _cumsum(a):  # noqa: ANN001
    if not isinstance(a, DualArrayType):
        return None
    return _gen(
        "def impl(a):\n    f = flat(a)\n    out = np.empty_like(f)\n"
        f"    s = make_dual(0.0, {_zeros(a.K)})\n"
        "    for i in range(f.size):\n        s = s + f[i]\n        out[i] = s\n    return out\n",
        flat=flat,
    )


@overload_first(np.cumprod)
def _cumprod(a):  # noqa: ANN001
    if not isinstance(a, DualArrayType):
        return None
    return _gen(
        "def impl(a):\n    f = flat(a)\n    out = np.empty_like(f)\n"
        f"    s = make_dual(1.0, {_zeros(a.K)})\n"
        "    for i in range(f.size):\n        s = s * f[i]\n        out[i] = s\n    return out\n",
        flat=flat,
    )


# --- products --------------------------------------------------------------------------------

_NOT_ALIGNED = "shapes not aligned for dot / @ (dualad: a DualArray product)"


def _operands(a: Any, b: Any) -> int | None:
    """K when ``a`` and ``b`` are arrays and at least one holds Duals, else None."""
    kinds = (DualArrayType, types.Array)
    if not (isinstance(a, kinds) and isinstance(b, kinds)):
        return None
    duals = [t for t in (a, b) if isinstance(t, DualArrayType)]
    return duals[0].K if duals else None


def _dot_source(nda: int, ndb: int, K: int) -> str | None:
    zero = f"make_dual(0.0, {_zeros(K)})"
    head = "def impl(a, b):\n"
    if (nda, ndb) == (1, 1):
        return (
            head + "    n = a.shape[0]\n    if b.shape[0] != n:\n        raise ValueError(msg)\n"
            f"    s = {zero}\n    for i in range(n):\n        s = s + a[i] * b[i]\n    return s\n"
        )
    if (nda, ndb) == (2, 1):
        return (
            head + "    m, n = a.shape\n    if b.shape[0] != n:\n        raise ValueError(msg)\n"
            f"    out = {_new('(m,)', K)}\n    for i in range(m):\n        s = {zero}\n"
            "        for j in range(n):\n            s = s + a[i, j] * b[j]\n"
            "        out[i] = s\n    return out\n"
        )
    if (nda, ndb) == (1, 2):
        return (
            head + "    m, n = b.shape\n    if a.shape[0] != m:\n        raise ValueError(msg)\n"
            f"    out = {_new('(n,)', K)}\n    for j in range(n):\n        s = {zero}\n"
            "        for i in range(m):\n            s = s + a[i] * b[i, j]\n"
            "        out[j] = s\n    return out\n"
        )
    if (nda, ndb) == (2, 2):
        return (
            head + "    m, l = a.shape\n    l2, n = b.shape\n    if l2 != l:\n"
            f"        raise ValueError(msg)\n    out = {_new('(m, n)', K)}\n"
            f"    for i in range(m):\n        for j in range(n):\n            s = {zero}\n"
            "            for k in range(l):\n                s = s + a[i, k] * b[k, j]\n"
            "            out[i, j] = s\n    return out\n"
        )
    return None


def _product(a: Any, b: Any) -> Any:
    K = _operands(a, b)
    if K is None:
        return None
    source = _dot_source(a.ndim, b.ndim, K)
    if source is None:
        refuse(
            f"dot / @ of arrays with {a.ndim} and {b.ndim} dimensions is not supported for "
            "DualArrays in compiled code (1-D and 2-D operands are); write the loop over the "
            "leading axes"
        )
    return _gen(source, msg=_NOT_ALIGNED)


overload_first(np.dot)(lambda a, b: _product(a, b))


overload_first(operator.matmul)(lambda a, b: _product(a, b))


@overload_first(np.outer)
def _outer(a, b):  # noqa: ANN001
    K = _operands(a, b)
    if K is None:
        return None
    fa = "flat(a)" if isinstance(a, DualArrayType) else "a.ravel()"
    fb = "flat(b)" if isinstance(b, DualArrayType) else "b.ravel()"
    return _gen(
        f"def impl(a, b):\n    u = {fa}\n    w = {fb}\n    out = {_new('(u.size, w.size)', K)}\n"
        "    for i in range(u.size):\n        for j in range(w.size):\n"
        "            out[i, j] = u[i] * w[j]\n    return out\n",
        flat=flat,
    )


@overload_first(np.linalg.norm)
def _norm(x, ord=None):  # noqa: ANN001, A002 - NumPy's name
    if not isinstance(x, DualArrayType):
        return None
    if not _is_none(ord):
        refuse(
            "np.linalg.norm of a DualArray takes the default ord (2-norm, Frobenius) only in "
            "compiled code; write np.sum(np.abs(x) ** p) ** (1 / p) for another"
        )
    return _gen(
        "def impl(x, ord=None):\n    f = flat(x)\n"
        f"    s = make_dual(0.0, {_zeros(x.K)})\n"
        "    for i in range(f.size):\n        e = f[i]\n        s = s + e * e\n"
        "    return np.sqrt(s)\n",
        flat=flat,
    )


# --- the same as methods -------------------------------------------------------------------------

overload_method(DualArrayType, "sum")(lambda a, axis=None: lambda a, axis=None: np.sum(a, axis))
overload_method(DualArrayType, "mean")(lambda a, axis=None: lambda a, axis=None: np.mean(a, axis))
overload_method(DualArrayType, "prod")(lambda a: lambda a: np.prod(a))
overload_method(DualArrayType, "var")(lambda a: lambda a: np.var(a))
overload_method(DualArrayType, "std")(lambda a: lambda a: np.std(a))
overload_method(DualArrayType, "max")(lambda a: lambda a: np.max(a))
overload_method(DualArrayType, "min")(lambda a: lambda a: np.min(a))
overload_method(DualArrayType, "argmax")(lambda a: lambda a: np.argmax(a.value))
overload_method(DualArrayType, "argmin")(lambda a: lambda a: np.argmin(a.value))
overload_method(DualArrayType, "cumsum")(lambda a: lambda a: np.cumsum(a))
overload_method(DualArrayType, "cumprod")(lambda a: lambda a: np.cumprod(a))
overload_method(DualArrayType, "dot")(lambda a, b: lambda a, b: np.dot(a, b))
