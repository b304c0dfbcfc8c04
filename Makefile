# `make train` and `make test` create .venv on first use and install the project into it.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: train test lint install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

train: $(STAMP)  ## the default GAN on bundled digits, CPU, a couple of minutes; pass overrides as ARGS="..."
	$(BIN)/ganforge-train $(ARGS)

test: $(STAMP)  ## the whole pytest suite (what CI runs)
	$(BIN)/pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests experiments
	$(BIN)/ruff format --check src tests experiments

clean:
	rm -rf outputs multirun .pytest_cache
