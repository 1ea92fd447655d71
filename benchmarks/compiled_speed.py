"""Speed of the compiled (Numba) engine against its goals, beside jax.jit where JAX is installed.

    python benchmarks/compiled_speed.py [--repeats 7] [--quick] [--compile-runs 3]
                                        [--cases lorenz,rosenbrock,pde,hessian,compile]

When ``f`` is a ``numba.njit`` function, ``da.jacobian``, ``da.gradient`` and ``da.jvp`` compile
``f.py_func`` for dual numbers and run jitted drivers.  This script measures, for the issue's
goals:

1. Lorenz right-hand side (3 inputs, parameters through ``args=``): ``da.jacobian`` per call
   against ``jax.jit(jax.jacfwd(f))`` (goal: ours >= 4x faster), the driver alone (dualad's
   Python-side overhead removed) and the compiled primal ``lorenz(x, ...)``.
2. Rosenbrock (chained, loop form) gradient by forward mode at n = 10,000: ``da.gradient``
   against ``jax.jit(jax.jacfwd(f))`` on the jax.numpy form (goal: ours >= 5x faster), at the
   default chunk size (``dualad.numba.CHUNK_THRESHOLD``) and others, and at a smaller n; with
   ForwardDiff.jl's documented 0.28 s for reference (their machine, not this one).
3. One JVP of a 1-D PDE residual (loop form) at n = 10,000: ``da.jvp`` against the compiled
   primal (goal: ratio <= 3), also through the driver alone, and ``jax.jit`` of ``jax.jvp``.
4. The first call (compilation) of each of the three in fresh subprocesses: with a cold disk
   cache (an empty ``DUALAD_CACHE_DIR``; goal: <= 2 s for Lorenz and Rosenbrock, <= 3 s for the
   PDE), the same after the user's primal ``f(x)`` compiled (so Numba's one-off start-up is not
   charged to dualad), and a second process on the cache the first one filled (warm; goal:
   <= 0.5 s); and the time to import dualad and dualad.numba.
5. The Hessian and HVP of the loop Rosenbrock at n = 100 (case ``hessian``), compiled (what
   ``da.hessian`` runs: one recording of the local second derivatives, then sweeps over the
   tape; ``da.hvp``: forward over reverse), against ``jax.jit(jax.hessian(f))`` on the same loop
   function (goal: ours >= 5x faster), the forward-over-reverse Hessian driver (one recording
   per chunk of K = 8 columns, what ``da.hessian`` ran before), the nested-Dual drivers
   (forward over forward, the fallback) and dualad's NumPy engine; and the first call of
   ``da.hessian`` in a fresh process with an empty disk cache (wall and CPU seconds).

Every ratio comes from one run of this script: the engines compared in a row are timed in turn,
repeat after repeat, and each time is the median of ``--repeats`` repeats (each repeat loops for
at least 50 ms).  The CPU is kept busy for half a second before timing.  Each peer's answer is
checked against ours (np.allclose) before it is timed, and ours against closed-form derivatives;
a wrong answer is reported, never timed.  Peers that are not importable are skipped, and said so.
``--quick`` is a smoke run (n = 2000, 3 repeats, one compile subprocess per case; under a
minute).  ``--compile-only CASE`` is the subprocess mode (prints one JSON line).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from timing import fmt, interleaved, load_average, warm_cpu

CASES = ("lorenz", "rosenbrock", "pde")
#: Cases timed in this process only (no first-call subprocess of their own).
BENCH_CASES = CASES + ("hessian",)
LORENZ_ARGS = (10.0, 28.0, 8.0 / 3.0)
FORWARDDIFF_SECONDS = 0.28  # ForwardDiff.jl docs: Rosenbrock gradient, n = 10,000, their machine
RTOL = ATOL = 1e-9
#: Columns per recording of the forward-over-reverse Hessian driver timed beside da.hessian (the
#: chunk da.hessian took before it recorded local second derivatives once).
FORWARD_OVER_REVERSE_CHUNK = 8

# --- the problems: loop form for Numba, vectorised form for jax.numpy ----------------------------


def numba_problems() -> dict[str, Any]:
    """The three problems as ``numba.njit`` functions (imported lazily: see --compile-only)."""
    import numba
    import numpy as np

    @numba.njit
    def lorenz(u, sigma, rho, beta):
        out = np.empty(3, dtype=u.dtype)
        out[0] = sigma * (u[1] - u[0])
        out[1] = u[0] * (rho - u[2]) - u[1]
        out[2] = u[0] * u[1] - beta * u[2]
        return out

    @numba.njit
    def rosenbrock(x):
        s = 0.0
        for i in range(x.shape[0] - 1):
            s += 100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2
        return s

    @numba.njit
    def pde(u, s):
        """r = u'' + u**3 - s on a uniform grid, u = 0 beyond both ends."""
        n = u.shape[0]
        h2 = 1.0 / (n + 1) ** 2
        r = np.empty_like(u)
        r[0] = (-2.0 * u[0] + u[1]) / h2 + u[0] ** 3 - s[0]
        for i in range(1, n - 1):
            r[i] = (u[i - 1] - 2.0 * u[i] + u[i + 1]) / h2 + u[i] ** 3 - s[i]
        r[n - 1] = (u[n - 2] - 2.0 * u[n - 1]) / h2 + u[n - 1] ** 3 - s[n - 1]
        return r

    return {"lorenz": lorenz, "rosenbrock": rosenbrock, "pde": pde}


def jax_rosenbrock_loop(x: Any) -> Any:
    """The loop Rosenbrock as written for Numba, for jax (the Python loop is traced)."""
    s = 0.0
    for i in range(x.shape[0] - 1):
        s = s + 100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2
    return s


def jax_problems(jnp: Any) -> dict[str, Any]:
    def lorenz(u, sigma, rho, beta):
        x, y, z = u[0], u[1], u[2]
        return jnp.stack([sigma * (y - x), x * (rho - z) - y, x * y - beta * z])

    def rosenbrock(x):
        return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)

    def pde(u, s):
        n = u.shape[0]
        h2 = 1.0 / (n + 1) ** 2
        padded = jnp.concatenate([jnp.zeros(1), u, jnp.zeros(1)])
        return (padded[:-2] - 2.0 * padded[1:-1] + padded[2:]) / h2 + u**3 - s

    return {"lorenz": lorenz, "rosenbrock": rosenbrock, "pde": pde}


def inputs(case: str, n: int) -> tuple[Any, ...]:
    """Deterministic inputs: (x, args) for lorenz and rosenbrock, (u, v, s) for pde."""
    import numpy as np

    rng = np.random.default_rng(0)
    if case == "lorenz":
        return rng.normal(size=3), LORENZ_ARGS
    if case == "rosenbrock":
        return rng.uniform(-1.5, 1.5, size=n), ()
    return rng.uniform(0.1, 1.0, size=n), rng.normal(size=n), rng.uniform(size=n)


# --- closed-form derivatives, to check our own answers -------------------------------------------


def lorenz_jacobian(u: Any, sigma: float, rho: float, beta: float) -> Any:
    import numpy as np

    x, y, z = u
    return np.array([[-sigma, sigma, 0.0], [rho - z, -1.0, -x], [y, x, -beta]])


def rosenbrock_gradient(x: Any) -> Any:
    import numpy as np

    g = np.zeros_like(x)
    inner = x[1:] - x[:-1] ** 2
    g[:-1] += -400.0 * x[:-1] * inner - 2.0 * (1.0 - x[:-1])
    g[1:] += 200.0 * inner
    return g


def rosenbrock_hessian(x: Any) -> Any:
    import numpy as np

    n = x.shape[0]
    h = np.zeros((n, n))
    i = np.arange(n - 1)
    h[i, i] += 1200.0 * x[:-1] ** 2 - 400.0 * x[1:] + 2.0
    h[i + 1, i + 1] += 200.0
    h[i, i + 1] = h[i + 1, i] = -400.0 * x[:-1]
    return h


def pde_jvp(u: Any, v: Any) -> Any:
    import numpy as np

    n = u.shape[0]
    padded = np.concatenate([[0.0], v, [0.0]])
    return (padded[:-2] - 2.0 * padded[1:-1] + padded[2:]) * (n + 1) ** 2 + 3.0 * u**2 * v


# --- timing --------------------------------------------------------------------------------------


def available_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


# --- the table -----------------------------------------------------------------------------------


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str, str, str]] = []

    def add(
        self,
        case: str,
        ours: float | str | None,
        peer: str = "-",
        ratio: float | None = None,
        goal: str = "-",
        met: bool | None = None,
    ) -> None:
        ours_text = ours if isinstance(ours, str) else fmt(ours)
        ratio_text = "-" if ratio is None else f"{ratio:.2f}x"
        met_text = "-" if met is None else ("yes" if met else "NO")
        self.rows.append((case, ours_text, peer, ratio_text, goal, met_text))

    def print(self) -> None:
        head = ("case", "ours", "peer / reference", "ratio", "goal", "met")
        widths = [max(len(r[i]) for r in self.rows + [head]) for i in range(6)]
        for row in [head] + self.rows:
            cells = [
                row[i].rjust(widths[i]) if i in (1, 3) else row[i].ljust(widths[i])
                for i in range(6)
            ]
            print("  ".join(cells).rstrip())


def load_jax() -> Any:
    try:
        import jax

        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp  # noqa: F401 - makes jax.numpy available as jax.numpy
    except ImportError as exc:
        print(f"# JAX is not importable ({exc}): the JAX columns are skipped")
        return None
    return jax


def checked_peer(
    name: str, make: Callable[[], Callable[[], Any]], ours: Any, table: Table, case: str
) -> Callable[[], Any] | None:
    """The peer's call if it runs and agrees with ``ours``; else a row saying why not."""
    import numpy as np

    try:
        call = make()
        theirs = np.asarray(call())
    except Exception as exc:  # a peer that cannot run the problem is reported, not timed
        table.add(case, None, f"{name}: failed ({describe(exc)})")
        return None
    if theirs.shape != np.shape(ours) or not np.allclose(theirs, ours, rtol=RTOL, atol=ATOL):
        table.add(case, None, f"{name}: WRONG ANSWER (not timed)")
        return None
    return call


