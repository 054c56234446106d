# The two commands of the README: `make demo` and `make test`. Both create .venv at the
# repository root when it is missing and install everything the project needs into it.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test tools lint typecheck unit test-slow test-gpu fuzz reliability-doc crds clean

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

# The fuzz suites with 10,000 examples per target (hypothesis profile `fuzz`; `make test` runs 150);
# the counts go to build/fuzz-results.json, which `make reliability-doc` shows beside its own.
fuzz: $(STAMP)
	PYTHONPATH=. ACCELQUAL_FUZZ_PROFILE=fuzz $(BIN)/pytest -q --timeout=0 -p tests.reliability.recorder \
		--reliability-results=build/fuzz-results.json tests/fuzz tests/security/test_no_shell_interpolation.py

# docs/reliability.md, rendered from a run of the fault matrix, the fuzz suites and the security tests
# (rendered also when a test fails, so that the failure shows; the exit status is the tests').
reliability-doc: $(STAMP) tools
	PYTHONPATH=. ACCELQUAL_REQUIRE_TOOLS=1 $(BIN)/pytest -q -p tests.reliability.recorder \
		--reliability-results=build/reliability-results.json tests/reliability tests/fuzz tests/security \
		tests/deploy/test_rbac.py tests/deploy/test_images.py tests/reporting; status=$$?; \
	$(BIN)/python -m tests.reliability.render_doc build/reliability-results.json docs/reliability.md \
		--fuzz build/fuzz-results.json && exit $$status

crds: $(STAMP)
	$(BIN)/accelqual crds --write crds/
	$(BIN)/accelqual crds --write helm/accelqual/crds/

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
