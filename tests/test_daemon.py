"""The daemon against the reference DDI server: whole server actions on a simulated gateway.

The gateway has file-backed A/B slots and the file bootloader with a simulated
reboot, so an update runs to its commit inside one daemon. Polls are triggered
by wake-ups (as an MQTT message would), so the tests do not wait for timers.
"""

from __future__ import annotations

import io
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from install_bench import Gateway, make_gateway

from agent.daemon.compose import build_daemon
from agent.daemon.orchestrator import Daemon
from agent.journal import Journal
from agent.log import Log
from agent.manifest import cose
from agent.manifest.sign import add_signature
from agent.net.http import Tls
from agent.manifest.spec import build_manifest, parse_spec, unsigned_envelope
from ddi_openapi import check_exchanges
from agent.demo.ddi_server import DdiServer

DEVICE = "gw-test"


class Running:
    """A daemon in a thread, its log captured."""

    def __init__(self, gateway: Gateway, server: DdiServer | None, log_path: Path, notifier=None) -> None:  # noqa: ANN001
        self.stream = open(log_path, "w+", encoding="utf-8")
        self.daemon: Daemon = build_daemon(gateway.config(), Log(self.stream), notifier)
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


def run_until_closed(gateway: Gateway, server: DdiServer, action: int, log_path: Path, what: str) -> Running:
    """A daemon started, left to run until the server holds ``action`` closed, then stopped."""
    daemon = Running(gateway, server, log_path)
    try:
        wait_for(lambda: server.actions[action].state == "closed", what, poke=daemon)
    finally:
        daemon.stop()
    return daemon


@pytest.fixture
def gateway(tmp_path: Path) -> Gateway:
    return make_gateway(tmp_path / "gw")


@pytest.fixture
def server() -> Iterator[DdiServer]:
    with DdiServer(sleep="00:05:00", record=True) as server:
        yield server
        check_exchanges(server)        # every request the daemon made, every answer, against hawkBit's document


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
    return Journal(gateway.root / "state").load()


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
    for text in ("checking the signed manifest of u2.fwb", "the bundle streams into the slots",
                 "verifying the signed manifest", "installing into slot B", "Downloaded 100% of u2.fwb into rootfs.B",
                 "rebooting into slot B", "running the health checks", "version 2.0.0"):
        assert text in details, (text, details)
    assert all("progress" in s.get("result", {}) for s in statuses if s["execution"] == "proceeding")
    assert gateway.booted() == "B" and slot_holds(gateway, "B", image)
    fetched = [path for method, path in server.requests if method == "GET" and path.endswith("/u2.fwb")]
    assert len(fetched) == 2          # the manifest checked from the head, then the install's stream
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
    fetches = [path for method, path in server.requests if method == "GET" and "/deploymentBase/" in path]
    assert len(fetches) == 1                # the link did not change: the deployment is not fetched again
    assert executions(server, action.id).count("retrieved") == 1
    assert json.loads((gateway.root / "state/ddi-action.json").read_text())["phase"] == "wait-window"
    server.set_window(action.id, "available")
    wait_for(lambda: server.actions[action.id].state == "closed", "the install once the window opens", poke=daemon)
    assert server.actions[action.id].result == "success" and gateway.booted() == "B"
    assert executions(server, action.id).count("retrieved") == 2     # once more when the link changed


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


