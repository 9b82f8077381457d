"""Shared test rules.

* ``--slow`` (or CI=true) runs the tests marked ``slow``; without it they are
  deselected, so the default run stays fast.
* ``require_tool("cpio")`` finds a system tool (on PATH or in the sbin
  directories, where Debian puts daemons); ``missing(...)`` is the one rule for
  what is not there: the test skips with the reason, except under CI
  (CI=true), where it fails.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parent
VECTORS = TESTS / "vectors"
IN_CI = os.environ.get("CI", "").lower() == "true"
SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--slow") or IN_CI:
        return
    slow = [item for item in items if "slow" in item.keywords]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if "slow" not in item.keywords]


def missing(message: str) -> None:
    """A tool or feature a test needs is not here: fail under CI, else skip with the reason."""
    if IN_CI:
        pytest.fail(f"CI must have it: {message}")
    pytest.skip(message)


def require_tool(name: str, package: str | None = None) -> str:
    """Path of a system tool, or ``missing`` (naming the Debian package to install)."""
    path = shutil.which(name) or shutil.which(name, path=os.pathsep.join(SBIN))
    if path:
        return path
    missing(f"{name} is not installed (apt-get install {package or name}, see README.md)")
    raise AssertionError("unreachable")


@contextmanager
def mosquitto(directory: Path, settings: str = "allow_anonymous true\n") -> Iterator[str]:
    """A mosquitto on a free loopback port with extra ``settings``; yields its mqtt:// URL."""
    from agent.demo.broker import BrokerError, run_mosquitto
    binary = require_tool("mosquitto")
    try:
        with run_mosquitto(directory, settings, binary=binary) as url:
            yield url
    except BrokerError as err:
        pytest.fail(str(err))


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[str]:
    """An anonymous mosquitto on loopback; its mqtt:// URL."""
    with mosquitto(tmp_path) as url:
        yield url


@pytest.fixture
def raw_server() -> Iterator[Any]:
    """A socket server that answers each connection with what the test's function writes."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    script: dict[str, Any] = {}
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=script["answer"], args=(connection,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()

    def run(answer: Any) -> str:
        script["answer"] = answer
        return f"http://127.0.0.1:{listener.getsockname()[1]}/"

    yield run
    stop.set()
    listener.close()
