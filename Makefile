# The two commands of the README: `make demo` and `make test`. Both create .venv at the
# repository root when it is missing and install everything the project needs into it.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit test-slow test-gpu fuzz crds clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[probe,sim,report,dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/accelqual simulate

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest

test: lint typecheck unit

test-slow: $(STAMP)
	$(BIN)/pytest -m slow

test-gpu: $(STAMP)
	$(BIN)/pytest -m gpu

crds: $(STAMP)
	$(BIN)/accelqual crds --write crds/

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
