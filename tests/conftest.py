"""Fixtures shared by every test folder: the binaries `make tools` puts into .tools/bin.

A test that needs helm, kubectl, hadolint or promtool takes the fixture of that name. When the
binary is missing the test fails under `make test` (which fetches the tools first and sets
ACCELQUAL_REQUIRE_TOOLS) and in CI (`CI` set), and is skipped with the reason elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TOOLS_BIN = Path(__file__).resolve().parent.parent / ".tools" / "bin"


def tool(name: str) -> Path:
    """The executable `.tools/bin/NAME`, or fail/skip the calling test as described above."""
    path = TOOLS_BIN / name
    if os.access(path, os.X_OK):
        return path
    message = f"{path} is missing: run `make tools` (tools/fetch-k8s-tools.py)"
    if os.environ.get("ACCELQUAL_REQUIRE_TOOLS") or os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def helm() -> Path:
    return tool("helm")


@pytest.fixture(scope="session")
def kubectl() -> Path:
    return tool("kubectl")


@pytest.fixture(scope="session")
def hadolint() -> Path:
    return tool("hadolint")


@pytest.fixture(scope="session")
def promtool() -> Path:
    return tool("promtool")
