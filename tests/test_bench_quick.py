"""Smoke test of benchmarks/forward_vs_reverse.py: a tiny run, then its outputs agree."""

import csv
import importlib.util
import json
import math
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "forward_vs_reverse.py"


def _load_script(script=SCRIPT):
    if str(script.parent) not in sys.path:  # the script imports its neighbour timing.py
        sys.path.insert(0, str(script.parent))
    spec = importlib.util.spec_from_file_location(script.stem, script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _same(csv_value: str, json_value) -> bool:
    if json_value is None:
        return csv_value == ""
    if isinstance(json_value, float):
        return math.isclose(float(csv_value), json_value, rel_tol=1e-12)
    return csv_value == str(json_value)


def test_quick_run_writes_consistent_results(tmp_path, capsys):
    bench = _load_script()
    out = tmp_path / "results"
    argv = ["--quick", "--n-max", "10", "--repeats", "1", "--min-seconds", "0"]
    argv += ["--engines", "dualad-fwd,fd,dualad-rev", "--out", str(out), "--memory-n", "1000"]
    assert bench.main(argv) == 0
    printed = capsys.readouterr().out

    with open(out / "results.csv", newline="") as fh:
        csv_rows = list(csv.DictReader(fh))
    json_rows = json.loads((out / "results.json").read_text())["results"]
    families = set(bench.FAMILIES)
    ns = [1, 10]  # the quick grid up to --n-max
    assert len(csv_rows) == len(json_rows) == len(families) * len(ns) * 3
    for c, j in zip(csv_rows, json_rows, strict=True):
        assert set(c) == set(bench.FIELDS) and set(j) == set(bench.FIELDS)
        for field in bench.FIELDS:
            assert _same(c[field], j[field]), (field, c, j)
        assert j["status"], j
        if j["status"] == "ok":
            assert j["median_s"] > 0 and j["first_call_s"] > 0 and j["compile_s"] >= 0
    assert {j["family"] for j in json_rows} == families
    assert {j["n"] for j in json_rows} == set(ns)
    by_engine = {}
    for j in json_rows:
        by_engine.setdefault(j["engine"], set()).add(j["status"])
    assert by_engine["dualad-fwd"] == {"ok"}
    assert by_engine["fd"] == {"ok"}  # finite differences agree with dualad to 1e-5
    assert by_engine["dualad-rev"] == {"ok"}  # checked against forward mode before timing

    crossover_lines = [line for line in printed.splitlines() if "crossover" in line]
    compiled = {f for f in families if bench.has_loop_form(json_rows, f)}
    # dualad's own NumPy engine's, its compiled engine's (a loop form ran), and all engines'
    assert len(crossover_lines) == 2 * len(families) + len(compiled)
    memory = json.loads((out / "results.json").read_text())["meta"]["gradient_memory"]
    assert memory["n"] == 1000 and memory["peak_mb"] > memory["after_mb"] > 0
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "no PNGs" in printed
    else:
        for family in families:
            assert (out / f"{family}.png").is_file()


def _rows(times):
    """Rows of dualad-fwd/dualad-rev with (median, q25, q75, repeats) per (engine, n)."""
    rows = []
    for (engine, n), (median, q25, q75, repeats) in times.items():
        mode = "forward" if engine.startswith("dualad-fwd") else "reverse"
        rows.append(
            {"family": "toy", "engine": engine, "mode": mode, "n": n, "status": "ok",
             "median_s": median, "q25_s": q25, "q75_s": q75, "repeats": repeats}
        )  # fmt: skip
    return rows


def test_crossover_is_claimed_only_with_enough_repeats_and_says_its_confidence():
    bench = _load_script()
    clear = {
        ("dualad-fwd", 10): (1.0, 0.9, 1.1, 7),
        ("dualad-rev", 10): (2.0, 1.9, 2.1, 7),
        ("dualad-fwd", 100): (5.0, 4.8, 5.2, 7),
        ("dualad-rev", 100): (2.0, 1.9, 2.1, 7),
    }
    line = bench.crossover(_rows(clear), "toy", ours_only=True)
    assert "crossover at n = 100" in line and "clear" in line, line
    noisy = {**clear, ("dualad-rev", 100): (4.9, 3.0, 6.0, 7)}  # faster median, ranges overlap
    line = bench.crossover(_rows(noisy), "toy", ours_only=True)
    assert "crossover at n = 100" in line and "within the repeat spread" in line, line
    quick = {key: (*value[:3], 3) for key, value in clear.items()}
    line = bench.crossover(_rows(quick), "toy", ours_only=True)
    assert "crossover not claimed: 3 repeats" in line and "crossover at" not in line, line
    flipped = {**clear, ("dualad-rev", 100): (6.0, 5.9, 6.1, 7)}  # forward wins at the end
    assert "no crossover" in bench.crossover(_rows(flipped), "toy", ours_only=True)
    # the compiled engines' own crossover reads only their rows (here reverse never wins)
    compiled = {(f"{engine}-numba", n): (1.0, 0.9, 1.1, 7) for engine, n in clear}
    compiled[("dualad-fwd-numba", 100)] = (0.5, 0.4, 0.6, 7)
    line = bench.crossover(_rows({**clear, **compiled}), "toy", ours_only=True, engine="numba")
    assert "(dualad, compiled): no crossover" in line, line
    assert bench.has_loop_form(_rows(compiled), "toy") and not bench.has_loop_form(
        _rows(clear), "toy"
    )


def test_engine_predicted_too_slow_is_skipped_before_it_runs():
    bench = _load_script()
    assert not bench.predicted_over([], 100, 1.0)
    assert bench.predicted_over([(100, 0.02), (1000, 0.5)], 10_000, 3.0)  # slope 1.4: ~12 s
    assert not bench.predicted_over([(100, 0.02), (1000, 0.2)], 10_000, 3.0)  # slope 1: 2 s
    assert bench.predicted_over([(1000, 0.5), (3000, 0.4)], 10_000, 1.0)  # never cheaper with n


def test_sparse_benchmark_quick_run_checks_and_reports(capsys):
    bench = _load_script(SCRIPT.parent / "brusselator.py")
    assert bench.main(["--quick"]) == 0
    printed = capsys.readouterr().out
    assert "colors" in printed and "dualad sparse jac" in printed  # the tables it reports
    assert "SciPy default (dense FD)" in printed