def describe(exc: BaseException) -> str:
    """An exception in one line: its type and the start of its first line of text."""
    text = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {text[:70]}" if text else type(exc).__name__


def check_ours(what: str, ours: Any, expected: Any) -> None:
    import numpy as np

    if not np.allclose(ours, expected, rtol=RTOL, atol=ATOL):
        print(f"# WARNING: dualad's {what} differs from the closed form (times still shown)")


# --- 1. Lorenz -----------------------------------------------------------------------------------


def bench_lorenz(problems: dict[str, Any], jax: Any, opts: argparse.Namespace, table: Table):
    import numpy as np

    import dualad as da
    import dualad.numba as dn

    f = problems["lorenz"]
    x, args = inputs("lorenz", 3)
    ours = da.jacobian(f, x, args=args)
    check_ours("Lorenz Jacobian", ours, lorenz_jacobian(x, *args))
    drive = dn.driver(f, "value_and_jacobian", dn.chunk_size_for(3))
    check_ours("Lorenz Jacobian (driver)", drive(x, *args)[1], ours)
    f(x, *args)
    calls = {
        "da": lambda: da.jacobian(f, x, args=args),
        "driver": lambda: drive(x, *args),
        "primal": lambda: f(x, *args),
    }
    peer = None
    if jax is not None:

        def make():
            jac = jax.jit(jax.jacfwd(jax_problems(jax.numpy)["lorenz"]))
            xj, argsj = jax.device_put(x), tuple(jax.device_put(np.float64(a)) for a in args)
            return lambda: jac(xj, *argsj).block_until_ready()

        peer = checked_peer("jax.jit(jacfwd)", make, ours, table, "Lorenz 3x3 Jacobian")
        if peer is not None:
            calls["jax"] = peer
    warm_cpu()
    t = interleaved(calls, opts.repeats, opts.min_seconds)
    if "jax" in t:
        goal = "jax/ours >= 4"
        peer_text = f"jax.jit(jacfwd) {fmt(t['jax'])}"
        table.add(
            "Lorenz 3x3 Jacobian: da.jacobian",
            t["da"],
            peer_text,
            t["jax"] / t["da"],
            goal,
            t["jax"] / t["da"] >= 4,
        )
        table.add(
            "Lorenz 3x3 Jacobian: driver only",
            t["driver"],
            peer_text,
            t["jax"] / t["driver"],
            "(info) " + goal,
        )
    else:
        table.add("Lorenz 3x3 Jacobian: da.jacobian", t["da"], "jax: skipped")
        table.add("Lorenz 3x3 Jacobian: driver only", t["driver"])
    table.add(
        "Lorenz primal lorenz(x, *args)",
        t["primal"],
        "da.jacobian / primal",
        t["da"] / t["primal"],
        "(info)",
    )


