"""Structural NumPy functions on reverse-mode Tracers: each one's value and its transpose.

The reverse-mode counterpart of :mod:`dualad.structural`.  Each function here is a primitive of
the reverse engine: it computes its value with NumPy and records how to pull a cotangent back
(its transpose, for the linear ones; its vector-Jacobian product, for solve, inv, det, slogdet
and cholesky).  Everything written as a composition of NumPy calls (mean, var, max, prod, clip,
matmul through einsum, norm ...) is not here: ``structural.COMPOSITES`` serves both engines.

Cotangents carry a trailing direction axis (shape ``value.shape + (k,)``), so each transpose is
the adjoint NumPy call with that axis kept last.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from typing import Any

import numpy as np

from . import structural
from .dual import DualError, _write_out, primal
from .reverse import (
    Tracer,
    _check_operand,
    _record,
    node_of,
    tape_of,
    unbroadcast,
    value_of,
    write_whole,
)
from .reverse import _recording as reverse_recording
from .reverse import pullback as reverse_pullback
from .structural import _axes, _axis, _joined, _reject, _shape_tuple

TRANSPOSES: dict[Any, Callable[..., Any]] = {}


_transposes = structural.registrar(TRANSPOSES)


def _unary(
    a: Tracer,
    value_fn: Callable[[Any], Any],
    transpose: Callable[[Any, tuple[int, ...]], Any],
    inverse: Callable[[Any], Any] | str | None = None,
) -> Tracer:
    """A linear function of one Tracer: ``value_fn`` on its value, ``transpose(ct, in_shape)``.

    For a function that NumPy answers with a view, ``inverse`` maps the view back onto ``a``
    (writes into the view then reach ``a``), or names the function when NumPy's view is
    read-only.
    """
    _check_operand(a)
    value = value_fn(a._value)
    if inverse is None:
        base = None
    elif isinstance(inverse, str):
        base = (a, a._version, None, inverse)
    else:
        base = (a, a._version, write_whole, inverse)
    return _record(a._tape, value, (a,), _unary_vjp, (transpose, np.shape(a._value)), base)


def _unary_vjp(ct: Any, payload: Any) -> list[Any]:
    transpose, shape = payload
    return [transpose(ct, shape)]


def _with_out(result: Any, out: Any) -> Any:
    return result if out is None else _write_out(out, result)


# --- shape and layout ----------------------------------------------------------------------------


def _to_shape(ct: Any, shape: tuple[int, ...]) -> Any:
    return ct.reshape(shape + ct.shape[-1:])


@_transposes(np.reshape)
def _reshape(a: Tracer, shape: Any = None, order: str = "C", *, newshape: Any = None, **kw: Any):
    shape = newshape if shape is None else shape
    if order != "C":
        raise DualError("np.reshape on traced arrays supports order='C' only")
    return _unary(a, lambda v: np.reshape(v, shape), _to_shape, _back_to(a.shape))


def _back_to(shape: tuple[int, ...]) -> Callable[[Any], Any]:
    return lambda view: np.reshape(view, shape)


@_transposes(np.transpose)
def _transpose(a: Tracer, axes: Any = None) -> Tracer:
    nd = a.ndim
    axes = tuple(range(nd))[::-1] if axes is None else _axes(axes, nd)
    inverse = tuple(int(i) for i in np.argsort(axes)) + (nd,)
    return _unary(
        a,
        lambda v: np.transpose(v, axes),
        lambda ct, s: np.transpose(ct, inverse),
        lambda view: np.transpose(view, inverse[:-1]),
    )


@_transposes(np.swapaxes)
def _swapaxes(a: Tracer, axis1: int, axis2: int) -> Tracer:
    i, j = _axis(axis1, a.ndim), _axis(axis2, a.ndim)
    return _unary(
        a,
        lambda v: np.swapaxes(v, i, j),
        lambda ct, s: np.swapaxes(ct, i, j),
        lambda view: np.swapaxes(view, i, j),
    )


@_transposes(np.moveaxis)
def _moveaxis(a: Tracer, source: Any, destination: Any) -> Tracer:
    src, dst = _axes(source, a.ndim), _axes(destination, a.ndim)
    return _unary(
        a,
        lambda v: np.moveaxis(v, src, dst),
        lambda ct, s: np.moveaxis(ct, dst, src),
        lambda view: np.moveaxis(view, dst, src),
    )


@_transposes(np.squeeze)
def _squeeze(a: Tracer, axis: Any = None) -> Tracer:
    axes = (
        tuple(i for i, n in enumerate(a.shape) if n == 1) if axis is None else _axes(axis, a.ndim)
    )
    return _unary(a, lambda v: np.squeeze(v, axes), _to_shape, _back_to(a.shape))


@_transposes(np.expand_dims)
def _expand_dims(a: Tracer, axis: Any) -> Tracer:
    n_new = len(axis) if isinstance(axis, (tuple, list)) else 1
    axes = _axes(axis, a.ndim + n_new)
    return _unary(a, lambda v: np.expand_dims(v, axes), _to_shape, _back_to(a.shape))


@_transposes(np.broadcast_to)
def _broadcast_to(array: Tracer, shape: Any, subok: bool = False) -> Tracer:
    shape = _shape_tuple(shape)
    return _unary(array, lambda v: np.broadcast_to(v, shape), unbroadcast, "np.broadcast_to")


@_transposes(np.copy)
def _copy(a: Tracer, order: str = "K", subok: bool = False) -> Tracer:
    return a.copy()


@_transposes(np.concatenate)
def _concatenate(arrays: Any, axis: Any = 0, out: Any = None, **kw: Any) -> Any:
    arrays, axis = _joined(arrays, axis)
    tape = tape_of(arrays)
    values = [value_of(a) for a in arrays]
    ax = _axis(axis, np.ndim(values[0]))
    value = np.concatenate(values, axis=ax)
    offsets = np.cumsum([np.shape(v)[ax] for v in values])[:-1]
    result = _record(tape, value, tuple(arrays), _concatenate_vjp, (offsets, ax))
    return _with_out(result, out)


def _concatenate_vjp(ct: Any, payload: Any) -> list[Any]:
    offsets, ax = payload
    return np.split(ct, offsets, axis=ax)


@_transposes(np.stack)
def _stack(arrays: Any, axis: int = 0, out: Any = None, **kw: Any) -> Any:
    arrays = list(arrays)
    tape = tape_of(arrays)
    values = [value_of(a) for a in arrays]
    ax = _axis(axis, np.ndim(values[0]) + 1)
    value = np.stack(values, axis=ax)
    return _with_out(_record(tape, value, tuple(arrays), _stack_vjp, ax), out)


def _stack_vjp(ct: Any, ax: int) -> list[Any]:
    return list(np.moveaxis(ct, ax, 0))


@_transposes(np.where)
def _where(condition: Any, x: Any = None, y: Any = None) -> Any:
    if x is None and y is None:
        return np.where(primal(condition))
    cond = structural.where_condition(condition, x, y)
    tape = tape_of((x, y))
    if tape is None:  # only the condition was traced: it carries no derivative
        return np.where(cond, x, y)
    vx, vy = value_of(x), value_of(y)
    value = np.where(cond, vx, vy)
    return _record(tape, value, (x, y), _where_vjp, (cond, np.shape(vx), np.shape(vy)))


def _where_vjp(ct: Any, payload: Any) -> list[Any]:
    cond, x_shape, y_shape = payload
    c = cond[..., None]
    return [
        unbroadcast(np.where(c, ct, 0.0), x_shape),
        unbroadcast(np.where(c, 0.0, ct), y_shape),
    ]


@_transposes(np.roll)
def _roll(a: Tracer, shift: Any, axis: Any = None) -> Tracer:
    if axis is None:
        return np.reshape(np.roll(np.ravel(a), shift, axis=0), a.shape)
    axes = _axes(axis, a.ndim)
    back = np.negative(shift)
    return _unary(a, lambda v: np.roll(v, shift, axes), lambda ct, s: np.roll(ct, back, axes))


@_transposes(np.flip)
def _flip(m: Tracer, axis: Any = None) -> Tracer:
    axes = _axes(axis, m.ndim)

    def flip(v: Any) -> Any:  # its own inverse
        return np.flip(v, axes)

    return _unary(m, flip, lambda ct, s: np.flip(ct, axes), flip)


def _scatter_add(shape: tuple[int, ...], index: tuple[Any, ...], ct: Any) -> Any:
    """Zeros of ``shape + (k,)`` with ``ct`` added at ``index`` (repeated entries add up)."""
    g = np.zeros(shape + ct.shape[-1:], dtype=ct.dtype)
    np.add.at(g, index, ct)
    return g


@_transposes(np.take)
def _take(a: Tracer, indices: Any, axis: Any = None, out: Any = None, mode: str = "raise"):
    if axis is None:
        a, axis = np.ravel(a), 0
    ax = _axis(axis, a.ndim)
    idx = np.asarray(primal(indices))
    n = a.shape[ax]
    where = np.clip(idx, 0, n - 1) if mode == "clip" else np.mod(idx, max(n, 1))
    index = (slice(None),) * ax + (where,)
    result = _unary(
        a,
        lambda v: np.take(v, idx, ax, mode=mode),
        lambda ct, s: _scatter_add(s, index, ct),
    )
    return _with_out(result, out)


@_transposes(np.take_along_axis)
def _take_along_axis(arr: Tracer, indices: Any, axis: Any = -1) -> Tracer:
    if axis is None:
        arr, axis = np.ravel(arr), 0
    nd = arr.ndim
    ax = _axis(axis, nd)
    idx = np.asarray(primal(indices))
    mesh = [
        np.mod(idx, max(arr.shape[ax], 1))
        if d == ax
        else np.arange(arr.shape[d]).reshape([-1 if e == d else 1 for e in range(nd)])
        for d in range(nd)
    ]
    index = tuple(mesh)
    return _unary(
        arr, lambda v: np.take_along_axis(v, idx, ax), lambda ct, s: _scatter_add(s, index, ct)
    )


@_transposes(np.repeat)
def _repeat(a: Tracer, repeats: Any, axis: Any = None) -> Tracer:
    if axis is None:
        a, axis = np.ravel(a), 0
    ax = _axis(axis, a.ndim)
    return np.take(a, np.repeat(np.arange(a.shape[ax]), repeats), axis=ax)


@_transposes(np.diagonal)
def _diagonal(a: Tracer, offset: int = 0, axis1: int = 0, axis2: int = 1) -> Tracer:
    i, j = _axis(axis1, a.ndim), _axis(axis2, a.ndim)

    def transpose(ct: Any, shape: tuple[int, ...]) -> Any:
        g = np.zeros(shape + ct.shape[-1:], dtype=ct.dtype)
        length = ct.shape[-2]
        rows = np.arange(length) + max(-offset, 0)
        cols = np.arange(length) + max(offset, 0)
        view = np.moveaxis(g, (i, j, len(shape)), (-3, -2, -1))
        view[..., rows, cols, :] = ct
        return g

    return _unary(a, lambda v: np.diagonal(v, offset, i, j), transpose, "np.diagonal")


# --- reductions ----------------------------------------------------------------------------------


@_transposes(np.sum)
def _sum(
    a: Tracer, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False, **kw
):
    where = kw.pop("where", True)
    _reject("np.sum", **kw)
    if where is not True:  # the masked-out entries count as zeros
        a = np.where(primal(where), a, 0.0)
    axes = _axes(axis, a.ndim)

    def transpose(ct: Any, shape: tuple[int, ...]) -> Any:
        full = np.empty(shape + ct.shape[-1:], dtype=ct.dtype)
        full[...] = ct.reshape(_kept_shape(shape, axes) + ct.shape[-1:])  # cheaper than views
        return full

    result = _unary(a, lambda v: np.sum(v, axis=axes, keepdims=keepdims), transpose)
    return _with_out(result, out)


def _kept_shape(shape: tuple[int, ...], axes: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


@_transposes(np.cumsum)
def _cumsum(a: Tracer, axis: Any = None, dtype: Any = None, out: Any = None) -> Tracer:
    if axis is None:
        a, axis = np.ravel(a), 0
    ax = _axis(axis, a.ndim)
    result = _unary(
        a,
        lambda v: np.cumsum(v, axis=ax),
        lambda ct, s: np.flip(np.cumsum(np.flip(ct, ax), axis=ax), ax),
    )
    return _with_out(result, out)


# --- einsum: every product -----------------------------------------------------------------------


@_transposes(np.einsum)
def _einsum(subscripts: Any, *operands: Any, out: Any = None, optimize: Any = False, **kw: Any):
    subscripts, operands = structural.einsum_subscripts(subscripts, operands)
    specs, out_spec = structural._einsum_explicit(subscripts)
    tape = tape_of(operands)
    values = [value_of(o) for o in operands]
    value = np.einsum(
        ",".join(specs) + "->" + out_spec, *values, optimize=structural._einsum_optimize(values)
    )
    live = [node_of(o) >= 0 for o in operands]
    result = _record(tape, value, operands, _einsum_vjp, (specs, out_spec, values, live))
    return _with_out(result, out)


def _einsum_vjp(ct: Any, payload: Any) -> list[Any]:
    """The cotangent of each operand: the einsum of ct with the other operands, into its spec."""
    specs, out_spec, values, live = payload
    specs, out_spec = _without_ellipsis(specs, out_spec, values)
    direction = next(c for c in string.ascii_letters if c not in "".join(specs) + out_spec)
    grads: list[Any] = []
    for i, spec in enumerate(specs):
        if not live[i]:
            grads.append(None)
            continue
        unique = "".join(dict.fromkeys(spec))
        if unique == spec:
            grads.append(_einsum_operand_ct(ct, specs, out_spec, values, i, direction))
            continue
        # a repeated index ('ii'): the cotangent of the diagonal, written onto it
        diagonal = np.einsum(f"{spec}->{unique}", values[i])
        g = _einsum_operand_ct(
            ct, specs[:i] + [unique] + specs[i + 1 :], out_spec,
            values[:i] + [diagonal] + values[i + 1 :], i, direction,
        )  # fmt: skip
        full = np.zeros(np.shape(values[i]) + g.shape[-1:], dtype=g.dtype)
        np.einsum(f"{spec}{direction}->{unique}{direction}", full)[...] = g  # a view
        grads.append(full)
    return grads


def _without_ellipsis(specs: list[str], out_spec: str, values: list[Any]) -> tuple[list[str], str]:
    """The subscripts with each ``...`` spelled out as letters, right-aligned as NumPy broadcasts.

    The cotangent of an operand then keeps that operand's own axis order, wherever its ``...``
    stands ('i...' as much as '...i').
    """
    if "..." not in "".join(specs) + out_spec:
        return specs, out_spec
    spans = [
        np.ndim(v) - len(s.replace("...", "")) if "..." in s else 0 for s, v in zip(specs, values)
    ]
    width = max(spans, default=0)
    used = set("".join(specs) + out_spec)
    fresh = "".join([c for c in string.ascii_letters if c not in used][:width])
    specs = [s.replace("...", fresh[width - n :]) for s, n in zip(specs, spans)]
    return specs, out_spec.replace("...", fresh)


def _einsum_operand_ct(
    ct: Any, specs: list[str], out_spec: str, values: list[Any], i: int, direction: str
) -> Any:
    """Operand i's cotangent, for specs with no ``...`` and no index repeated in one operand."""
    others = [j for j in range(len(specs)) if j != i]
    letters = specs[i]
    present = set(out_spec).union(*(specs[j] for j in others))
    kept = "".join(c for c in letters if c in present)
    target = kept + direction
    inputs = [ct] + [values[j] for j in others]
    g = np.einsum(
        ",".join([out_spec + direction] + [specs[j] for j in others]) + "->" + target,
        *inputs,
        optimize=structural._einsum_optimize(inputs),
    )
    shape = np.shape(values[i])
    if len(kept) < len(letters):  # letters summed in this operand alone: broadcast back
        sizes = list(g.shape)
        for t, c in enumerate(letters):
            if c not in present:
                g = np.expand_dims(g, t)
                sizes.insert(t, shape[t])
        g = np.broadcast_to(g, tuple(sizes))
    return unbroadcast(g, shape)


