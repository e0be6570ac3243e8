# Two commands for a fresh machine: `make demo` (set up + run the main job), `make test` (set up + run the tests).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is pinned in the set-up step: an unpinned torch pulls a multi-GB CUDA build (see README).
TORCH ?= torch==2.13.0

.PHONY: setup test demo lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

test: setup
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q tests

demo: setup
	bash scripts/demo.sh $(ARGS)

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf outputs runs .pytest_cache
