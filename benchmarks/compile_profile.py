"""Where the seconds of a compiled first call go: Numba's passes, LLVM, and the rest.

    DUALAD_CACHE_DIR=$(mktemp -d) python benchmarks/compile_profile.py [lorenz|rosenbrock|pde]

Run it in a fresh process with an empty cache folder (a cold first call).  It listens to Numba's
compile events (``numba.core.event``): each compiled function (``numba:compile``), each compiler
pass (``numba:run_pass``) and each hold of the LLVM lock (``numba:llvm_lock``: LLVM's
optimisation and machine code), and prints the CPU seconds of each, exclusive of the events
nested inside it.  CPU seconds, not wall: on a loaded machine the wall time is mostly waiting.
"""

from __future__ import annotations

import collections
import sys
import time

from compiled_speed import inputs, numba_problems


def main() -> None:
    case = sys.argv[1] if len(sys.argv) > 1 else "lorenz"
    start = time.process_time()
    from numba.core import event

    import dualad as da
    import dualad.numba  # noqa: F401 - timed: it imports Numba and registers the overloads

    imported = time.process_time() - start
    f = numba_problems()[case]
    stack: list[list[float]] = []
    spent: collections.Counter[str] = collections.Counter()
    functions = [0]

    class Listener(event.Listener):
        def __init__(self, kind: str) -> None:
            self.kind = kind

        def on_start(self, ev: event.Event) -> None:
            stack.append([time.process_time(), 0.0])

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
        da.jacobian(f, x, args=args)
    total = time.process_time() - start
    print(f"{case}: import dualad and dualad.numba {imported:.2f} s CPU")
    print(f"{case}: first call {total:.2f} s CPU, {functions[0]} functions compiled")
    outside = total - sum(spent.values())
    print(f"  {outside:6.2f}  outside Numba's compiler: dualad's Python, Numba's one-off loading")
    print("          of its lowering registry")
    for name, seconds in spent.most_common(8):
        print(f"  {seconds:6.2f}  {name}")


if __name__ == "__main__":
    main()
