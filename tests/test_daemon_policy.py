"""[policy] with a real daemon against the reference DDI server: approval commands (go, wait
then go, refuse), fwagent approve and defer, an install window that opens, a power cut while an
action waits at a gate, and a deployment of what is already installed."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from daemon_process import DaemonProcess
from install_bench import Gateway, make_gateway
from test_daemon import DEVICE, Running, connect, executions, slot_holds, wait_for

from agent.cli import main
from agent.demo.ddi_server import DdiServer
from ddi_openapi import check_exchanges


@pytest.fixture
def gateway(tmp_path: Path) -> Gateway:
    return make_gateway(tmp_path / "gw")


@pytest.fixture
def server() -> Iterator[DdiServer]:
    with DdiServer(sleep="00:05:00", record=True) as server:
        yield server
        check_exchanges(server)


def with_policy(gateway: Gateway, server: DdiServer, policy: str) -> None:
    connect(gateway, server)
    gateway.config_path.write_text(gateway.config_path.read_text() + f"\n[policy]\n{policy}\n")


def deploy(gateway: Gateway, server: DdiServer, version: str = "2.0.0", sequence: int = 2):  # noqa: ANN201
    bundle = gateway.bundle("u2", sequence=sequence, version=version)
    return server.create_deployment(DEVICE, [{"part": "os", "name": "gateway", "version": version,
                                              "artifacts": {"u2.fwb": bundle.read_bytes()}}])


def details(server: DdiServer, action: int) -> str:
    return " ".join(d for s in server.statuses(action) for d in s.get("details", []))


def record(gateway: Gateway) -> dict:
    path = gateway.root / "state/ddi-action.json"
    return json.loads(path.read_text()) if path.exists() else {}


def command(tmp_path: Path, name: str, body: str) -> str:
    """A Python approval command as a TOML argv list; it appends its environment to NAME.calls."""
    script = tmp_path / f"{name}.py"
    calls = tmp_path / f"{name}.calls"
    script.write_text("import os, sys, pathlib\n"
                      f"calls = pathlib.Path({str(calls)!r})\n"
                      "with calls.open('a') as f:\n"
                      "    f.write(os.environ['FWAGENT_GATE'] + ' ' + os.environ['FWAGENT_ACTION'] + '\\n')\n"
                      "count = len(calls.read_text().splitlines())\n" + body)
    return json.dumps([sys.executable, str(script)])


def run_until_closed(gateway: Gateway, server: DdiServer, action: Any, tmp_path: Path) -> Running:
    """A daemon run until the server has the action closed; stopped, its log kept."""
    daemon = Running(gateway, server, tmp_path / "daemon.log")
    try:
        wait_for(lambda: server.actions[action.id].state == "closed", "the action to close", poke=daemon)
    finally:
        daemon.stop()
    return daemon


def calls(tmp_path: Path, name: str) -> list[str]:
    path = tmp_path / f"{name}.calls"
    return path.read_text().splitlines() if path.exists() else []


def test_approval_commands_that_say_go_let_the_download_and_the_install_pass(
        gateway: Gateway, server: DdiServer, tmp_path: Path) -> None:
    with_policy(gateway, server, f"approve = [{command(tmp_path, 'ok', 'sys.exit(0)')}]")
    action = deploy(gateway, server)
    run_until_closed(gateway, server, action, tmp_path)
    assert server.actions[action.id].result == "success", server.statuses(action.id)
    assert calls(tmp_path, "ok") == [f"download {action.id}", f"install {action.id}"]
    assert gateway.booted() == "B"


def test_an_approval_that_asks_to_wait_holds_the_action_then_lets_it_go(
        gateway: Gateway, server: DdiServer, tmp_path: Path) -> None:
    # The first call (the download's gate) asks to wait 1 s; the next ones say go.
    later = command(tmp_path, "later", "print(1) if count == 1 else None\nsys.exit(21 if count == 1 else 0)")
    with_policy(gateway, server, f"approve = [{later}]")
    action = deploy(gateway, server)
    daemon = run_until_closed(gateway, server, action, tmp_path)
    assert server.actions[action.id].result == "success", server.statuses(action.id)
    assert calls(tmp_path, "later") == [f"download {action.id}"] * 2 + [f"install {action.id}"]
    assert "the approval command asked to wait until" in details(server, action.id)
    assert "scheduled" in executions(server, action.id)
    assert "event=waiting" in daemon.log() and "gate=download" in daemon.log()


def test_an_approval_that_refuses_closes_the_action_as_rejected_with_its_reason(
        gateway: Gateway, server: DdiServer, tmp_path: Path) -> None:
    refuse = command(tmp_path, "no", "print('battery low')\nsys.exit(3)")
    with_policy(gateway, server, f"approve = [{refuse}]")
    before = gateway.slot_digest("B")
    action = deploy(gateway, server)
    run_until_closed(gateway, server, action, tmp_path)
    assert server.actions[action.id].result == "failure"
    assert "rejected: battery low" in details(server, action.id)
    assert gateway.slot_digest("B") == before and gateway.booted() == "A"
    fetched = [path for method, path in server.requests if method == "GET" and "/artifacts/" in path]
    assert fetched == []                      # refused before anything was downloaded
    assert record(gateway)["phase"] == "idle"


def test_fwagent_defer_holds_an_action_then_it_goes(gateway: Gateway, server: DdiServer, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    with_policy(gateway, server, f"approve = [{command(tmp_path, 'ok', 'sys.exit(0)')}]")
    action = deploy(gateway, server)
    assert main(["defer", str(action.id), "--for", "3s", "--config", str(gateway.config_path)]) == 0
    assert f"action {action.id}: deferred until" in capsys.readouterr().out
    started = time.monotonic()
    run_until_closed(gateway, server, action, tmp_path)
    assert time.monotonic() - started >= 2.5
    assert server.actions[action.id].result == "success"
    assert "deferred until" in details(server, action.id)


def test_manual_approval_waits_for_fwagent_approve_through_a_power_cut(
        gateway: Gateway, server: DdiServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with_policy(gateway, server, 'approve = "manual"')
    action = deploy(gateway, server)
    log = tmp_path / "daemon.log"
    first = DaemonProcess(gateway.config_path, log)
    first.wait_for(lambda: "event=waiting" in first.log(), "the action to wait for approval")
    assert record(gateway)["phase"] == "wait-approval"
    assert record(gateway)["waiting"] == "waiting for approval (fwagent approve)"
    assert main(["status", "--config", str(gateway.config_path)]) == 0
    assert "waiting:    waiting for approval (fwagent approve)" in capsys.readouterr().out
    first.process.kill()                      # a power cut while it waits
    first.process.wait(10)
    first.stop()
    gateway.power_cycle()
    (gateway.config().device.runtime_dir / "link.json").unlink()           # a tmpfs: gone with the power
    assert main(["status", "--config", str(gateway.config_path)]) == 0       # the service is down
    shown = capsys.readouterr().out
    assert f"action:     {action.id}, wait-approval (as the service left it)" in shown
    assert "waiting:    waiting for approval (fwagent approve)" in shown
    second = DaemonProcess(gateway.config_path, tmp_path / "daemon2.log")
    try:
        second.wait_for(lambda: "event=ready" in second.log(), "the second start")
        time.sleep(3)                         # it keeps waiting: nothing decides for the operator
        assert server.actions[action.id].state != "closed" and record(gateway)["phase"] == "wait-approval"
        assert main(["approve", "--config", str(gateway.config_path)]) == 0     # the action in hand
        assert f"action {action.id}: approved" in capsys.readouterr().out
        second.wait_for(lambda: server.actions[action.id].state == "closed", "the install after the approval")
    finally:
        second.stop()
    assert server.actions[action.id].result == "success" and gateway.booted() == "B"
    assert executions(server, action.id).count("scheduled") >= 1


def local_tz_seconds_before(opening: str, seconds: int) -> str:
    """A POSIX TZ whose local time is ``seconds`` before ``opening`` (HH:MM) now."""
    now = datetime.now(timezone.utc)
    hour, minute = map(int, opening.split(":"))
    target = now.replace(hour=hour, minute=minute, second=0, microsecond=0) - timedelta(seconds=seconds)
    offset = int((target - now).total_seconds()) % 86400
    if offset > 43200:
        offset -= 86400
    sign = "-" if offset >= 0 else "+"       # POSIX: the offset is west of UTC
    offset = abs(offset)
    return f"FWA{sign}{offset // 3600}:{offset % 3600 // 60:02}:{offset % 60:02}"


def test_an_install_window_holds_the_install_until_it_opens(gateway: Gateway, server: DdiServer,
                                                            tmp_path: Path) -> None:
    with_policy(gateway, server, 'install_windows = ["Mon-Sun 12:00-13:00"]')
    action = deploy(gateway, server)
    process = DaemonProcess(gateway.config_path, tmp_path / "daemon.log",
                            env={"TZ": local_tz_seconds_before("12:00", 8)})
    try:
        process.wait_for(lambda: "outside the install window until 12:00" in details(server, action.id),
                         "the action to wait for its window")
        assert record(gateway)["phase"] == "wait-window" and server.actions[action.id].state != "closed"
        process.wait_for(lambda: server.actions[action.id].state == "closed", "the install once the window opens")
    finally:
        process.stop()
    assert server.actions[action.id].result == "success" and gateway.booted() == "B"


def test_a_deployment_of_the_committed_manifest_closes_as_success_without_writing(
        gateway: Gateway, server: DdiServer, tmp_path: Path) -> None:
    connect(gateway, server)
    first = deploy(gateway, server)
    daemon = Running(gateway, server, tmp_path / "daemon.log")
    try:
        wait_for(lambda: server.actions[first.id].state == "closed", "the first action", poke=daemon)
        assert server.actions[first.id].result == "success" and gateway.booted() == "B"
        before = gateway.slot_digest("A")
        again = deploy(gateway, server)           # the same signed manifest
        wait_for(lambda: server.actions[again.id].state == "closed", "the second action", poke=daemon)
    finally:
        daemon.stop()
    assert server.actions[again.id].result == "success", server.statuses(again.id)
    assert "already installed" in details(server, again.id)
    assert gateway.slot_digest("A") == before and gateway.booted() == "B"


def journal_state(gateway: Gateway) -> str | None:
    update = json.loads((gateway.root / "state/journal.json").read_text())["update"]
    return update["state"] if update else None


def test_reboot_approve_stages_the_update_and_switches_only_when_approved_through_a_power_cut(
        gateway: Gateway, server: DdiServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with_policy(gateway, server, 'approve = "manual"\nreboot = "approve"')
    action = deploy(gateway, server)
    image = (gateway.root / "u2.img").read_bytes()
    assert main(["approve", str(action.id), "--config", str(gateway.config_path)]) == 0   # the download and install
    first = DaemonProcess(gateway.config_path, tmp_path / "daemon.log")
    first.wait_for(lambda: record(gateway).get("phase") == "wait-reboot", "the update to be staged")
    assert journal_state(gateway) == "staged" and slot_holds(gateway, "B", image)
    assert gateway.booted() == "A" and gateway.bootloader().get_primary() == "A"     # nothing switched
    assert not gateway.bootloader().get_state("B")                                   # still marked bad
    first.wait_for(lambda: "the switch and reboot wait" in details(server, action.id), "the reason reported")
    first.process.kill()                      # a power cut while the switch waits
    first.process.wait(10)
    first.stop()
    gateway.power_cycle()
    second = DaemonProcess(gateway.config_path, tmp_path / "daemon2.log")
    try:
        second.wait_for(lambda: "event=ready" in second.log(), "the second start")
        time.sleep(3)
        assert record(gateway)["phase"] == "wait-reboot" and journal_state(gateway) == "staged"
        assert gateway.booted() == "A" and server.actions[action.id].state != "closed"
        capsys.readouterr()
        assert main(["approve", "--config", str(gateway.config_path)]) == 0
        assert "approved (the switch and reboot)" in capsys.readouterr().out
        second.wait_for(lambda: server.actions[action.id].state == "closed", "the switch after the approval")
    finally:
        second.stop()
    assert server.actions[action.id].result == "success" and gateway.booted() == "B"
    assert slot_holds(gateway, "B", image)


def test_a_download_that_keeps_failing_is_retried_then_reported(gateway: Gateway, server: DdiServer,
                                                                 tmp_path: Path) -> None:
    with_policy(gateway, server, "retries = 2\nretry_delay = 1")
    action = server.create_deployment(DEVICE, [{"part": "os", "name": "gateway", "version": "2.0.0",
                                                "artifacts": {"u2.fwb": b"not a bundle at all" * 100}}])
    daemon = run_until_closed(gateway, server, action, tmp_path)
    assert server.actions[action.id].result == "failure"
    assert "attempt 2 of 2 in 1 s" in details(server, action.id)
    fetched = [path for method, path in server.requests if method == "GET" and path.endswith("/u2.fwb")]
    assert len(fetched) == 2 and daemon.log().count("event=download-retry") == 1
    assert gateway.booted() == "A"


def test_when_online_an_action_in_hand_goes_on_only_once_the_server_answers(
        gateway: Gateway, server: DdiServer, tmp_path: Path) -> None:
    with_policy(gateway, server, 'approve = "manual"\nwhen = "online"')
    action = deploy(gateway, server)
    first = Running(gateway, server, tmp_path / "daemon.log")
    try:
        wait_for(lambda: record(gateway).get("phase") == "wait-approval", "the action to wait for approval",
                 poke=first)
    finally:
        first.stop()
    assert main(["approve", "--config", str(gateway.config_path)]) == 0    # decided while the service is down
    server.answer_429 = True                  # the device comes back offline: no poll is answered
    second = Running(gateway, server, tmp_path / "daemon2.log")
    try:
        wait_for(lambda: "waiting to be online" in second.log(), "the gate to wait for the link", poke=second)
        time.sleep(2)
        assert record(gateway)["phase"] == "wait-approval"
        assert not [path for method, path in server.requests if method == "GET" and "/artifacts/" in path]
        server.answer_429 = False
        wait_for(lambda: server.actions[action.id].state == "closed", "the action once online", poke=second)
    finally:
        second.stop()
    assert server.actions[action.id].result == "success" and gateway.booted() == "B"


def test_an_install_that_keeps_failing_is_retried_then_reported(gateway: Gateway, server: DdiServer,
                                                                tmp_path: Path) -> None:
    with_policy(gateway, server, "retries = 2\nretry_delay = 1")
    bundle = gateway.bundle("u2", sequence=2).read_bytes()
    # The manifest at its head checks out; the payload is cut short: the install fails at write.
    action = server.create_deployment(DEVICE, [{"part": "os", "name": "gateway", "version": "2.0.0",
                                                "artifacts": {"u2.fwb": bundle[:len(bundle) // 2]}}])
    daemon = run_until_closed(gateway, server, action, tmp_path)
    assert server.actions[action.id].result == "failure"
    assert "the install failed (" in details(server, action.id) and "attempt 2 of 2 at" in details(server, action.id)
    assert daemon.log().count("event=install-retry") == 1
    assert executions(server, action.id).count("closed") == 1 and gateway.booted() == "A"


def test_a_cancel_while_the_switch_waits_ends_the_staged_update(gateway: Gateway, server: DdiServer,
                                                               tmp_path: Path) -> None:
    with_policy(gateway, server, 'approve = "manual"\nreboot = "approve"')
    action = deploy(gateway, server)
    assert main(["approve", str(action.id), "--config", str(gateway.config_path)]) == 0
    daemon = Running(gateway, server, tmp_path / "daemon.log")
    try:
        wait_for(lambda: record(gateway).get("phase") == "wait-reboot", "the update to be staged", poke=daemon)
        server.cancel(action.id)
        wait_for(lambda: server.actions[action.id].state == "closed", "the cancel to be confirmed", poke=daemon)
    finally:
        daemon.stop()
    assert server.actions[action.id].result == "canceled"
    assert journal_state(gateway) is None and record(gateway)["phase"] == "idle"
    assert gateway.booted() == "A" and gateway.bootloader().get_primary() == "A"
    assert not gateway.bootloader().get_state("B")          # the staged slot stays marked bad