# --- 2. Rosenbrock -------------------------------------------------------------------------------


def _jax_rosenbrock(jax: Any, x: Any, ours: Any, table: Table, case: str, time_limit: float):
    """A checked ``jax.jit(jax.jacfwd(rosenbrock))`` call at ``x``, or None (with a row why)."""
    n = x.shape[0]
    need = 3 * 8 * n * n  # the n x n identity of jacfwd and two intermediates of its size
    have = available_bytes()
    if have is not None and need > 0.8 * have:
        table.add(
            case,
            None,
            f"jax.jit(jacfwd): skipped, needs ~{need / 2**30:.1f} GiB "
            f"of {have / 2**30:.1f} GiB available",
        )
        return None, None

    def make():
        jac = jax.jit(jax.jacfwd(jax_problems(jax.numpy)["rosenbrock"]))
        xj = jax.device_put(x)
        return lambda: jac(xj).block_until_ready()

    start = time.perf_counter()
    call = checked_peer("jax.jit(jacfwd)", make, ours, table, case)
    first = time.perf_counter() - start
    if call is not None and first > time_limit:
        table.add(
            case,
            None,
            f"jax.jit(jacfwd): first call {fmt(first)} > {time_limit:.0f} s, not repeated",
        )
        return None, first
    return call, first


