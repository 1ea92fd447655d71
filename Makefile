# The two commands of the README.  Everything the tests need is installed into .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-test
BENCH_STAMP := $(VENV)/.installed-bench
BENCH_ARGS ?=
PYTEST_ARGS ?=

.PHONY: test bench bench-sparse lint check-dist clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

$(BENCH_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test,bench,torch]'
	touch $@

# Forward against reverse mode as n grows, beside JAX, PyTorch and autograd (5-7 minutes on 2 cores;
# `make bench BENCH_ARGS=--quick`: 17-43 s, warm and cold disk cache, 2026-12-03). Results go to
# bench-results/.
bench: $(BENCH_STAMP)
	$(PY) benchmarks/forward_vs_reverse.py $(BENCH_ARGS)

# Sparse against dense Jacobians on the 2-D Brusselator, and solve_ivp(BDF) with each (about
# 8 minutes, most of it SciPy's default dense finite differences at N = 64).
bench-sparse: $(BENCH_STAMP)
	$(PY) benchmarks/brusselator.py $(BENCH_ARGS)

# Compiled drivers are kept between runs in the venv (tests/conftest.py): a second run loads them.
TEST_CACHE := $(abspath $(VENV))/dualad-test-cache

# One test file per pytest-xdist worker at a time (--dist loadfile), in the order tests/conftest.py
# gives (the files that compile the most first; --no-loadscope-reorder keeps it): a file's compiled
# functions are then compiled once, in one worker, and the last files to start are short.  The
# slow sweeps run in CI (.ci/run).
test: $(STAMP)
	$(PY) -m ruff check src tests benchmarks
	DUALAD_TEST_CACHE=$(TEST_CACHE) $(PY) -m pytest -n auto --dist loadfile --no-loadscope-reorder src tests README.md $(PYTEST_ARGS)

# Build the sdist and the wheel, install the wheel (not editable) into a fresh venv and run a
# smoke test from outside the source tree: what `pip install dualad` would give a user.
DIST_VENV := build/dist-venv
check-dist: $(STAMP)
	rm -rf dist $(DIST_VENV)
	$(PY) -m pip install --quiet build
	mkdir -p build && $(PY) -m build --sdist --wheel --outdir dist . > build/dist.log
	$(PY) -c "import sys, tarfile; names = tarfile.open(sys.argv[1]).getnames(); \
	  assert any(n.endswith('src/dualad/numba/__init__.py') for n in names), 'sdist lacks dualad/numba'" dist/*.tar.gz
	$(PYTHON) -m venv $(DIST_VENV)
	$(DIST_VENV)/bin/python -m pip install --quiet dist/*.whl
	cd /tmp && $(abspath $(DIST_VENV))/bin/python $(abspath tests/install/smoke.py) $(CURDIR)/src
	# from the parent folder of a clone named dualad, the clone must not shadow the package
	rm -rf build/parent && mkdir -p build/parent && ln -s $(CURDIR) build/parent/dualad
	cd build/parent && $(abspath $(DIST_VENV))/bin/python -c "import dualad; dualad.register_rule"
	cd build/parent && $(abspath $(PY)) -c "import dualad; dualad.register_rule"
	rm -rf build/parent

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
