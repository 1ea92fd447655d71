"""Compiled reverse mode against jax.jit(jax.grad) and the compiled primal (issue 12).

Gradient of the loop Rosenbrock at n = 1e4 and 1e5 and of the double-loop logistic-regression
loss (50 samples) at n = 1e4, all in one run: medians over rounds that call each contender once
(so the ratios are taken under one load on a shared machine):

    PYTHONPATH=src python benchmarks/compiled_reverse.py

Besides dualad's gradient ("dualad-rev") it times the same gradient of f's vectorised NumPy
form recorded by compiled reverse mode ("rev-vec"), and for Rosenbrock the floor of any tape:
a hand-written njit loop that records the very nodes dualad records (3 per term) into
preallocated arrays and sweeps them ("floor"), and the floor of a preaccumulated tape
("pre-floor", M = 4): an adjoint number carries up to M (index, scale) terms, operations merge
term lists (equal indices added) and only a list longer than M is written as one node of
variable width (parents and partials in flat arrays, node k's at offsets[k] .. offsets[k + 1]).
"pre-best" is that tape written with the merge pattern known in advance (no search for equal
indices): the least any M = 4 preaccumulating tape can cost here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numba
import numpy as np

import dualad as da


@numba.njit
def rosenbrock_loop(x):  # noqa: ANN001, ANN201
    s = 0.0
    for i in range(x.shape[0] - 1):
        s += 100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2
    return s


@numba.njit
def logistic_loop(w, a, y):  # noqa: ANN001, ANN201
    s = 0.0
    for i in range(a.shape[0]):
        z = 0.0
        for j in range(w.shape[0]):
            z += a[i, j] * w[j]
        s += math.log1p(math.exp(-y[i] * z))
    return s / a.shape[0]


@numba.njit
def rosenbrock_vectorised(x):  # noqa: ANN001, ANN201
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


@numba.njit
def logistic_vectorised(w, a, y):  # noqa: ANN001, ANN201
    return np.sum(np.log1p(np.exp(-y * (a @ w)))) / a.shape[0]


@numba.njit
def rosenbrock_floor(x, parents, partials, adj):  # noqa: ANN001, ANN201
    """Rosenbrock's gradient through a hand-written tape of dualad's nodes: t = x[i+1] - x[i]^2,
    the term from t and x[i], the running sum; then the backward sweep."""
    n, k, s, last = x.size, 0, 0.0, -1
    for i in range(n - 1):
        a = x[i + 1] - x[i] ** 2
        parents[2 * k], parents[2 * k + 1] = i + 1, i
        partials[2 * k], partials[2 * k + 1] = 1.0, -2.0 * x[i]
        k += 1
        b = 1.0 - x[i]
        parents[2 * k], parents[2 * k + 1] = n + k - 1, i
        partials[2 * k], partials[2 * k + 1] = 200.0 * a, -2.0 * b
        k += 1
        if last >= 0:
            parents[2 * k], parents[2 * k + 1] = last, n + k - 1
            partials[2 * k], partials[2 * k + 1] = 1.0, 1.0
            k += 1
        last = n + k - 1
        s += 100.0 * a * a + b * b
    adj[: n + k] = 0.0
    adj[last] = 1.0
    for j in range(k - 1, -1, -1):
        g = adj[n + j]
        if g != 0.0:
            adj[parents[2 * j]] += partials[2 * j] * g
            adj[parents[2 * j + 1]] += partials[2 * j + 1] * g
    return s, adj[:n].copy()


@numba.njit
def sweep_variable_width(adj, parents, partials, offsets, n, k):  # noqa: ANN001, ANN201
    """The backward sweep of both preaccumulated floors: node j's parents and partials are at
    offsets[j] .. offsets[j + 1], its adjoint at adj[n + j]."""
    for j in range(k - 1, -1, -1):
        g = adj[n + j]
        if g != 0.0:
            for q in range(offsets[j], offsets[j + 1]):
                adj[parents[q]] += partials[q] * g


@numba.njit
def rosenbrock_prefloor(x, m, parents, partials, offsets, adj, ti, ts):  # noqa: ANN001, ANN201
    """Rosenbrock's gradient through the tape a preaccumulating adjoint of at most ``m`` terms
    records: each term is ``{(i + 1, 200 t), (i, -400 t x[i] - 2 b)}`` (merged without a node),
    the running sum merges it into its term list (``ti``, ``ts``, length <= m, searched for an
    equal index as the compiled adjoint would) and writes one node of all its terms when the
    list would exceed m; then the backward sweep over variable-width nodes."""
    n, k, p, s, count = x.size, 0, 0, 0.0, 0
    offsets[0] = 0
    for i in range(n - 1):
        t = x[i + 1] - x[i] ** 2
        b = 1.0 - x[i]
        s += 100.0 * t * t + b * b
        ia, ca = i + 1, 200.0 * t
        ib, cb = i, -400.0 * t * x[i] - 2.0 * b
        # merge the term's two entries into the running sum's list
        for e in range(2):
            ie, ce = (ia, ca) if e == 0 else (ib, cb)
            found = False
            for j in range(count):
                if ti[j] == ie:
                    ts[j] += ce
                    found = True
                    break
            if not found:
                ti[count], ts[count] = ie, ce
                count += 1
        if count > m:  # flush: one node of all the terms, the sum becomes 1 * node
            for j in range(count):
                parents[p], partials[p] = ti[j], ts[j]
                p += 1
            k += 1
            offsets[k] = p
            ti[0], ts[0], count = n + k - 1, 1.0, 1
    adj[: n + k] = 0.0
    for j in range(count):
        adj[ti[j]] += ts[j]
    sweep_variable_width(adj, parents, partials, offsets, n, k)
    return s, adj[:n].copy()


@numba.njit
def rosenbrock_prebest(x, parents, partials, offsets, adj):  # noqa: ANN001, ANN201
    """The tape of :func:`rosenbrock_prefloor` (M = 4) with its pattern known: iterations
    i .. i + 2 make one node of parents (previous node, i, i + 1, i + 2, i + 3), the scale of
    an index shared by two terms summed in a register; then the same backward sweep."""
    n, k, p, s, prev, i = x.size, 0, 0, 0.0, -1, 0
    offsets[0] = 0
    while i < n - 1:
        stop = min(i + PRE_M - 1, n - 1)
        if prev >= 0:
            parents[p], partials[p] = prev, 1.0
            p += 1
        c = 0.0
        for j in range(i, stop):
            t = x[j + 1] - x[j] ** 2
            b = 1.0 - x[j]
            s += 100.0 * t * t + b * b
            parents[p], partials[p] = j, c - 400.0 * t * x[j] - 2.0 * b
            p += 1
            c = 200.0 * t
        parents[p], partials[p] = stop, c
        p += 1
        k += 1
        offsets[k] = p
        prev, i = n + k - 1, stop
    adj[: n + k] = 0.0
    adj[prev] = 1.0
    sweep_variable_width(adj, parents, partials, offsets, n, k)
    return s, adj[:n].copy()


#: Terms an adjoint number of the preaccumulated floor carries (the design's M).
PRE_M = 4


def interleaved_medians(
    calls: dict[str, Callable[[], Any]], rounds: int = 41, budget: float = 6.0
) -> dict[str, float]:
    """Median wall time of each call over rounds that run every call once, so that the ratios
    of a shared machine's timings are taken under one load."""
    for call in calls.values():
        call()
    times: dict[str, list[float]] = {key: [] for key in calls}
    start = time.perf_counter()
    for r in range(rounds):
        if r >= 5 and time.perf_counter() - start > budget:
            break
        for key, call in calls.items():
            t = time.perf_counter()
            call()
            times[key].append(time.perf_counter() - t)
    return {key: float(np.median(v)) for key, v in times.items()}


