"""The NumPy surface a peer library's gradient suite exercises, checked in both modes.

The functions, argument shapes, value ranges and keyword combinations are those HIPS/autograd's
own tests use (test_systematic, test_scalar_ops, test_fft, test_linalg, test_numpy: the facts,
not their code); a third of its unary, binary and statistics cases are complex.  Each case makes
a real scalar ``L(x) = sum(Re(w * f(x)))`` (random weights ``w``, complex where ``f(x)`` is) and
checks ``da.gradient(L, x)`` in forward and in reverse mode against central differences in the
real and, for complex ``x``, the imaginary direction (the gradient convention is JAX's and
autograd's: ``dL/dx - i dL/dy``), and against autograd itself where it is installed.

A case either passes or is refused with a clear error (listed in README's supported surface);
a wrong derivative fails the test.  ``python tests/test_peer_surface.py`` prints the pass rates
(real and complex cases separately), e.g. with PYTHONPATH pointing at another checkout.
"""

from __future__ import annotations

import itertools
import operator as op
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import dualad as da

H = 1e-6
RNG = np.random.default_rng(0)
MODES = ("forward", "reverse")


class Case:
    """One function of one differentiated argument: ``spec(*args)`` with ``args[argnum] = x``."""

    def __init__(self, name: str, spec: Any, args: list[Any], argnum: int = 0, **kwargs: Any):
        self.name, self.spec, self.args, self.argnum, self.kwargs = name, spec, args, argnum, kwargs
        self.x = args[argnum]
        self.complex = any(np.iscomplexobj(a) for a in args if not isinstance(a, str))

    def call(self, xp: Any, x: Any) -> Any:
        fun = _resolve(xp, self.spec)
        args = list(self.args)
        args[self.argnum] = x
        return fun(*args, **self.kwargs)

    def __repr__(self) -> str:
        return self.name


def _resolve(xp: Any, spec: Any) -> Callable[..., Any]:
    if not isinstance(spec, str):
        return spec(xp) if getattr(spec, "needs_xp", False) else spec
    fun = xp
    for part in spec.split("."):
        fun = getattr(fun, part)
    return fun


def _xp(fun: Callable[[Any], Callable[..., Any]]) -> Callable[[Any], Callable[..., Any]]:
    fun.needs_xp = True  # type: ignore[attr-defined]
    return fun


def _leaves(y: Any) -> list[Any]:
    if isinstance(y, (tuple, list)):
        return [leaf for item in y for leaf in _leaves(item)]
    return [y]


def _weights(case: Case) -> list[Any]:
    rng = np.random.default_rng(abs(hash(case.name)) % 2**32)
    out = []
    for leaf in _leaves(case.call(np, case.x)):
        shape = np.shape(leaf)
        w = rng.normal(size=shape)
        if np.iscomplexobj(leaf):
            w = w + 1j * rng.normal(size=shape)
        out.append(w)
    return out


def _loss(case: Case, xp: Any, weights: list[Any]) -> Callable[[Any], Any]:
    def L(x: Any) -> Any:
        total = 0.0
        for w, leaf in zip(weights, _leaves(case.call(xp, x))):
            term = xp.sum(w * leaf)
            total = total + (xp.real(term) if np.iscomplexobj(w) else term)
        return total

    return L


def _central(L: Callable[[Any], Any], x: Any) -> Any:
    """dL/dx - i dL/dy (complex x) or dL/dx, by central differences, entry by entry."""
    x = np.asarray(x)
    flat = x.reshape(-1)
    g = np.zeros(flat.shape, dtype=x.dtype)
    for i in range(flat.size):
        for direction in (1.0, 1j) if np.iscomplexobj(x) else (1.0,):
            e = np.zeros(flat.shape, dtype=x.dtype)
            e[i] = H * direction
            slope = (L((flat + e).reshape(x.shape)) - L((flat - e).reshape(x.shape))) / (2 * H)
            g[i] += slope if direction == 1.0 else -1j * slope
    return g.reshape(x.shape)


