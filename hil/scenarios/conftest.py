"""Fixtures of the gateway scenarios: the board (labgrid, from --lg-env), the update server the
board reaches, the bundles, and what a failing scenario leaves behind.

Run them with hil/run (hil/README.md). Each scenario writes, when it fails, the
board's console since it began and the server's record to hil/out/<scenario>/,
and the test report says where.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import hil.gateway.qemu  # noqa: E402,F401 - registers GatewayQEMUDriver with labgrid
import hil.gateway.strategy  # noqa: E402,F401 - registers GatewayStrategy
import hil.mcu.qemu  # noqa: E402,F401 - registers McuQEMUDriver
from hil.gateway.device import Gateway  # noqa: E402
from hil.mcu.board import Mcu  # noqa: E402
from hil.gateway.reach import ServerDoor, TcpRelay  # noqa: E402
from hil.server.files import FilesDdiServer  # noqa: E402

OUT = REPO / "hil" / "out"
DEFAULT_IMAGES = Path.home() / ".cache" / "fwagent" / "hil"
SERVER_SLEEP = "00:00:02"          # the reference server's polling interval: the device polls often


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--cuts", type=int, default=20, help="power cuts at random times (default 20)")
    parser.addoption("--cuts-seed", type=int, default=None, help="seed of the random cuts (default: new)")


def pytest_configure(config: pytest.Config) -> None:
    """Before labgrid reads the board's YAML (its !template values): where images are and where
    this run keeps its disk copies and the relay; console logs to hil/out."""
    os.environ.setdefault("LG_HIL_IMAGES", os.environ.get("FWAGENT_HIL_CACHE") or str(DEFAULT_IMAGES))
    if "LG_HIL_RUN" not in os.environ:
        scratch = "/dev/shm" if os.path.isdir("/dev/shm") else None
        os.environ["LG_HIL_RUN"] = tempfile.mkdtemp(prefix="fwagent-hil-", dir=scratch)
    OUT.mkdir(parents=True, exist_ok=True)
    if getattr(config.option, "lg_log", None) is None:
        config.option.lg_log = str(OUT)


@pytest.fixture(scope="session")
def door(env: Any) -> Iterator[ServerDoor]:
    door = ServerDoor(Path(os.environ["LG_HIL_RUN"]))
    listen = env.config.get_option("server_listen", "")
    relay = None
    if listen:
        host, _, port = listen.rpartition(":")
        relay = TcpRelay(door, (host, int(port)))
        relay.start()
    yield door
    if relay is not None:
        relay.stop()


@pytest.fixture
def gateway(strategy: Any) -> Gateway:
    return Gateway(strategy)


@pytest.fixture
def mcu(env: Any) -> Mcu:
    """The MCU attached to the gateway (the YAML's ``mcu`` target); a board without one skips."""
    target = env.get_target("mcu")
    if target is None:
        pytest.skip("the board has no MCU attached (no target 'mcu' in its YAML)")
    return Mcu(target)


@pytest.fixture
def ddi(env: Any, door: ServerDoor, request: pytest.FixtureRequest) -> Iterator[FilesDdiServer]:
    """The reference DDI server, reached by the board at the YAML's ``server_url``; it serves
    the files of ``ddi.files`` at ``/files/`` too, once a scenario sets it."""
    with FilesDdiServer(sleep=SERVER_SLEEP, public_url=env.config.get_option("server_url"), record=True) as server:
        door.open_to(int(server.url.rsplit(":", 1)[1]))
        request.node.stash[SERVER_RECORD] = lambda: {
            str(action.id): {"state": action.state, "result": action.result, "statuses": action.statuses}
            for action in server.actions.values()} | {"attributes": server.attributes}
        yield server


@pytest.fixture
def device_id(env: Any) -> str:
    return env.config.get_option("device_id")


@pytest.fixture
def bundle(env: Any) -> Callable[[str], bytes]:
    """The bytes of an update bundle the board's YAML names (good, panic, unhealthy, silent...)."""
    return lambda name: Path(env.config.get_image_path(name)).read_bytes()


@pytest.fixture
def version(env: Any) -> Callable[[str], str]:
    """The version a bundle of the YAML installs."""
    return lambda name: env.config.get_option("versions")[name]


@pytest.fixture
def thing_versions(env: Any) -> Callable[[str], dict[str, str]]:
    """The versions a bundle of the YAML brings its Things, by Thing."""
    return lambda name: env.config.get_option("thing_versions", {}).get(name, {})


# --- what a failing scenario leaves ------------------------------------------------------------

SERVER_RECORD = pytest.StashKey[Callable[[], dict[str, Any]]]()
CONSOLE_AT = pytest.StashKey[int]()


def _console_log() -> Path:
    return OUT / "console_main"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    log = _console_log()
    item.stash[CONSOLE_AT] = log.stat().st_size if log.exists() else 0


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    where = OUT / item.name
    where.mkdir(parents=True, exist_ok=True)
    gateway = item.funcargs.get("gateway")
    if gateway is not None:
        try:
            gateway.listen(2.0)             # what the board printed since the console was last read
        except Exception:  # noqa: BLE001 - the artifacts matter more than the last lines
            pass
    log = _console_log()
    if log.exists():
        with open(log, "rb") as stream:
            stream.seek(item.stash.get(CONSOLE_AT, 0))
            (where / "console.log").write_bytes(stream.read())
    record = item.stash.get(SERVER_RECORD, None)
    if record is not None:
        (where / "server.json").write_text(json.dumps(record(), indent=1, default=str))
    report.sections.append(("gateway artifacts", f"console log and server record in {where}"))
