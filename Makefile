# The two README commands (make train, make test) do all set-up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install train test test-fast lint format bench bench-peer clean

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

## bench: speed of the inference/training paths, the data path and preprocessing (writes bench/results.json);
## measures the authors' TensorFlow model in the same run when .venv-peer exists (make bench-peer)
bench: $(STAMP)
	$(BIN)/python -m lanmsff.bench --with-preprocess

# The TensorFlow peer lives in a venv of its own: TensorFlow is never a dependency of the project.
PEER_VENV := .venv-peer
PEER_STAMP := $(PEER_VENV)/.installed
PEER_PACKAGES := tensorflow-cpu==2.21.0 keras==3.15.1 'numpy>=1.26,<3'

$(PEER_STAMP):
	test -x $(PEER_VENV)/bin/python || $(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/python -m pip install --quiet $(PEER_PACKAGES)
	touch $(PEER_STAMP)

## bench-peer: create .venv-peer (TensorFlow-CPU 2.21, Keras 3) and run make bench with the peer
bench-peer: $(STAMP) $(PEER_STAMP)
	$(BIN)/python -m lanmsff.bench --with-preprocess --peer-python $(PEER_VENV)/bin/python

## docs: build the documentation site into site/ (MkDocs, strict: a dead link or a missing page fails)
.PHONY: docs
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf logs .pytest_cache .ruff_cache
