# Two commands do all the set-up on a fresh machine:
#   make quick   create .venv (if missing or stale), install, run the quick suite, render its tables
#   make test    same set-up, then the test suite without the slow end-to-end tests (a few minutes)
#   make test-all  every test (CI runs this)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: quick test test-all lint bench clean-venv

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

quick: $(STAMP)
	$(PY) run_all.py --suite quick --cluster local --workers 2

test: $(STAMP)
	$(PY) -m pytest -m "not slow and not slurm"

test-all: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(STAMP)
	$(PY) run_all.py --bench

clean-venv:
	rm -rf $(VENV)
