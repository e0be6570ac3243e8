# Two commands for a fresh machine: `make demo` (set up + run the main job), `make test` (set up + run the tests).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is pinned: an unpinned torch pulls a multi-GB CUDA build. On a GPU machine: make setup TORCH=torch.
TORCH ?= torch==2.13.0
# The exact versions the suite last passed with (`make constraints` rewrites it from $(VENV)); setup.py keeps the
# supported ranges for `pip install` users, and `make test-latest` tries the newest versions they allow.
CONSTRAINTS := constraints.txt
LATEST ?= .venv-latest
KEY_PACKAGES := transformers torch peft trl datasets accelerate tokenizers huggingface_hub evaluate fastapi uvicorn

.PHONY: setup test test-latest demo lint constraints clean

setup: $(VENV)/.installed

$(VENV)/.installed: setup.py $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c $(CONSTRAINTS) pip setuptools
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -c $(CONSTRAINTS) -e ".[dev]"
	touch $@

test: setup
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q tests

# The suite against the newest releases the ranges in setup.py allow (torch stays pinned), in a venv of its own.
test-latest:
	test -x $(LATEST)/bin/python || $(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install -q --upgrade pip setuptools
	$(LATEST)/bin/python -m pip install -q "$(TORCH)"
	$(LATEST)/bin/python -m pip install -q --upgrade --upgrade-strategy eager "$(TORCH)" -e ".[dev]"
	$(LATEST)/bin/python -c 'from importlib.metadata import version; print(*(f"{p}=={version(p)}" for p in "$(KEY_PACKAGES)".split()))'
	$(LATEST)/bin/python -m pytest -q tests

demo: setup
	bash scripts/demo.sh $(ARGS)

lint: setup
	$(VENV)/bin/ruff check .

# After the suite passed in $(VENV): record its exact versions (torch is pinned above, scratchlm is this checkout).
constraints: setup
	{ echo "# Exact versions the suite last passed with: \`make setup\` installs with -c constraints.txt."; \
	  echo "# Rewritten by \`make constraints\`; torch is pinned in the Makefile (TORCH), the package itself is editable."; \
	  $(PY) -m pip freeze --all --exclude-editable | grep -viE "^(torch|scratchlm)=="; } > $(CONSTRAINTS).tmp
	mv $(CONSTRAINTS).tmp $(CONSTRAINTS)

clean:
	rm -rf outputs runs .pytest_cache