# --- linear algebra ------------------------------------------------------------------------------


def _linalg(*operands: Any) -> tuple[Any, list[Any]]:
    """The tape and the values of a linear-algebra function's operands."""
    return tape_of(operands), [value_of(o) for o in operands]


@_transposes(np.linalg.solve)
def _solve(a: Any, b: Any) -> Tracer:
    tape, (A, B) = _linalg(a, b)
    X = np.linalg.solve(A, B)
    return _record(tape, X, (a, b), _solve_vjp, (A, B, X))


def _solve_vjp(ct: Any, payload: Any) -> list[Any]:
    """B̄ = A^-T X̄ and Ā = -B̄ X^T, for every direction at once."""
    A, B, X = payload
    At = np.swapaxes(A, -1, -2)
    if np.ndim(B) == 1:
        gB = np.linalg.solve(At, ct)
        gA = -gB[..., :, None, :] * X[..., None, :, None]
    else:
        shape = ct.shape
        gB = np.linalg.solve(At, ct.reshape(shape[:-2] + (-1,))).reshape(shape)
        gA = -np.einsum("...irk,...jr->...ijk", gB, X)
    return [unbroadcast(gA, np.shape(A)), unbroadcast(gB, np.shape(B))]


@_transposes(np.linalg.inv)
def _inv(a: Tracer) -> Tracer:
    tape, (A,) = _linalg(a)
    Y = np.linalg.inv(A)
    return _record(tape, Y, (a,), _inv_vjp, Y)


