# The two commands of the README.  Everything the tests need is installed into .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-test

.PHONY: test lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

test: $(STAMP)
	$(PY) -m ruff check dualad tests benchmarks
	$(PY) -m pytest dualad tests README.md

lint: $(STAMP)
	$(PY) -m ruff check dualad tests benchmarks
	$(PY) -m ruff format --check dualad tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
