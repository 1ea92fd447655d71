"""Compiled reverse mode against jax.jit(jax.grad) and the compiled primal (issue 12).

Gradient of the loop Rosenbrock at n = 1e4 and 1e5 and of the double-loop logistic-regression
loss (50 samples) at n = 1e4, medians of repeats, all in one run:

    PYTHONPATH=src python benchmarks/compiled_reverse.py

Besides dualad's gradient ("dualad-rev") it times the same gradient of f's vectorised NumPy
form recorded by compiled reverse mode ("rev-vec"), and for Rosenbrock the floor of any tape:
a hand-written njit loop that records the very nodes dualad records (3 per term) into
preallocated arrays and sweeps them ("floor").
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


def median_seconds(call: Callable[[], Any], repeats: int = 15, budget: float = 3.0) -> float:
    """Median wall time of ``call`` after one warm-up call."""
    call()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeats and (time.perf_counter() - start < budget or len(times) < 3):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


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
        primal = median_seconds(lambda: f(x, *args))  # noqa: B023
        rev = median_seconds(lambda: da.gradient(f, x, mode="reverse", args=args))  # noqa: B023
        g = da.gradient(f, x, mode="reverse", args=args)
        gv = da.gradient(vec, x, mode="reverse", args=args)
        np.testing.assert_allclose(gv, g, rtol=1e-9, atol=1e-12)
        rev_vec = median_seconds(lambda: da.gradient(vec, x, mode="reverse", args=args))  # noqa: B023
        floor = float("nan")
        if name == "rosenbrock":
            work = (np.empty(6 * n, np.int64), np.empty(6 * n), np.empty(4 * n))
            np.testing.assert_allclose(rosenbrock_floor(x, *work)[1], g, rtol=1e-12, atol=1e-12)
            floor = median_seconds(lambda: rosenbrock_floor(x, *work))  # noqa: B023
        row = {"problem": name, "n": n, "primal_s": primal, "rev_s": rev, "jax_s": float("nan")}
        row.update(vec_s=rev_vec, floor_s=floor)
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
            row["jax_s"] = median_seconds(lambda: grad(jx, *jargs).block_until_ready())  # noqa: B023
        rows.append(row)
    print(
        f"{'problem':<11}{'n':>8}{'primal':>12}{'dualad-rev':>12}{'rev-vec':>12}{'floor':>12}"
        f"{'jax':>12}{'rev/primal':>11}{'jax/rev':>9}"
    )
    for r in rows:
        print(
            f"{r['problem']:<11}{r['n']:>8}{r['primal_s'] * 1e6:>10.1f}us"
            f"{r['rev_s'] * 1e6:>10.1f}us{r['vec_s'] * 1e6:>10.1f}us{r['floor_s'] * 1e6:>10.1f}us"
            f"{r['jax_s'] * 1e6:>10.1f}us{r['rev_s'] / r['primal_s']:>11.2f}"
            f"{r['jax_s'] / r['rev_s']:>9.2f}"
        )


if __name__ == "__main__":
    main()