def _inv_vjp(ct: Any, Y: Any) -> list[Any]:
    """dY = -Y dA Y, so Ā = -Y^T Ȳ Y^T."""
    return [-np.einsum("...ji,...jlk,...ml->...imk", Y, ct, Y)]


def _transposed_times(M: Any, ct: Any) -> Any:
    """Ā[..., i, j, k] = M[..., j, i] ct[..., k]: the cotangent of a scalar trace(M dA)."""
    return np.einsum("...ji,...k->...ijk", M, ct)


@_transposes(np.linalg.det)
def _det(a: Tracer) -> Tracer:
    tape, (A,) = _linalg(a)
    d = np.linalg.det(A)
    if np.isfinite(A).all():
        M = structural._adjugate(A)  # d det = trace(adj(A) dA), also where A is singular
    else:
        M = np.asarray(d)[..., None, None] * np.linalg.inv(A)
    return _record(tape, d, (a,), lambda ct, m: [_transposed_times(m, ct)], M)


@_transposes(np.linalg.slogdet)
def _slogdet(a: Tracer) -> Any:
    tape, (A,) = _linalg(a)
    sign, logabs = np.linalg.slogdet(A)
    inverse = np.linalg.inv(A)  # d log|det A| = trace(A^-1 dA)
    traced = _record(tape, logabs, (a,), lambda ct, m: [_transposed_times(m, ct)], inverse)
    return structural._SlogdetResult(sign, traced)