def main() -> None:
    try:
        import jax

        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp
    except ImportError:
        jax = None
    rows = []
    rng = np.random.default_rng(0)
    for name, n in (("rosenbrock", 10**4), ("rosenbrock", 10**5), ("logistic", 10**4)):
        if name == "rosenbrock":
            x, args, f = rng.uniform(-1.5, 1.5, size=n), (), rosenbrock_loop
            vec = rosenbrock_vectorised
        else:
            a = rng.normal(size=(50, n)) / np.sqrt(n)
            y = rng.choice([-1.0, 1.0], size=50)
            x, args, f = rng.normal(size=n), (a, y), logistic_loop
            vec = logistic_vectorised
        g = da.gradient(f, x, mode="reverse", args=args)
        gv = da.gradient(vec, x, mode="reverse", args=args)
        np.testing.assert_allclose(gv, g, rtol=1e-9, atol=1e-12)
        calls: dict[str, Callable[[], Any]] = {
            "primal": lambda: f(x, *args),  # noqa: B023
            "rev": lambda: da.gradient(f, x, mode="reverse", args=args),  # noqa: B023
            "vec": lambda: da.gradient(vec, x, mode="reverse", args=args),  # noqa: B023
        }
        if name == "rosenbrock":
            work = (np.empty(6 * n, np.int64), np.empty(6 * n), np.empty(4 * n))
            np.testing.assert_allclose(rosenbrock_floor(x, *work)[1], g, rtol=1e-12, atol=1e-12)
            pre = (np.empty(3 * n, np.int64), np.empty(3 * n), np.empty(n + 1, np.int64))
            pre += (np.empty(2 * n), np.empty(8, np.int64), np.empty(8))
            got = rosenbrock_prefloor(x, PRE_M, *pre)[1]
            np.testing.assert_allclose(got, g, rtol=1e-12, atol=1e-12)
            got = rosenbrock_prebest(x, *pre[:4])[1]
            np.testing.assert_allclose(got, g, rtol=1e-12, atol=1e-12)
            calls["floor"] = lambda: rosenbrock_floor(x, *work)  # noqa: B023
            calls["pre"] = lambda: rosenbrock_prefloor(x, PRE_M, *pre)  # noqa: B023
            calls["best"] = lambda: rosenbrock_prebest(x, *pre[:4])  # noqa: B023
        if jax is not None:
            if name == "rosenbrock":

                def loss(x):  # noqa: ANN001, ANN202
                    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)

                jargs: tuple[Any, ...] = ()
            else:

                def loss(w, a, y):  # noqa: ANN001, ANN202
                    return jnp.sum(jnp.log1p(jnp.exp(-y * (a @ w)))) / a.shape[0]

                jargs = (jnp.asarray(args[0]), jnp.asarray(args[1]))
            grad = jax.jit(jax.grad(loss))
            jx = jnp.asarray(x)
            np.testing.assert_allclose(np.asarray(grad(jx, *jargs)), g, rtol=1e-9, atol=1e-12)
            calls["jax"] = lambda: grad(jx, *jargs).block_until_ready()  # noqa: B023
        row = {"problem": name, "n": n}
        row.update({key: float("nan") for key in ("floor", "pre", "best", "jax")})
        row.update(interleaved_medians(calls))
        rows.append(row)
    print(
        f"{'problem':<11}{'n':>8}{'primal':>10}{'dualad-rev':>12}{'rev-vec':>10}{'floor':>10}"
        f"{'pre-floor':>11}{'pre-best':>10}{'jax':>10}{'rev/p':>7}{'jax/rev':>8}"
        f"{'floor/p':>8}{'pre/p':>7}{'best/p':>7}"
    )
    for r in rows:
        us = "".join(
            f"{r[key] * 1e6:>{w - 2}.1f}us"
            for key, w in (("primal", 10), ("rev", 12), ("vec", 10), ("floor", 10))
        )
        us += "".join(f"{r[key] * 1e6:>{w - 2}.1f}us" for key, w in (("pre", 11), ("best", 10)))
        us += f"{r['jax'] * 1e6:>8.1f}us"
        ratios = f"{r['rev'] / r['primal']:>7.2f}{r['jax'] / r['rev']:>8.2f}"
        ratios += "".join(
            f"{r[key] / r['primal']:>{w}.2f}" for key, w in (("floor", 8), ("pre", 7))
        )
        ratios += f"{r['best'] / r['primal']:>7.2f}"
        print(f"{r['problem']:<11}{r['n']:>8}{us}{ratios}")


if __name__ == "__main__":
    main()
