"""Sparse Jacobians of the 2-D Brusselator, and solve_ivp(method="BDF") with them.

    python benchmarks/brusselator.py [--sizes 32,64] [--repeats 7] [--t-end 11.5]
                                     [--default-fd 32,64] [--quick]

The problem is the 2-D Brusselator reaction-diffusion system on a periodic N x N grid (the
SciML benchmark's form: A = 3.4, B = 1, alpha = 10 / dx^2, a forcing of 5 in a disc from t = 1.1),
with u and v stacked, n = 2 N^2 unknowns and 12 N^2 Jacobian entries.  It is written three ways:
vectorised NumPy (np.roll), a Numba loop and jax.numpy; all three are checked against each other.

For each N this measures, timed in turn within each repeat (medians of ``--repeats``):

1. the primal, on the NumPy engine's form and compiled;
2. ``SparseJacobian(f, y)(y)``, dualad's prepared sparse Jacobian: one JVP along the colors, on the
   NumPy engine and in the compiled engine;
3. dualad's dense forward Jacobian, ``da.jacobian``, on both engines (fewer repeats: it is slow);
4. ``jax.jit(jax.jacfwd(f))`` where JAX is importable (dense, as jacfwd is);
5. finite differences grouped by SciPy's ``group_columns`` (what ``jac_sparsity=`` does), with the
   compiled right-hand side.

It reports the colors against the lower bound (the most entries in a row) and SciPy's group
count, the cost of one sparse Jacobian in units of the primal against the goal 3 x colors, and the
speed-up over dense forward mode against the goal 100x at N = 64.  Then ``solve_ivp`` with
``method="BDF"`` over ``[0, --t-end]`` from the SciML initial condition, once with dualad's sparse
``jac`` (compiled, CSC), once with SciPy's finite differences on the same pattern
(``jac_sparsity=``) and, for the sizes in ``--default-fd``, with SciPy's default dense
finite-difference Jacobian (slow: a dense LU of n x n per factorisation).  The solver's nfev
leaves out the evaluations its finite differences make, so the right-hand side's calls are
counted too.  Each solve runs ``--solve-repeats`` times (the default FD once); the final states are
compared.  ``--quick`` is a smoke run (N = 16, 3 repeats, t_end = 2).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from timing import fmt, interleaved, load_average, one_thread, warm_cpu

A_RATE, B_RATE, ALPHA = 3.4, 1.0, 10.0
FORCING_ON = 1.1

# --- the problem, three ways ---------------------------------------------------------------------


def initial_state(N: int) -> np.ndarray:
    xs = np.linspace(0.0, 1.0, N)
    X, Y = np.meshgrid(xs, xs, indexing="ij")
    u = 22.0 * (Y * (1.0 - Y)) ** 1.5
    v = 27.0 * (X * (1.0 - X)) ** 1.5
    return np.concatenate([u.ravel(), v.ravel()])


def forcing(N: int, on: bool) -> np.ndarray:
    xs = np.linspace(0.0, 1.0, N)
    X, Y = np.meshgrid(xs, xs, indexing="ij")
    disc = (X - 0.3) ** 2 + (Y - 0.6) ** 2 <= 0.1**2
    return np.where(disc & on, 5.0, 0.0).ravel()


def brusselator(y: Any, force: np.ndarray, N: int) -> Any:
    """Vectorised NumPy: runs on dualad's NumPy engine (and on its sparsity tracer)."""
    alpha = ALPHA * (N - 1) ** 2
    u, v = y.reshape(2, N, N)

    def lap(w: Any) -> Any:
        return np.roll(w, 1, 0) + np.roll(w, -1, 0) + np.roll(w, 1, 1) + np.roll(w, -1, 1) - 4 * w

    uuv = u * u * v
    du = alpha * lap(u) + B_RATE + uuv - (A_RATE + 1.0) * u + force.reshape(N, N)
    dv = alpha * lap(v) + A_RATE * u - uuv
    return np.concatenate([du.ravel(), dv.ravel()])