def run(case: Case, mode: str) -> tuple[str, str]:
    """("pass" | "wrong" | "refused" | "crash", detail)."""
    weights = _weights(case)
    L = _loss(case, np, weights)
    expected = _central(L, case.x)
    try:
        got = np.asarray(da.gradient(L, case.x, mode=mode))
    except (da.DualError, TypeError, ValueError, NotImplementedError) as error:
        return "refused", f"{type(error).__name__}: {str(error).splitlines()[0][:160]}"
    except Exception as error:  # noqa: BLE001 - counted, reported
        return "crash", f"{type(error).__name__}: {error}"
    scale = 1.0 + np.max(np.abs(expected), initial=0.0)
    if got.shape != np.shape(expected) or not np.allclose(
        got, expected, rtol=1e-5, atol=1e-6 * scale
    ):
        return "wrong", f"got {got!r}, central differences {expected!r}"
    return "pass", ""


# --- the cases ---------------------------------------------------------------------------------


def _lims(lims: Any, x: Any) -> Any:
    return x * (lims[1] - lims[0]) + lims[0]


R = RNG.standard_normal


def _rand(*shape: int) -> Any:
    return RNG.random(shape) if shape else RNG.random()


CASES: list[Case] = []


def _add(case: Case) -> None:
    CASES.append(case)


def _unary(name: str, lims: Any = (-2, 2), complex_too: bool = True, spec: Any = None) -> None:
    inputs = [
        _lims(lims, 0.4),
        _lims(lims, _rand(2)),
        _lims(lims, _rand(3, 2)),
        _lims(lims, _rand(1, 2)),
    ]
    if complex_too:
        inputs += [
            _lims(lims, 0.4) + 0.1j * _lims(lims, 0.3),
            _lims(lims, _rand(3, 2)) + 0.1j * _rand(3, 2),
        ]
    for i, x in enumerate(inputs):
        _add(Case(f"{name}[{i}]", spec or name, [x]))


for _name, _lim, _cplx in [
    ("sin", (-2, 2), True), ("abs", (0.1, 4.0), True), ("absolute", (0.1, 4.0), True),
    ("arccosh", (1.1, 4.0), True), ("arcsinh", (-0.9, 0.9), True), ("arctanh", (-0.9, 0.9), True),
    ("ceil", (-1.5, 1.5), False), ("cos", (-2, 2), True), ("cosh", (-2, 2), True),
    ("deg2rad", (-2, 2), False), ("exp", (-2, 2), True), ("exp2", (-2, 2), True),
    ("expm1", (-2, 2), True), ("fabs", (-2, 2), False), ("floor", (-1.5, 1.5), False),
    ("log", (0.2, 2.0), True), ("log10", (0.2, 2.0), True), ("log1p", (0.2, 2.0), True),
    ("log2", (0.2, 2.0), True), ("radians", (-2, 2), False), ("sign", (-2, 2), True),
    ("sinh", (-2, 2), True), ("sqrt", (1.0, 3.0), True), ("square", (-2, 2), False),
    ("tan", (-1.1, 1.1), True), ("tanh", (-2, 2), True), ("real", (-2, 2), True),
    ("real_if_close", (-2, 2), True), ("imag", (-2, 2), True), ("conj", (-2, 2), True),
    ("angle", (-2, 2), True),
    # test_scalar_ops adds these (scalars there; the shapes above here)
    ("arccos", (-0.9, 0.9), True), ("arcsin", (-0.9, 0.9), True), ("arctan", (-2, 2), True),
    ("negative", (-2, 2), True), ("reciprocal", (0.5, 2.0), True), ("sinc", (-2, 2), False),
    ("rad2deg", (-2, 2), False), ("degrees", (-2, 2), False),
]:  # fmt: skip
    _unary(_name, _lim, _cplx)


def _binary(name: str, spec: Any, lims_a=(-2, 2), lims_b=(-2, 2), complex_too=True, same=True):
    A = [_lims(lims_a, x) for x in (0.6, _rand(2), _rand(3, 2), _rand(1, 2))]
    B = [_lims(lims_b, x) for x in ((0.6 if same else 0.7), _rand(2), _rand(3, 2), _rand(1, 2))]
    pairs = list(itertools.product(A, B))
    if complex_too:
        ca = [
            _lims(lims_a, x)
            for x in (0.6, 0.6 + 0.3j, _rand(2), _rand(3, 2) + 0.1j * _rand(3, 2), _rand(1, 2))
        ]
        cb = [
            _lims(lims_b, x)
            for x in (
                (0.6 if same else 0.1 + 0.2j),
                0.7 + 0.3j,
                _rand(2),
                _rand(3, 2) + 0.1j * _rand(3, 2),
                _rand(1, 2),
            )
        ]
        pairs += [
            (a, b) for a, b in itertools.product(ca, cb) if np.iscomplexobj(a) or np.iscomplexobj(b)
        ]
    for i, (a, b) in enumerate(pairs):
        for argnum in (0, 1):
            _add(Case(f"{name}[{i},{argnum}]", spec, [a, b], argnum))