def bench_rosenbrock(problems: dict[str, Any], jax: Any, opts: argparse.Namespace, table: Table):
    import dualad as da
    import dualad.numba as dn

    f = problems["rosenbrock"]
    n = opts.n
    x, _ = inputs("rosenbrock", n)
    case = f"Rosenbrock gradient n={n}"
    default_k = dn.chunk_size_for(n)
    ours = da.gradient(f, x)
    check_ours(f"Rosenbrock gradient n={n}", ours, rosenbrock_gradient(x))
    calls: dict[str, Callable[[], object]] = {"da": lambda: da.gradient(f, x)}
    for k in opts.chunk_sizes:
        if k == dn.CHUNK_THRESHOLD or k > n:
            continue
        try:
            by_k = da.gradient(f, x, chunk_size=k)
        except Exception as exc:  # reported in the table, not timed
            table.add(f"{case}: da.gradient chunk_size={k}", None, f"failed: {describe(exc)}")
            continue
        check_ours(f"Rosenbrock gradient chunk_size={k}", by_k, ours)
        calls[f"K={k}"] = lambda k=k: da.gradient(f, x, chunk_size=k)
    f(x)
    calls["primal"] = lambda: f(x)
    jax_first = None
    if jax is not None:
        peer, jax_first = _jax_rosenbrock(jax, x, ours, table, case, opts.jax_time_limit)
        if peer is not None:
            calls["jax"] = peer
    small = None
    if jax is not None and opts.small_n and opts.small_n < n:
        xs, _ = inputs("rosenbrock", opts.small_n)
        small_ours = da.gradient(f, xs)
        check_ours(f"Rosenbrock gradient n={opts.small_n}", small_ours, rosenbrock_gradient(xs))
        small_case = f"Rosenbrock gradient n={opts.small_n}"
        small, _ = _jax_rosenbrock(jax, xs, small_ours, table, small_case, opts.jax_time_limit)
        if small is not None:
            calls["da small"] = lambda: da.gradient(f, xs)
            calls["jax small"] = small
    warm_cpu()
    t = interleaved(calls, opts.repeats, opts.min_seconds)
    goal = "jax/ours >= 5"
    label = f"{case}: da.gradient (K={default_k}, default)"
    if "jax" in t:
        table.add(
            label,
            t["da"],
            f"jax.jit(jacfwd) {fmt(t['jax'])}",
            t["jax"] / t["da"],
            goal,
            t["jax"] / t["da"] >= 5,
        )
    else:
        table.add(label, t["da"], "jax: not timed (see above)" if jax else "jax: skipped")
    for name in calls:
        if name.startswith("K="):
            k = int(name[2:])
            shown = dn.chunk_size_for(n, k)
            if "jax" in t:
                table.add(
                    f"{case}: da.gradient chunk_size={k} (K={shown})",
                    t[name],
                    f"jax.jit(jacfwd) {fmt(t['jax'])}",
                    t["jax"] / t[name],
                    "(info) " + goal,
                )
            else:
                table.add(
                    f"{case}: da.gradient chunk_size={k} (K={shown})",
                    t[name],
                    f"default K {fmt(t['da'])}",
                    t["da"] / t[name],
                    "(info)",
                )
    if n == 10_000:  # the size of ForwardDiff.jl's documented timing
        table.add(
            f"{case}: ForwardDiff.jl docs (their machine)",
            FORWARDDIFF_SECONDS,
            "da.gradient (this machine)",
            FORWARDDIFF_SECONDS / t["da"],
            "(reference)",
        )
    table.add(
        f"Rosenbrock primal n={n}",
        t["primal"],
        "da.gradient / primal",
        t["da"] / t["primal"],
        "(info)",
    )
    if "jax small" in t:
        table.add(
            f"Rosenbrock gradient n={opts.small_n}: da.gradient",
            t["da small"],
            f"jax.jit(jacfwd) {fmt(t['jax small'])}",
            t["jax small"] / t["da small"],
            "(info) " + goal,
        )
    if jax_first is not None and "jax" in t:
        print(f"# JAX jacfwd at n={n}: first call (compile + run) {fmt(jax_first)}")


# --- 3. PDE JVP ----------------------------------------------------------------------------------


