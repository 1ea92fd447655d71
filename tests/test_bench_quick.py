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
    ns = [1, 3, 10]
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
    assert len(crossover_lines) == 2 * len(families)  # dualad's own, and all engines'
    memory = json.loads((out / "results.json").read_text())["meta"]["gradient_memory"]
    assert memory["n"] == 1000 and memory["peak_mb"] > memory["after_mb"] > 0
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "no PNGs" in printed
    else:
        for family in families:
            assert (out / f"{family}.png").is_file()


def test_sparse_benchmark_quick_run_checks_and_reports(capsys):
    bench = _load_script(SCRIPT.parent / "brusselator.py")
    assert bench.main(["--quick"]) == 0
    printed = capsys.readouterr().out
    assert "colors" in printed and "dualad sparse jac" in printed  # the tables it reports
    assert "SciPy default (dense FD)" in printed