@_transposes(np.linalg.cholesky)
def _cholesky(a: Tracer, /, *, upper: bool = False) -> Tracer:
    """L L^T = A from A's lower triangle, the transpose of structural._cholesky's tangent map."""
    if upper:
        return np.swapaxes(np.linalg.cholesky(np.swapaxes(a, -1, -2)), -1, -2)
    tape, (A,) = _linalg(a)
    L = np.linalg.cholesky(A)
    return _record(tape, L, (a,), _cholesky_vjp, L)


def _cholesky_vjp(ct: Any, L: Any) -> list[Any]:
    """Forward: S = sym(tril dA), dL = L Φ(L^-1 S L^-T) with Φ = lower half (diagonal halved).

    Transposed: G = L^-T Φ(L^T L̄) L^-1, and Ā takes G on the diagonal, G + G^T below it.
    """
    n = L.shape[-1]
    strict_lower = np.tril(np.ones((n, n)), -1)
    half_lower = strict_lower + 0.5 * np.eye(n)
    Lbar = np.moveaxis(ct, -1, 0)  # directions as a leading batch axis
    Linv = np.linalg.inv(L)
    P = np.swapaxes(L, -1, -2) @ Lbar
    G = np.swapaxes(Linv, -1, -2) @ (P * half_lower) @ Linv
    gA = G * (strict_lower + np.eye(n)) + np.swapaxes(G, -1, -2) * strict_lower
    return [np.moveaxis(gA, 0, -1)]


