# The two commands of the README: `make demo` and `make test`. Both create .venv at the
# repository root when it is missing and install everything the project needs into it.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test tools lint typecheck unit test-slow test-gpu fuzz crds clean

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

# helm, kubectl (v1.33), hadolint and promtool into .tools/bin (cached; see tools/fetch-k8s-tools.py).
tools: $(STAMP)
	$(BIN)/python tools/fetch-k8s-tools.py

# Tests that need a binary from .tools/bin fail instead of skipping when ACCELQUAL_REQUIRE_TOOLS is set.
unit: $(STAMP) tools
	ACCELQUAL_REQUIRE_TOOLS=1 $(BIN)/pytest

test: tools lint typecheck unit

test-slow: $(STAMP)
	$(BIN)/pytest -m slow

test-gpu: $(STAMP)
	$(BIN)/pytest -m gpu

crds: $(STAMP)
	$(BIN)/accelqual crds --write crds/
	$(BIN)/accelqual crds --write helm/accelqual/crds/

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
