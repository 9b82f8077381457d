"""Final outcomes reach the DDI server once, whatever happens between sending and forgetting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.ddi.client import DdiClient
from agent.ddi.outbox import deliver
from agent.journal import Journal
from agent.demo.ddi_server import DdiServer
from install_bench import Gateway, make_gateway


@pytest.fixture
def gateway(tmp_path: Path) -> Gateway:
    return make_gateway(tmp_path)


def client(server: DdiServer) -> DdiClient:
    return DdiClient.for_server(server.url, "DEFAULT", "gw-1", timeout=(2, 5))


def install_for(server: DdiServer, gateway: Gateway, *, health_ok: bool = True) -> int:
    action = server.create_deployment("gw-1", [{"part": "os", "name": "rootfs", "version": "2.0.0",
                                               "artifacts": {"u2.fwb": b"x"}}])
    if not health_ok:
        text = gateway.config_path.read_text().replace('commands = [["true"]]', 'commands = [["false"]]')
        gateway.config_path.write_text(text)
    gateway.installer().install(str(gateway.bundle("u2", sequence=2)), origin={"ddi_action": str(action.id)})
    return action.id


def outbox(gateway: Gateway) -> list:
    return json.loads((gateway.root / "state/journal.json").read_text())["outbox"]


def test_a_committed_update_is_reported_once(gateway: Gateway) -> None:
    with DdiServer() as server:
        action = install_for(server, gateway)
        journal = Journal(gateway.root / "state")
        assert deliver(journal, client(server)) == 1 and outbox(gateway) == []
        assert server.actions[action].result == "success"
        closed = [s for s in server.statuses(action) if s.get("execution") == "closed"]
        assert len(closed) == 1 and "version 2.0.0" in closed[0]["details"][0]
        assert deliver(journal, client(server)) == 0


def test_a_rolled_back_update_is_reported_as_failure_with_its_reason(gateway: Gateway) -> None:
    with DdiServer() as server:
        action = install_for(server, gateway, health_ok=False)
        deliver(Journal(gateway.root / "state"), client(server))
        status = [s for s in server.statuses(action) if s.get("execution") == "closed"][0]
        assert status["result"]["finished"] == "failure" and status["details"][1].startswith("unhealthy: ")
        assert server.actions[action].result == "failure"


def test_a_crash_after_sending_sends_again_and_the_server_closes_it_once(gateway: Gateway,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    with DdiServer() as server:
        action = install_for(server, gateway)
        journal = Journal(gateway.root / "state")

        def power_cut(self, record):  # type: ignore[no-untyped-def]
            raise SystemExit("power cut after sending, before forgetting")

        monkeypatch.setattr(Journal, "save", power_cut)
        with pytest.raises(SystemExit):
            deliver(journal, client(server))
        monkeypatch.undo()
        assert len(outbox(gateway)) == 1                        # still there: not known to be delivered
        assert deliver(journal, client(server)) == 1            # sent again: the server says 410, it is done
        assert outbox(gateway) == []
        closed = [s for s in server.statuses(action) if s.get("execution") == "closed"]
        assert len(closed) == 1                                 # the server recorded the result once


def test_an_unreachable_server_keeps_the_outcome(gateway: Gateway) -> None:
    with DdiServer() as server:
        install_for(server, gateway)
    down = DdiClient.for_server("http://127.0.0.1:9", "DEFAULT", "gw-1", timeout=(1, 1))
    assert deliver(Journal(gateway.root / "state"), down) == 0 and len(outbox(gateway)) == 1


def test_outcomes_no_server_asked_for_stay_for_other_reporters(gateway: Gateway) -> None:
    gateway.installer().install(str(gateway.bundle("u2", sequence=2)))
    with DdiServer() as server:
        assert deliver(Journal(gateway.root / "state"), client(server)) == 0
    assert len(outbox(gateway)) == 1


def test_an_outcome_refused_for_good_is_dropped_with_a_report_and_the_rest_still_goes(gateway: Gateway) -> None:
    """hawkBit answers 405 to a cancel confirmation for an action no longer being cancelled: that
    outcome can never be delivered, and must not hold back the outcomes after it."""
    with DdiServer() as server:
        journal = Journal(gateway.root / "state")
        record = journal.load()
        record["outbox"].append({"id": "x", "result": "failure", "state": "failed", "code": "cancelled",
                                 "reason": "cancelled by the server", "origin": {"ddi_action": "1"}})
        journal.save(record)
        server.create_deployment("gw-1", [{"part": "os", "name": "rootfs", "version": "1", "artifacts": {"a": b"a"}}])
        action = install_for(server, gateway)
        refused: list = []
        assert deliver(journal, client(server), lambda outcome, err: refused.append((outcome["id"], err.code))) == 2
        assert refused == [("x", "ddi-http-405")]
        assert outbox(gateway) == [] and server.actions[action].result == "success"


def test_an_outcome_whose_action_id_is_none_is_dropped_and_the_rest_still_goes(gateway: Gateway) -> None:
    """A journal of an earlier version may hold an id that is no action id: nothing is sent for it,
    and it does not hold back the outcomes after it."""
    with DdiServer() as server:
        journal = Journal(gateway.root / "state")
        record = journal.load()
        record["outbox"].append({"id": "x", "result": "failure", "state": "failed", "code": "io", "reason": "r",
                                 "origin": {"ddi_action": "../../x"}})
        journal.save(record)
        action = install_for(server, gateway)
        refused: list = []
        assert deliver(journal, client(server), lambda outcome, err: refused.append((outcome["id"], err.code))) == 2
        assert refused == [("x", "ddi-action-id")] and not any("/x/feedback" in path for _m, path in server.requests)
        assert outbox(gateway) == [] and server.actions[action].result == "success"
