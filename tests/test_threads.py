"""Differentiation from many threads at once gives the single-thread answers, on every engine.

dualad's state of a differentiation (live tags, tapes being recorded, refusals met while
compiling) lives per thread (``contextvars``), so one thread's ``da.*`` call neither changes what
another computes nor which mode ``mode="auto"`` picks there.  The compiled engine's caches of
compiled code are shared; two threads asking for a driver first at the same time compile it once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

import dualad as da
from dualad import reverse, transforms

THREADS = 8


def _rosenbrock(x):
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def _vector(x):
    return np.concatenate([np.sin(x) * x[::-1], x[-1:] * x[:1] ** 2])


def _nested(x):
    return da.derivative(lambda y: x * y**2, 2.0)  # perturbation confusion would make it wrong


def _race(calls: list[Callable[[], Any]], repeats: int = 3) -> list[Any]:
    """Run every call ``repeats`` times from THREADS threads that start together."""
    start = threading.Barrier(THREADS)

    def work(i: int) -> list[Any]:
        start.wait()
        return [calls[(i + r) % len(calls)]() for r in range(repeats * len(calls))]

    with ThreadPoolExecutor(THREADS) as pool:
        return [item for batch in pool.map(work, range(THREADS)) for item in batch]


def _same(a: Any, b: Any) -> bool:
    if hasattr(a, "toarray"):
        a, b = a.toarray(), b.toarray()
    if isinstance(a, tuple):
        return all(_same(p, q) for p, q in zip(a, b, strict=True))
    return np.array_equal(a, b)


def _check(calls: dict[str, Callable[[], Any]]) -> None:
    expected = {name: call() for name, call in calls.items()}
    names = list(calls)
    start = threading.Barrier(THREADS)

    def work(i: int) -> list[tuple[str, Any]]:
        start.wait()
        order = names[i % len(names) :] + names[: i % len(names)]
        return [(name, calls[name]()) for _ in range(3) for name in order]

    with ThreadPoolExecutor(THREADS) as pool:
        results = [item for batch in pool.map(work, range(THREADS)) for item in batch]
    wrong = [name for name, got in results if not _same(got, expected[name])]
    assert not wrong, f"answers differ from one thread's in: {sorted(set(wrong))}"
    assert transforms._live_tags.get() == (0,) and reverse.live_tapes.get() == ()


def test_numpy_engine_forward_reverse_and_nested_from_8_threads():
    x = np.linspace(0.3, 1.7, 80)
    small = x[:5]
    _, pullback = da.vjp(_vector, small)
    calls = {
        "jacobian forward": lambda: da.jacobian(_vector, small, mode="forward"),
        "jacobian reverse": lambda: da.jacobian(_vector, small, mode="reverse"),
        "gradient auto": lambda: da.gradient(_rosenbrock, x),
        "gradient forward": lambda: da.gradient(_rosenbrock, x, mode="forward", chunk_size=7),
        "hessian": lambda: da.hessian(_rosenbrock, small),
        "hvp": lambda: da.hvp(_rosenbrock, small, np.ones(5)),
        "jvp": lambda: da.jvp(_vector, small, np.arange(5.0)),
        "vjp": lambda: da.vjp(_vector, small)[1](np.ones(6)),
        "shared pullback": lambda: pullback(np.arange(6.0)),
        "nested": lambda: da.jacobian(_nested, small),
    }
    _check(calls)


def test_sparse_from_8_threads():
    pytest.importorskip("scipy")

    def f(u):
        return np.concatenate([u[:1], u[1:] * u[:-1] ** 2])

    x = np.linspace(0.5, 1.5, 30)
    jac = da.SparseJacobian(f, x)
    _check(
        {
            "prepared": lambda: jac(x),
            "one-off": lambda: da.sparse_jacobian(f, x),
            "pattern": lambda: da.jacobian_sparsity(f, x),
        }
    )


def test_auto_mode_takes_reverse_while_another_thread_is_inside_a_da_call(monkeypatch):
    """The other thread's live tag and live tape must not make this thread's call look nested."""
    ran: list[str] = []
    original = transforms._reverse_jacobian

    def spy(*a: Any, **kw: Any) -> Any:
        ran.append(threading.current_thread().name)
        return original(*a, **kw)

    monkeypatch.setattr(transforms, "_reverse_jacobian", spy)
    x = np.linspace(-1.0, 1.0, 3000)
    expected = da.gradient(_rosenbrock, x, mode="forward", chunk_size=3000)
    for mode in ("forward", "reverse"):  # the other thread holds a live tag, then a live tape
        inside, leave = threading.Event(), threading.Event()

        def waiting(z: Any, inside: Any = inside, leave: Any = leave) -> Any:
            inside.set()
            assert leave.wait(60)
            return np.sin(z)

        other = threading.Thread(
            target=da.jacobian, args=(waiting, np.ones(3)), kwargs={"mode": mode}, name="other"
        )
        other.start()
        try:
            assert inside.wait(60)
            assert len(transforms._live_tags.get()) == 1 and not reverse.live_tapes.get()
            ran.clear()
            got = da.gradient(_rosenbrock, x)
            assert ran == [threading.current_thread().name], f"other thread in {mode} mode"
        finally:
            leave.set()
            other.join()
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-9)
    ran.clear()  # in the same thread a call inside another one still goes forward
    ramp = np.linspace(1.0, 2.0, 100)
    da.jacobian(lambda z: da.gradient(_rosenbrock, z[0] * ramp * z[1]), np.ones(2))
    assert ran == []


def test_a_failing_f_leaves_no_state_in_its_thread():
    def bad(z):
        np.sin(z)
        raise RuntimeError("f failed")

    for mode in ("forward", "reverse"):
        with pytest.raises(RuntimeError, match="f failed"):
            da.jacobian(bad, np.ones(100), mode=mode)
    with pytest.raises(RuntimeError, match="f failed"):
        da.hessian(bad, np.ones(3))
    assert transforms._live_tags.get() == (0,) and reverse.live_tapes.get() == ()


# --- the compiled engine -------------------------------------------------------------------------

numba = pytest.importorskip("numba")


@numba.njit
def _loop(x):
    y = np.zeros_like(x)
    s = 0.0
    for i in range(x.size):
        s += np.sin(x[i]) * x[i]
        y[i] = s * x[(i + 1) % x.size]
    return y


@numba.njit
def _racing_first(x):  # compiled for Duals only by the race below
    s = 0.0
    for i in range(x.size):
        s += np.exp(0.1 * x[i]) * x[i - 1]
    return s


def test_compiled_engine_from_8_threads():
    import dualad.numba as dn

    x = np.linspace(0.1, 1.0, 5)
    v = np.arange(5.0)
    expected = da.jacobian(_loop.py_func, x, engine="numpy", mode="forward")
    calls = {
        "jacobian": lambda: da.jacobian(_loop, x),
        "value_and_jacobian": lambda: da.value_and_jacobian(_loop, x),
        "jvp": lambda: da.jvp(_loop, x, v),
    }
    _check(calls)
    np.testing.assert_allclose(calls["jacobian"](), expected, rtol=1e-13)
    assert (_loop, "jacobian", 5) in dn._drivers


def test_first_compilation_racing_in_two_threads_compiles_once(monkeypatch):
    import dualad.numba as dn

    monkeypatch.setenv("DUALAD_CACHE_DIR", "off")  # a warm disk cache would compile nothing

    x = np.linspace(0.1, 1.0, 4)
    assert not any(key[0] is _racing_first for key in dn._drivers)
    start = threading.Barrier(2)

    def first() -> Any:
        start.wait()
        return da.gradient(_racing_first, x)

    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(lambda _: first(), range(2))
    np.testing.assert_array_equal(a, b)
    expected = da.gradient(_racing_first.py_func, x, engine="numpy")
    np.testing.assert_allclose(a, expected, rtol=1e-13)
    made = [key for key in dn._drivers if key[0] is _racing_first]
    assert made == [(_racing_first, "value_and_jacobian", 4)]
    assert len(dn.for_duals(_racing_first).signatures) == 1  # one compilation for Duals


def test_a_refusal_in_one_thread_is_reported_there_only():
    """dualad's refusal met compiling in one thread is not reported by a failure in another."""

    @numba.njit
    def refused(x):
        return float(x[0]) * x[1]

    start = threading.Barrier(THREADS)

    def call(i: int) -> str:
        start.wait()
        try:
            if i % 2:
                da.jacobian(refused, np.ones(2))
            else:
                return repr(da.jacobian(_loop, np.ones(3)))
        except da.DualError as error:
            return str(error)
        return "no error"

    with ThreadPoolExecutor(THREADS) as pool:
        got = list(pool.map(call, range(THREADS)))
    for i, text in enumerate(got):
        if i % 2:
            assert "float() of a Dual would drop the derivative" in text
        else:
            assert text.startswith("array("), text


def test_a_dual_sent_to_another_thread_inside_f_is_refused_clearly():
    """Differentiations nest within a thread; a Dual met in another thread is not its own."""

    def f(x):
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(da.jacobian, lambda y: x[0] * y, np.ones(2), mode="forward").result()

    with pytest.raises(da.DualError, match="runs in another thread.*f's own thread"):
        da.jacobian(f, np.ones(2), mode="forward")
