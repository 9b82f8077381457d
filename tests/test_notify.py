"""systemd's notifications (agent/daemon/notify.py): READY, STATUS, STOPPING, WATCHDOG and the
start timeout's extensions, read from a datagram socket each test binds, as systemd would.

The watchdog's pings come from the daemon's loop itself: a loop that hangs stops pinging.
The service is ready once its start-up work is done (the update in flight committed), and
no child it runs (a health command) inherits the variables systemd passed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import test_daemon
from daemon_process import ROOT, DaemonProcess
from install_bench import Gateway, make_gateway

from agent.daemon import status
from agent.daemon.events import Wakeup
from agent.daemon.notify import (START_EXTEND_BY, Notifier, message, run_starting, socket_address, status_text,
                                 watchdog_interval)
from agent.journal import Journal
from agent.demo.ddi_server import DdiServer

DEVICE = "gw-test"


class NotifySocket:
    """What systemd listens on: an AF_UNIX datagram socket (a short path, or an abstract name)."""

    def __init__(self, abstract: bool = False) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"fwagent-test-{uuid.uuid4().hex[:12]}"
            self.sock.bind("\0" + name)
            self.variable = "@" + name
        else:
            self.directory = tempfile.mkdtemp(prefix="fwn-", dir="/tmp")     # AF_UNIX paths are short
            self.variable = os.path.join(self.directory, "notify")
            self.sock.bind(self.variable)
        self.received: list[tuple[float, str]] = []     # (monotonic time, datagram)

    def address(self) -> str:
        return socket_address(self.variable) or ""

    def read(self, timeout: float = 0.0) -> list[str]:
        """The datagrams that arrive within ``timeout`` seconds (all waiting ones, at least)."""
        deadline = time.monotonic() + timeout
        new = []
        while True:
            self.sock.settimeout(max(0.001, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536).decode()
            except (TimeoutError, socket.timeout):
                return new
            self.received.append((time.monotonic(), data))
            new.append(data)

    def wait_for(self, predicate: Callable[[str], bool], what: str, timeout: float = 30.0) -> str:
        for _, data in self.received:
            if predicate(data):
                return data
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for data in self.read(min(0.2, max(0.0, deadline - time.monotonic()))):
                if predicate(data):
                    return data
        raise AssertionError(f"no notification {what} within {timeout} s; got {self.messages()}")

    def messages(self) -> list[str]:
        return [data for _, data in self.received]

    def statuses(self) -> list[str]:
        return [line[len("STATUS="):] for data in self.messages() for line in data.splitlines()
                if line.startswith("STATUS=")]

    def close(self) -> None:
        self.sock.close()
        if not self.variable.startswith("@"):
            os.unlink(self.variable)
            os.rmdir(self.directory)


@pytest.fixture
def listener() -> Iterator[NotifySocket]:
    sock = NotifySocket()
    yield sock
    sock.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- the protocol, pure ------------------------------------------------------------------------


def test_a_notification_is_key_value_lines_each_value_one_printable_line() -> None:
    assert message(READY=1) == b"READY=1"
    assert message(STOPPING=1, STATUS="a\nb\tc\x00d") == b"STOPPING=1\nSTATUS=a b c?d"
    assert status_text("x" * 500) == "x" * 197 + "..."


@pytest.mark.parametrize(("value", "address"), [
    ("/run/systemd/notify", "/run/systemd/notify"),
    ("@fwagent/notify", "\0fwagent/notify"),
    ("", None), (None, None), ("@", None), ("relative/path", None),
])
def test_the_socket_is_a_path_or_an_abstract_name(value: str | None, address: str | None) -> None:
    assert socket_address(value) == address


@pytest.mark.parametrize(("usec", "pid", "interval"), [
    ("60000000", None, 30.0),           # every half of WatchdogSec=
    ("60000000", "4242", 30.0),         # for this process
    ("60000000", "1", None),            # for another process: not ours to ping
    ("0", None, None), ("", None, None), (None, None, None), ("-5", None, None), ("60s", None, None),
    ("60000000", "x", None),
])
def test_the_watchdog_interval_is_half_of_watchdog_usec_when_the_pid_is_ours(
        usec: str | None, pid: str | None, interval: float | None) -> None:
    assert watchdog_interval(usec, pid, 4242) == interval


def test_the_variables_are_taken_out_of_the_environment_children_inherit() -> None:
    environ = {"NOTIFY_SOCKET": "@sock", "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "77", "PATH": "/bin"}
    notifier = Notifier.from_environment(environ, pid=77)
    assert environ == {"PATH": "/bin"}
    assert notifier.address == "\0sock" and notifier.watchdog == 1.0
    assert Notifier.from_environment({"WATCHDOG_USEC": "2000000"}, pid=77).enabled is False


def test_status_texts() -> None:
    assert status.size(512) == "512 B" and status.size(3 << 20) == "3.0 MiB" and status.size(1536) == "1.5 KiB"
    assert status.downloading("u2.fwb", 42, 100) == "downloading u2.fwb: 42 % of 100 B"
    assert status.installing("B", 1 << 20, 4 << 20) == "installing B: 25 %"
    assert status.line("installing", action="12", update="d4b33c09ffff") == "installing (action 12, update d4b33c09)"
    assert status.line("idle") == "idle"
    assert status.ids({"id": "d4b33c09ffff", "origin": {"ddi_action": 12}}) == {"action": "12", "update": "d4b33c09"}
    assert status.outcome("success", "committed", "", "2.0.0") == "the update ended: committed, version 2.0.0"
    assert status.outcome("failure", "rolled-back", "unhealthy") == "the update ended: rolled-back (unhealthy)"
    assert status.outcome("pending", "reboot").startswith("waiting for the reboot")


# --- the notifier against a bound socket ---------------------------------------------------------


def test_ready_stopping_and_status_reach_the_socket(listener: NotifySocket) -> None:
    notifier = Notifier(listener.address(), status_interval=0)
    notifier.status("starting")
    notifier.ready("idle")
    notifier.stopping("stopping")
    assert listener.read(0.2) == ["STATUS=starting", "READY=1\nSTATUS=idle", "STOPPING=1\nSTATUS=stopping"]


def test_an_abstract_socket_from_the_environment() -> None:
    listener = NotifySocket(abstract=True)
    try:
        notifier = Notifier.from_environment({"NOTIFY_SOCKET": listener.variable})
        notifier.ready()
        assert listener.read(0.2) == ["READY=1"]
    finally:
        listener.close()


def test_status_lines_are_rate_limited_and_the_newest_waiting_one_follows(listener: NotifySocket) -> None:
    clock = Clock()
    notifier = Notifier(listener.address(), clock=clock)
    notifier.ready()
    notifier.status("downloading 1 %")
    clock.now += 0.3
    notifier.status("downloading 2 %")
    notifier.status("downloading 3 %")
    assert listener.read(0.2) == ["READY=1", "STATUS=downloading 1 %"]
    assert notifier.wait() == pytest.approx(0.7)
    notifier.tick()
    assert listener.read(0.2) == []                  # not yet due
    clock.now += 0.7
    notifier.tick()
    assert listener.read(0.2) == ["STATUS=downloading 3 %"]
    clock.now += 5
    notifier.status("downloading 3 %")               # unchanged: nothing to say
    assert listener.read(0.2) == [] and notifier.wait() == float("inf")


def test_the_watchdog_is_pinged_when_due_and_the_start_timeout_extended_until_ready(listener: NotifySocket) -> None:
    clock = Clock()
    notifier = Notifier(listener.address(), watchdog=5.0, clock=clock)
    notifier.tick()
    assert sorted(listener.read(0.2)) == [f"EXTEND_TIMEOUT_USEC={int(START_EXTEND_BY * 1e6)}", "WATCHDOG=1"]
    clock.now += 1
    notifier.tick()
    assert listener.read(0.2) == [] and notifier.wait() == pytest.approx(4.0)
    clock.now += 4
    notifier.tick()
    assert listener.read(0.2) == ["WATCHDOG=1"]
    notifier.ready()
    clock.now += 60
    notifier.tick()
    assert listener.read(0.2) == ["READY=1", "WATCHDOG=1"]      # no extension once ready


def test_without_a_socket_nothing_is_sent_and_nothing_is_due() -> None:
    notifier = Notifier.from_environment({})
    notifier.ready("idle")
    notifier.tick()
    assert not notifier.enabled and notifier.wait() == float("inf")
    assert run_starting(lambda: 42, notifier) == 42


def test_a_socket_that_is_gone_is_logged_once_a_minute_and_never_raised(tmp_path: Path) -> None:
    clock, logged = Clock(), []
    notifier = Notifier(str(tmp_path / "nobody"), clock=clock, log=lambda event, **fields: logged.append(event))
    notifier.ready()
    notifier.status("idle")
    clock.now += 61
    notifier.stopping()
    assert logged == ["notify-failed", "notify-failed"]


def test_the_start_up_work_in_a_thread_extends_the_start_timeout_and_hands_back_its_result(
        listener: NotifySocket) -> None:
    notifier = Notifier(listener.address())
    assert run_starting(lambda: time.sleep(0.3) or "done", notifier) == "done"
    assert any(m.startswith("EXTEND_TIMEOUT_USEC=") for m in listener.read(0.5))

    def broken() -> None:
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        run_starting(broken, notifier)


# --- the daemon's loop ---------------------------------------------------------------------------


class Running(test_daemon.Running):
    """A daemon in a thread, its notifications to ``listener``."""

    def __init__(self, gateway: Gateway, listener: NotifySocket, log_path: Path, watchdog: float | None = None) -> None:
        self.notifier = Notifier(listener.address(), watchdog=watchdog, status_interval=0)
        super().__init__(gateway, None, log_path, self.notifier)


def pings(messages: list[str]) -> int:
    return sum(1 for m in messages if m == "WATCHDOG=1")


def test_the_loop_pings_the_watchdog_and_a_hung_loop_stops_pinging(tmp_path: Path, listener: NotifySocket) -> None:
    gateway = make_gateway(tmp_path / "gw")
    running = Running(gateway, listener, tmp_path / "daemon.log", watchdog=0.1)
    try:
        listener.wait_for(lambda m: m.startswith("READY=1"), "READY=1")
        assert pings(listener.read(1.0)) >= 5               # every 0.1 s while the loop runs, idle or not
        hanging, release = threading.Event(), threading.Event()

        def hang() -> None:                                 # a handler that never returns in time
            hanging.set()
            release.wait(10)

        running.daemon._on_wakeup = lambda event: hang()    # type: ignore[method-assign]
        running.daemon.events.put(Wakeup("hang"))
        assert hanging.wait(5)
        listener.read(0.15)                                 # a ping already on its way
        assert pings(listener.read(1.0)) == 0               # the loop hangs: no ping for ten intervals
        release.set()
        assert pings(listener.read(1.0)) >= 5               # the loop runs again
    finally:
        release.set()
        running.stop()
    assert listener.wait_for(lambda m: m.startswith("STOPPING=1"), "STOPPING=1")


def test_ready_waits_for_the_update_in_flight_to_be_committed(tmp_path: Path, listener: NotifySocket) -> None:
    """After an update's reboot the service is ready only once the health checks passed and the
    slot is committed; meanwhile the start timeout is extended, and the status says why."""
    gate = tmp_path / "healthy"
    gateway = make_gateway(tmp_path / "gw", health=f"[['sh', '-c', 'while [ ! -e {gate} ]; do sleep 0.05; done']]")
    bundle = gateway.bundle("u2", sequence=2, version="2.0.0")
    assert gateway.installer().install(str(bundle), no_reboot=True).result == "pending"
    gateway.power_cycle()
    running = Running(gateway, listener, tmp_path / "daemon.log")
    try:
        listener.wait_for(lambda m: "running the health checks" in m, "of the health checks")
        assert any(m.startswith("EXTEND_TIMEOUT_USEC=") for m in listener.messages())
        listener.read(0.5)
        assert not any(m.startswith("READY=1") for m in listener.messages())     # the health check still runs
        gate.touch()
        listener.wait_for(lambda m: m.startswith("READY=1"), "READY=1")
        assert Journal(gateway.root / "state").load()["installed"]["version"] == "2.0.0"
    finally:
        gate.touch()
        running.stop()
    statuses = listener.statuses()
    ready_at = next(i for i, m in enumerate(listener.messages()) if m.startswith("READY=1"))
    before = [m for m in listener.messages()[:ready_at] if m.startswith("STATUS=")]
    assert any("committing slot B" in m for m in before), before
    assert any("idle; the update ended: committed, version 2.0.0" in s for s in statuses), statuses


def test_the_status_line_follows_a_server_action(tmp_path: Path, listener: NotifySocket) -> None:
    gateway = make_gateway(tmp_path / "gw")
    with DdiServer(sleep="00:05:00") as server:
        gateway.config_path.write_text(gateway.config_path.read_text()
                                       + f'\n[server]\nurl = "{server.url}"\nstartup_spread = 0\npoll_min = 1\n')
        bundle = gateway.bundle("u2", sequence=2, version="2.0.0")
        running = Running(gateway, listener, tmp_path / "daemon.log")
        try:
            listener.wait_for(lambda m: m.startswith("READY=1"), "READY=1")
            action = server.create_deployment(DEVICE, [{"part": "os", "name": "gateway", "version": "2.0.0",
                                                        "artifacts": {"u2.fwb": bundle.read_bytes()}}])
            running.daemon.wakeup("test")
            listener.wait_for(lambda m: "the update ended" in m, "of the end of the update")
        finally:
            running.stop()
    listener.read(0.5)
    statuses = listener.statuses()
    expected = ["idle; polling the server", f"downloading (action {action.id})",   # the bundle streams:
                f"installing (action {action.id})",                                   # its manifest checked first
                f"installing into slot B (action {action.id}", f"running the health checks (action {action.id}",
                f"committing slot B (action {action.id}",
                f"idle; the update ended: committed, version 2.0.0 (action {action.id}"]
    position = 0
    for text in expected:                                 # each, in this order
        position = next((i for i in range(position, len(statuses)) if statuses[i].startswith(text)), -1)
        assert position >= 0, (text, statuses)
    assert statuses[-1].startswith("stopping")


# --- the service as a process, as systemd runs it -------------------------------------------------


def test_the_daemon_process_is_ready_pings_and_says_stopping_on_sigterm(tmp_path: Path, listener: NotifySocket) -> None:
    gateway = make_gateway(tmp_path / "gw")
    with DdiServer(sleep="00:00:01") as server:
        gateway.config_path.write_text(gateway.config_path.read_text()
                                       + f'\n[server]\nurl = "{server.url}"\nstartup_spread = 0\npoll_min = 1\n')
        env = {"NOTIFY_SOCKET": listener.variable, "WATCHDOG_USEC": "400000"}
        with DaemonProcess(gateway.config_path, tmp_path / "daemon.log", env=env) as daemon:
            listener.wait_for(lambda m: m.startswith("READY=1"), "READY=1")
            assert pings(listener.read(1.0)) >= 3
            daemon.process.send_signal(signal.SIGTERM)
            listener.wait_for(lambda m: m.startswith("STOPPING=1"), "STOPPING=1")
            assert daemon.process.wait(30) == 0
        log = daemon.log()
    assert "event=ready" in log and log.rstrip().endswith("event=stopped")
    assert any(s.startswith("idle") for s in listener.statuses())


def test_the_one_shot_service_is_ready_after_the_commit_and_its_health_command_inherits_nothing(
        tmp_path: Path, listener: NotifySocket) -> None:
    seen = tmp_path / "health-env"
    gateway = make_gateway(tmp_path / "gw", health=(
        "[['sh', '-c', 'echo \"${NOTIFY_SOCKET:-unset} ${WATCHDOG_USEC:-unset} ${WATCHDOG_PID:-unset}\" > "
        f"{seen}; sleep 1.5']]"))     # long enough for a status line (at most one a second) to go out
    bundle = gateway.bundle("u2", sequence=2, version="2.0.0")
    assert gateway.installer().install(str(bundle), no_reboot=True).result == "pending"
    gateway.power_cycle()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NOTIFY_SOCKET": listener.variable,
           "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}
    result = subprocess.run([sys.executable, "-m", "agent", "run", "--config", str(gateway.config_path)],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "committed, version 2.0.0" in result.stdout
    assert seen.read_text().split() == ["unset", "unset", "unset"]
    messages = listener.read(1.0)
    ready = [m for m in messages if m.startswith("READY=1")]
    assert ready == [next(m for m in messages if m.startswith("READY=1"))] and \
        "the update ended: committed, version 2.0.0" in ready[0], messages
    before = messages[:messages.index(ready[0])]
    assert any("running the health checks" in m for m in before), messages
    assert not any(m == "WATCHDOG=1" for m in messages)        # WATCHDOG_PID names another process
