# `make train` and `make test` create .venv on first use and install the project into it.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: train test test-fast lint install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

train: $(STAMP)  ## the default GAN on bundled digits, CPU, a couple of minutes; pass overrides as ARGS="..."
	$(BIN)/ganforge-train $(ARGS)

test: $(STAMP)  ## the whole pytest suite (what CI runs), one worker per core; DDP and Slurm tests one at a time
	$(BIN)/pytest -q -n auto --dist loadgroup $(PYTEST_ARGS)

test-fast: $(STAMP)  ## the unit tests (math, shapes, configs, data): no training run, no process started
	$(BIN)/pytest -q -n auto -m "not slow and not ddp and not slurm" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests experiments
	$(BIN)/ruff format --check src tests experiments

clean:
	rm -rf outputs multirun .pytest_cache