def bench_pde(problems: dict[str, Any], jax: Any, opts: argparse.Namespace, table: Table):
    import dualad as da
    import dualad.numba as dn

    f = problems["pde"]
    n = opts.n
    u, v, s = inputs("pde", n)
    value, ours = da.jvp(f, u, v, args=(s,))
    check_ours(f"PDE J.v n={n}", ours, pde_jvp(u, v))
    check_ours(f"PDE value n={n}", value, f(u, s))
    drive = dn.driver(f, "jvp", 1)
    directions = v.reshape(v.shape + (1,))
    check_ours("PDE J.v (driver)", drive(u, directions, s)[1][:, 0], ours)
    calls = {
        "da": lambda: da.jvp(f, u, v, args=(s,)),
        "driver": lambda: drive(u, directions, s),
        "primal": lambda: f(u, s),
    }
    if jax is not None:

        def make():
            g = jax_problems(jax.numpy)["pde"]
            jvp = jax.jit(lambda u, v, s: jax.jvp(lambda w: g(w, s), (u,), (v,))[1])
            uj, vj, sj = (jax.device_put(a) for a in (u, v, s))
            return lambda: jvp(uj, vj, sj).block_until_ready()

        peer = checked_peer("jax.jit(jvp)", make, ours, table, f"PDE J.v n={n}")
        if peer is not None:
            calls["jax"] = peer
    warm_cpu()
    t = interleaved(calls, opts.repeats, opts.min_seconds)
    primal = f"primal {fmt(t['primal'])}"
    table.add(
        f"PDE J.v n={n}: da.jvp",
        t["da"],
        primal,
        t["da"] / t["primal"],
        "ours/primal <= 3",
        t["da"] / t["primal"] <= 3,
    )
    table.add(
        f"PDE J.v n={n}: driver only",
        t["driver"],
        primal,
        t["driver"] / t["primal"],
        "(info) ours/primal <= 3",
    )
    if "jax" in t:
        table.add(
            f"PDE J.v n={n}: jax.jit(jvp)",
            t["jax"],
            f"da.jvp {fmt(t['da'])}",
            t["jax"] / t["da"],
            "(info) jax/ours",
        )


# --- 4. first calls, each in a fresh process -----------------------------------------------------


def compile_only(case: str, n: int, primal_first: bool, with_jax: bool) -> None:
    """Subprocess mode: time the imports and the first (compiling) call; print one JSON line."""
    out: dict[str, Any] = {}
    start = time.perf_counter()
    import numpy as np

    out["import_numpy"] = time.perf_counter() - start
    start = time.perf_counter()
    import dualad as da

    out["import_dualad"] = time.perf_counter() - start
    out["numba_imported_by_dualad"] = "numba" in sys.modules
    start = time.perf_counter()
    import numba  # noqa: F401 - timed on its own: dualad.numba imports it

    out["import_numba"] = time.perf_counter() - start
    start = time.perf_counter()
    import dualad.numba as dn

    out["import_dualad_numba"] = time.perf_counter() - start
    f = numba_problems()["rosenbrock" if case == "hessian" else case]
    if case == "hessian":
        x, _ = inputs("rosenbrock", n)
        calls = {"primal": lambda: f(x), "ours": lambda: da.hessian(f, x)}
    elif case == "pde":
        u, v, s = inputs(case, n)
        calls = {"primal": lambda: f(u, s), "ours": lambda: da.jvp(f, u, v, args=(s,))}
    else:
        x, args = inputs(case, n)
        # forward mode, as the row says: mode="auto" takes compiled reverse from 128 inputs on
        calls = {
            "primal": lambda: f(x, *args),
            "ours": lambda: da.jacobian(f, x, args=args, mode="forward"),
        }
    primal, call = calls["primal"], calls["ours"]
    if primal_first:
        start = time.perf_counter()
        primal()
        out["primal_first"] = time.perf_counter() - start
    start, cpu = time.perf_counter(), time.process_time()
    ours = call()
    out["first"] = time.perf_counter() - start
    out["first_cpu"] = time.process_time() - cpu  # under load the wall time is mostly waiting
    start = time.perf_counter()
    call()
    out["second"] = time.perf_counter() - start
    out["compile_times"] = [[*key, seconds] for key, seconds in dn.compile_times.items()]
    if with_jax and case != "hessian":
        try:
            start = time.perf_counter()
            import jax

            jax.config.update("jax_enable_x64", True)
            out["import_jax"] = time.perf_counter() - start
            g = jax_problems(jax.numpy)[case]
            if case == "pde":
                fn = jax.jit(lambda u, v, s: jax.jvp(lambda w: g(w, s), (u,), (v,))[1])
                jargs, expected = (u, v, s), ours[1]
            else:
                fn, jargs, expected = jax.jit(jax.jacfwd(g)), (x, *args), ours
            start = time.perf_counter()
            theirs = np.asarray(fn(*jargs).block_until_ready())
            out["jax_first"] = time.perf_counter() - start
            out["jax_ok"] = bool(
                np.allclose(theirs.reshape(np.shape(expected)), expected, rtol=RTOL, atol=ATOL)
            )
        except Exception as exc:  # ImportError, or JAX failing (e.g. out of memory)
            out["jax_error"] = describe(exc)
    print(json.dumps(out))


