"""What the daemon says about its server link: the first poll's wait, a polling interval the
local bounds override, each change of the link's state once; and ``fwagent status`` showing the
link as the running service last wrote it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from daemon_process import DaemonProcess
from httpfaults import FaultProxy, Pass, Status
from install_bench import Gateway, make_gateway

from agent.cli import main
from agent.daemon.link import duration, first_poll_note, interval_note, link_change
from agent.demo.ddi_server import DdiServer

# --- what to say (pure) -----------------------------------------------------------------------


@pytest.mark.parametrize(("seconds", "text"), [(0.4, "0s"), (2, "2s"), (59.6, "1m00s"), (252, "4m12s"),
                                               (3900, "1h05m")])
def test_durations_read_as_a_person_says_them(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def test_a_first_poll_is_explained_only_when_it_waits() -> None:
    assert first_poll_note(252, 300, False) == ("first poll in 4m12s: startup spread (up to 5m00s, "
                                                "[server].startup_spread)")
    assert first_poll_note(3, 300, False) is None            # soon enough
    assert first_poll_note(0, 300, True) is None             # an action in hand: at once


def test_the_interval_is_explained_when_a_bound_overrides_the_server() -> None:
    assert interval_note(2, 30, 86400, 300) == "the server asks 2s, polling every 30s ([server].poll_min)"
    assert interval_note(None, 600, 3600, 300) == "the server asks 5m00s, polling every 10m00s ([server].poll_min)"
    assert interval_note(7200, 30, 3600, 300) == "the server asks 2h00m, polling every 1h00m ([server].poll_max)"
    assert interval_note(60, 30, 3600, 300) is None


@pytest.mark.parametrize(("state", "ok", "code", "last", "change"), [
    ("starting", True, None, None, "connected"),
    ("connected", True, None, None, None),
    ("starting", False, "ddi-connect", None, "failing"),
    ("connected", False, "ddi-connect", None, "failing"),
    ("failing", False, "ddi-connect", "ddi-connect", None),          # the same failure again: said once
    ("failing", False, "ddi-auth", "ddi-connect", "failing"),        # another one: said
    ("failing", True, None, "ddi-auth", "back"),
])
def test_the_link_changes_state(state: str, ok: bool, code: str | None, last: str | None,
                                change: str | None) -> None:
    assert link_change(state, ok, code, last) == change


# --- the daemon and fwagent status ---------------------------------------------------------------


def serve(gateway: Gateway, url: str, extra: str = "") -> None:
    gateway.config_path.write_text(gateway.config_path.read_text() + f'\n[server]\nurl = "{url}"\n{extra}')


def status(gateway: Gateway, capsys: pytest.CaptureFixture[str]) -> dict:
    assert main(["status", "--json", "--config", str(gateway.config_path)]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def gateway(tmp_path: Path) -> Gateway:
    return make_gateway(tmp_path / "gw")


def test_a_first_poll_far_away_is_said_at_once(gateway: Gateway, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    with DdiServer() as server:
        serve(gateway, server.url, "startup_spread = 3600\n")
        with DaemonProcess(gateway.config_path, tmp_path / "daemon.log") as daemon:
            daemon.wait_for(lambda: "event=first-poll" in daemon.log(), "the first poll's wait")
            link = status(gateway, capsys)["link"]
        line = next(line for line in daemon.log().splitlines() if "event=first-poll" in line)
        assert "startup spread (up to 1h00m, [server].startup_spread)" in line
        assert (link["state"], link["last_poll"], link["service_running"]) == ("starting", None, True)
        assert link["server"] == server.url and link["controller_id"] == "gw-test"
        assert [path for method, path in server.requests if method == "GET"] == []     # not polled yet
    assert status(gateway, capsys)["link"] is None               # stopped: nothing to show


def test_polls_failing_and_back_are_said_once_each_and_status_shows_the_link(
        gateway: Gateway, broker: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with DdiServer(sleep="00:00:01") as server, FaultProxy(int(server.url.rsplit(":", 1)[1]),
                                                          [Pass(), Pass(), Status(503), Status(503),
                                                           Status(503)]) as proxy:
        serve(gateway, proxy.url, f'startup_spread = 0\npoll_min = 2\npoll_default = 2\n\n[mqtt]\nurl = "{broker}"\n')
        with DaemonProcess(gateway.config_path, tmp_path / "daemon.log") as daemon:
            daemon.wait_for(lambda: "event=link state=connected" in daemon.log(), "the first answer")
            link = status(gateway, capsys)["link"]
            assert (link["state"], link["last_result"], link["phase"], link["action"]) == (
                "connected", "no action", "idle", None)
            assert link["next_poll"] > link["last_poll"] and link["last_error"] is None
            daemon.wait_for(lambda: status(gateway, capsys)["link"]["mqtt"] == "connected", "MQTT in the status")
            daemon.wait_for(lambda: "event=link state=back" in daemon.log(), "the server back", timeout=60)
            assert main(["status", "--config", str(gateway.config_path)]) == 0
            text = capsys.readouterr().out
            failed = status(gateway, capsys)["link"]["last_error"]
        log = daemon.log()
    assert log.count("event=link state=connected") == 1
    assert log.count("event=link state=failing") == 1 and log.count("event=poll-failed") >= 2
    assert log.count("event=link state=back") == 1
    assert log.count("event=poll-interval") == 1        # the server asks 1 s, every 2 s: said once
    assert "the server asks 1s, polling every 2s ([server].poll_min)" in log
    assert failed["code"] == "ddi-http-503"
    assert f"server link:  connected: {proxy.url} as 'gw-test'" in text
    assert "  last error: ddi-http-503:" in text and "  action:     idle" in text and "  MQTT:       connected" in text