def make_loops() -> Callable[..., Any]:
    import numba

    @numba.njit
    def brusselator_loops(y, force, N):  # noqa: ANN001, ANN202 - compiled for floats and Duals
        alpha = ALPHA * (N - 1) ** 2
        out = np.empty_like(y)
        M = N * N
        for i in range(N):
            ip, im = (i + 1) % N, (i - 1) % N
            for j in range(N):
                jp, jm = (j + 1) % N, (j - 1) % N
                k = i * N + j
                u, v = y[k], y[M + k]
                uuv = u * u * v
                lap_u = y[ip * N + j] + y[im * N + j] + y[i * N + jp] + y[i * N + jm] - 4.0 * u
                lap_v = (
                    y[M + ip * N + j] + y[M + im * N + j] + y[M + i * N + jp] + y[M + i * N + jm]
                ) - 4.0 * v
                out[k] = alpha * lap_u + B_RATE + uuv - (A_RATE + 1.0) * u + force[k]
                out[M + k] = alpha * lap_v + A_RATE * u - uuv
        return out

    return brusselator_loops


def make_jax(N: int) -> Callable[..., Any] | None:
    try:
        import jax

        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp
    except ImportError:
        return None
    alpha = ALPHA * (N - 1) ** 2

    def f(y: Any, force: Any) -> Any:
        u, v = y.reshape(2, N, N)

        def lap(w: Any) -> Any:
            return (
                jnp.roll(w, 1, 0) + jnp.roll(w, -1, 0) + jnp.roll(w, 1, 1) + jnp.roll(w, -1, 1)
            ) - 4 * w

        uuv = u * u * v
        du = alpha * lap(u) + B_RATE + uuv - (A_RATE + 1.0) * u + force.reshape(N, N)
        dv = alpha * lap(v) + A_RATE * u - uuv
        return jnp.concatenate([du.ravel(), dv.ravel()])

    return jax.jit(jax.jacfwd(f))


# --- measurements --------------------------------------------------------------------------------


def relative_error(a: Any, b: Any) -> float:
    a = a.toarray() if hasattr(a, "toarray") else np.asarray(a)
    b = b.toarray() if hasattr(b, "toarray") else np.asarray(b)
    return float(np.abs(a - b).max() / np.abs(b).max())


