"""Forward against reverse mode as the input dimension n grows: the harness of `make bench`.

    python benchmarks/forward_vs_reverse.py [--quick] [--n-max N] [--repeats R]
                                            [--engines dualad-fwd,fd,...] [--families ...]
                                            [--out bench-results/]

Five problem families, each a function of n written once for NumPy-like namespaces (numpy,
jax.numpy, autograd.numpy, torch) and, where natural, as a Numba loop for the compiled engine:

- ``rosenbrock``  R^n -> R    (scalar loss, chained)
- ``logistic``    R^n -> R    (logistic-regression loss, fixed random data of 50 samples)
- ``pde``         R^n -> R^n  (residual of -u'' + u**3 = 1 on a uniform grid; square)
- ``wide``        R^n -> R^3  (three weighted sums of nonlinear functions of x)
- ``tall``        R^3 -> R^n  (a parametric curve sampled at n points)

``n`` is the dimension that grows; ``m`` in the results is the other one (the number of outputs,
or of inputs for ``tall``).  Every engine in ``ENGINES`` computes the dense Jacobian; its answer
is checked against dualad's forward mode (NumPy engine) before it is timed (finite differences
with a loose tolerance), and a wrong answer is recorded as "wrong", never timed.  Engines that
cannot run (peer not importable, no loop form, reverse mode not implemented yet) are recorded as
"skipped: <reason>".  ``f`` itself is timed as a reference line.  Each time is the median of
``--repeats`` repeats (each repeat loops for a minimum time) after a warm-up; the first call is
recorded apart, and ``compile_s`` = first call - median.  Once an engine takes longer than
``--max-seconds`` per call it is skipped for larger n of that family.

Writes ``results.csv``, ``results.json`` and one PNG per family (if matplotlib is installed) into
``--out``, prints a table, and for each family the smallest n at which the best reverse engine
beats the best forward engine ("crossover").  A reverse engine is one more entry in ``ENGINES``
with ``mode="reverse"``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from timing import fmt, one_thread, quartiles, warm_cpu

import dualad as da

FULL_GRID = (1, 3, 10, 30, 100, 300, 1000, 3000, 10_000)
QUICK_GRID = (1, 10, 100)  # quick mode: a smoke run of every engine, no crossover claimed
M_SAMPLES = 50  # logistic regression: fixed number of samples
SQUARE_N_MAX = 3000  # a dense n x n Jacobian beyond this is too large (10^4: 800 MB per copy)
AD_RTOL = 1e-9  # an AD peer against dualad forward, relative to the Jacobian's largest entry
FD_RTOL = 1e-5  # finite differences against dualad forward
MIN_CROSSOVER_REPEATS = 5  # fewer repeats than this: no crossover is claimed (quick mode)
FIELDS = (
    "family", "engine", "mode", "n", "m", "median_s", "q25_s", "q75_s", "repeats",
    "first_call_s", "compile_s", "status",
)  # fmt: skip


class Skip(Exception):
    """An engine that cannot run a problem (the message is the reason)."""


# --- namespaces: numpy, jax.numpy, autograd.numpy and torch behind one small interface ----------


@dataclass
class Backend:
    xp: Any  # the module with sum, sin, exp, log1p, tanh, stack
    const: Callable[[np.ndarray], Any]  # a NumPy constant as this namespace's array
    cat: Callable[[list], Any]  # concatenate


def numpy_backend() -> Backend:
    return Backend(np, lambda a: a, np.concatenate)


def jax_backend() -> Backend:
    import jax.numpy as jnp

    return Backend(jnp, jnp.asarray, jnp.concatenate)


def autograd_backend() -> Backend:
    import autograd.numpy as anp

    return Backend(anp, lambda a: a, anp.concatenate)


def torch_backend() -> Backend:
    import torch

    return Backend(torch, torch.from_numpy, torch.cat)


# --- the problem families -----------------------------------------------------------------------


def rosenbrock(b: Backend, data: dict[str, np.ndarray]) -> Callable[[Any], Any]:
    xp = b.xp

    def f(x):
        return xp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)

    return f


def logistic(b: Backend, data: dict[str, np.ndarray]) -> Callable[[Any], Any]:
    xp = b.xp
    a, y = b.const(data["A"]), b.const(data["y"])
    m = data["A"].shape[0]

    def f(w):
        return xp.sum(xp.log1p(xp.exp(-y * (a @ w)))) / m

    return f


def pde(b: Backend, data: dict[str, np.ndarray]) -> Callable[[Any], Any]:
    zero = b.const(np.zeros(1))

    def f(u):
        n = u.shape[0]
        h2 = 1.0 / (n + 1) ** 2
        padded = b.cat([zero, u, zero])
        return -(padded[:-2] - 2.0 * padded[1:-1] + padded[2:]) / h2 + u**3 - 1.0

    return f


def wide(b: Backend, data: dict[str, np.ndarray]) -> Callable[[Any], Any]:
    xp = b.xp
    c0, c1, c2 = (b.const(data["c"][i]) for i in range(3))

    def f(x):
        return xp.stack(
            [xp.sum(c0 * xp.sin(x)), xp.sum(c1 * xp.tanh(x) * x), xp.sum(c2 * xp.exp(-x * x))]
        )

    return f


def tall(b: Backend, data: dict[str, np.ndarray]) -> Callable[[Any], Any]:
    xp = b.xp
    t = b.const(data["t"])

    def f(p):
        return p[0] * xp.exp(-p[1] * t) + xp.sin(p[2] * t)

    return f


_NUMBA_FORMS: dict[str, Any] | None = None


def numba_forms() -> dict[str, Any]:
    """Loop forms ``f(x, *consts)`` for the compiled engine (compiled lazily, once)."""
    global _NUMBA_FORMS
    if _NUMBA_FORMS is not None:
        return _NUMBA_FORMS
    import math

    import numba

    @numba.njit
    def rosenbrock_loop(x):
        s = 0.0
        for i in range(x.shape[0] - 1):
            s += 100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2
        return s

    @numba.njit
    def logistic_loop(w, a, y):
        s = 0.0
        for i in range(a.shape[0]):
            z = 0.0
            for j in range(w.shape[0]):
                z += a[i, j] * w[j]
            s += math.log1p(math.exp(-y[i] * z))
        return s / a.shape[0]

    @numba.njit
    def pde_loop(u):
        n = u.shape[0]
        h2 = 1.0 / (n + 1) ** 2
        # np.empty(n, dtype=u.dtype), not np.empty_like(u): with the latter dualad's compiled
        # engine raises DualError once the primal has been compiled for floats first
        r = np.empty(n, dtype=u.dtype)
        for i in range(n):
            v = 2.0 * u[i] / h2 + u[i] ** 3 - 1.0
            if i > 0:
                v = v - u[i - 1] / h2
            if i < n - 1:
                v = v - u[i + 1] / h2
            r[i] = v
        return r

    @numba.njit
    def wide_loop(x, c):
        s0 = 0.0
        s1 = 0.0
        s2 = 0.0
        for i in range(x.shape[0]):
            s0 += c[0, i] * math.sin(x[i])
            s1 += c[1, i] * math.tanh(x[i]) * x[i]
            s2 += c[2, i] * math.exp(-x[i] * x[i])
        out = np.empty(3, dtype=x.dtype)
        out[0] = s0
        out[1] = s1
        out[2] = s2
        return out

    @numba.njit
    def tall_loop(p, t):
        out = np.empty(t.shape[0], dtype=p.dtype)
        for i in range(t.shape[0]):
            out[i] = p[0] * math.exp(-p[1] * t[i]) + math.sin(p[2] * t[i])
        return out

    _NUMBA_FORMS = {
        "rosenbrock": (rosenbrock_loop, ()),
        "logistic": (logistic_loop, ("A", "y")),
        "pde": (pde_loop, ()),
        "wide": (wide_loop, ("c",)),
        "tall": (tall_loop, ("t",)),
    }
    return _NUMBA_FORMS


@dataclass
class Family:
    name: str
    kind: str  # "scalar", "square", "wide", "tall"
    make: Callable[[Backend, dict[str, np.ndarray]], Callable[[Any], Any]]
    n_max: int | None = None  # the largest n run (None: the whole grid)

    def data(self, n: int) -> dict[str, np.ndarray]:
        """Deterministic point ``x`` and constants of the problem of size n."""
        rng = np.random.default_rng(n)
        if self.name == "rosenbrock":
            return {"x": rng.uniform(-1.5, 1.5, size=n)}
        if self.name == "logistic":
            return {
                "x": rng.normal(size=n),
                "A": rng.normal(size=(M_SAMPLES, n)) / np.sqrt(n),
                "y": rng.choice([-1.0, 1.0], size=M_SAMPLES),
            }
        if self.name == "pde":
            return {"x": rng.uniform(0.1, 1.0, size=n)}
        if self.name == "wide":
            return {"x": rng.normal(size=n), "c": rng.normal(size=(3, n))}
        return {"x": np.array([1.5, 0.8, 3.0]), "t": np.linspace(0.0, 1.0, n)}

    def in_out(self, n: int) -> tuple[int, int]:
        """(inputs, outputs) at size n."""
        return {"scalar": (n, 1), "square": (n, n), "wide": (n, 3), "tall": (3, n)}[self.kind]

    def other(self, n: int) -> int:
        """The fixed dimension m reported beside n."""
        inputs, outputs = self.in_out(n)
        return inputs if self.kind == "tall" else outputs


FAMILIES = {
    f.name: f
    for f in (
        Family("rosenbrock", "scalar", rosenbrock),
        Family("logistic", "scalar", logistic),
        Family("pde", "square", pde, n_max=SQUARE_N_MAX),
        Family("wide", "wide", wide),
        Family("tall", "tall", tall),
    )
}


# --- the engines: make(family, data) -> (x -> Jacobian), or raise Skip ---------------------------


@dataclass
class Engine:
    key: str
    label: str
    mode: str  # "forward", "reverse" (the crossover compares these two), "fd", "primal"
    make: Callable[[Family, dict[str, np.ndarray]], Callable[[np.ndarray], Any]]
    rtol: float = AD_RTOL


def _primal(family: Family, data: dict[str, np.ndarray]) -> Callable[[np.ndarray], Any]:
    return family.make(numpy_backend(), data)


def _primal_numba(family: Family, data: dict[str, np.ndarray]) -> Callable[[np.ndarray], Any]:
    f, names = _numba_form(family)
    consts = tuple(data[k] for k in names)
    return lambda x: f(x, *consts)


def _numba_form(family: Family) -> tuple[Any, tuple[str, ...]]:
    try:
        forms = numba_forms()
    except ImportError as exc:
        raise Skip("numba is not installed") from exc
    if family.name not in forms:
        raise Skip("no loop form")
    return forms[family.name]


def _dualad_forward(family: Family, data: dict[str, np.ndarray]) -> Callable[[np.ndarray], Any]:
    f = family.make(numpy_backend(), data)
    return lambda x: da.jacobian(f, x, mode="forward", engine="numpy")


def _dualad_numba(family: Family, data: dict[str, np.ndarray]) -> Callable[[np.ndarray], Any]:
    f, names = _numba_form(family)
    consts = tuple(data[k] for k in names)
    f(data["x"], *consts)  # the user has compiled the primal already: not charged to dualad
    return lambda x: da.jacobian(f, x, mode="forward", args=consts, engine="numba")


def _dualad_rev_numba(family: Family, data: dict[str, np.ndarray]) -> Callable[[np.ndarray], Any]:
    f, names = _numba_form(family)
    consts = tuple(data[k] for k in names)
    f(data["x"], *consts)  # as for the forward row: the primal is compiled already
    return lambda x: da.jacobian(f, x, mode="reverse", args=consts, engine="numba")


def _dualad_reverse(family: Family, data: dict[str, np.ndarray]) -> Callable[[np.ndarray], Any]:
    f = family.make(numpy_backend(), data)
    return lambda x: da.jacobian(f, x, mode="reverse")


def _finite_differences(family: Family, data: dict[str, np.ndarray]) -> Callable[[np.ndarray], Any]:
    f = family.make(numpy_backend(), data)
    step = np.cbrt(np.finfo(float).eps)

    def jac(x: np.ndarray) -> np.ndarray:
        h = step * np.maximum(1.0, np.abs(x))
        columns = []
        for j in range(x.shape[0]):
            xp, xm = x.copy(), x.copy()
            xp[j] += h[j]
            xm[j] -= h[j]
            columns.append((np.asarray(f(xp)) - np.asarray(f(xm))) / (2.0 * h[j]))
        return np.stack(columns, axis=-1)

    return jac


def _jax(transform: str) -> Callable[[Family, dict[str, np.ndarray]], Callable[..., Any]]:
    def make(family: Family, data: dict[str, np.ndarray]) -> Callable[[np.ndarray], Any]:
        try:
            import jax
        except ImportError as exc:
            raise Skip("jax is not installed") from exc
        jax.config.update("jax_enable_x64", True)
        jac = jax.jit(getattr(jax, transform)(family.make(jax_backend(), data)))
        return lambda x: np.asarray(jac(x).block_until_ready())

    return make


def _torch(transform: str) -> Callable[[Family, dict[str, np.ndarray]], Callable[..., Any]]:
    def make(family: Family, data: dict[str, np.ndarray]) -> Callable[[np.ndarray], Any]:
        try:
            import torch
            import torch.func
        except ImportError as exc:
            raise Skip("torch is not installed") from exc
        torch.set_num_threads(1)  # as in core_speed.py
        jac = getattr(torch.func, transform)(family.make(torch_backend(), data))
        return lambda x: jac(torch.from_numpy(x)).numpy()

    return make


def _autograd(family: Family, data: dict[str, np.ndarray]) -> Callable[[np.ndarray], Any]:
    try:
        import autograd
    except ImportError as exc:
        raise Skip("autograd is not installed") from exc
    return autograd.jacobian(family.make(autograd_backend(), data))


ENGINES = {
    e.key: e
    for e in (
        Engine("f", "f itself (numpy)", "primal", _primal),
        Engine("f-numba", "f itself (numba)", "primal", _primal_numba),
        Engine("dualad-fwd", "dualad forward (numpy)", "forward", _dualad_forward),
        Engine("dualad-fwd-numba", "dualad forward (numba)", "forward", _dualad_numba),
        Engine("dualad-rev", "dualad reverse", "reverse", _dualad_reverse),
        Engine("dualad-rev-numba", "dualad reverse (numba)", "reverse", _dualad_rev_numba),
        Engine("fd", "central differences", "fd", _finite_differences, rtol=FD_RTOL),
        Engine("jax-jacfwd", "jax.jit(jacfwd)", "forward", _jax("jacfwd")),
        Engine("jax-jacrev", "jax.jit(jacrev)", "reverse", _jax("jacrev")),
        Engine("torch-jacfwd", "torch.func.jacfwd", "forward", _torch("jacfwd")),
        Engine("torch-jacrev", "torch.func.jacrev", "reverse", _torch("jacrev")),
        Engine("autograd", "autograd.jacobian", "reverse", _autograd),
    )
}


# --- timing --------------------------------------------------------------------------------------


def _row(family: Family, engine: Engine, n: int, status: str | None = None) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(FIELDS)
    row.update(family=family.name, engine=engine.key, mode=engine.mode, n=n, m=family.other(n))
    row["status"] = status
    return row


def prepare(
    family: Family, engine: Engine, n: int, data: dict[str, np.ndarray], reference: np.ndarray
) -> tuple[dict[str, Any], Callable[[], Any] | None]:
    """Set an engine up, time its first call and check its Jacobian against ``reference``.

    Returns the row (status still None when it is ready to be timed) and the call to time.
    """
    row = _row(family, engine, n)
    x = data["x"]
    try:
        call = engine.make(family, data)
        start = time.perf_counter()
        answer = call(x)
        row["first_call_s"] = time.perf_counter() - start
    except Skip as skip:
        row["status"] = f"skipped: {skip}"
        return row, None
    except Exception as exc:  # an engine that cannot run the problem is recorded, not timed
        row["status"] = f"failed: {type(exc).__name__}"
        return row, None
    if engine.mode != "primal":
        try:
            answer = np.asarray(answer, dtype=float).reshape(reference.shape)
            scale = max(1.0, float(np.max(np.abs(reference), initial=0.0)))
            err = float(np.max(np.abs(answer - reference), initial=0.0))
            ok = np.isfinite(err) and err <= engine.rtol * scale
        except ValueError:
            ok = False
        if not ok:
            row["status"] = "wrong"
            return row, None
    return row, lambda: call(x)


def time_cell(
    rows: list[dict[str, Any]],
    calls: dict[str, Callable[[], Any]],
    repeats: int,
    min_seconds: float,
    budget_s: float,
) -> None:
    """Time the ready engines of one (family, n) in turn within each repeat, and fill their rows.

    An engine whose call is slow gets fewer repeats (at least 3), so that none of them spends
    more than about ``budget_s`` on its samples; the rows say how many each had.
    """
    by_key = {r["engine"]: r for r in rows}
    number, rounds = {}, {}
    for key, call in calls.items():
        start = time.perf_counter()
        call()  # a second call: the warm per-call time, without compilation
        once = max(time.perf_counter() - start, 1e-9)
        number[key] = max(1, int(min_seconds / once))  # calls per sample
        rounds[key] = max(3, min(repeats, int(budget_s / (once * number[key]))))
    samples: dict[str, list[float]] = {key: [] for key in calls}
    for r in range(max(rounds.values(), default=0)):
        for key, call in calls.items():
            if rounds[key] > r:
                start = time.perf_counter()
                for _ in range(number[key]):
                    call()
                samples[key].append((time.perf_counter() - start) / number[key])
    for key, found in samples.items():
        row = by_key[key]
        row["median_s"] = statistics.median(found)
        row["q25_s"], row["q75_s"] = quartiles(found)
        row["repeats"] = len(found)
        row["compile_s"] = max(0.0, row["first_call_s"] - row["median_s"])
        row["status"] = "ok"


def predicted_over(history: list[tuple[int, float]], n: int, limit: float) -> bool:
    """Whether an engine's time at n, extrapolated from its last two sizes, exceeds ``limit``.

    The local slope on the log-log plot (at least 1: no engine gets cheaper with n) carries the
    last time to n; it keeps a 10 s call out of the run without timing it.
    """
    if not history:
        return False
    (n1, t1) = history[-1]
    slope = 1.0
    if len(history) >= 2:
        n0, t0 = history[-2]
        if t0 > 0 and n1 > n0:
            slope = max(1.0, float(np.log(t1 / t0) / np.log(n1 / n0)))
    return t1 * (n / n1) ** slope > limit


def gradient_memory(n: int) -> dict[str, float]:
    """Peak memory NumPy allocates during one reverse-mode gradient of Rosenbrock at size n.

    tracemalloc sees NumPy's array buffers; the peak holds the tape (each intermediate once)
    and the cotangents in flight, and what is left after the call is the gradient alone.
    """
    import gc
    import tracemalloc

    family = FAMILIES["rosenbrock"]
    data = family.data(n)
    f = family.make(numpy_backend(), data)
    da.gradient(f, data["x"], mode="reverse")  # warm: nothing first-time is counted
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    start = time.perf_counter()
    g = da.gradient(f, data["x"], mode="reverse")
    seconds = time.perf_counter() - start
    gc.collect()
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del g
    mb = 1024.0**2
    return {
        "n": n,
        "peak_mb": (peak - base) / mb,
        "after_mb": (current - base) / mb,
        "x_mb": data["x"].nbytes / mb,
        "seconds": seconds,
    }


# --- the run, the outputs ------------------------------------------------------------------------


def grid(n_max: int, quick: bool = False) -> list[int]:
    return [n for n in (QUICK_GRID if quick else FULL_GRID) if n <= n_max]


#: The pairs of dualad's own forward and reverse engines whose crossover is printed.
OURS = {
    "numpy": (("dualad-fwd", "dualad-rev"), "dualad, NumPy engine"),
    "numba": (("dualad-fwd-numba", "dualad-rev-numba"), "dualad, compiled"),
}


def find_crossover(
    rows: list[dict[str, Any]], family: str, ours_only: bool = False, engine: str = "numpy"
) -> dict:
    """The smallest n from which the best reverse engine beats the best forward engine, and
    from which n on the two interquartile ranges of the repeats are apart (its confidence).

    ``ours_only`` compares dualad's forward and reverse modes alone on one ``engine``
    ("numpy" or "numba", see ``OURS``): the same primitives both ways, and the lines auto
    mode's thresholds are read off.  With fewer than ``MIN_CROSSOVER_REPEATS`` repeats (quick
    mode) no crossover is claimed.
    """
    best: dict[str, dict[int, dict[str, Any]]] = {"forward": {}, "reverse": {}}
    pair, who = OURS[engine]
    found: dict[str, Any] = {"who": who if ours_only else "all engines"}
    for r in rows:
        if ours_only and r["engine"] not in pair:
            continue
        if r["family"] == family and r["status"] == "ok" and r["mode"] in best:
            table = best[r["mode"]]
            if r["n"] not in table or r["median_s"] < table[r["n"]]["median_s"]:
                table[r["n"]] = r
    both = sorted(set(best["forward"]) & set(best["reverse"]))
    pairs = [(best["reverse"][n], best["forward"][n]) for n in both]
    fewest = min((min(r.get("repeats") or 0, f.get("repeats") or 0) for r, f in pairs), default=0)
    found.update(ns=both, repeats=fewest)
    if not best["reverse"]:
        return {**found, "kind": "no reverse"}
    if found["repeats"] < MIN_CROSSOVER_REPEATS:
        return {**found, "kind": "quick"}
    wins = [rev["median_s"] < fwd["median_s"] for rev, fwd in pairs]
    clear = [_apart(rev, fwd) for rev, fwd in pairs]
    first = next((i for i in range(len(both)) if all(wins[i:])), None)
    if first is None:
        return {**found, "kind": "none"}
    sure = next((i for i in range(len(both)) if all(clear[i:])), None)
    return {
        **found,
        "kind": "found",
        "n": both[first],
        "pair": pairs[first],
        "clear_from": None if sure is None else both[sure],
    }


def _apart(rev: dict[str, Any], fwd: dict[str, Any]) -> bool:
    """Reverse's upper quartile below forward's lower one (never, for a run without quartiles)."""
    if rev.get("q75_s") is None or fwd.get("q25_s") is None:
        return False
    return rev["q75_s"] < fwd["q25_s"]


def _spread(row: dict[str, Any]) -> str:
    if row.get("q25_s") is None:
        return fmt(row["median_s"])
    return f"{fmt(row['median_s'])} [{fmt(row['q25_s'])}-{fmt(row['q75_s'])}]"


def crossover(
    rows: list[dict[str, Any]], family: str, ours_only: bool = False, engine: str = "numpy"
) -> str:
    """``find_crossover``'s answer as the line the report prints."""
    c = find_crossover(rows, family, ours_only, engine)
    head = f"{family} ({c['who']})"
    if c["kind"] == "no reverse":
        return f"{head}: no crossover in range (no reverse engine ran)"
    if c["kind"] == "quick":
        return (
            f"{head}: crossover not claimed: {c['repeats']} repeats at some n, fewer than "
            f"{MIN_CROSSOVER_REPEATS} (quick mode takes 3; in a full run, the time budget of "
            "the slowest cells)"
        )
    if c["kind"] == "none":
        return f"{head}: no crossover in range (n = {c['ns'][0]}..{c['ns'][-1]})"
    rev, fwd = c["pair"]
    line = (
        f"{head}: crossover at n = {c['n']}: {rev['engine']} {_spread(rev)} < "
        f"{fwd['engine']} {_spread(fwd)} (median [quartiles]; reverse faster from here on)"
    )
    if rev.get("q25_s") is None:
        return line + "; an older run without quartiles: no confidence given"
    if c["clear_from"] == c["n"]:
        return line + "; clear: the quartile ranges are apart"
    if c["clear_from"] is None:
        return line + "; within the repeat spread up to the largest n"
    return line + f"; within the repeat spread until n = {c['clear_from']}"


