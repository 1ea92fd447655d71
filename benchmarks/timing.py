"""Timing helpers shared by the benchmark scripts: warm-up, medians, interleaving, formatting.

The machine these run on is noisy, so every time is a median of repeated samples, each sample
loops long enough to be read reliably, and peers that are compared are timed in turn within each
repeat (so that a slow spell hits all of them).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

# One thread for every engine: XLA reads its flags when JAX is first imported (after this module);
# OpenBLAS's pool, already started by NumPy, is limited at run time by one_thread() below.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)

import numpy as np  # noqa: E402


def one_thread() -> str:
    """Limit BLAS and OpenMP pools to one thread; return what is in force, for the report.

    On 2 cores under load, BLAS threads fighting each other made a dense Jacobian take 10 s
    instead of 0.1 s, so every engine of every benchmark is timed single-threaded.
    """
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:
        return "thread pools as the environment set them (threadpoolctl not installed)"
    threadpool_limits(1)
    pools = ", ".join(f"{p['internal_api']} {p['num_threads']}" for p in threadpool_info())
    return f"threads per pool: {pools or 'no BLAS pool found'}"


def calls_per_sample(call: Callable[[], object], min_seconds: float) -> int:
    """Calls per sample so that one sample lasts at least ``min_seconds`` (after a warm-up call)."""
    call()
    start = time.perf_counter()
    call()
    once = max(time.perf_counter() - start, 1e-7)
    return max(1, int(min_seconds / once))


def interleaved_samples(
    calls: dict[str, Callable[[], object]], repeats: int, min_seconds: float = 0.05
) -> dict[str, list[float]]:
    """Per-call times of each callable, ``repeats`` samples each, timed in turn within a repeat.

    Interleaving puts every callable through the same slow spells of a noisy machine, so their
    ratios hold even when the absolute times drift.
    """
    numbers = {name: calls_per_sample(call, min_seconds) for name, call in calls.items()}
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            number = numbers[name]
            start = time.perf_counter()
            for _ in range(number):
                call()
            samples[name].append((time.perf_counter() - start) / number)
    return samples


def interleaved(
    calls: dict[str, Callable[[], object]], repeats: int, min_seconds: float = 0.05
) -> dict[str, float]:
    """Median per-call time of each callable, the callables timed in turn within each repeat."""
    samples = interleaved_samples(calls, repeats, min_seconds)
    return {name: statistics.median(s) for name, s in samples.items()}


def quartiles(samples: list[float]) -> tuple[float, float]:
    """The 25th and 75th percentiles: the spread a median is quoted with."""
    low, high = np.percentile(samples, [25, 75])
    return float(low), float(high)


def median_time(call: Callable[[], object], repeats: int, min_seconds: float = 0.05) -> float:
    """Median over ``repeats`` samples of the per-call time of ``call``."""
    return interleaved({"call": call}, repeats, min_seconds)["call"]


def warm_cpu(seconds: float = 0.5) -> None:
    """Keep the CPU busy so that it leaves its idle clock before timing."""
    a = np.ones(10_000)
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        np.sin(a, out=a)


def fmt(seconds: float | None) -> str:
    """A time with its unit: 1.46 us, 99.8 ms, 2.32 s ('-' for none)."""
    if seconds is None:
        return "-"
    if seconds >= 1.0:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    if seconds >= 1e-6:
        return f"{seconds * 1e6:.2f} us"
    return f"{seconds * 1e9:.0f} ns"


def load_average() -> str:
    """The 1-minute load average, to show how busy the machine was (the run is not alone)."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "unknown"
