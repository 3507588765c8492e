# Set-up and checks. `make demo` and `make test` each install what they need first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install demo test lint format bench clean

install: $(VENV)/.installed

# torch/torchvision are pinned for this set-up only (.ci/constraints.txt); the package
# itself keeps ranges so users bring their own CUDA build.
$(VENV)/.installed: pyproject.toml .ci/constraints.txt .ci/install-wordnet.sh
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c .ci/constraints.txt torch torchvision
	$(PY) -m pip install -q -c .ci/constraints.txt -e ".[dev,bench]"
	PYTHON=$(PY) bash .ci/install-wordnet.sh
	touch $@

demo: install
	$(VENV)/bin/pml-shrewd demo

test: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pytest -q

lint: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: install
	$(PY) benchmarks/bench_losses.py
	$(PY) benchmarks/bench_retrieval.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