# --- decompositions: the forward tangent map, transposed by tracing it ---------------------------


def _linearized(tape: Any, a: Tracer, values: tuple[Any, ...], tangent: Any) -> list[Tracer]:
    """One Tracer per output of a decomposition of ``a``.

    ``tangent(dA)`` is structural's tangent map (linear in dA, direction axis last) at these
    values.  Each output's pullback records that map on a tape of its own, with dA a Tracer
    carrying one direction, and pulls the cotangent back through it: its transpose, with no
    second formula to keep in step with the first.
    """
    shape = np.shape(value_of(a))
    return [
        _record(tape, v, (a,), _linearized_vjp, (tangent, i, shape, tape.level))
        for i, v in enumerate(values)
    ]


def _linearized_vjp(ct: Any, payload: Any) -> list[Any]:
    tangent, i, shape, level = payload
    with reverse_recording(level) as inner:
        dA = Tracer._make(inner, np.zeros(shape + (1,)), 0)
        out = tangent(dA)[i]
        g = reverse_pullback(inner, out._node, ct[..., None, :], shape + (1,), True)
    return [g[..., 0, :]]


@_transposes(np.linalg.eigh)
def _eigh(a: Tracer, UPLO: str = "L") -> Any:
    tape, (A,) = _linalg(a)
    w, V = np.linalg.eigh(A, UPLO)
    outs = _linearized(tape, a, (w, V), lambda dA: structural.eigh_tangent(w, V, dA, UPLO))
    return structural.EighResult(*outs)


