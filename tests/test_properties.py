"""Property tests: random NumPy expression trees, differentiated by dualad and checked in mpmath.

Each tree is evaluated twice from the same description: once with NumPy (on floats or on the
Duals dualad passes in) and once elementwise in mpmath at 40 significant digits.  The mpmath
evaluation gives reference derivatives by central differences whose truncation and rounding errors
are far below the tolerances used, so any disagreement is an error in dualad's derivatives (or an
ill-conditioned example, which the strategy avoids by keeping arguments in safe domains and
rejecting trees whose intermediate values grow large).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mpmath
import numpy as np
import pytest
import scipy.special as sp
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import dualad as da

pytestmark = pytest.mark.usefixtures("both_modes")  # each test runs forward and reverse

MP_DPS = 40
MAX_LEN = 8  # longest vector an intermediate node may produce
MAX_MAGNITUDE = 1e3  # larger intermediate values make float rounding swamp the tolerances

# Offsets that move kinks (abs, maximum, minimum) away from values hypothesis likes (0, 1, ...).
ABS_SHIFT = 0.3183098861837907
MAX_SHIFT = 0.0917352862515627
MIN_SHIFT = 0.2718281828459045
KINK_MARGIN = 1e-6  # examples closer than this to a kink are rejected: the derivative jumps there

mp = mpmath.mp


# --- the operations ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Op:
    """An elementwise operation: its NumPy form and its form on mpmath scalars."""

    name: str
    arity: int
    np_fn: Callable[..., Any]
    mp_fn: Callable[..., Any]
    fmt: str  # how the node prints, with {0}, {1} for the children
    kink: Callable[..., Any] | None = None  # distance of the arguments from a kink, if any
    exponent: Callable[..., Any] | None = None  # the exponent, for powers with a variable one


UNARY_OPS = [
    Op("sin", 1, np.sin, mp.sin, "np.sin({0})"),
    Op("cos", 1, np.cos, mp.cos, "np.cos({0})"),
    Op("tanh", 1, np.tanh, mp.tanh, "np.tanh({0})"),
    Op("neg", 1, lambda t: -t, lambda t: -t, "(-{0})"),
    Op(
        "exp_tanh",
        1,
        lambda t: np.exp(np.tanh(t)),
        lambda t: mp.exp(mp.tanh(t)),
        "np.exp(np.tanh({0}))",
    ),
    Op(
        "exp_sin",
        1,
        lambda t: np.exp(np.sin(t)),
        lambda t: mp.exp(mp.sin(t)),
        "np.exp(np.sin({0}))",
    ),
    Op(
        "log_sq",
        1,
        lambda t: np.log(1.0 + t * t),
        lambda t: mp.log(1 + t * t),
        "np.log(1.0 + {0} * {0})",
    ),
    Op(
        "sqrt_sq",
        1,
        lambda t: np.sqrt(1.0 + t * t),
        lambda t: mp.sqrt(1 + t * t),
        "np.sqrt(1.0 + {0} * {0})",
    ),
    Op("arctan", 1, np.arctan, mp.atan, "np.arctan({0})"),
    Op("arcsinh", 1, np.arcsinh, mp.asinh, "np.arcsinh({0})"),
    Op(
        "cbrt_pos",
        1,
        lambda t: np.cbrt(0.5 + t * t),
        lambda t: mp.cbrt(0.5 + t * t),
        "np.cbrt(0.5 + {0} * {0})",
    ),
    Op(
        "cbrt_neg",
        1,
        lambda t: np.cbrt(np.sin(t) - 2.5),
        lambda t: -mp.cbrt(2.5 - mp.sin(t)),
        "np.cbrt(np.sin({0}) - 2.5)",
    ),
    Op("square", 1, np.square, lambda t: t * t, "np.square({0})"),
    Op(
        "recip",
        1,
        lambda t: np.reciprocal(2.0 + np.sin(t)),
        lambda t: 1 / (2 + mp.sin(t)),
        "np.reciprocal(2.0 + np.sin({0}))",
    ),
    Op(
        "abs",
        1,
        lambda t: np.abs(t - ABS_SHIFT),
        lambda t: abs(t - ABS_SHIFT),
        f"np.abs({{0}} - {ABS_SHIFT!r})",
        lambda t: t - ABS_SHIFT,
    ),
    Op("pow2", 1, lambda t: t**2, lambda t: t**2, "{0} ** 2"),
    Op("pow3", 1, lambda t: np.power(t, 3), lambda t: t**3, "np.power({0}, 3)"),
    Op("pow0", 1, lambda t: t**0, lambda t: mp.mpf(1), "{0} ** 0"),
    Op(
        "pow_m1",
        1,
        lambda t: (1.5 + np.cos(t)) ** -1,
        lambda t: 1 / (1.5 + mp.cos(t)),
        "(1.5 + np.cos({0})) ** -1",
    ),
    Op(
        "pow_half",
        1,
        lambda t: (0.5 + t * t) ** 0.5,
        lambda t: mp.sqrt(0.5 + t * t),
        "(0.5 + {0} * {0}) ** 0.5",
    ),
    Op(
        "pow_1_5",
        1,
        lambda t: np.power(0.5 + t * t, 1.5),
        lambda t: (0.5 + t * t) ** mp.mpf(1.5),
        "np.power(0.5 + {0} * {0}, 1.5)",
    ),
    Op(
        "pow_m07",
        1,
        lambda t: np.float_power(0.5 + t * t, -0.7),
        lambda t: (0.5 + t * t) ** mp.mpf(-0.7),
        "np.float_power(0.5 + {0} * {0}, -0.7)",
    ),
    Op(
        "expm1",
        1,
        lambda t: np.expm1(np.sin(t)),
        lambda t: mp.expm1(mp.sin(t)),
        "np.expm1(np.sin({0}))",
    ),
    Op(
        "log1p_sq",
        1,
        lambda t: np.log1p(t * t),
        lambda t: mp.log1p(t * t),
        "np.log1p({0} * {0})",
    ),
    Op("sinc", 1, np.sinc, mp.sincpi, "np.sinc({0})"),
    Op("erf", 1, sp.erf, mp.erf, "scipy.special.erf({0})"),
]

BINARY_OPS = [
    Op("add", 2, lambda a, b: a + b, lambda a, b: a + b, "({0} + {1})"),
    Op("sub", 2, lambda a, b: a - b, lambda a, b: a - b, "({0} - {1})"),
    Op("mul", 2, lambda a, b: a * b, lambda a, b: a * b, "({0} * {1})"),
    Op(
        "div",
        2,
        lambda a, b: a / (1.5 + np.cos(b)),
        lambda a, b: a / (1.5 + mp.cos(b)),
        "({0} / (1.5 + np.cos({1})))",
    ),
    Op(
        "maximum",
        2,
        lambda a, b: np.maximum(a, b + MAX_SHIFT),
        lambda a, b: max(a, b + MAX_SHIFT),
        f"np.maximum({{0}}, {{1}} + {MAX_SHIFT!r})",
        lambda a, b: a - (b + MAX_SHIFT),
    ),
    Op(
        "minimum",
        2,
        lambda a, b: np.minimum(a, b - MIN_SHIFT),
        lambda a, b: min(a, b - MIN_SHIFT),
        f"np.minimum({{0}}, {{1}} - {MIN_SHIFT!r})",
        lambda a, b: a - (b - MIN_SHIFT),
    ),
    Op(
        "hypot",
        2,
        lambda a, b: np.hypot(a, np.sin(b) - 1.5),
        lambda a, b: mp.hypot(a, mp.sin(b) - 1.5),
        "np.hypot({0}, np.sin({1}) - 1.5)",
    ),
    Op(
        "logaddexp",
        2,
        np.logaddexp,
        lambda a, b: mp.log(mp.exp(a) + mp.exp(b)),
        "np.logaddexp({0}, {1})",
    ),
    Op(
        "arctan2",
        2,
        lambda a, b: np.arctan2(a, 0.5 + b * b),
        lambda a, b: mp.atan2(a, 0.5 + b * b),
        "np.arctan2({0}, 0.5 + {1} * {1})",
    ),
    Op(
        "pow_var",
        2,
        lambda a, b: (0.5 + a * a) ** b,
        lambda a, b: (0.5 + a * a) ** b,
        "(0.5 + {0} * {0}) ** {1}",
        exponent=lambda a, b: b,
    ),
    Op(
        "float_pow_var",
        2,
        lambda a, b: np.float_power(1.5 + np.sin(a), np.tanh(b)),
        lambda a, b: (1.5 + mp.sin(a)) ** mp.tanh(b),
        "np.float_power(1.5 + np.sin({0}), np.tanh({1}))",
        exponent=lambda a, b: np.tanh(b),
    ),
]

ELEMENTWISE = {op.name: op for op in UNARY_OPS + BINARY_OPS}


# --- the expression trees ------------------------------------------------------------------------


class Node:
    """One node of an expression tree over the input vector ``x``; prints as NumPy code.

    ``length`` is the length of the 1-D array the node evaluates to, or None for a scalar.
    """

    __slots__ = ("op", "children", "param", "length")

    def __init__(
        self, op: str, children: tuple[Node, ...] = (), param: Any = None, length: int | None = None
    ) -> None:
        self.op = op
        self.children = children
        self.param = param
        self.length = length

    def __repr__(self) -> str:
        c = [repr(child) for child in self.children]
        if self.op in ELEMENTWISE:
            return ELEMENTWISE[self.op].fmt.format(*c)
        if self.op == "x":
            return "x"
        if self.op == "xi":
            return f"x[{self.param}]"
        if self.op == "const":
            return repr(self.param)
        if self.op == "sum":
            return f"np.sum({c[0]})"
        if self.op == "prod":
            return f"np.prod({c[0]})"
        if self.op == "mean":
            return f"np.mean({c[0]})"
        if self.op == "diff":
            return f"np.diff({c[0]})"
        if self.op == "flip":
            return f"np.flip({c[0]})"
        if self.op == "matmul":
            matrix = np.array2string(np.asarray(self.param), separator=", ", precision=17)
            return f"(np.array({matrix}) @ {c[0]})"
        if self.op == "norm":
            return f"np.linalg.norm(np.concatenate([{c[0]}, np.ones(1)]))"
        if self.op == "cumsum":
            return f"np.cumsum({c[0]})"
        if self.op == "dot":
            matrix = np.array2string(np.asarray(self.param), separator=", ", precision=17)
            if self.children[0].length is None:
                return f"np.dot({c[0]}, np.array({matrix}))"
            return f"np.dot(np.array({matrix}), {c[0]})"
        if self.op == "reverse":
            return f"{c[0]}[::-1]"
        if self.op == "roll":
            return f"np.roll({c[0]}, {self.param})"
        if self.op == "index":
            return f"{c[0]}[{self.param}]"
        if self.op == "reshape_t":
            return f"np.reshape(np.transpose(np.reshape({c[0]}, {self.param})), (-1,))"
        if self.op == "concat":
            parts = [
                f"np.reshape({s}, (1,))" if ch.length is None else s
                for s, ch in zip(c, self.children)
            ]
            return f"np.concatenate([{', '.join(parts)}])"
        raise AssertionError(self.op)


def _as_vector_np(v: Any, length: int | None) -> Any:
    return np.reshape(v, (1,)) if length is None else v


def _as_vector_mp(v: Any, length: int | None) -> Any:
    return np.array([v], dtype=object) if length is None else v


def eval_np(node: Node, x: Any, record: dict[str, list[float]] | None = None) -> Any:
    """Evaluate with NumPy; ``x`` is a float array or a Dual.

    ``record`` (for float ``x`` only) collects the magnitude of every node's value and the
    distance of every kinked operation from its kink.
    """
    ch = [eval_np(c, x, record) for c in node.children]
    op, p = node.op, node.param
    if op in ELEMENTWISE:
        out = ELEMENTWISE[op].np_fn(*ch)
        kink = ELEMENTWISE[op].kink
        if record is not None and kink is not None:
            record["kink"].append(float(np.min(np.abs(kink(*ch)))))
        exponent = ELEMENTWISE[op].exponent
        if record is not None and exponent is not None:
            record["exponent"].append(float(np.min(np.abs(exponent(*ch)))))
    elif op == "x":
        out = x
    elif op == "xi":
        out = x[p]
    elif op == "const":
        out = np.float64(p)
    elif op == "sum":
        out = np.sum(ch[0])
    elif op == "prod":
        out = np.prod(ch[0])
    elif op == "mean":
        out = np.mean(ch[0])
    elif op == "diff":
        out = np.diff(ch[0])
    elif op == "flip":
        out = np.flip(ch[0])
    elif op == "matmul":
        out = np.asarray(p) @ ch[0]
    elif op == "norm":
        out = np.linalg.norm(np.concatenate([ch[0], np.ones(1)]))
    elif op == "cumsum":
        out = np.cumsum(ch[0])
    elif op == "dot":
        matrix = np.asarray(p)
        out = np.dot(ch[0], matrix) if node.children[0].length is None else np.dot(matrix, ch[0])
    elif op == "reverse":
        out = ch[0][::-1]
    elif op == "roll":
        out = np.roll(ch[0], p)
    elif op == "index":
        out = ch[0][p]
    elif op == "reshape_t":
        out = np.reshape(np.transpose(np.reshape(ch[0], p)), (-1,))
    elif op == "concat":
        out = np.concatenate([_as_vector_np(v, c.length) for v, c in zip(ch, node.children)])
    else:  # pragma: no cover
        raise AssertionError(op)
    if record is not None:
        record["size"].append(float(np.max(np.abs(out), initial=0.0)))
    return out


def eval_mp(node: Node, x: list[Any]) -> Any:
    """Evaluate elementwise in mpmath; ``x`` is a list of mpf.  Vectors are object arrays."""
    ch = [eval_mp(c, x) for c in node.children]
    op, p = node.op, node.param
    if op in ELEMENTWISE:
        fn = ELEMENTWISE[op]
        return np.frompyfunc(fn.mp_fn, fn.arity, 1)(*ch)
    if op == "x":
        return np.array(x, dtype=object)
    if op == "xi":
        return x[p]
    if op == "const":
        return mp.mpf(p)
    if op == "sum":
        return ch[0] if node.children[0].length is None else mp.fsum(ch[0])
    if op == "prod":
        return ch[0] if node.children[0].length is None else mp.fprod(ch[0])
    if op == "mean":
        return mp.fsum(ch[0]) / len(ch[0])
    if op == "diff":
        return ch[0][1:] - ch[0][:-1]
    if op == "flip":
        return ch[0][::-1]
    if op == "matmul":
        return np.array(
            [mp.fsum(m * v for m, v in zip(row, ch[0])) for row in np.asarray(p)], dtype=object
        )
    if op == "norm":
        return mp.sqrt(mp.fsum(v * v for v in ch[0]) + 1)
    if op == "cumsum":
        out, total = [], mp.mpf(0)
        for v in ch[0]:
            total += v
            out.append(total)
        return np.array(out, dtype=object)
    if op == "dot":
        matrix = np.asarray(p)
        if node.children[0].length is None:
            return np.array([ch[0] * m for m in matrix], dtype=object)
        return np.array(
            [mp.fsum(m * v for m, v in zip(row, ch[0])) for row in matrix], dtype=object
        )
    if op == "reverse":
        return ch[0][::-1]
    if op == "roll":
        return np.roll(ch[0], p)
    if op == "index":
        return ch[0][p]
    if op == "reshape_t":
        return np.reshape(np.transpose(np.reshape(ch[0], p)), (-1,))
    if op == "concat":
        return np.concatenate([_as_vector_mp(v, c.length) for v, c in zip(ch, node.children)])
    raise AssertionError(op)  # pragma: no cover


# --- strategies ----------------------------------------------------------------------------------


def small_floats(bound: float = 2.0) -> st.SearchStrategy[float]:
    return st.floats(-bound, bound, allow_nan=False, allow_infinity=False)


def points() -> st.SearchStrategy[float]:
    """Coordinates of x: often exactly a special value, where rules branch (x == 0, p == 0)."""
    return st.one_of(st.sampled_from([0.0, 1.0, -1.0, 0.5, -2.0]), small_floats())


def _sum_to_scalar(node: Node) -> Node:
    return node if node.length is None else Node("sum", (node,), None, None)


def _draw_leaf(draw: Any, n: int) -> Node:
    kind = draw(st.sampled_from(["x", "xi", "const", "x", "xi"]))
    if kind == "x":
        return Node("x", (), None, n)
    if kind == "xi":
        return Node("xi", (), draw(st.integers(-n, n - 1)), None)
    return Node("const", (), draw(small_floats()), None)


def _draw_structural(draw: Any, n: int, depth: int) -> Node:
    child = _draw_tree(draw, n, depth - 1)
    length = child.length
    if length is None:
        kind = draw(st.sampled_from(["sum", "dot", "concat"]))
    else:
        kinds = ["sum", "prod", "mean", "norm", "cumsum", "dot", "matmul", "reverse", "flip"]
        kinds += ["roll", "index", "reshape_t", "concat"] + (["diff"] if length > 1 else [])
        kind = draw(st.sampled_from(kinds))
    if kind in ("sum", "prod", "mean", "norm"):
        return Node(kind, (child,), None, None)
    if kind in ("cumsum", "reverse", "flip"):
        return Node(kind, (child,), None, length)
    if kind == "diff":
        return Node("diff", (child,), None, length - 1)
    if kind == "roll":
        return Node("roll", (child,), draw(st.integers(-3, 3)), length)
    if kind == "index":
        return Node("index", (child,), draw(st.integers(-length, length - 1)), None)
    if kind == "reshape_t":
        rows = draw(st.sampled_from([d for d in range(1, length + 1) if length % d == 0]))
        return Node("reshape_t", (child,), (rows, length // rows), length)
    if kind in ("dot", "matmul"):
        m = draw(st.integers(1, 4))
        if length is None:
            return Node("dot", (child,), tuple(draw(small_floats(1.0)) for _ in range(m)), m)
        matrix = tuple(tuple(draw(small_floats(1.0)) for _ in range(length)) for _ in range(m))
        return Node(kind, (child,), matrix, m)
    # concat: keep the result short by summing the longer part while it is too long
    other = _draw_tree(draw, n, depth - 1)
    parts = [child, other]
    while sum(1 if c.length is None else c.length for c in parts) > MAX_LEN:
        i = max(range(2), key=lambda j: parts[j].length or 0)
        parts[i] = _sum_to_scalar(parts[i])
    total = sum(1 if c.length is None else c.length for c in parts)
    return Node("concat", tuple(parts), None, total)


def _draw_tree(draw: Any, n: int, depth: int, root: bool = False) -> Node:
    if depth <= 0 or (not root and draw(st.integers(0, 7)) == 0):
        return _draw_leaf(draw, n)
    kind = draw(st.sampled_from(["unary", "binary", "structural"]))
    if kind == "unary":
        op = draw(st.sampled_from(UNARY_OPS))
        child = _draw_tree(draw, n, depth - 1)
        return Node(op.name, (child,), None, child.length)
    if kind == "binary":
        op = draw(st.sampled_from(BINARY_OPS))
        a = _draw_tree(draw, n, depth - 1)
        b = _draw_tree(draw, n, depth - 1)
        if a.length is not None and b.length is not None and a.length != b.length:
            b = _sum_to_scalar(b)
        return Node(op.name, (a, b), None, a.length if a.length is not None else b.length)
    return _draw_structural(draw, n, depth)


def _record(tree: Node, x: np.ndarray) -> dict[str, list[float]]:
    record: dict[str, list[float]] = {"size": [], "kink": [], "exponent": []}
    with np.errstate(all="ignore"):
        eval_np(tree, x, record)
    return record


def _well_conditioned(tree: Node, x: np.ndarray) -> bool:
    """Moderate intermediate values, none near a kink of abs, maximum or minimum."""
    record = _record(tree, x)
    return all(np.isfinite(m) and m < MAX_MAGNITUDE for m in record["size"]) and all(
        d > KINK_MARGIN for d in record["kink"]
    )


@st.composite
def problems(draw: Any, max_depth: int = 4) -> tuple[Node, np.ndarray]:
    """A tree over x (length n in 1..4) and a point x where its values stay moderate."""
    n = draw(st.integers(1, 4))
    depth = draw(st.sampled_from(range(max_depth, 0, -1)))
    tree = _draw_tree(draw, n, depth, root=True)
    x = np.array(draw(st.lists(points(), min_size=n, max_size=n)))
    assume(_well_conditioned(tree, x))
    return tree, x


def directions(n: int, k: int | None = None) -> st.SearchStrategy[np.ndarray]:
    shape = (n,) if k is None else (n, k)
    size = int(np.prod(shape))
    return st.lists(small_floats(1.0), min_size=size, max_size=size).map(
        lambda v: np.reshape(np.array(v), shape)
    )


# --- references in mpmath ------------------------------------------------------------------------


def _mp_flat(value: Any) -> list[Any]:
    return list(np.ravel(np.array(value, dtype=object)))


def _mp_point(x: np.ndarray, *steps: tuple[Any, np.ndarray]) -> list[Any]:
    """x + sum(h * v for h, v in steps), exactly, as mpf."""
    point = [mp.mpf(float(xi)) for xi in x]
    for h, v in steps:
        point = [pi + h * mp.mpf(float(vi)) for pi, vi in zip(point, v)]
    return point


def mp_jacobian(tree: Node, x: np.ndarray) -> np.ndarray:
    """Central differences at 40 digits with h = 1e-15: error ~1e-25 relative."""
    with mp.workdps(MP_DPS):
        h = mp.mpf("1e-15")
        cols = []
        for j in range(len(x)):
            e = np.zeros(len(x))
            e[j] = 1.0
            plus = _mp_flat(eval_mp(tree, _mp_point(x, (h, e))))
            minus = _mp_flat(eval_mp(tree, _mp_point(x, (-h, e))))
            cols.append([float((a - b) / (2 * h)) for a, b in zip(plus, minus)])
    return np.array(cols).T


def mp_directional(tree: Node, x: np.ndarray, v: np.ndarray) -> np.ndarray:
    """d/dt f(x + t v) at t = 0, by a central difference at 40 digits."""
    with mp.workdps(MP_DPS):
        h = mp.mpf("1e-15")
        plus = _mp_flat(eval_mp(tree, _mp_point(x, (h, v))))
        minus = _mp_flat(eval_mp(tree, _mp_point(x, (-h, v))))
        return np.array([float((a - b) / (2 * h)) for a, b in zip(plus, minus)])


def mp_bilinear(tree: Node, x: np.ndarray, u: np.ndarray, v: np.ndarray) -> float:
    """u^T H v of sum(tree) at x: a mixed second difference at 40 digits with h = 1e-12."""
    with mp.workdps(MP_DPS):
        h = mp.mpf("1e-12")

        def g(su: int, sv: int) -> Any:
            return mp.fsum(_mp_flat(eval_mp(tree, _mp_point(x, (su * h, u), (sv * h, v)))))

        return float((g(1, 1) - g(1, -1) - g(-1, 1) + g(-1, -1)) / (4 * h * h))


def f_of(tree: Node) -> Callable[[Any], Any]:
    def f(x: Any) -> Any:
        return eval_np(tree, x)

    f.__name__ = f"lambda x: {tree!r}"
    return f


def scalar_f_of(tree: Node) -> Callable[[Any], Any]:
    def g(x: Any) -> Any:
        return np.sum(eval_np(tree, x))

    return g


def out_shape(tree: Node) -> tuple[int, ...]:
    return () if tree.length is None else (tree.length,)


def assert_close(actual: Any, expected: Any, rtol: float, atol: Any, what: str) -> None:
    """|actual - expected| <= atol + rtol * |expected| elementwise (atol may be an array)."""
    actual, expected = np.asarray(actual, dtype=float), np.asarray(expected, dtype=float)
    assert actual.shape == expected.shape, f"{what}\nshapes {actual.shape} != {expected.shape}"
    err = np.abs(actual - expected)
    ok = err <= atol + rtol * np.abs(expected)
    assert np.all(ok), f"{what}\nactual   = {actual!r}\nexpected = {expected!r}\nerror    = {err!r}"


# --- the properties ------------------------------------------------------------------------------


#: Set by conftest.py when pytest runs with --slow.
SLOW_ENV = "DUALAD_SLOW_TESTS"


def examples(n: int) -> settings:
    """``n`` examples with ``--slow`` (CI), a quarter of them in a plain ``make test`` (these
    five properties, run in both modes, were 2.5 min of its CPU); no deadline (the first call
    pays for imports and mpmath's caches)."""
    return settings(
        max_examples=n if os.environ.get(SLOW_ENV) else n // 4,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


@examples(800)
@given(problems())
def test_jacobian_matches_mpmath(problem: tuple[Node, np.ndarray]) -> None:
    """A: the Jacobian equals 40-digit central differences to a relative 1e-9."""
    tree, x = problem
    f = f_of(tree)
    with np.errstate(all="ignore"):
        jac = da.jacobian(f, x)
        value = f(x)
    n = len(x)
    assert np.shape(jac) == out_shape(tree) + (n,)
    assert np.shape(value) == out_shape(tree)
    ref = mp_jacobian(tree, x)
    assert_close(np.reshape(jac, (-1, n)), ref, 1e-9, 1e-9, f"f = {tree!r}, x = {x!r}")


@examples(800)
@given(st.data())
def test_jvp_matches_directional_derivative(data: st.DataObject) -> None:
    """B: jvp(f, x, v) is d/dt f(x + t v) (in mpmath) and J @ v, for one and for k directions."""
    tree, x = data.draw(problems())
    n = len(x)
    v = data.draw(directions(n))
    k = data.draw(st.integers(1, 3))
    vk = data.draw(directions(n, k))
    f = f_of(tree)
    where = f"f = {tree!r}, x = {x!r}, v = {v!r}"
    with np.errstate(all="ignore"):
        value, tangent = da.jvp(f, x, v)
        value_k, tangent_k = da.jvp(f, x, vk)
        jac = np.reshape(da.jacobian(f, x), (-1, n))
        expected_value = f(x)
    assert np.shape(tangent) == out_shape(tree)
    assert np.shape(tangent_k) == out_shape(tree) + (k,)
    # values agree to rounding (np.prod on Duals multiplies pairwise, NumPy sequentially)
    assert_close(value, expected_value, 1e-14, 1e-14, where)
    assert_close(value_k, expected_value, 1e-14, 1e-14, where)

    ref = mp_directional(tree, x, v)
    assert_close(np.ravel(tangent), ref, 1e-9, 1e-9, where)

    # the same derivative through the Jacobian: only the order of float sums differs
    scale = 1e-12 * (np.abs(jac) @ np.abs(v) + 1.0)
    assert np.all(np.abs(np.ravel(tangent) - jac @ v) <= scale), where
    jv = jac @ vk
    tk = np.reshape(tangent_k, jv.shape)
    scale_k = 1e-12 * (np.abs(jac) @ np.abs(vk) + 1.0)
    assert np.all(np.abs(tk - jv) <= scale_k), f"{where}, V = {vk!r}"


@examples(1000)
@given(st.data())
def test_hessian_properties(data: st.DataObject) -> None:
    """C: the Hessian of sum(tree) is symmetric, is the Jacobian of the gradient, gives the
    mixed second differences of mpmath, and hvp(f, x, v) is H @ v."""
    tree, x = data.draw(problems(max_depth=3))
    n = len(x)
    u = data.draw(directions(n))
    v = data.draw(directions(n))
    g = scalar_f_of(tree)
    where = f"g = np.sum({tree!r}), x = {x!r}"
    with np.errstate(all="ignore"):
        hess = da.hessian(g, x)
        jac_of_grad = da.jacobian(lambda z: da.gradient(g, z), x)
        hv = da.hvp(g, x, v)
    assert np.shape(hess) == (n, n)
    assert np.shape(hv) == (n,)
    scale = max(1.0, float(np.max(np.abs(hess))))
    assert np.all(np.abs(hess - hess.T) <= 1e-10 * scale), f"{where}\nH = {hess!r}"
    assert_close(jac_of_grad, hess, 1e-12, 1e-12 * scale, where)
    assert_close(hv, hess @ v, 1e-12, 1e-12 * (np.abs(hess) @ np.abs(v) + 1.0), where)

    ref = mp_bilinear(tree, x, u, v)
    assert_close(u @ hess @ v, ref, 1e-8, 1e-8 * scale, f"{where}, u = {u!r}, v = {v!r}")


@examples(600)
@given(problems())
def test_chunking_invariance(problem: tuple[Node, np.ndarray]) -> None:
    """D: the Jacobian (and Hessian) do not depend on how many directions each pass carries."""
    tree, x = problem
    f = f_of(tree)
    g = scalar_f_of(tree)
    with np.errstate(all="ignore"):
        full = da.jacobian(f, x)
        full_h = da.hessian(g, x)
        for c in range(1, len(x) + 1):
            where = f"f = {tree!r}, x = {x!r}, chunk_size = {c}"
            chunked = da.jacobian(f, x, chunk_size=c)
            assert np.shape(chunked) == np.shape(full)
            scale = 1e-14 * max(1.0, float(np.nanmax(np.abs(full), initial=0.0)))
            # NaN (a derivative that does not exist there) must appear in the same places
            np.testing.assert_allclose(chunked, full, 1e-14, scale, equal_nan=True, err_msg=where)
            chunked_h = da.hessian(g, x, chunk_size=c)
            scale_h = 1e-14 * max(1.0, float(np.nanmax(np.abs(full_h), initial=0.0)))
            np.testing.assert_allclose(
                chunked_h, full_h, 1e-14, scale_h, equal_nan=True, err_msg=where
            )


@examples(1000)
@given(st.sampled_from(UNARY_OPS), st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False))
def test_unary_second_derivatives_over_a_wide_range(op: Op, t: float) -> None:
    """E: first and second derivatives of each unary node (a rule applied to itself, nested) are
    finite and match mpmath over |t| <= 1000, where overflow inside a partial can turn a tiny
    derivative into inf or nan."""
    if op.kink is not None:
        assume(abs(op.kink(t)) > KINK_MARGIN)
    with np.errstate(all="ignore"):
        d1 = da.derivative(op.np_fn, t)
        d2 = da.derivative(lambda z: da.derivative(op.np_fn, z), t)
    with mp.workdps(MP_DPS):
        r1 = float(mp.diff(op.mp_fn, mp.mpf(t), 1))
        r2 = float(mp.diff(op.mp_fn, mp.mpf(t), 2))
    where = f"f = lambda t: {op.fmt.format('t')}, t = {t!r}"
    assert_close(d1, r1, 1e-9, 1e-10, f"{where}: first derivative")
    assert_close(d2, r2, 1e-9, 1e-10, f"{where}: second derivative")


# --- bugs the properties above found, kept as explicit regression cases ---------------------------


@pytest.mark.parametrize("power", [np.power, np.float_power])
def test_power_second_derivative_at_zero_exponent(power: Callable[..., Any]) -> None:
    """Found by C: the base partial p * x**(p - 1) was evaluated as p * x**1 where p == 0, so its
    p-derivative there came out x instead of 1/x (H[0, 1] = 2, H[1, 0] = 0.5 at x = 2)."""
    x, p = 2.0, 0.0
    hess = da.hessian(lambda z: power(z[0], z[1]), np.array([x, p]))
    # d2/dx2 = p (p-1) x**(p-2); d2/dx dp = x**(p-1) (1 + p log x); d2/dp2 = x**p log(x)**2
    mixed = x ** (p - 1.0) * (1.0 + p * np.log(x))
    expected = np.array([[0.0, mixed], [mixed, np.log(x) ** 2]])
    np.testing.assert_allclose(hess, expected, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("t", [356.0, -400.0, 800.0])
def test_tanh_second_derivative_at_large_arguments(t: float) -> None:
    """Found by E: with tanh' = 1 / cosh(t)**2, tanh'' was nan for |t| > 355 (cosh**2 overflows)."""
    with np.errstate(all="ignore"):
        d2 = da.derivative(lambda z: da.derivative(np.tanh, z), t)
        hess = da.hessian(lambda z: np.sum(np.tanh(z)), np.array([t, 1.0]))
    with mp.workdps(MP_DPS):
        exact = float(-2 * mp.tanh(t) / mp.cosh(t) ** 2)
    assert d2 == pytest.approx(exact, rel=1e-9, abs=1e-300)
    assert hess[0, 0] == pytest.approx(exact, rel=1e-9, abs=1e-300)
    assert np.all(np.isfinite(hess))
