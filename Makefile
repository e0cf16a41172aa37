# The two README commands (make train, make test) do all set-up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install train test test-fast lint format bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## install: create .venv and install the project with its dev tools (only set-up)
install: $(STAMP)

## train: the demo, LANMSFF on the generated synthetic KDEF-layout dataset (CPU, a few minutes)
train: $(STAMP)
	$(BIN)/python train.py experiment=demo

## test: the whole test suite, slow end-to-end tests included (what CI runs)
test: $(STAMP)
	$(BIN)/python -m pytest

## test-fast: the suite without the slow end-to-end tests
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

## bench: speed of the inference/training paths, the data path and preprocessing (writes bench/results.json)
bench: $(STAMP)
	$(BIN)/python -m lanmsff.bench --with-preprocess

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf logs .pytest_cache .ruff_cache
