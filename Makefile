# peergrid — the two set-up commands:
#   make demo   create .venv, install peergrid (lean: no dev tools), run the built-in demo
#   make test   install the dev, network, ml, privacy and server extras, then lint (ruff, import contracts),
#               type-check (mypy) and test (pytest)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint typecheck pytest bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Re-installs only when pyproject.toml changed (the package itself is installed editable).
$(VENV)/.stamp-base: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.stamp-dev: pyproject.toml $(VENV)/.stamp-base
	$(BIN)/python -m pip install --quiet -e ".[dev,network,ml,privacy,server,agent]"
	touch $@

demo: $(VENV)/.stamp-base
	$(BIN)/peergrid run demo --out out/demo

lint: $(VENV)/.stamp-dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports --no-cache

typecheck: $(VENV)/.stamp-dev
	$(BIN)/mypy src

pytest: $(VENV)/.stamp-dev
	HYPOTHESIS_PROFILE=ci $(BIN)/python -m pytest

test: lint typecheck pytest

bench: $(VENV)/.stamp-base
	$(BIN)/python benchmarks/bench_simulate.py

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
