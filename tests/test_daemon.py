"""The daemon against the reference DDI server: whole server actions on a simulated gateway.

The gateway has file-backed A/B slots and the file bootloader with a simulated
reboot, so an update runs to its commit inside one daemon. Polls are triggered
by wake-ups (as an MQTT message would), so the tests do not wait for timers.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.config import load_config
from agent.daemon.compose import build_daemon
from agent.daemon.orchestrator import Daemon
from agent.log import Log
from agent.manifest import cose
from agent.manifest.sign import add_signature
from agent.manifest.spec import build_manifest, parse_spec, unsigned_envelope
from hil.server.ddi import DdiServer
from install_bench import Gateway, make_gateway

DEVICE = "gw-test"


class Running:
    """A daemon in a thread, its log captured."""

    def __init__(self, gateway: Gateway, server: DdiServer, log_path: Path) -> None:
        self.stream = open(log_path, "w+", encoding="utf-8")
        self.daemon: Daemon = build_daemon(gateway.config(), Log(self.stream))
        self.thread = threading.Thread(target=self.daemon.run, daemon=True)
        self.server = server
        self.thread.start()

    def stop(self) -> None:
        self.daemon.stop()
        self.thread.join(30)
        assert not self.thread.is_alive(), "the daemon did not stop"
        self.stream.close()

    def log(self) -> str:
        if not self.stream.closed:
            self.stream.flush()
        return Path(self.stream.name).read_text()


def wait_for(condition: Callable[[], object], what: str, timeout: float = 30.0, poke: Running | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if poke is not None:
            poke.daemon.wakeup("test")
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}" + (f"\n--- log ---\n{poke.log()}" if poke else ""))


@pytest.fixture
def gateway(tmp_path: Path) -> Gateway:
    return make_gateway(tmp_path / "gw")


@pytest.fixture
def server() -> Iterator[DdiServer]:
    with DdiServer(sleep="00:05:00") as server:
        yield server


def connect(gateway: Gateway, server: DdiServer, extra: str = "") -> None:
    text = gateway.config_path.read_text().replace(
        'state_dir = "state"', 'state_dir = "state"\nhardware_board = "gw-board"\nhardware_revision = "rev1"\n'
        '[device.attributes]\nsite = "bench"\n')
    gateway.config_path.write_text(text + f'\n[server]\nurl = "{server.url}"\nstartup_spread = 0\n'
                                   f'poll_min = 1\n{extra}')


@pytest.fixture
def daemon(gateway: Gateway, server: DdiServer, tmp_path: Path) -> Iterator[Running]:
    connect(gateway, server)
    running = Running(gateway, server, tmp_path / "daemon.log")
    yield running
    if running.thread.is_alive():
        running.stop()


def executions(server: DdiServer, action: int) -> list[str]:
    return [s["execution"] for s in server.statuses(action)]


def signed_manifest(gateway: Gateway, image: Path, *, sequence: int, version: str = "2.0.0") -> bytes:
    spec = parse_spec({"sequence": sequence, "vendor_domain": "example.com", "class_name": "gw-test",
                       "component": [{"id": ["rootfs"], "file": image.name, "uri": f"#{image.name}",
                                      "version": version}]}, image.parent)
    return add_signature(unsigned_envelope(build_manifest(spec)), cose.load_private_key(gateway.root / "release.pem"))


def slot_holds(gateway: Gateway, name: str, image: bytes) -> bool:
    return (gateway.root / f"rootfs-{name.lower()}.img").read_bytes()[:len(image)] == image


def journal(gateway: Gateway) -> dict:
    return json.loads((gateway.root / "state/journal.json").read_text())


def test_a_bundle_deployment_is_installed_committed_and_reported(gateway: Gateway, server: DdiServer,
                                                                 daemon: Running) -> None:
    bundle = gateway.bundle("u2", sequence=2, version="2.0.0")
    image = (gateway.root / "u2.img").read_bytes()
    action = server.create_deployment(DEVICE, [{"part": "os", "name": "gateway", "version": "2.0.0",
                                                "artifacts": {"u2.fwb": bundle.read_bytes()}}])
    wait_for(lambda: server.actions[action.id].state == "closed", "the action to close", poke=daemon)
    statuses = server.statuses(action.id)
    assert server.actions[action.id].result == "success", statuses
    steps = executions(server, action.id)
    assert steps[-1] == "closed" and steps.count("closed") == 1
    assert "downloaded" in steps and steps.index("downloaded") < len(steps) - 1
    details = " ".join(d for s in statuses for d in s.get("details", []))
    for text in ("downloading u2.fwb", "verifying the signed manifest", "installing into slot B",
                 "rebooting into slot B", "running the health checks", "version 2.0.0"):
        assert text in details, (text, details)
    assert all("progress" in s.get("result", {}) for s in statuses if s["execution"] == "proceeding")
    assert gateway.booted() == "B" and slot_holds(gateway, "B", image)
    wait_for(lambda: server.attributes.get(DEVICE, {}).get("sw_version") == "2.0.0", "configData after the update")
    attributes = server.attributes[DEVICE]
    assert attributes["hw_boardname"] == "gw-board" and attributes["hw_revision"] == "rev1"
    assert attributes["booted_slot"] == "B" and attributes["site"] == "bench" and attributes["fwagent_version"]
    assert journal(gateway)["outbox"] == []
    assert not any((gateway.root / "state/incoming").iterdir())
    log = daemon.log()
    assert "event=deployment action=" in log and "level=info event=install-ended result=success" in log


def test_a_manifest_with_its_payload_as_a_second_artifact_streams_into_the_slot(
        gateway: Gateway, server: DdiServer, daemon: Running) -> None:
    image = gateway.root / "rootfs.img"
    image.write_bytes(random.Random(5).randbytes(1 << 20))
    manifest = signed_manifest(gateway, image, sequence=3, version="3.0.0")
    action = server.create_deployment(DEVICE, [{"part": "os", "name": "gateway", "version": "3.0.0",
                                                "artifacts": {"update.suit": manifest,
                                                              "rootfs.img": image.read_bytes()}}])
    wait_for(lambda: server.actions[action.id].state == "closed", "the action to close", poke=daemon)
    assert server.actions[action.id].result == "success", server.statuses(action.id)
    assert slot_holds(gateway, "B", image.read_bytes())
    fetched = [path for method, path in server.requests if method == "GET" and "/artifacts/" in path]
    assert any(p.endswith("/update.suit") for p in fetched) and any(p.endswith("/rootfs.img") for p in fetched)
    assert not (gateway.root / "state/incoming" / str(action.id) / "rootfs.img").exists()


def test_a_closed_maintenance_window_downloads_and_verifies_then_waits(
        gateway: Gateway, server: DdiServer, daemon: Running) -> None:
    bundle = gateway.bundle("u2", sequence=2)
    action = server.create_deployment(DEVICE, [{"part": "os", "name": "gateway", "version": "2.0.0",
                                                "artifacts": {"u2.fwb": bundle.read_bytes()}}],
                                      window="unavailable")
    wait_for(lambda: "scheduled" in executions(server, action.id), "the scheduled report", poke=daemon)
    assert "downloaded" in executions(server, action.id)
    for _ in range(3):                      # more polls while the window stays closed: nothing installs
        daemon.daemon.wakeup("test")
        time.sleep(0.3)
    assert "closed" not in executions(server, action.id) and gateway.booted() == "A"
    assert json.loads((gateway.root / "state/ddi-action.json").read_text())["phase"] == "wait-window"
    server.set_window(action.id, "available")
    wait_for(lambda: server.actions[action.id].state == "closed", "the install once the window opens", poke=daemon)
    assert server.actions[action.id].result == "success" and gateway.booted() == "B"


def test_a_cancel_before_the_install_cleans_up_and_is_confirmed(
        gateway: Gateway, server: DdiServer, daemon: Running) -> None:
    bundle = gateway.bundle("u2", sequence=2)
    before = gateway.slot_digest("B")
    action = server.create_deployment(DEVICE, [{"part": "os", "name": "gateway", "version": "2.0.0",
                                                "artifacts": {"u2.fwb": bundle.read_bytes()}}],
                                      window="unavailable")
    wait_for(lambda: "scheduled" in executions(server, action.id), "the download", poke=daemon)
    server.cancel(action.id)
    wait_for(lambda: server.actions[action.id].state == "closed", "the cancel to be confirmed", poke=daemon)
    assert server.actions[action.id].result == "canceled"
    assert gateway.slot_digest("B") == before and gateway.booted() == "A"
    assert not (gateway.root / "state/incoming" / str(action.id)).exists()
    assert json.loads((gateway.root / "state/ddi-action.json").read_text())["phase"] == "idle"


def test_a_cancel_after_the_switch_is_rejected_and_the_update_completes(
        gateway: Gateway, server: DdiServer, tmp_path: Path) -> None:
    flag = tmp_path / "in-health"
    text = gateway.config_path.read_text().replace(
        'commands = [["true"]]', f'commands = [["sh", "-c", "touch {flag}; sleep 2"]]')
    gateway.config_path.write_text(text)
    connect(gateway, server)
    daemon = Running(gateway, server, tmp_path / "daemon.log")
    try:
        bundle = gateway.bundle("u2", sequence=2)
        action = server.create_deployment(DEVICE, [{"part": "os", "name": "gateway", "version": "2.0.0",
                                                    "artifacts": {"u2.fwb": bundle.read_bytes()}}])
        wait_for(flag.exists, "the health checks", poke=daemon)
        server.cancel(action.id)
        daemon.daemon.wakeup("test")
        wait_for(lambda: server.actions[action.id].state == "closed", "the end of the update", poke=daemon)
        assert server.actions[action.id].result == "success" and gateway.booted() == "B"
        assert "rejected" in executions(server, action.id)
    finally:
        daemon.stop()


def test_a_bundle_signed_by_an_unknown_key_is_closed_as_failure_and_nothing_is_written(
        gateway: Gateway, server: DdiServer, daemon: Running) -> None:
    before = gateway.slot_digest("B")
    boot_before = gateway.bootloader().variables()
    bundle = gateway.bundle("evil", sequence=9, key="other.pem")
    action = server.create_deployment(DEVICE, [{"part": "os", "name": "gateway", "version": "9.0.0",
                                                "artifacts": {"evil.fwb": bundle.read_bytes()}}])
    wait_for(lambda: server.actions[action.id].state == "closed", "the action to close", poke=daemon)
    closed = server.statuses(action.id)[-1]
    assert server.actions[action.id].result == "failure" and closed["code"] == 1
    assert any("authentication" in d or "signature" in d for d in closed["details"]), closed
    assert gateway.slot_digest("B") == before and gateway.booted() == "A"
    assert gateway.bootloader().variables() == boot_before     # refused before the install began


def test_an_unusable_deployment_is_closed_not_left_open(gateway: Gateway, server: DdiServer,
                                                        daemon: Running) -> None:
    action = server.create_deployment(DEVICE, [{"part": "os", "name": "gateway", "version": "2.0.0",
                                                "artifacts": {"a.bin": b"a", "b.bin": b"b"}}])
    wait_for(lambda: server.actions[action.id].state == "closed", "the action to close", poke=daemon)
    closed = server.statuses(action.id)[-1]
    assert server.actions[action.id].result == "failure"
    assert any("ddi-artifacts" in d and "no manifest" in d for d in closed["details"]), closed