_binary("add", "add")
_binary("logaddexp", "logaddexp", complex_too=False)
_binary("logaddexp2", "logaddexp2", complex_too=False)
_binary("remainder", "remainder", (-0.9, 0.9), (0.7, 1.9), complex_too=False, same=False)
_binary("true_divide", "true_divide", lims_b=(0.8, 1.2), complex_too=False)
_binary("mod", "mod", lims_b=(0.8, 2.1), complex_too=False, same=False)
_binary("true_divide_neg", "true_divide", lims_b=(-0.3, -2.0), complex_too=False)
_binary("mod_neg", "mod", lims_b=(-0.3, -2.0), complex_too=False, same=False)
_binary("op.mul", op.mul)
_binary("op.add", op.add)
_binary("op.sub", op.sub)
_binary("op.mod", op.mod, lims_b=(0.3, 2.0), complex_too=False, same=False)
_binary("op.mod_neg", op.mod, lims_b=(-0.3, -2.0), complex_too=False, same=False)
_binary("op.truediv", op.truediv, lims_b=(0.5, 2.0))
_binary("op.pow", op.pow, lims_a=(0.7, 2.0))
_binary("arctan2", "arctan2", complex_too=False)
_binary("hypot", "hypot", complex_too=False)


def _stat(name: str) -> None:
    x, A, B, C, D = 3.5, R(), R(3), R((2, 3)), R((1, 3))
    c, E = R() + 0.1j * R(), R((2, 3)) + 0.1j * R((2, 3))
    n = 0

    def add(arr: Any, **kw: Any) -> None:
        nonlocal n
        _add(Case(f"{name}[{n}]", name, [arr], **kw))
        n += 1

    for arr in (x, A):
        add(arr)
    for arr, axis, keep in itertools.product((B, C, D), (None, 0), (True, False)):
        add(arr, axis=axis, keepdims=keep)
    for arr, axis, keep in itertools.product((C, D), (None, 0, 1), (True, False)):
        add(arr, axis=axis, keepdims=keep)
    add(c)
    for axis, keep in itertools.product((None, 0), (True, False)):
        add(E, axis=axis, keepdims=keep)


for _name in ("max", "mean", "min", "sum", "prod", "var", "std"):
    _stat(_name)


def _combo(name: str, spec: Any, argnums: Any, *arg_lists: Any, **kw_lists: Any) -> None:
    """Every combination of the arguments and keywords, differentiated in each argnum."""
    keys = list(kw_lists)
    n = 0
    for args in itertools.product(*arg_lists):
        for values in itertools.product(*[kw_lists[k] for k in keys]):
            for argnum in argnums:
                _add(Case(f"{name}[{n}]", spec, list(args), argnum, **dict(zip(keys, values))))
                n += 1