def test_an_mqtt_wakeup_makes_the_daemon_poll_at_once(gateway: Gateway, server: DdiServer, broker: str,
                                                       tmp_path: Path) -> None:
    import paho.mqtt.client as mqtt
    import paho.mqtt.publish as publish

    connect(gateway, server, f'\n[mqtt]\nurl = "{broker}"\n')
    text = gateway.config_path.read_text().replace("startup_spread = 0", "startup_spread = 3600")
    gateway.config_path.write_text(text)            # no poll of its own for an hour: only the wake-up
    daemon = Running(gateway, server, tmp_path / "daemon.log")
    try:
        host, port = broker.removeprefix("mqtt://").split(":")
        wait_for(lambda: "fwagent/gw-test/state" in retained(host, int(port), mqtt), "the daemon's online state")
        assert not any(path.endswith("/gw-test") for _m, path in server.requests)
        bundle = gateway.bundle("u2", sequence=2)
        action = server.create_deployment(DEVICE, [{"part": "os", "name": "gateway", "version": "2.0.0",
                                                    "artifacts": {"u2.fwb": bundle.read_bytes()}}])
        publish.single("fwagent/gw-test/wakeup", b"{}", qos=1, hostname=host, port=int(port))
        wait_for(lambda: server.actions[action.id].state == "closed", "the woken daemon's update")
        assert server.actions[action.id].result == "success"
    finally:
        daemon.stop()
    assert "event=wakeup reason=wakeup" in daemon.log()


def retained(host: str, port: int, mqtt: object) -> set[str]:
    """Topics with a retained message on the broker right now."""
    import paho.mqtt.subscribe as subscribe
    try:
        message = subscribe.simple("fwagent/gw-test/state", hostname=host, port=port, retained=True,
                                   msg_count=1, keepalive=5)
    except Exception:                                 # noqa: BLE001 - not there yet
        return set()
    return {message.topic} if json.loads(message.payload)["state"] != "offline" else set()


def stopped_in_a_download(gateway: Gateway, server: DdiServer, tmp_path: Path, rate: int, settle: float = 0.0):  # noqa: ANN201
    """An action with a closed maintenance window, its bundle being downloaded ahead (at ``rate``
    bytes/s) when the daemon is stopped, as systemd's SIGTERM would: the action."""
    connect(gateway, server, "\n")
    gateway.config_path.write_text(gateway.config_path.read_text() + f"\n[download]\nrate_limit = {rate}\n")
    bundle = gateway.bundle("u2", sequence=2, size=3 << 20)
    action = server.create_deployment(DEVICE, [{"part": "os", "name": "gateway", "version": "2.0.0",
                                                "artifacts": {"u2.fwb": bundle.read_bytes()}}],
                                      window="unavailable")
    first = Running(gateway, server, tmp_path / "first.log")
    wait_for(lambda: any((gateway.root / "state/incoming").glob("action-*/artifact-0")), "the download",
             poke=first)
    time.sleep(settle)
    first.stop()
    return action


def test_a_stopped_download_continues_after_a_restart(gateway: Gateway, server: DdiServer, tmp_path: Path) -> None:
    """A closed maintenance window: the bundle is downloaded ahead, and a stop does not lose it."""
    action = stopped_in_a_download(gateway, server, tmp_path, 400000, settle=0.5)
    record = json.loads((gateway.root / "state/ddi-action.json").read_text())
    assert record["phase"] == "download" and record["action"] == str(action.id)
    assert "closed" not in executions(server, action.id)
    server.set_window(action.id, "available")
    run_until_closed(gateway, server, action.id, tmp_path / "second.log", "the resumed update")
    assert server.actions[action.id].result == "success" and gateway.booted() == "B"
    assert executions(server, action.id).count("closed") == 1


def test_a_crash_loop_in_a_download_gives_the_action_up_and_reports_it(
        gateway: Gateway, server: DdiServer, tmp_path: Path) -> None:
    """Each start finds the download where the last one left it, nothing more done: after
    MAX_STARTS such starts the next one ends the action as failed (restart-limit), reported once,
    instead of downloading (and crashing) forever. A start that got further counts from one."""
    from agent.daemon.actions import MAX_STARTS, progress_mark

    action = stopped_in_a_download(gateway, server, tmp_path, 200000)
    store = gateway.root / "state/ddi-action.json"
    record = json.loads(store.read_text())
    assert record["phase"] == "download"
    # As if it had started and crashed at this very point MAX_STARTS times in a row.
    record["starts"], record["done"] = MAX_STARTS, progress_mark(record["fetched"], record["resume"])
    store.write_text(json.dumps(record))
    second = Running(gateway, server, tmp_path / "second.log")
    try:
        wait_for(lambda: server.actions[action.id].state == "closed", "the failure report", poke=second)
    finally:
        second.stop()
    [final] = [s for s in server.statuses(action.id) if s.get("execution") == "closed"]
    assert final["result"]["finished"] == "failure"
    assert any("restart-limit" in text and f"started {MAX_STARTS + 1} times in phase download" in text
               for text in final["details"]), final
    assert json.loads(store.read_text())["phase"] == "idle"
    assert not list((gateway.root / "state/incoming").glob("action-*"))