@_transposes(np.linalg.eig)
def _eig(a: Tracer) -> Any:
    tape, (A,) = _linalg(a)
    w, V = structural.real_eig(A)
    outs = _linearized(tape, a, (w, V), lambda dA: structural.eig_tangent(w, V, dA))
    return structural.EigResult(*outs)


@_transposes(np.linalg.svd)
def _svd(a: Tracer, full_matrices: bool = True, compute_uv: bool = True, hermitian: bool = False):
    tape, (A,) = _linalg(a)
    structural.svd_check(np.shape(A), full_matrices and compute_uv, hermitian)
    U, s, Vh = np.linalg.svd(A, full_matrices=False)
    if not compute_uv:
        return _linearized(tape, a, (s,), lambda dA: structural.svd_tangent(U, s, Vh, dA, False))[0]
    outs = _linearized(tape, a, (U, s, Vh), lambda dA: structural.svd_tangent(U, s, Vh, dA))
    return structural.SVDResult(*outs)


@_transposes(np.linalg.pinv)
def _pinv(a: Tracer, rcond: Any = None, hermitian: bool = False, **kw: Any) -> Tracer:
    if hermitian:
        raise DualError("np.linalg.pinv(..., hermitian=True) is not supported on traced arrays")
    tape, (A,) = _linalg(a)
    P = np.linalg.pinv(A, **({} if rcond is None else {"rcond": rcond}), **kw)
    return _linearized(tape, a, (P,), lambda dA: (structural.pinv_tangent(A, P, dA),))[0]


@_transposes(np.linalg.qr)
def _qr(a: Tracer, mode: str = "reduced") -> Any:
    tape, (A,) = _linalg(a)
    structural.qr_check(np.shape(A), mode)
    Q, R = np.linalg.qr(A, mode="reduced")
    outs = _linearized(tape, a, (Q, R), lambda dA: structural.qr_tangent(Q, R, dA))
    return outs[1] if mode == "r" else structural.QRResult(*outs)