def write_results(rows: list[dict[str, Any]], out: Path, meta: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "results.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: ("" if r[k] is None else r[k]) for k in FIELDS})
    with open(out / "results.json", "w") as fh:
        json.dump({"meta": meta, "results": rows}, fh, indent=1)


def caption(meta: dict[str, Any]) -> str:
    """The machine, date and method under each figure (an older run's without what it lacked)."""
    interleaved = meta.get("interleaved", False)
    threads = ", one thread per engine" if interleaved else ""
    order = ", engines interleaved per n" if interleaved else ", each engine timed alone"
    return (
        f"make bench (benchmarks/forward_vs_reverse.py), {meta['date']}, {meta['machine']}, "
        f"{meta['cpus']} cores{threads};\nmedians of up to {meta['repeats']} repeats{order}; "
        f"Python {meta['python']}, NumPy {meta['numpy']}"
    )


def plot(
    rows: list[dict[str, Any]], out: Path, families: Sequence[str], meta: dict[str, Any]
) -> list[Path]:
    """One PNG per family and a summary PNG; [] when matplotlib is not installed."""
    import plots

    text = caption(meta)
    points = {}
    for family in families:
        c = find_crossover(rows, family, ours_only=True)
        if c["kind"] != "found":
            points[family] = None
        else:  # clear: True, False, or None for a run that kept no quartiles
            known = c["pair"][0].get("q25_s") is not None
            points[family] = (c["n"], (c["clear_from"] == c["n"]) if known else None)
    written = [
        plots.family_figure(
            rows, family, FAMILIES[family].kind, points[family], text, out / f"{family}.png"
        )
        for family in families
    ]
    written.append(plots.summary_figure(rows, families, points, text, out / "summary.png"))
    return [p for p in written if p is not None]


def print_table(rows: list[dict[str, Any]], families: Sequence[str], ns: Sequence[int]) -> None:
    print(f"\n{'family':11s} {'engine':17s}" + "".join(f"{'n=' + str(n):>10s}" for n in ns))
    for family in families:
        for key in ENGINES:
            cells = {r["n"]: r for r in rows if r["family"] == family and r["engine"] == key}
            if not cells:
                continue
            line = f"{family:11s} {key:17s}"
            for n in ns:
                r = cells.get(n)
                if r is None:
                    text = ""
                elif r["status"] == "ok":
                    text = fmt(r["median_s"])
                else:
                    text = r["status"].split(":")[0]
                line += f"{text:>10s}"
            print(line)


def has_loop_form(rows: list[dict[str, Any]], family: str) -> bool:
    """Whether compiled reverse mode ran, or was meant to run, on the family's loop form."""
    return any(
        r["family"] == family and r["engine"] == "dualad-rev-numba" and r["status"] == "ok"
        for r in rows
    )


def report(
    rows: list[dict[str, Any]], families: Sequence[str], ns: Sequence[int], memory: Any
) -> None:
    """The table, each family's crossovers and the memory of a gradient, as printed."""
    print_table(rows, families, ns)
    print()
    for name in families:
        print(crossover(rows, name, ours_only=True))
        if has_loop_form(rows, name):
            print(crossover(rows, name, ours_only=True, engine="numba"))
        print(crossover(rows, name))
    if memory:
        print(
            f"\npeak memory of one reverse-mode gradient (rosenbrock, n = {memory['n']:,}): "
            f"{memory['peak_mb']:.1f} MB while it runs ({memory['peak_mb'] / memory['x_mb']:.0f}x "
            f"the input's {memory['x_mb']:.1f} MB), {memory['after_mb']:.2f} MB left after it "
            f"(the gradient itself); {memory['seconds'] * 1e3:.1f} ms"
        )


def report_again(path: Path, out: Path) -> int:
    """The report and plots of a results.json written by an earlier run."""
    saved = json.loads(path.read_text())
    meta, rows = saved["meta"], saved["results"]
    for r in rows:  # a run from before quartiles were kept: its repeats from the meta data
        if r.get("status") == "ok" and "repeats" not in r:
            r.update(repeats=meta["repeats"], q25_s=None, q75_s=None)
    print(f"# results of {meta['date']}, {meta['machine']}, {meta['cpus']} cores: {path}")
    report(rows, meta["families"], meta["n"], meta.get("gradient_memory"))
    out.mkdir(parents=True, exist_ok=True)
    pngs = plot(rows, out, meta["families"], meta)
    print(f"\nwrote {len(pngs)} PNGs to {out}")
    return 0


def cost(n: int) -> float:
    """A cell's rough share of the run, for the progress bar's ETA (large n dominate)."""
    return 1.0 + n / 300.0


class _Plain:
    """The progress interface of tqdm, printing plain lines when tqdm is not installed."""

    def __init__(self, total: float) -> None:
        self.total, self.done, self.start = total, 0.0, time.perf_counter()

    def set_description(self, text: str) -> None:
        pass

    def write(self, line: str) -> None:
        print(line, flush=True)

    def update(self, amount: float) -> None:
        self.done += amount
        elapsed = time.perf_counter() - self.start
        eta = elapsed * (self.total - self.done) / max(self.done, 1e-9)
        print(f"  {100 * self.done / self.total:.0f}% done, ETA {eta:.0f} s", flush=True)

    def __enter__(self) -> _Plain:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def progress(cells: list[tuple[str, int]]) -> Any:
    """A progress bar with an ETA over the (family, n) cells, weighted by their cost."""
    total = sum(cost(n) for _, n in cells)
    try:
        from tqdm import tqdm
    except ImportError:
        return _Plain(total)
    fmt_bar = "{desc:<18s} {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]"
    return tqdm(total=total, bar_format=fmt_bar, file=sys.stderr, dynamic_ncols=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n = 1, 10, 100; 3 repeats")
    parser.add_argument("--n-max", type=int, default=None, help="largest n (default 10^4)")
    parser.add_argument("--repeats", type=int, default=None, help="default 7 (quick: 3)")
    parser.add_argument("--min-seconds", type=float, default=None, help="least time per repeat")
    parser.add_argument("--max-seconds", type=float, default=None, help="skip larger n after this")
    parser.add_argument("--engines", default=",".join(ENGINES), help="comma-separated keys")
    parser.add_argument("--families", default=",".join(FAMILIES), help="comma-separated names")
    parser.add_argument("--out", default="bench-results", help="directory for the results")
    parser.add_argument(
        "--from-json", default=None, help="print and plot an earlier run's results.json again"
    )
    parser.add_argument(
        "--memory-n", type=int, default=None, help="n of the memory check (default 10^5; 0: none)"
    )
    args = parser.parse_args(argv)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    for key in engines:
        if key not in ENGINES:
            parser.error(f"unknown engine {key!r}; choose from {', '.join(ENGINES)}")
    for name in families:
        if name not in FAMILIES:
            parser.error(f"unknown family {name!r}; choose from {', '.join(FAMILIES)}")
    n_max = args.n_max if args.n_max is not None else (100 if args.quick else FULL_GRID[-1])
    repeats = args.repeats if args.repeats is not None else (3 if args.quick else 7)
    min_seconds = args.min_seconds if args.min_seconds is not None else (
        0.002 if args.quick else 0.02
    )  # fmt: skip
    max_seconds = args.max_seconds if args.max_seconds is not None else (0.5 if args.quick else 3)
    ns = grid(n_max, args.quick)
    if args.memory_n is None:
        args.memory_n = 10_000 if args.quick else 100_000
    out = Path(args.out)
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "repeats": repeats,
        "min_seconds": min_seconds,
        "n": ns,
        "engines": engines,
        "families": families,
        "interleaved": True,
        "threads": one_thread(),
    }
    print(
        f"# {meta['date']}, {meta['machine']}, {meta['cpus']} cores, Python {meta['python']}, "
        f"NumPy {meta['numpy']}; medians of {repeats} repeats; n = {ns}; {meta['threads']}",
        flush=True,
    )
    if args.from_json:
        return report_again(Path(args.from_json), out)
    warm_cpu(0.1 if args.quick else 0.5)
    budget = 1.0 if args.quick else 8.0  # seconds of samples per engine and cell, at most
    rows: list[dict[str, Any]] = []
    cells = [(name, n) for name in families for n in ns]
    with progress(cells) as bar:
        history: dict[tuple[str, str], list[tuple[int, float]]] = {}
        for name, n in cells:
            family = FAMILIES[name]
            bar.set_description(f"{name} n={n}")
            if family.n_max is not None and n > family.n_max:
                reason = f"skipped: dense Jacobian above n = {family.n_max}"
                rows += [_row(family, ENGINES[key], n, reason) for key in engines]
                bar.update(cost(n))
                continue
            data = family.data(n)
            f = family.make(numpy_backend(), data)
            inputs, outputs = family.in_out(n)
            reference = np.asarray(da.jacobian(f, data["x"], engine="numpy"), dtype=float)
            reference = reference.reshape(outputs, inputs)
            cell, calls = [], {}
            for key in engines:
                engine = ENGINES[key]
                past = history.setdefault((name, key), [])
                if predicted_over(past, n, max_seconds):
                    reason = f"skipped: predicted over {max_seconds:g} s per call"
                    cell.append(_row(family, engine, n, reason))
                    continue
                row, call = prepare(family, engine, n, data, reference)
                cell.append(row)
                if call is not None:
                    calls[key] = call
            time_cell(cell, calls, repeats, min_seconds, budget)
            for row in cell:
                if row["status"] == "ok":
                    history[(name, row["engine"])].append((n, row["median_s"]))
                bar.write(
                    f"[{name}] n={n:<6d} {row['engine']:17s} {row['status']:<28.28s} "
                    f"median {fmt(row['median_s']):>9s}  first {fmt(row['first_call_s']):>9s}"
                )
            rows += cell
            bar.update(cost(n))
    if args.memory_n:
        meta["gradient_memory"] = gradient_memory(args.memory_n)
    write_results(rows, out, meta)
    report(rows, families, ns, meta.get("gradient_memory"))
    pngs = plot(rows, out, families, meta)
    if pngs:
        print(f"\nwrote {out / 'results.csv'}, {out / 'results.json'} and {len(pngs)} PNGs")
    else:
        print(f"\nwrote {out / 'results.csv'} and {out / 'results.json'}")
        print("matplotlib is not installed: no PNGs written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
