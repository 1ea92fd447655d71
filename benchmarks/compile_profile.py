"""Where the seconds of a compiled first call go: Numba's passes, LLVM, and the rest.

    DUALAD_CACHE_DIR=$(mktemp -d) python benchmarks/compile_profile.py [lorenz|rosenbrock|pde]
        [forward|reverse|auto]

Run it in a fresh process with an empty cache folder (a cold first call).  It listens to Numba's
compile events (``numba.core.event``): each compiled function (``numba:compile``), each compiler
pass (``numba:run_pass``) and each hold of the LLVM lock (``numba:llvm_lock``: LLVM's
optimisation and machine code), and prints the CPU seconds of each, exclusive of the events
nested inside it, then the compiled functions that took longest.  CPU seconds, not
wall: on a loaded machine the wall time is mostly waiting.  The mode defaults to forward, as the
compile rows of ``compiled_speed.py`` time it (``auto`` may take reverse mode).
"""

from __future__ import annotations

import collections
import sys
import time

from compiled_speed import inputs, numba_problems


def main() -> None:
    case = sys.argv[1] if len(sys.argv) > 1 else "lorenz"
    mode = sys.argv[2] if len(sys.argv) > 2 else "forward"
    start = time.process_time()
    from numba.core import event

    import dualad as da
    import dualad.numba  # noqa: F401 - timed: it imports Numba and registers the overloads

    imported = time.process_time() - start
    f = numba_problems()[case]
    stack: list[list[float]] = []
    spent: collections.Counter[str] = collections.Counter()
    functions = [0]
    per_function: list[tuple[float, float, str]] = []
    compiling: list[list[float]] = []  # [inner compiles' seconds] of each function compiling

    class Listener(event.Listener):
        def __init__(self, kind: str) -> None:
            self.kind = kind

        def on_start(self, ev: event.Event) -> None:
            stack.append([time.process_time(), 0.0])
            if self.kind == "numba:compile":
                compiling.append([0.0])

        def on_end(self, ev: event.Event) -> None:
            began, nested = stack.pop()
            took = time.process_time() - began
            if self.kind == "numba:run_pass":
                name = "pass " + ev.data["name"].split(" [")[0]
            elif self.kind == "numba:llvm_lock":
                name = "LLVM: optimisation and machine code"
            else:
                name = "Numba's bookkeeping per compiled function"
                functions[0] += 1
                fn = getattr(ev.data["dispatcher"], "py_func", None)
                where = fn.__code__.co_filename.split("/")[-1] if fn else ""
                name_of = f"{getattr(fn, '__name__', '?')} ({where})"
                inner = compiling.pop()[0]
                if compiling:
                    compiling[-1][0] += took
                per_function.append((took - inner, took, f"{name_of} {ev.data['args']}"[:100]))
            spent[name] += took - nested
            if stack:
                stack[-1][1] += took

    for kind in ("numba:compile", "numba:run_pass", "numba:llvm_lock"):
        event.register(kind, Listener(kind))
    start = time.process_time()
    if case == "pde":
        u, v, s = inputs(case, 100)
        da.jvp(f, u, v, args=(s,))
    else:
        x, args = inputs(case, 100)
        da.jacobian(f, x, args=args, mode=mode)
    total = time.process_time() - start
    print(f"{case}: import dualad and dualad.numba {imported:.2f} s CPU")
    print(f"{case}: first call ({mode} mode) {total:.2f} s CPU, {functions[0]} functions compiled")
    outside = total - sum(spent.values())
    print(f"  {outside:6.2f}  outside Numba's compiler: dualad's Python, Numba's one-off loading")
    print("          of its lowering registry")
    for name, seconds in spent.most_common(8):
        print(f"  {seconds:6.2f}  {name}")
    print("  slowest compiled functions: own seconds, inclusive of those compiled inside them:")
    for own, seconds, name in sorted(per_function, reverse=True)[:12]:
        print(f"  {own:6.2f} {seconds:6.2f}  {name}")


if __name__ == "__main__":
    main()
