"""Shared test rules.

* ``--slow`` (or CI=true) runs the tests marked ``slow``; the default run stays fast.
* ``require_tool("cpio")`` skips a test when a system tool is missing, with the
  reason, except under CI (CI=true), where a missing tool fails the run.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
VECTORS = TESTS / "vectors"
IN_CI = os.environ.get("CI", "").lower() == "true"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--slow") or IN_CI:
        return
    skip = pytest.mark.skip(reason="slow: run with --slow (CI runs it)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def require_tool(name: str) -> str:
    """Path of a system tool; skip without it locally, fail without it in CI."""
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} is not installed (apt-get install the package named in README.md)"
    if IN_CI:
        pytest.fail(f"CI must have {name}: {message}")
    pytest.skip(message)
