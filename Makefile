# The two commands of the README.  Everything the tests need is installed into .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-test
BENCH_STAMP := $(VENV)/.installed-bench
BENCH_ARGS ?=

.PHONY: test bench bench-sparse lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

$(BENCH_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test,bench,torch]'
	touch $@

# Forward against reverse mode as n grows, beside JAX, PyTorch and autograd (about 16 minutes;
# `make bench BENCH_ARGS=--quick` for a run under a minute). Results go to bench-results/.
bench: $(BENCH_STAMP)
	$(PY) benchmarks/forward_vs_reverse.py $(BENCH_ARGS)

# Sparse against dense Jacobians on the 2-D Brusselator, and solve_ivp(BDF) with each (about
# 8 minutes, most of it SciPy's default dense finite differences at N = 64).
bench-sparse: $(BENCH_STAMP)
	$(PY) benchmarks/brusselator.py $(BENCH_ARGS)

test: $(STAMP)
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m pytest src tests README.md

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