def test_a_stopped_streaming_install_continues_from_its_synced_position(
        gateway: Gateway, server: DdiServer, tmp_path: Path) -> None:
    """A bundle installed at once streams into the slot; a stop in mid-write keeps what is synced,
    and the next start fetches only the rest."""
    connect(gateway, server, "\n")
    gateway.config_path.write_text(gateway.config_path.read_text() + "\n[download]\nrate_limit = 3000000\n")
    for name in ("rootfs-a.img", "rootfs-b.img"):
        with open(gateway.root / name, "r+b") as slot:
            slot.truncate(16 << 20)
    bundle = gateway.bundle("u2", sequence=2, size=12 << 20)
    image = (gateway.root / "u2.img").read_bytes()
    action = server.create_deployment(DEVICE, [{"part": "os", "name": "gateway", "version": "2.0.0",
                                                "artifacts": {"u2.fwb": bundle.read_bytes()}}])
    first = Running(gateway, server, tmp_path / "first.log")
    wait_for(lambda: (journal(gateway)["update"] or {}).get("stream", {}).get("written"), "a synced position",
             poke=first)
    first.stop()                                      # as systemd's SIGTERM would
    update = journal(gateway)["update"]
    synced = update["stream"]["written"]["rootfs.B"]
    assert update["state"] == "write" and synced >= 8 << 20
    assert not any((gateway.root / "state/incoming").rglob("*.fwb")) and not any(
        p.is_file() for p in (gateway.root / "state/incoming").rglob("*"))
    server.record = True
    run_until_closed(gateway, server, action.id, tmp_path / "second.log", "the resumed update")
    assert server.actions[action.id].result == "success" and gateway.booted() == "B"
    assert slot_holds(gateway, "B", image)
    fetches = [e for e in server.exchanges if e.method == "GET" and e.path.endswith("/u2.fwb")]
    ranges = [e.request_headers.get("Range") for e in fetches]
    assert ranges[0] is None and ranges[-1].startswith("bytes=")          # the head, then the rest
    assert int(ranges[-1].removeprefix("bytes=").removesuffix("-")) > synced
    assert fetches[-1].response_length < len(bundle.read_bytes()) - synced + 4096


def test_refused_credentials_are_logged_and_retried_slowly(gateway: Gateway, tmp_path: Path) -> None:
    with DdiServer(tokens={DEVICE: "right-token"}) as server:
        connect(gateway, server, 'target_token = "wrong-token"\npoll_default = 600\npoll_max = 3600\n')
        daemon = Running(gateway, server, tmp_path / "daemon.log")
        try:
            wait_for(lambda: "event=poll-failed code=ddi-auth" in daemon.log(), "the refused poll")
            polls = len(server.requests)
            for _ in range(5):
                daemon.daemon.wakeup("test")          # a wake-up still polls: the operator may have fixed it
                time.sleep(0.2)
        finally:
            daemon.stop()
        line = next(line for line in daemon.log().splitlines() if "event=poll-failed" in line)
        assert "refused the device's credentials" in line
        retry = float(line.split("retry_in=")[1].rstrip("s"))
        assert retry >= 600
        assert len(server.requests) > polls