_combo(
    "transpose",
    "transpose",
    [0],
    [R((2, 3, 4))],
    axes=[None, [0, 1, 2], [0, 2, 1], [2, 0, 1], [2, 1, 0], [1, 0, 2], [1, 2, 0]],
)
_combo("repeat", "repeat", [0], [R((2, 3, 4)), R((3, 1))], repeats=[0, 1, 2], axis=[None, 0, 1])
_combo("diff", "diff", [0], [R((5, 5)), R((5, 5, 5))], n=[1, 2], axis=[0, 1])
_combo("diff1", "diff", [0], [R(1), R((1, 1))], axis=[0])
_combo("diff2", "diff", [0], [R((1, 1)), R((3, 1))], axis=[1])
_combo("tile", "tile", [0], [R((2, 1, 3, 1))], reps=[(1, 4, 1, 2)])
_combo("tile2", "tile", [0], [R((1, 2))], reps=[(1, 2), (2, 3), (3, 2, 1)])
_combo("tile3", "tile", [0], [R(1)], reps=[(2,), 2])
_combo("kron", "kron", [0, 1], [R((5, 5)), R((4, 4))], [R((3, 3)), R((2, 2))])
_combo("inner", "inner", [0, 1], [1.5, R(3), R((2, 3))], [0.3, R(3), R((4, 3))])
_combo(
    "dot", "dot", [0, 1], [1.5, R(3), R((2, 3)), R((2, 2, 3))], [0.3, R(3), R((3, 4)), R((2, 3, 4))]
)
_combo("matmul", "matmul", [0, 1], [R(3), R((2, 3)), R((2, 2, 3))], [R(3), R((3, 4)), R((2, 3, 4))])
_combo(
    "tensordot1",
    "tensordot",
    [0, 1],
    [R((1, 3)), R((2, 3, 2))],
    [R(3), R((3, 1)), R((3, 4, 2))],
    axes=[[(1,), (0,)]],
)
_combo(
    "tensordot2",
    "tensordot",
    [0, 1],
    [R(3), R((3, 1)), R((3, 4, 2))],
    [R((1, 3)), R((2, 3, 2))],
    axes=[[(0,), (1,)]],
)
_combo(
    "tensordot3",
    "tensordot",
    [0, 1],
    [R((2, 3)), R((2, 3, 4))],
    [R((1, 2, 3)), R((2, 2, 3, 4))],
    axes=[[(0, 1), (1, 2)], [(1, 0), (2, 1)]],
)
_combo(
    "tensordot4",
    "tensordot",
    [0, 1],
    [R((2, 2)), R((4, 2, 2))],
    [R((2, 2)), R((2, 2, 4))],
    axes=[1, 2],
)
_combo("tensordot5", "tensordot", [0, 1], [R(4)], [R()], axes=[0])
_combo("tensordot6", "tensordot", [0, 1], [R((2, 6))], [R((6, 3))], axes=[[[-1], [0]]])
for _name in ("maximum", "fmax", "minimum", "fmin"):
    _combo(_name, _name, [0, 1], [R(1), R((1, 4)), R((3, 4))], [R(1), R((1, 4)), R((3, 4))])
_combo("sort", "sort", [0], [R(1), R(7)])
_combo("partition", "partition", [0], [R(7), R(14)], kth=[0, 3, 6])
for _name in ("atleast_1d", "atleast_2d", "atleast_3d"):
    _combo(_name, _name, [0], [1.2, R(1), R(7), R((1, 4)), R((2, 4)), R((2, 4, 5))])
_combo("einsum_transpose", "einsum", [1], ["ij->ji"], [R((1, 1)), R((4, 4)), R((3, 4))])
_combo("einsum_matmult", "einsum", [1, 2], ["ij,jk->ik"], [R((2, 3))], [R((3, 4))])
_combo(
    "einsum_matmult_broadcast",
    "einsum",
    [1, 2],
    ["...ij,...jk->...ik"],
    [R((2, 3)), R((2, 2, 3))],
    [R((3, 4)), R((2, 3, 4))],
)
_combo("einsum_covsum", "einsum", [1, 2], ["ijk,lji->lki"], [R((3, 4, 4))], [R((4, 4, 3))])
_combo(
    "einsum_ellipses",
    "einsum",
    [1, 2],
    ["...jk,...lj->...lk", "...,...->..."],
    [R((4, 4)), R((3, 4, 4))],
    [R((4, 4)), R((3, 4, 4))],
)
_combo(
    "einsum_ellipses_tail",
    "einsum",
    [1, 2],
    ["jk...,lj...->lk..."],
    [R((3, 2)), R((3, 2, 4))],
    [R((2, 3)), R((2, 3, 4))],
)
_combo(
    "einsum_ellipses_center",
    "einsum",
    [1, 2],
    ["j...k,lj...->lk..."],
    [R((2, 2)), R((2, 2, 2))],
    [R((2, 2)), R((2, 2, 2))],
)
_combo(
    "einsum_three_args",
    "einsum",
    [1, 2],
    ["ijk,lji,lli->lki"],
    [R((3, 4, 4))],
    [R((4, 4, 3))],
    [R((4, 4, 3))],
)
_combo("einsum2_matmult", "einsum", [0, 2], [R((2, 3))], [(0, 1)], [R((3, 4))], [(1, 2)], [(0, 2)])
_combo(
    "einsum2_covsum",
    "einsum",
    [0, 2],
    [R((3, 4, 4))],
    [(0, 1, 2)],
    [R((4, 4, 3))],
    [(3, 1, 0)],
    [(3, 2, 0)],
)
_combo("trace", "trace", [0], [R((5, 5)), R((4, 5)), R((5, 4)), R((3, 4, 5))], offset=[-1, 0, 1])
_combo("diag", "diag", [0], [R((5, 5)), R(5)], k=[-1, 0, 1])
_combo("tril", "tril", [0], [R((5, 5)), R((5, 5, 4))], k=[-1, 0, 1])
_combo("triu", "triu", [0], [R((5, 5)), R((5, 5, 4))], k=[-1, 0, 1])
_combo("swapaxes", "swapaxes", [0], [R((3, 4, 5))], axis1=[0, 1, 2], axis2=[0, 1, 2])
_combo("rollaxis", "rollaxis", [0], [R((2, 3, 4))], axis=[0, 1, 2], start=[0, 1, 2, 3])
_combo(
    "cross",
    "cross",
    [0, 1],
    [R((3, 3))],
    [R((3, 3))],
    axisa=[-1, 0, 1],
    axisb=[-1, 0, 1],
    axisc=[-1, 0, 1],
    axis=[None, -1, 0, 1],
)
_combo("vsplit", "vsplit", [0], [R((4, 8)), R((4, 4, 4))], [2, [1, 2]])
_combo("hsplit", "hsplit", [0], [R((4, 8)), R((4, 4, 4))], [2, [1, 2]])
_combo("dsplit", "dsplit", [0], [R((4, 4, 4))], [2, [1, 2]])
_combo("split", "split", [0], [R((4, 8)), R((4, 4, 4))], [2, [1, 2]], axis=[0, 1])
_combo("array_split", "array_split", [0], [R((7, 7)), R((7, 7, 7))], [4, [3, 5]], axis=[0, 1])
_combo(
    "concatenate",
    _xp(lambda xp: lambda a, b, **kw: xp.concatenate([a, b], **kw)),
    [0, 1],
    [R((2, 2))],
    [R((2, 2))],
    axis=[0, 1],
)
# (row_stack: a deprecated alias of vstack in NumPy 2, which warns)
for _name in ("vstack", "hstack", "column_stack", "dstack"):
    _combo(
        _name,
        _xp(lambda xp, n=_name: lambda a, b: getattr(xp, n)((a, b))),
        [0, 1],
        [R((2, 3))],
        [R((2, 3))],
    )
