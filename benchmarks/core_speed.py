"""Per-call cost of the NumPy engine on small and medium problems, beside the peers installed.

    python benchmarks/core_speed.py [--repeats 7]

Prints one table of medians (all measured in this one run) and the ratio of each peer's time to
dualad's. Peers (torch.func, autograd, JAX) are timed only when importable, and only after their
Jacobian has been checked against dualad's: a wrong answer is reported, never timed.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
from timing import fmt, interleaved, median_time, warm_cpu

import dualad as da

# --- the problems, written once for NumPy-like namespaces (numpy, jax.numpy, autograd.numpy) -----


def lorenz(xp):
    def f(u):
        x, y, z = u[0], u[1], u[2]
        return xp.stack([10.0 * (y - x), x * (28.0 - z) - y, x * y - (8.0 / 3.0) * z])

    return f


def scalar10(xp):
    """An extended Rosenbrock function of 10 inputs."""

    def f(x):
        return xp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)

    return f


def pde_residual(xp):
    """Residual of -u'' + u**3 = 1 on a uniform grid with u = 0 at both ends (a square system)."""

    def f(u):
        n = u.shape[0]
        h2 = 1.0 / (n + 1) ** 2
        padded = xp.concatenate([xp.zeros(1), u, xp.zeros(1)])
        return -(padded[:-2] - 2.0 * padded[1:-1] + padded[2:]) / h2 + u**3 - 1.0

    return f


def _torch_pde_residual(torch):
    def f(u):
        n = u.shape[0]
        h2 = 1.0 / (n + 1) ** 2
        padded = torch.nn.functional.pad(u, (1, 1))
        return -(padded[:-2] - 2.0 * padded[1:-1] + padded[2:]) / h2 + u**3 - 1.0

    return f


# --- timing --------------------------------------------------------------------------------------


def _peers(problem_name: str):
    """(name, make_jacobian(problem) -> callable(x) -> ndarray) for each importable peer."""
    peers = []
    try:
        import torch
        from torch.func import jacfwd

        torch.set_num_threads(1)

        def make_torch(problem):
            if problem is pde_residual:
                f = _torch_pde_residual(torch)
            else:
                f = problem(torch)
            jac = jacfwd(f)
            return lambda x: jac(torch.from_numpy(x)).numpy()

        peers.append(("torch.func.jacfwd", make_torch))
    except ImportError:
        pass
    try:
        import autograd
        import autograd.numpy as anp

        def make_autograd(problem):
            return autograd.jacobian(problem(anp))

        peers.append(("autograd.jacobian", make_autograd))
    except ImportError:
        pass
    try:
        import jax

        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        def make_jax(problem):
            jac = jax.jit(jax.jacfwd(problem(jnp)))
            return lambda x: np.asarray(jac(x).block_until_ready())

        peers.append(("jax.jit(jacfwd)", make_jax))
    except ImportError:
        pass
    return peers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    warm_cpu()
    cases = [
        ("Lorenz Jacobian 3x3", lorenz, rng.normal(size=3)),
        ("Rosenbrock gradient n=10", scalar10, rng.normal(size=10)),
        ("PDE residual Jacobian n=1000", pde_residual, rng.uniform(0.1, 1.0, size=1000)),
    ]
    print(
        f"# {time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, NumPy {np.__version__}; medians of "
        f"{args.repeats} runs"
    )
    print(f"{'problem':32s} {'engine':22s} {'time/call':>12s} {'vs dualad':>10s}")
    for label, problem, x in cases:
        f = problem(np)
        ours = da.jacobian(f, x)
        t_ours = median_time(lambda f=f, x=x: da.jacobian(f, x), args.repeats)
        print(f"{label:32s} {'dualad (numpy engine)':22s} {t_ours * 1e6:10.1f}us {1.0:>9.2f}x")
        for name, make in _peers(label):
            try:
                jac = make(problem)
                theirs = jac(x)
            except Exception as exc:  # a peer that cannot run the problem is reported, not timed
                print(f"{label:32s} {name:22s} {'failed: ' + type(exc).__name__:>23s}")
                continue
            if not np.allclose(theirs, ours, rtol=1e-10, atol=1e-10):
                print(f"{label:32s} {name:22s} {'WRONG ANSWER':>23s}")
                continue
            t = median_time(lambda jac=jac, x=x: jac(x), args.repeats)
            print(f"{label:32s} {name:22s} {t * 1e6:10.1f}us {t / t_ours:>9.2f}x")
    d = da.Dual(0.5, np.ones(1))
    t_op = median_time(lambda: d * d, args.repeats)
    t_sin = median_time(lambda: np.sin(d), args.repeats)
    t_float = median_time(lambda: 0.5 * 0.5, args.repeats)
    print(f"0-d Dual: d * d {t_op * 1e6:.2f}us, np.sin(d) {t_sin * 1e6:.2f}us "
          f"(float * float {t_float * 1e6:.3f}us)")  # fmt: skip
    fused_kernels(args.repeats, rng)


def fused_kernels(repeats: int, rng: np.random.Generator) -> None:
    """The NumPy engine with and without its fused kernels (dualad.numba.kernels), interleaved."""
    from dualad import dual

    f = pde_residual(np)
    x = rng.uniform(0.1, 1.0, size=1000)
    a = da.Dual(rng.normal(size=1000), rng.normal(size=(1000, 1000)))
    b = da.Dual(rng.normal(size=1000), rng.normal(size=(1000, 1000)))
    threshold = dual.FUSED_MIN_ENTRIES

    def timed(fused: bool, call):  # noqa: ANN001, ANN202
        def run() -> object:
            dual.FUSED_MIN_ENTRIES = threshold if fused else 1 << 62
            return call()

        return run

    jacobian = lambda: da.jacobian(f, x)  # noqa: E731
    product = lambda: a * b  # noqa: E731 - one binary rule on 1000 x 1000 partials
    times = interleaved(
        {
            "pde fused": timed(True, jacobian),
            "pde numpy": timed(False, jacobian),
            "product fused": timed(True, product),
            "product numpy": timed(False, product),
        },
        repeats,
    )
    dual.FUSED_MIN_ENTRIES = threshold
    print(
        f"fused kernels (interleaved medians): PDE Jacobian n=1000 {fmt(times['pde fused'])} "
        f"with, {fmt(times['pde numpy'])} without; a * b on 1000x1000 partials "
        f"{fmt(times['product fused'])} with, {fmt(times['product numpy'])} without"
    )


if __name__ == "__main__":
    main()