def test_sigterm_stops_the_service_cleanly(gateway: Gateway, server: DdiServer, tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    connect(gateway, server)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    process = subprocess.Popen([sys.executable, "-m", "agent", "run", "--config", str(gateway.config_path)],
                               stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_for(lambda: any(path.endswith("/gw-test") for _m, path in server.requests), "the first poll")
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    lines = stderr.splitlines()
    assert lines and all(line.startswith("level=") for line in lines), stderr
    assert "event=start" in lines[0] and "event=stopped" in lines[-1]


def test_a_cancel_while_the_payload_streams_into_the_slot_stops_before_the_switch(
        gateway: Gateway, server: DdiServer, tmp_path: Path) -> None:
    connect(gateway, server, "\n")
    gateway.config_path.write_text(gateway.config_path.read_text() + "\n[download]\nrate_limit = 300000\n")
    image = gateway.root / "rootfs.img"
    image.write_bytes(random.Random(6).randbytes(3 << 20))
    action = server.create_deployment(DEVICE, [{"part": "os", "name": "gateway", "version": "3.0.0",
                                                "artifacts": {"update.suit": signed_manifest(gateway, image, sequence=3),
                                                              "rootfs.img": image.read_bytes()}}])
    daemon = Running(gateway, server, tmp_path / "daemon.log")
    try:
        wait_for(lambda: (journal(gateway)["update"] or {}).get("state") == "write", "the write", poke=daemon)
        server.cancel(action.id)
        wait_for(lambda: server.actions[action.id].state == "closed", "the cancel", poke=daemon)
    finally:
        daemon.stop()
    assert server.actions[action.id].result == "canceled", server.statuses(action.id)
    assert gateway.booted() == "A" and gateway.bootloader().get_primary() == "A"
    assert not gateway.bootloader().get_state("B")              # the half-written slot stays marked bad
    assert journal(gateway)["outbox"] == [] and journal(gateway)["update"] is None
    assert "closed" not in executions(server, action.id)[:-1]


def test_downloads_from_the_server_carry_its_token_and_tls_settings(gateway: Gateway, tmp_path: Path) -> None:
    """hawkBit and goosebit check the device's token on artifact downloads too: the server's
    link is the downloads' link, and gives the server's origin (only) the token, CA and certificate."""
    for name in ("ca.pem", "device.pem", "device.key"):
        (gateway.root / name).write_text("")
    gateway.config_path.write_text(gateway.config_path.read_text() + (
        '\n[server]\nurl = "https://ddi.example.com"\ntarget_token = "tok"\nca_file = "ca.pem"\n'
        'client_cert = "device.pem"\nclient_key = "device.key"\n'))
    daemon = build_daemon(gateway.config(), Log(io.StringIO()))
    link = daemon.downloader.link
    assert daemon.client is not None and daemon.client.link is link
    assert link.credentials == {"Authorization": "TargetToken tok"}
    assert link.server_tls == Tls(str(gateway.root / "ca.pem"), (str(gateway.root / "device.pem"),
                                                                  str(gateway.root / "device.key")))
    assert link.other_tls == Tls() and link.policy.admit("https://ddi.example.com/x") is True


def test_an_action_replaced_without_a_cancel_gives_way_to_the_new_one(
        gateway: Gateway, server: DdiServer, daemon: Running) -> None:
    """goosebit reassigns by offering the new software in place of the old, with no cancelAction."""
    old = server.create_deployment(DEVICE, [{"part": "os", "name": "gateway", "version": "2.0.0",
                                             "artifacts": {"u2.fwb": gateway.bundle("u2", sequence=2).read_bytes()}}],
                                   window="unavailable")
    wait_for(lambda: "scheduled" in executions(server, old.id), "the first action to wait", poke=daemon)
    new = server.create_deployment(DEVICE, [{"part": "os", "name": "gateway", "version": "3.0.0",
                                             "artifacts": {"u3.fwb": gateway.bundle("u3", sequence=3,
                                                                                    version="3.0.0").read_bytes()}}])
    with server.lock:
        server.actions[old.id].state = "closed"             # the server now offers the new one in its place
    wait_for(lambda: server.actions[new.id].state == "closed", "the new action", poke=daemon)
    assert server.actions[new.id].result == "success" and journal(gateway)["installed"]["version"] == "3.0.0"
    assert not (gateway.root / "state/incoming" / str(old.id)).exists()
    assert f"event=action-replaced action={old.id} by={new.id}" in daemon.log()


def test_a_damaged_action_record_starts_idle_and_the_server_offers_the_action_again(
        gateway: Gateway, server: DdiServer, tmp_path: Path) -> None:
    connect(gateway, server)
    (gateway.root / "state").mkdir(exist_ok=True)
    (gateway.root / "state/ddi-action.json").write_text('{"schema": 1, "phase": "downl')
    action = server.create_deployment(DEVICE, [{"part": "os", "name": "gateway", "version": "2.0.0",
                                                "artifacts": {"u2.fwb": gateway.bundle("u2", sequence=2).read_bytes()}}])
    daemon = run_until_closed(gateway, server, action.id, tmp_path / "daemon.log", "the action")
    assert server.actions[action.id].result == "success"
    assert "level=error event=action-record-damaged code=journal" in daemon.log()


def test_a_cancel_that_comes_after_the_end_is_rejected_and_the_result_is_sent(
        gateway: Gateway, server: DdiServer, tmp_path: Path) -> None:
    """The update committed across a reboot; its result still waits in the outbox when the operator
    cancels: the server must end up with the result, not a cancel confirmed over it."""
    action = server.create_deployment(DEVICE, [{"part": "os", "name": "gateway", "version": "2.0.0",
                                                "artifacts": {"u2.fwb": b"x"}}])
    gateway.installer().install(str(gateway.bundle("u2", sequence=2)), origin={"ddi_action": str(action.id)})
    server.cancel(action.id)
    connect(gateway, server)
    run_until_closed(gateway, server, action.id, tmp_path / "daemon.log", "the result")
    assert server.actions[action.id].result == "success", server.statuses(action.id)
    # Whichever comes first, the poll that shows the cancel or the delivery of the result,
    # the cancel is never confirmed: at most refused.
    cancel_replies = [s["execution"] for s in server.statuses(action.id) if s.get("kind") == "cancelAction"]
    assert set(cancel_replies) <= {"rejected"}


def test_a_cancel_phase_the_server_no_longer_knows_ends(gateway: Gateway, server: DdiServer, tmp_path: Path) -> None:
    state = gateway.root / "state"
    state.mkdir(exist_ok=True)
    (state / "ddi-action.json").write_text(json.dumps({"schema": 1, "phase": "cancel", "action": "99",
                                                       "cancel": "99"}))
    connect(gateway, server)
    daemon = Running(gateway, server, tmp_path / "daemon.log")
    try:
        wait_for(lambda: json.loads((state / "ddi-action.json").read_text())["phase"] == "idle",
                 "the cancel phase to end", poke=daemon)
        action = server.create_deployment(DEVICE, [{"part": "os", "name": "gateway", "version": "2.0.0",
                                                    "artifacts": {"u2.fwb": gateway.bundle("u2", sequence=2)
                                                                  .read_bytes()}}])
        wait_for(lambda: server.actions[action.id].state == "closed", "the next action", poke=daemon)
    finally:
        daemon.stop()
    assert server.actions[action.id].result == "success"


def test_an_action_whose_failure_was_queued_before_a_restart_is_not_started_again(
        gateway: Gateway, server: DdiServer, tmp_path: Path) -> None:
    from agent.ddi.outbox import enqueue

    action = server.create_deployment(DEVICE, [{"part": "os", "name": "gateway", "version": "2.0.0",
                                                "artifacts": {"u2.fwb": b"not a bundle"}}])
    state = gateway.root / "state"
    enqueue(Journal(state), {"id": "f1", "result": "failure", "state": "failed", "code": "bundle",
                             "reason": "not a bundle", "origin": {"ddi_action": str(action.id)}})
    (state / "ddi-action.json").write_text(json.dumps({"schema": 1, "phase": "download", "action": str(action.id),
                                                       "plan": None, "may_install": True, "fetched": {},
                                                       "resume": {}}))
    connect(gateway, server)
    run_until_closed(gateway, server, action.id, tmp_path / "daemon.log", "the queued result")
    assert server.actions[action.id].result == "failure"
    assert not any(path.endswith("/u2.fwb") for _m, path in server.requests)     # never fetched again