_combo(
    "stack",
    _xp(lambda xp: lambda a, b, **kw: xp.stack((a, b), **kw)),
    [0, 1],
    [R(2)],
    [R(2)],
    axis=[0, 1],
)
_combo(
    "select",
    _xp(lambda xp: lambda a, b: xp.select([a > 0, b > 0], [a, b], default=1.1)),
    [0, 1],
    [R((3, 4, 5))],
    [R((3, 4, 5))],
)

# --- test_fft (autograd checks these in reverse mode only) ------------------------------------

_D5, _D4 = R((5, 5)), R((4, 4)) / 10
_CUBE5, _CUBE4 = R((5, 5, 5)) / 10, R((4, 4, 4)) / 10
for _name, _spec, _x, _kw in [
    ("fft", "fft.fft", _D5, {}), ("fft_ortho", "fft.fft", _D5, {"norm": "ortho"}),
    ("fft_axis", "fft.fft", _D5, {"axis": 0}), ("fft_n_smaller", "fft.fft", _D5, {"n": 3}),
    ("fft_n_bigger", "fft.fft", _D5, {"n": 7}), ("ifft", "fft.ifft", _D5, {}),
    ("ifft_n_smaller", "fft.ifft", _D5, {"n": 3}), ("ifft_n_bigger", "fft.ifft", _D5, {"n": 7}),
    ("rfft", "fft.rfft", _D4, {}), ("rfft_ortho", "fft.rfft", _D4, {"norm": "ortho"}),
    ("rfft_axis", "fft.rfft", _D4, {"axis": 0}), ("rfft_n_smaller", "fft.rfft", _D4, {"n": 2}),
    ("rfft_n_bigger", "fft.rfft", _D4, {"n": 6}),
    ("irfft", "fft.irfft", np.fft.rfft(_D4), {}),
    ("irfft_ortho", "fft.irfft", np.fft.rfft(_D4), {"norm": "ortho"}),
    ("irfft_n_smaller", "fft.irfft", np.fft.rfft(_D4), {"n": 2}),
    ("irfft_n_bigger", "fft.irfft", np.fft.rfft(_D4), {"n": 6}),
    ("fft2", "fft.fft2", _D5 / 10, {}), ("ifft2", "fft.ifft2", _D5, {}),
    ("fftn", "fft.fftn", _D5 / 10, {}), ("ifftn", "fft.ifftn", _D5, {}),
    ("fft2_s", "fft.fft2", _CUBE5, {"s": [7, 3], "axes": [0, 2]}),
    ("ifft2_s", "fft.ifft2", _CUBE5, {"s": [7, 3], "axes": [0, 2]}),
    ("fftn_s", "fft.fftn", _CUBE5, {"s": [7, 3], "axes": [0, 2]}),
    ("ifftn_s", "fft.ifftn", _CUBE5, {"s": [7, 3], "axes": [0, 2]}),
    ("rfft2", "fft.rfft2", _D4, {}), ("irfft2", "fft.irfft2", np.fft.rfft2(_D4), {}),
    ("rfft2_s", "fft.rfft2", _CUBE4, {"s": [6, 2], "axes": [0, 2]}),
    ("irfft2_s", "fft.irfft2", np.fft.rfft2(_CUBE4), {"s": [6, 2], "axes": [0, 2]}),
    ("rfftn", "fft.rfftn", _CUBE4, {}), ("rfftn_axes", "fft.rfftn", _CUBE4, {"axes": (0, 2)}),
    ("rfftn_s", "fft.rfftn", _CUBE4, {"s": [6, 2], "axes": [0, 2]}),
    ("irfftn", "fft.irfftn", np.fft.rfftn(_CUBE4), {}),
    ("irfftn_s", "fft.irfftn", np.fft.rfftn(_CUBE4), {"s": [6, 2], "axes": [0, 2]}),
    ("fftshift", "fft.fftshift", _D5, {}), ("fftshift_even", "fft.fftshift", _D4, {}),
    ("fftshift_axes", "fft.fftshift", _D5, {"axes": 1}), ("ifftshift", "fft.ifftshift", _D5, {}),
    ("ifftshift_even", "fft.ifftshift", _D4, {}),
    ("ifftshift_axes", "fft.ifftshift", _D5, {"axes": 1}),
    ("fft_complex", "fft.fft", _D5 + 1j * R((5, 5)), {}),
    ("ifft2_complex", "fft.ifft2", _D4 + 1j * R((4, 4)), {}),
]:  # fmt: skip
    _add(Case(_name, _spec, [_x], **_kw))