def run_compile_subprocess(
    case: str, n: int, primal_first: bool, with_jax: bool, cache_dir: str
) -> dict:
    """One fresh process's first call, with dualad's disk cache in ``cache_dir``."""
    command = [sys.executable, os.path.abspath(__file__), "--compile-only", case, "--n", str(n)]
    if primal_first:
        command.append("--primal-first")
    if not with_jax:
        command.append("--no-jax")
    env = dict(os.environ, DUALAD_CACHE_DIR=cache_dir)
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=600, check=False, env=env
        )
    except subprocess.TimeoutExpired:
        return {"error": "timed out after 600 s"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {done.returncode}: {tail[:100]}"}
    return json.loads(lines[-1])


def _median_of(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if key in r]
    return statistics.median(values) if values else None


def met_at(goal: str) -> float:
    """The seconds in a goal such as ``ours <= 2 s``."""
    return float(goal.split("<=")[1].split()[0])


def bench_compile(opts: argparse.Namespace, jax: Any, table: Table) -> None:
    labels = {
        "lorenz": "da.jacobian(lorenz)",
        "rosenbrock": f"da.jacobian(rosen, mode=forward) n={opts.n}",
        "pde": f"da.jvp(pde) n={opts.n}",
    }
    everything: list[dict] = []
    variants = [
        ("cold cache", False),
        ("warm cache", False),
        ("warm cache, after f(x) compiled", True),
    ]
    if opts.primal_first_variant:
        variants.insert(1, ("cold cache, after f(x) compiled", True))
    for case in CASES:
        by_variant: dict[str, list[dict]] = {name: [] for name, _ in variants}
        for _ in range(opts.compile_runs):
            with tempfile.TemporaryDirectory(prefix="dualad-cache-") as root:
                for name, primal_first in variants:
                    # each cold variant starts from an empty folder; the warm one is a second
                    # process on the folder the first (cold) one filled
                    folder = os.path.join(
                        root,
                        "first" if name != "cold cache, after f(x) compiled" else "primal-first",
                    )
                    with_jax = jax is not None and name == "cold cache"
                    by_variant[name].append(
                        run_compile_subprocess(case, opts.n, primal_first, with_jax, folder)
                    )
        for name, primal_first in variants:
            runs = by_variant[name]
            errors = [r["error"] for r in runs if "error" in r]
            runs = [r for r in runs if "error" not in r]
            everything += runs
            label = f"first call {labels[case]} ({name}, fresh process)"
            if not runs:
                table.add(label, "failed", errors[0])
                continue
            first = _median_of(runs, "first")
            second = _median_of(runs, "second")
            if primal_first:
                peer = f"primal's first call {fmt(_median_of(runs, 'primal_first'))}"
            elif "jax_first" in runs[0]:
                ok = all(r.get("jax_ok") for r in runs)
                peer = f"jax first call {fmt(_median_of(runs, 'jax_first'))}"
                peer += "" if ok else " (WRONG ANSWER)"
            elif "jax_error" in runs[0]:
                peer = f"jax failed: {runs[0]['jax_error'][:50]}"
            else:
                peer = "-"
            if name.startswith("warm"):
                goal, met = "ours <= 0.5 s", first <= 0.5
            elif case in ("lorenz", "rosenbrock"):
                goal, met = "ours <= 2 s", first <= 2.0
            else:
                goal, met = "ours <= 3 s", first <= 3.0
            table.add(label, first, peer, None, goal, met)
            cpu = _median_of(runs, "first_cpu")
            if cpu is not None:
                table.add(
                    f"  its CPU time, user + sys ({name})",
                    cpu,
                    "-",
                    None,
                    goal,
                    cpu <= met_at(goal),
                )
            table.add(f"  then second call ({name})", second)
            for r in runs[:1]:
                detail = ", ".join(f"{k[1]} K={k[2]} {k[3]:.2f} s" for k in r["compile_times"])
                print(f"# {case} ({name}): dualad.numba.compile_times: {detail}")
    if everything:
        table.add(
            "import dualad (numpy already imported)",
            _median_of(everything, "import_dualad"),
            f"import numpy {fmt(_median_of(everything, 'import_numpy'))}",
        )
        table.add(
            "import dualad.numba (numba already imported)",
            _median_of(everything, "import_dualad_numba"),
            f"import numba {fmt(_median_of(everything, 'import_numba'))}",
        )
        if any(r.get("numba_imported_by_dualad") for r in everything):
            print("# note: `import dualad` imported numba itself")


# --- 5. compiled Hessians -----------------------------------------------------------------------


def bench_hessian(problems: dict[str, Any], jax: Any, opts: argparse.Namespace, table: Table):
    """Hessian and HVP of the loop Rosenbrock: compiled (local second derivatives; the HVP
    forward over reverse) against jax.jit of jax.hessian on the same loop function, the
    forward-over-reverse and nested-Dual Hessian drivers and dualad's NumPy engine; then the
    first call in a fresh process."""
    import numpy as np

    import dualad as da
    import dualad.numba as dn
    from dualad.numba import adjoint

    f = problems["rosenbrock"]
    n = opts.hessian_n
    x, _ = inputs("rosenbrock", n)
    v = np.linspace(-1.0, 1.0, n)
    case = f"Rosenbrock (loop) Hessian n={n}"
    start = time.perf_counter()
    ours = da.hessian(f, x)
    first = time.perf_counter() - start
    check_ours(case, ours, rosenbrock_hessian(x))
    ours_hvp = da.hvp(f, x, v)
    check_ours(f"{case} HVP", ours_hvp, rosenbrock_hessian(x) @ v)
    K_nested = dn.chunk_size_for(n, None, dn.SECOND_ORDER_CHUNK)
    check_ours(f"{case} nested", dn.run(f, "hessian", K_nested, x), rosenbrock_hessian(x))
    K = FORWARD_OVER_REVERSE_CHUNK
    identity = np.empty((0, 0))
    fwdrev = adjoint.run(f, ("hvp", K), x, identity, True)
    check_ours(f"{case} forward over reverse", fwdrev, rosenbrock_hessian(x))
    vs = v[:, None].copy()
    check_ours(f"{case} nested HVP", dn.run(f, "hvp", (K_nested, 1), x, vs)[:, 0], ours_hvp)
    calls: dict[str, Callable[[], object]] = {
        "da": lambda: da.hessian(f, x),
        "numpy": lambda: da.hessian(f, x, engine="numpy"),
        "hvp": lambda: da.hvp(f, x, v),
        "nested": lambda: dn.run(f, "hessian", K_nested, x),
        "fwdrev": lambda: adjoint.run(f, ("hvp", K), x, identity, True),
        "nested hvp": lambda: dn.run(f, "hvp", (K_nested, 1), x, vs),
    }
    if jax is not None:

        def make():
            hess = jax.jit(jax.hessian(jax_rosenbrock_loop))
            xj = jax.device_put(x)
            return lambda: hess(xj).block_until_ready()

        def make_hvp():
            grad = jax.grad(jax_rosenbrock_loop)
            hvp = jax.jit(lambda x, v: jax.jvp(grad, (x,), (v,))[1])
            xj, vj = jax.device_put(x), jax.device_put(v)
            return lambda: hvp(xj, vj).block_until_ready()

        def make_vectorised():
            hess = jax.jit(jax.hessian(jax_problems(jax.numpy)["rosenbrock"]))
            xj = jax.device_put(x)
            return lambda: hess(xj).block_until_ready()

        peer = checked_peer("jax.jit(hessian)", make, ours, table, case)
        if peer is not None:
            calls["jax"] = peer
        peer = checked_peer("jax.jit(hessian) vectorised", make_vectorised, ours, table, case)
        if peer is not None:
            calls["jax vectorised"] = peer
        peer = checked_peer("jax.jit(jvp of grad)", make_hvp, ours_hvp, table, case + " HVP")
        if peer is not None:
            calls["jax hvp"] = peer
    warm_cpu()
    t = interleaved(calls, opts.repeats, opts.min_seconds)
    label = f"{case}: da.hessian (one recording, local 2nd derivatives)"
    if "jax" in t:
        ratio = t["jax"] / t["da"]
        table.add(
            label, t["da"], f"jax.jit(hessian) {fmt(t['jax'])}", ratio, "jax/ours >= 5", ratio >= 5
        )
    else:
        table.add(label, t["da"], "jax: not timed" if jax else "jax: skipped")
    if "jax vectorised" in t:
        ratio = t["jax vectorised"] / t["da"]
        peer = f"jax.jit(hessian), vectorised f {fmt(t['jax vectorised'])}"
        table.add(
            f"{case}: da.hessian vs JAX on np.sum form",
            t["da"],
            peer,
            ratio,
            "jax/ours >= 5",
            ratio >= 5,
        )
    table.add(
        f"{case}: forward over reverse, a recording per K={K} columns",
        t["fwdrev"],
        "fwd over rev / da.hessian",
        t["fwdrev"] / t["da"],
        "(info)",
    )
    table.add(
        f"{case}: nested Duals (forward over forward, K={K_nested})",
        t["nested"],
        "nested / da.hessian",
        t["nested"] / t["da"],
        "(info)",
    )
    table.add(
        f"{case}: da.hessian engine='numpy'",
        t["numpy"],
        "compiled / NumPy engine",
        t["numpy"] / t["da"],
        "(info)",
    )
    if "jax hvp" in t:
        table.add(
            f"{case}: da.hvp compiled",
            t["hvp"],
            f"jax.jit(jvp of grad) {fmt(t['jax hvp'])}",
            t["jax hvp"] / t["hvp"],
            "(info)",
        )
    else:
        table.add(f"{case}: da.hvp compiled", t["hvp"])
    table.add(
        f"{case}: hvp on nested Duals (K={K_nested})",
        t["nested hvp"],
        "nested / forward over reverse",
        t["nested hvp"] / t["hvp"],
        "(info)",
    )
    table.add(f"{case}: da.hessian first call (compiles)", first, "-", None, "(info)")
    with tempfile.TemporaryDirectory(prefix="dualad-cache-") as folder:
        run = run_compile_subprocess("hessian", n, False, False, folder)
    if "error" in run:
        table.add(f"{case}: first call, fresh process", "failed", run["error"])
    else:
        table.add(
            f"{case}: da.hessian first call, fresh process, cold cache",
            run["first"],
            f"CPU {fmt(run['first_cpu'])}; second call {fmt(run['second'])}",
            None,
            "(info)",
        )


# --- main ----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=None, help="repeats per median (7; 3 quick)")
    parser.add_argument("--quick", action="store_true", help="smoke run: n=2000, fewer repeats")
    parser.add_argument("--n", type=int, default=None, help="size of cases 2 and 3 (10,000)")
    parser.add_argument(
        "--compile-runs",
        type=int,
        default=None,
        help="fresh subprocesses per first-call measurement (3; 1 quick)",
    )
    parser.add_argument(
        "--jax-time-limit",
        type=float,
        default=120.0,
        help="do not repeat a JAX call whose first call took longer (s)",
    )
    parser.add_argument(
        "--cases",
        default=",".join(BENCH_CASES + ("compile",)),
        help="comma-separated subset of lorenz,rosenbrock,pde,hessian,compile (default: all)",
    )
    parser.add_argument("--compile-only", choices=BENCH_CASES, help=argparse.SUPPRESS)
    parser.add_argument("--primal-first", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-jax", action="store_true", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.n is None:
        opts.n = 2000 if opts.quick else 10_000
    if opts.compile_only:
        compile_only(opts.compile_only, opts.n, opts.primal_first, not opts.no_jax)
        return
    opts.cases = {c.strip() for c in opts.cases.split(",") if c.strip()}
    unknown = opts.cases - set(BENCH_CASES + ("compile",))
    if unknown:
        choices = BENCH_CASES + ("compile",)
        parser.error(f"unknown case(s) {sorted(unknown)}; choose from {choices}")
    if opts.repeats is None:
        opts.repeats = 3 if opts.quick else 7
    if opts.compile_runs is None:
        opts.compile_runs = 1 if opts.quick else 3
    opts.min_seconds = 0.02 if opts.quick else 0.05
    opts.chunk_sizes = (32,) if opts.quick else (8, 16, 24, 32)
    opts.small_n = None if opts.quick else 1000
    opts.hessian_n = 30 if opts.quick else 100
    opts.primal_first_variant = not opts.quick

    import numba
    import numpy as np

    import dualad  # noqa: F401 - imported before dualad.numba, as a user would
    import dualad.numba as dn

    started = time.perf_counter()
    jax = load_jax()
    versions = f"NumPy {np.__version__}, Numba {numba.__version__}"
    if jax is not None:
        versions += f", JAX {jax.__version__}"
    print(
        f"# {time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {versions}; medians of {opts.repeats} repeats; "
        f"CHUNK_THRESHOLD = {dn.CHUNK_THRESHOLD}; load average {load_average()}"
    )
    problems = numba_problems()
    table = Table()
    for bench, name in (
        (bench_lorenz, "lorenz"),
        (bench_rosenbrock, "rosenbrock"),
        (bench_pde, "pde"),
        (bench_hessian, "hessian"),
    ):
        if name not in opts.cases:
            continue
        try:
            bench(problems, jax, opts, table)
        except Exception as exc:  # one case failing in dualad is reported; the others still run
            table.add(f"{name}: benchmark failed", None, describe(exc))
    detail = ", ".join(f"{k[0]} {k[1]} K={k[2]} {v:.2f} s" for k, v in dn.compile_times.items())
    print(f"# compile_times in this process (later ones reuse earlier work): {detail}")
    if "compile" in opts.cases:
        bench_compile(opts, jax, table)
    print()
    table.print()
    print(
        f"\n# ratio: jax/ours > 1 means dualad is faster; ours/primal is the cost of a JVP in "
        f"primal calls. JAX may use both cores; dualad's drivers run on one. "
        f"Total {time.perf_counter() - started:.0f} s; load average now {load_average()}."
    )


if __name__ == "__main__":
    main()