def jacobians(N: int, repeats: int, loops: Callable[..., Any]) -> dict[str, Any]:
    """Times and checks of every Jacobian at the initial state, for one N."""
    from scipy.optimize._numdiff import approx_derivative, group_columns

    import dualad as da
    from dualad.sparse import SparseJacobian, jacobian_sparsity

    y = initial_state(N)
    force = forcing(N, True)
    args = (force, N)
    out: dict[str, Any] = {"N": N, "n": y.size}

    start = time.perf_counter()
    pattern = jacobian_sparsity(brusselator, y, args=args)
    out["trace_numpy"] = time.perf_counter() - start
    start = time.perf_counter()
    loop_pattern = jacobian_sparsity(loops, y, args=args)
    out["trace_loops"] = time.perf_counter() - start
    assert (pattern != loop_pattern).nnz == 0, "the two forms have different patterns"
    start = time.perf_counter()
    numpy_jac = SparseJacobian(brusselator, y, sparsity=pattern, args=args, check=False)
    out["color"] = time.perf_counter() - start
    compiled_jac = SparseJacobian(loops, y, sparsity=pattern, args=args, check=False)
    start = time.perf_counter()
    sparse_compiled = compiled_jac(y)
    out["first_compiled_call"] = time.perf_counter() - start
    loops(y, *args)  # the primal, compiled for floats
    out.update(
        nnz=pattern.nnz,
        colors=numpy_jac.ncolors,
        lower_bound=numpy_jac.lower_bound,
        scipy_groups=int(group_columns(pattern).max()) + 1,
    )
    groups = group_columns(pattern)

    def fd() -> Any:
        return approx_derivative(
            lambda z: loops(z, *args), y, method="2-point", sparsity=(pattern, groups)
        )

    sparse_numpy = numpy_jac(y)
    dense_compiled = da.jacobian(loops, y, args=args)
    out["err_sparse_vs_dense"] = max(
        relative_error(sparse_numpy, dense_compiled),
        relative_error(sparse_compiled, dense_compiled),
    )
    out["err_fd"] = relative_error(fd(), dense_compiled)
    jax_jac = make_jax(N)
    if jax_jac is not None:
        start = time.perf_counter()
        theirs = np.asarray(jax_jac(y, force))
        out["jax_first_call"] = time.perf_counter() - start
        out["err_jax"] = relative_error(theirs, dense_compiled)
        assert out["err_jax"] < 1e-12, f"JAX's Jacobian differs from ours: {out['err_jax']:.1e}"
    del dense_compiled
    assert out["err_sparse_vs_dense"] < 1e-14

    fast = {
        "primal, NumPy": lambda: brusselator(y, *args),
        "primal, compiled": lambda: loops(y, *args),
        "sparse, NumPy engine": lambda: numpy_jac(y),
        "sparse, compiled engine": lambda: compiled_jac(y),
        "FD, SciPy groups (compiled f)": fd,
    }
    out["times"] = interleaved(fast, repeats)
    slow = {
        "dense forward, NumPy engine": lambda: da.jacobian(brusselator, y, args=args),
        "dense forward, compiled engine": lambda: da.jacobian(loops, y, args=args),
    }
    if jax_jac is not None:
        slow["jax.jit(jax.jacfwd)"] = lambda: jax_jac(y, force).block_until_ready()
    out["times"].update(interleaved(slow, max(3, repeats // 2), min_seconds=0.0))
    return out


def solves(N: int, t_end: float, repeats: int, default_fd: bool, loops: Callable[..., Any]):
    """solve_ivp BDF with dualad's sparse Jacobian and with SciPy's finite differences."""
    from scipy.integrate import solve_ivp

    from dualad.sparse import SparseJacobian

    y0 = initial_state(N)
    off, on = forcing(N, False), forcing(N, True)
    calls = [0]

    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        calls[0] += 1
        return loops(y, on if t >= FORCING_ON else off, N)

    jac = SparseJacobian(loops, y0, args=(off, N), format="csc")  # the forcing is constant in y
    jac(y0)
    rhs(0.0, y0)
    runs = {
        "dualad sparse jac": ({"jac": lambda t, y: jac(y)}, repeats),
        "SciPy FD, jac_sparsity": ({"jac_sparsity": jac.sparsity}, repeats),
    }
    if default_fd:
        runs["SciPy default (dense FD)"] = ({}, 1)
    results = {}
    for name, (options, times) in runs.items():
        walls = []
        for _ in range(times):
            calls[0] = 0
            start = time.perf_counter()
            sol = solve_ivp(rhs, (0.0, t_end), y0, method="BDF", **options)
            walls.append(time.perf_counter() - start)
            assert sol.success, sol.message
        results[name] = {
            "wall": float(np.median(walls)),
            "runs": times,
            "nfev": sol.nfev,
            "njev": sol.njev,
            "nlu": sol.nlu,
            "steps": len(sol.t) - 1,
            "rhs_calls": calls[0],
            "final": sol.y[:, -1],
        }
    reference = results["dualad sparse jac"]["final"]
    for r in results.values():
        r["diff"] = float(np.abs(r.pop("final") - reference).max() / np.abs(reference).max())
    return results, jac.ncolors


# --- report --------------------------------------------------------------------------------------


def report_jacobians(rows: list[dict[str, Any]]) -> None:
    sizes = [r["N"] for r in rows]
    print("\n### One Jacobian at the initial state\n")
    print("| | " + " | ".join(f"N = {N} (n = {r['n']})" for N, r in zip(sizes, rows)) + " |")
    print("|---" * (len(rows) + 1) + "|")
    names = list(rows[0]["times"])
    for name in names:
        cells = []
        for r in rows:
            t = r["times"].get(name)
            cells.append(fmt(t))
        print(f"| {name} | " + " | ".join(cells) + " |")
    print()
    print("| | " + " | ".join(f"N = {N}" for N in sizes) + " |")
    print("|---" * (len(rows) + 1) + "|")

    def line(label: str, cell: Callable[[dict[str, Any]], str]) -> None:
        print(f"| {label} | " + " | ".join(cell(r) for r in rows) + " |")

    line("entries (nnz)", lambda r: str(r["nnz"]))
    line("colors / lower bound / SciPy's groups", lambda r: (
        f"{r['colors']} / {r['lower_bound']} / {r['scipy_groups']}"
    ))  # fmt: skip

    def ratio(r: dict[str, Any], a: str, b: str) -> float:
        return r["times"][a] / r["times"][b]

    for engine in ("NumPy", "compiled"):
        line(
            f"sparse / primal, {engine} (goal <= 3 x colors)",
            lambda r, e=engine: (
                f"{ratio(r, f'sparse, {e} engine', f'primal, {e}'):.1f} (<= {3 * r['colors']})"
            ),
        )
        line(
            f"dense forward / sparse, {engine} (goal >= 100 at N = 64)",
            lambda r, e=engine: (
                f"{ratio(r, f'dense forward, {e} engine', f'sparse, {e} engine'):.0f}x"
            ),
        )
    if "jax.jit(jax.jacfwd)" in rows[0]["times"]:
        line(
            "jax.jit(jacfwd) / sparse compiled",
            lambda r: f"{ratio(r, 'jax.jit(jax.jacfwd)', 'sparse, compiled engine'):.0f}x",
        )
        line("jax first call (compiles)", lambda r: fmt(r["jax_first_call"]))
    line(
        "FD (SciPy groups) / sparse compiled",
        lambda r: f"{ratio(r, 'FD, SciPy groups (compiled f)', 'sparse, compiled engine'):.2f}x",
    )
    line("max rel. error: sparse vs dense / FD", lambda r: (
        f"{r['err_sparse_vs_dense']:.0e} / {r['err_fd']:.0e}"
    ))  # fmt: skip
    line("pattern: tracing NumPy form / loop form", lambda r: (
        f"{fmt(r['trace_numpy'])} / {fmt(r['trace_loops'])}"
    ))  # fmt: skip
    line("coloring; first compiled call", lambda r: (
        f"{fmt(r['color'])}; {fmt(r['first_compiled_call'])}"
    ))  # fmt: skip


def report_solves(all_results: dict[int, Any], t_end: float) -> None:
    print(f"\n### solve_ivp(method='BDF') over [0, {t_end}]\n")
    print(
        "| N | Jacobian | wall time | nfev | njev | nlu | steps | rhs calls | final state vs ours |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for N, (results, _) in all_results.items():
        for name, r in results.items():
            runs = f" (median of {r['runs']})" if r["runs"] > 1 else " (1 run)"
            print(
                f"| {N} | {name} | {fmt(r['wall'])}{runs} | {r['nfev']} | {r['njev']} | "
                f"{r['nlu']} | {r['steps']} | {r['rhs_calls']} | {r['diff']:.0e} |"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="32,64")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--solve-repeats", type=int, default=3)
    parser.add_argument("--t-end", type=float, default=11.5)
    parser.add_argument("--default-fd", default="32,64", help="sizes with SciPy's dense FD solve")
    parser.add_argument("--quick", action="store_true")
    opts = parser.parse_args(argv)
    if opts.quick:
        opts.sizes, opts.repeats, opts.solve_repeats, opts.t_end = "16", 3, 1, 2.0
        opts.default_fd = "16"
    sizes = [int(s) for s in opts.sizes.split(",")]
    print(f"# {one_thread()}")
    default_fd = {int(s) for s in opts.default_fd.split(",") if s}

    import numba
    import scipy

    versions = (
        f"Python {platform.python_version()}, NumPy {np.__version__}, SciPy {scipy.__version__}, "
        f"Numba {numba.__version__}"
    )
    try:
        import jax

        versions += f", JAX {jax.__version__} (CPU, float64)"
    except ImportError:
        versions += ", JAX not installed (skipped)"
    print(
        f"# Brusselator 2-D, {datetime.date.today()}, {platform.machine()}, "
        f"{os.cpu_count()} cores; {versions}; load average {load_average()} at start"
    )
    loops = make_loops()
    warm_cpu()
    rows = [jacobians(N, opts.repeats, loops) for N in sizes]
    report_jacobians(rows)
    solved = {N: solves(N, opts.t_end, opts.solve_repeats, N in default_fd, loops) for N in sizes}
    report_solves(solved, opts.t_end)
    print(f"\nload average {load_average()} at the end", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