# --- test_linalg (the functions and shapes; symmetric or well-conditioned inputs as there) ----


def _spd(n: int) -> Any:
    a = R((n, n))
    return a @ a.T + n * np.eye(n)


_M3 = R((3, 3)) + 3 * np.eye(3)
_S3 = _spd(3)
_STACK = np.stack([R((3, 3)) + 3 * np.eye(3) for _ in range(2)])
for _name, _spec, _args, _argnum, _kw in [
    ("inv", "linalg.inv", [_M3], 0, {}), ("inv_3d", "linalg.inv", [_STACK], 0, {}),
    ("det", "linalg.det", [_M3], 0, {}), ("det_3d", "linalg.det", [_STACK], 0, {}),
    ("slogdet", "linalg.slogdet", [_S3], 0, {}), ("slogdet_3d", "linalg.slogdet", [_STACK], 0, {}),
    ("solve_arg1", "linalg.solve", [_M3, R(3)], 0, {}),
    ("solve_arg2", "linalg.solve", [_M3, R(3)], 1, {}),
    ("solve_matrix", "linalg.solve", [_M3, R((3, 4))], 0, {}),
    ("solve_3d", "linalg.solve", [_STACK, R((2, 3, 4))], 0, {}),
    ("norm", "linalg.norm", [R(4)], 0, {}), ("norm_ord1", "linalg.norm", [R(4)], 0, {"ord": 1}),
    ("norm_inf", "linalg.norm", [R(4)], 0, {"ord": np.inf}),
    ("norm_ord3", "linalg.norm", [R(4)], 0, {"ord": 3}),
    ("norm_fro", "linalg.norm", [R((3, 4))], 0, {"ord": "fro"}),
    ("norm_nuc", "linalg.norm", [R((3, 4))], 0, {"ord": "nuc"}),
    ("norm_axis", "linalg.norm", [R((3, 4, 2))], 0, {"axis": (0, 2)}),
    ("norm_complex", "linalg.norm", [R(4) + 1j * R(4)], 0, {}),
    ("eigh", "linalg.eigh", [_S3], 0, {}), ("eigvalsh", "linalg.eigvalsh", [_S3], 0, {}),
    ("eigh_3d", "linalg.eigh", [np.stack([_S3, _spd(3)])], 0, {}),
    ("cholesky", "linalg.cholesky", [_S3], 0, {}),
    ("svd", "linalg.svd", [R((3, 4))], 0, {"full_matrices": False}),
    ("svd_values", "linalg.svd", [R((4, 3))], 0, {"compute_uv": False}),
    ("pinv", "linalg.pinv", [R((3, 4))], 0, {}),
    ("matrix_power", "linalg.matrix_power", [_M3 / 3], 0, {"n": 3}),
    ("inv_complex", "linalg.inv", [_M3 + 0.3j * R((3, 3))], 0, {}),
    ("det_complex", "linalg.det", [_M3 + 0.3j * R((3, 3))], 0, {}),
    ("solve_complex", "linalg.solve", [_M3 + 0.3j * R((3, 3)), R(3) + 1j * R(3)], 1, {}),
    ("eigh_complex", "linalg.eigh", [_S3 + 0j], 0, {}),
]:  # fmt: skip
    _add(Case(_name, _spec, _args, _argnum, **_kw))


