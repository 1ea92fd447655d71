"""Array expressions in compiled code against the same functions written as loops.

Run: ``PYTHONPATH=src python benchmarks/array_expressions.py``.  For each pair it prints the
median time of a compiled Jacobian (or gradient) of the loop version, of the array-expression
version, and of the array version on the NumPy engine, all measured in this one run.  Then the
same two versions compiled by Numba on floats (``f(x)``, no derivative): their ratio is the
yardstick, since Numba's own array expressions allocate a new array per operation too.  The last
columns count the NRT allocations of one call (gradient, then float primal) of the array version.
"""

from __future__ import annotations

import time

import numba
import numpy as np

import dualad as da


@numba.njit
def rosenbrock_loop(x):
    s = 0.0
    for i in range(x.size - 1):
        s += 100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2
    return s


@numba.njit
def rosenbrock_array(x):
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


@numba.njit
def bratu_loop(u):
    n = u.size
    h2 = 1.0 / (n - 1) ** 2
    r = np.empty_like(u)
    r[0] = u[0]
    r[n - 1] = u[n - 1]
    for i in range(1, n - 1):
        r[i] = (u[i - 1] - 2.0 * u[i] + u[i + 1]) / h2 + np.exp(u[i])
    return r


@numba.njit
def bratu_mixed(u):
    """A loop over nothing but the boundary, array expressions for the interior."""
    h2 = 1.0 / (u.size - 1) ** 2
    r = np.empty_like(u)
    r[1:-1] = (u[:-2] - 2.0 * u[1:-1] + u[2:]) / h2 + np.exp(u[1:-1])
    r[0] = u[0]
    r[-1] = u[-1]
    return r


@numba.njit
def lj_loop(x):
    n = x.shape[0]
    e = 0.0
    for i in range(n):
        for j in range(i + 1, n):
            r2 = 0.0
            for k in range(3):
                d = x[i, k] - x[j, k]
                r2 += d * d
            inv6 = 1.0 / r2**3
            e += 4.0 * (inv6 * inv6 - inv6)
    return e


@numba.njit
def lj_mixed(x):
    n = x.shape[0]
    e = 0.0
    for i in range(n):
        for j in range(i + 1, n):
            d = x[i] - x[j]
            inv6 = 1.0 / np.sum(d * d) ** 3
            e += 4.0 * (inv6 * inv6 - inv6)
    return e


def median_time(call, repeats: int = 7) -> float:
    call()  # compile / warm
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def allocations(call) -> int:
    """The number of arrays (NRT allocations) that one ``call()`` makes in compiled code."""
    from numba.core.runtime import _nrt_python, rtsys

    _nrt_python.memsys_enable_stats()
    call()
    before = rtsys.get_allocation_stats().alloc
    call()
    count = rtsys.get_allocation_stats().alloc - before
    _nrt_python.memsys_disable_stats()
    return count


def main() -> None:
    rng = np.random.default_rng(0)
    grid = np.arange(6, dtype=float)
    lattice = np.stack(np.meshgrid(grid[:3], grid[:3], grid[:2]), -1).reshape(-1, 3) * 1.1
    atoms = lattice + 0.01 * rng.normal(size=lattice.shape)
    cases = [
        ("rosenbrock gradient, n=100", rosenbrock_loop, rosenbrock_array, rng.normal(size=100)),
        ("bratu Jacobian, n=100", bratu_loop, bratu_mixed, np.linspace(0, 0.3, 100)),
        ("Lennard-Jones gradient, 18 atoms", lj_loop, lj_mixed, atoms),
    ]  # fmt: skip
    print(
        f"{'case':36} {'loops':>10} {'arrays':>10} {'ratio':>6} {'NumPy engine':>13} "
        f"{'float loops':>11} {'float arrays':>12} {'ratio':>6} {'allocs':>12}"
    )
    for name, loop, array, x in cases:
        np.testing.assert_allclose(
            da.jacobian(loop, x), da.jacobian(array, x), rtol=1e-10, atol=1e-10
        )
        t_loop = median_time(lambda f=loop, x=x: da.jacobian(f, x))
        t_array = median_time(lambda f=array, x=x: da.jacobian(f, x))
        t_numpy = median_time(lambda f=array, x=x: da.jacobian(f, x, engine="numpy"), 3)
        p_loop = median_time(lambda f=loop, x=x: f(x), 21)
        p_array = median_time(lambda f=array, x=x: f(x), 21)
        n_dual = allocations(lambda f=array, x=x: da.jacobian(f, x))
        n_float = allocations(lambda f=array, x=x: f(x))
        print(
            f"{name:36} {t_loop * 1e6:8.0f}us {t_array * 1e6:8.0f}us "
            f"{t_array / t_loop:6.2f} {t_numpy * 1e6:11.0f}us "
            f"{p_loop * 1e6:9.1f}us {p_array * 1e6:10.1f}us {p_array / p_loop:6.2f} "
            f"{n_dual:6d}/{n_float:<5d}"
        )


if __name__ == "__main__":
    main()