# --- complex numbers (the pairing Re(c * t) of README's "Complex numbers") ----------------------


def _as_complex(ct: Any) -> Any:
    return ct.astype(np.result_type(ct.dtype, np.complex64))


@_transposes(np.real)
def _real(val: Any) -> Any:
    if not np.iscomplexobj(value_of(val)):
        return val
    return _unary(val, np.real, lambda ct, shape: _as_complex(ct))  # Re(c t) = c Re(t), c real


@_transposes(np.imag)
def _imag(val: Any) -> Any:
    if not np.iscomplexobj(value_of(val)):
        return np.zeros(np.shape(value_of(val)), dtype=value_of(val).dtype)
    return _unary(val, np.imag, lambda ct, shape: -1j * ct)  # Re(-i c t) = c Im(t)


def _resize(a: Any, axes: tuple[int, ...], sizes: tuple[int, ...]) -> Any:
    """``a`` cut or padded with zeros to ``sizes`` along ``axes``: what an FFT's n= or s= does
    to its input, and also its transpose (taken from the other side)."""
    index = [slice(None)] * a.ndim
    pad = [(0, 0)] * a.ndim
    for ax, size in zip(axes, sizes):
        index[ax] = slice(0, size)
        pad[ax] = (0, max(size - a.shape[ax], 0))
    return np.pad(a[tuple(index)], pad)


def _fft_transpose(func: Any) -> Callable[..., Any]:
    nd_func, _, real_input = structural.FFTS[func]

    def impl(a: Any, *args: Any, **kwargs: Any) -> Any:
        x = value_of(a)
        if real_input and np.iscomplexobj(x):
            raise TypeError(f"np.fft.{func.__name__} takes real input; got complex")
        transform, axes, norm = structural.fft_call(func, args, kwargs, np.ndim(x))
        y = transform(x)
        in_sizes = tuple(np.shape(x)[ax] for ax in axes)
        if func is np.fft.rfft:  # y = first half of fft(x resized to n): Re of fft(ct padded)
            n = _rfft_length(func, args, kwargs, x, axes)

            def transpose(ct: Any, shape: tuple[int, ...]) -> Any:
                full = np.fft.fft(_resize(ct, axes, (n,)), n, axes[0], norm)
                return np.real(_resize(full, axes, in_sizes))

        elif func is np.fft.irfft:  # x_n = Re(sum_k w_k t_k e^(2 pi i k n / N)) * scale
            n = y.shape[axes[0]]
            half = n // 2 + 1
            weight = np.full(half, 2.0)
            weight[0] = 1.0
            if n % 2 == 0:
                weight[-1] = 1.0
            weight *= {None: 1.0 / n, "backward": 1.0 / n, "ortho": n**-0.5, "forward": 1.0}[norm]

            def transpose(ct: Any, shape: tuple[int, ...]) -> Any:
                w = weight.reshape((-1,) + (1,) * (ct.ndim - axes[0] - 1))
                c = _resize(np.conj(np.fft.rfft(ct, n, axes[0])) * w, axes, in_sizes)
                return c if np.iscomplexobj(x) else c.real

        else:  # fft, ifft, fft2, ifft2, fftn, ifftn: symmetric matrices, their own transposes

            def transpose(ct: Any, shape: tuple[int, ...]) -> Any:
                return _resize(nd_func(ct, None, axes, norm), axes, in_sizes)

        return _record(tape_of((a,)), y, (a,), _unary_vjp, (transpose, np.shape(x)))

    return impl


def _rfft_length(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], x: Any, axes: Any):
    """The n rfft transformed at (its n= argument, or the input's length)."""
    n = kwargs.get("n", args[0] if args else None)
    return x.shape[axes[0]] if n is None else n


for _fft_func in structural.FFTS:
    TRANSPOSES[_fft_func] = _fft_transpose(_fft_func)