# --- the tests ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_peer_case(case: Case, mode: str):
    """Right against central differences, or refused with an error that says what."""
    status, detail = run(case, mode)
    assert status in ("pass", "refused"), detail
    if status == "refused":
        assert any(word in detail for word in ("dualad", "complex", "not supported", "da.")), detail


def test_peer_pass_rate():
    """The share that passes (not refused) does not fall below what this branch measured."""
    counts = tally()
    assert counts["real"]["pass"] >= 0.97 * sum(counts["real"].values())
    assert counts["complex"]["pass"] >= 0.90 * sum(counts["complex"].values())


# autograd warns when an input does not reach its output (a zero gradient for some cases here,
# e.g. a function of a constant): that is the expected answer, which dualad gives too
@pytest.mark.filterwarnings("ignore:Output seems independent of input:UserWarning")
def test_autograd_agrees():
    """autograd's own gradient of the same L, on the cases dualad passes (autograd's complex
    convention is JAX's: dL/dx - i dL/dy)."""
    autograd = pytest.importorskip("autograd")
    anp = pytest.importorskip("autograd.numpy")
    checked = 0
    for case in CASES[::7]:  # a sample, to keep the test short
        if run(case, "reverse")[0] != "pass":
            continue
        weights = _weights(case)
        try:
            expected = autograd.grad(_loss(case, anp, weights))(case.x)
        except Exception:  # noqa: BLE001 - autograd lacks some of these
            continue
        got = da.gradient(_loss(case, np, weights), case.x, mode="reverse")
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-10, err_msg=case.name)
        checked += 1
    assert checked > 50


_TALLY: dict[str, dict[str, int]] | None = None


def tally(verbose: bool = False) -> dict[str, dict[str, int]]:
    global _TALLY
    if _TALLY is not None and not verbose:
        return _TALLY
    counts = {
        kind: {"pass": 0, "wrong": 0, "refused": 0, "crash": 0} for kind in ("real", "complex")
    }
    for case in CASES:
        for mode in MODES:
            status, detail = run(case, mode)
            counts["complex" if case.complex else "real"][status] += 1
            if verbose and status != "pass":
                print(f"{status:8s} {mode:8s} {case.name}: {detail[:200]}")
    _TALLY = counts
    return counts


def tally_by_test() -> dict[str, tuple[int, int]]:
    """Per peer test (the case name before its index): (tests passing in both modes, tests)."""
    groups: dict[tuple[str, bool], bool] = {}
    for case in CASES:
        key = (case.name.split("[")[0], case.complex)
        ok = all(run(case, mode)[0] == "pass" for mode in MODES)
        groups[key] = groups.get(key, True) and ok
    out = {}
    for kind in (False, True):
        values = [ok for (_, cplx), ok in groups.items() if cplx == kind]
        out["complex" if kind else "real"] = (sum(values), len(values))
    return out


if __name__ == "__main__":
    import warnings

    warnings.simplefilter("ignore")
    result = tally(verbose="-v" in sys.argv)
    for kind, c in result.items():
        total = sum(c.values())
        print(f"{kind}: {c['pass']}/{total} pass ({100 * c['pass'] / total:.1f}%), {c}")
    for kind, (ok, n) in tally_by_test().items():
        print(f"{kind} peer tests passing in both modes: {ok}/{n} ({100 * ok / n:.1f}%)")
