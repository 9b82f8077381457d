"""The journal: every field the agent relies on is checked as it is read; a damaged journal is
shown by `fwagent status` and recovered by `fwagent rollback`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.cli import main
from agent.errors import FwagentError
from install_bench import Gateway, make_gateway

Record = dict[str, Any]


@pytest.fixture
def gateway(tmp_path: Path) -> Gateway:
    """2.0.0 committed on slot B; 2.0.1 switched to slot A, waiting for its reboot."""
    gateway = make_gateway(tmp_path)
    assert gateway.installer().install(str(gateway.bundle("u2", sequence=2))).result == "success"
    outcome = gateway.installer().install(str(gateway.bundle("u3", sequence=3, seed=3, version="2.0.1")),
                                          no_reboot=True)
    assert (outcome.result, outcome.state) == ("pending", "reboot")
    return gateway


def journal_path(gateway: Gateway) -> Path:
    return gateway.root / "state/journal.json"


def record(gateway: Gateway) -> Record:
    return json.loads(journal_path(gateway).read_text())


def damage(gateway: Gateway, change: Callable[[Record], Any]) -> None:
    data = record(gateway)
    change(data)
    journal_path(gateway).write_text(json.dumps(data))


def config(gateway: Gateway) -> list[str]:
    return ["--config", str(gateway.config_path)]


def setter(where: str, key: str, value: Any) -> Callable[[Record], Any]:
    def change(data: Record) -> None:
        table = data
        for part in where.split("."):
            table = table[int(part)] if isinstance(table, list) else table[part]
        if value is DELETE:
            del table[key]
        else:
            table[key] = value
    return change


DELETE = object()
DAMAGES = [
    ("update", "manifest", DELETE, "update.manifest is missing"),
    ("update", "manifest", "not base64!", "update.manifest: base64 text, got 'not base64!'"),
    ("update", "digest", "xyz", "update.digest: a SHA-256 in hex, got 'xyz'"),
    ("update", "sequence", "3", "update.sequence: an integer >= 0, got '3'"),
    ("update", "target", "C", "update.target: A or B, got 'C'"),
    ("update", "target", "B", "update.target: the slot other than update.previous, got 'B'"),
    ("update", "boot_id", DELETE, "update.boot_id is missing"),
    ("update", "restarts", True, "update.restarts: an integer >= 0, got True"),
    ("update", "state", "flashing", "update.state: a step of the update flow, got 'flashing'"),
    ("update", "links", {"#u3.img": 7}, "update.links: a table of strings, got {'#u3.img': 7}"),
    ("update", "downloads", {"rootfs.A": {"offset": 1}}, "update.downloads: a table of download positions"),
    ("installed", "sequence", "2", "installed.sequence: an integer >= 0, got '2'"),
    ("installed", "digest", "ZZ", "installed.digest: a SHA-256 in hex, got 'ZZ'"),
    ("installed", "slot", None, "installed.slot: A or B, got None"),
    ("installed", "version", 2, "installed.version: a string or null, got 2"),
    ("outbox.0", "id", DELETE, "outbox[0].id is missing"),
    ("outbox.0", "result", "pending", "outbox[0].result: success or failure, got 'pending'"),
    ("outbox.0", "origin", "ddi", "outbox[0].origin: a table or null, got 'ddi'"),
]


@pytest.mark.parametrize("where, key, value, message", DAMAGES, ids=[f"{w}.{k}={v!r}" for w, k, v, _ in DAMAGES])
def test_a_damaged_field_is_named_in_one_line(gateway: Gateway, capsys, where: str, key: str, value: Any,
                                              message: str) -> None:
    damage(gateway, setter(where, key, value))
    for command in (["commit"], ["run", "--once"], ["install", str(gateway.root / "u3.fwb")]):
        assert main([*command, *config(gateway)]) in (1, 2)
        err = capsys.readouterr().err
        assert err.startswith(f"error: journal: {journal_path(gateway)}: {message}"), err
        assert err.endswith("; run 'fwagent rollback' to recover\n") and len(err.splitlines()) == 1
    with pytest.raises(FwagentError) as checked:       # as the daemon checks a downloaded update
        gateway.installer().check_source(str(gateway.root / "u3.fwb"))
    assert checked.value.code == "journal"


@pytest.mark.parametrize("text, message", [
    (b"{", "not a journal record (Expecting property name enclosed in double quotes at 1)"),
    (b'{"schema": 1, "update": null, "outbox": []}', "installed is missing"),
    (b'{"schema": 1, "update": null, "installed": null, "outbox": {}}', "outbox: not a list, got {}"),
    (b'{"schema": 2}', "schema 2 is not 1"),
    (b'{"schema": 1, "update": null, "installed": null, "outbox": [3]}', "outbox[0]: not a table, got 3"),
    (b'\xff\xfe\x00', "not a journal record"),
])
def test_a_damaged_record_is_named_in_one_line(gateway: Gateway, capsys, text: bytes, message: str) -> None:
    journal_path(gateway).write_bytes(text)
    assert main(["commit", *config(gateway)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: journal: {journal_path(gateway)}: {message}") and len(err.splitlines()) == 1


def test_status_shows_what_it_can_and_the_way_out(gateway: Gateway, capsys) -> None:
    damage(gateway, setter("update", "digest", "xyz"))
    assert main(["status", *config(gateway)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == ["booted slot:  B", "primary slot: A"]
    assert f"journal:      damaged: {journal_path(gateway)}: update.digest: a SHA-256 in hex, got 'xyz'; run " \
           "'fwagent rollback' to recover" in out
    assert [line for line in out if line.startswith("bootloader:   ")] and not [l for l in out if l.startswith("update:")]
    assert out[-1].startswith("server link:  unknown: the service is not running")
    assert main(["status", "--json", *config(gateway)]) == 1
    view = json.loads(capsys.readouterr().out)
    assert view["journal_damaged"].startswith(f"{journal_path(gateway)}: update.digest: ")
    assert (view["booted"], view["primary"], view["update"], view["installed"], view["outbox"]) == (
        "B", "A", None, None, None)


def test_rollback_recovers_on_the_booted_slot_and_keeps_what_checks_out(gateway: Gateway, capsys) -> None:
    before = record(gateway)
    damage(gateway, setter("update", "digest", "xyz"))
    damaged = journal_path(gateway).read_bytes()
    assert main(["rollback", *config(gateway)]) == 0
    out = capsys.readouterr().out.splitlines()
    kept = list((gateway.root / "state").glob("journal.json.damaged-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == damaged
    assert out == ["journal: damaged: update.digest: a SHA-256 in hex, got 'xyz'",
                   f"kept as {kept[0]}; a new journal holds what still checks out",
                   "slot B is primary and good",
                   "the update in flight was abandoned; it is reported as failed (journal-damaged)"]
    boot = gateway.bootloader()
    assert boot.get_primary() == "B" and boot.get_state("B")
    after = record(gateway)
    assert after["update"] is None and after["installed"] == before["installed"]
    assert after["outbox"][:-1] == before["outbox"]
    assert {k: after["outbox"][-1][k] for k in ("id", "result", "state", "code", "version")} == {
        "id": before["update"]["id"], "result": "failure", "state": "failed", "code": "journal-damaged",
        "version": "2.0.1"}
    assert main(["status", *config(gateway)]) == 0
    capsys.readouterr()
    gateway.power_cycle()                        # the bootloader now boots B, as it was told
    assert gateway.booted() == "B"
    assert gateway.installer().install(str(gateway.root / "u3.fwb")).result == "success"
    assert gateway.booted() == "A"


def test_rollback_says_when_the_anti_rollback_record_is_lost(gateway: Gateway, capsys) -> None:
    before = record(gateway)
    damage(gateway, setter("installed", "sequence", "2"))
    assert main(["rollback", "--json", *config(gateway)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["event"] == "recovered" and report["damaged"] == "installed.sequence: an integer >= 0, got '2'"
    assert (report["installed_lost"], report["update_reported"], report["outbox_dropped"]) == (True, True, 0)
    after = record(gateway)
    assert after["installed"] is None and after["outbox"][:-1] == before["outbox"]
    damage(gateway, setter("outbox.0", "id", 5))
    assert main(["rollback", *config(gateway)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "1 unreadable unsent report(s) dropped" and len(record(gateway)["outbox"]) == 1


def test_rollback_recovers_from_a_journal_that_is_not_json(gateway: Gateway, capsys) -> None:
    journal_path(gateway).write_bytes(b"\0" * 100)
    assert main(["rollback", *config(gateway)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "the anti-rollback record was lost: any signed update is accepted until the next one is committed" in out
    assert record(gateway) == {"schema": 1, "update": None, "installed": None, "outbox": []}
    assert gateway.bootloader().get_primary() == "B"


# --- the update in flight: one reader, one writer (agent/install/update_record.py) -------------

SHA = "ab" * 32
MANIFEST = "bWFuaWZlc3Q="
FULL_UPDATE: Record = {       # every field a journal in the field may hold, each set
    "id": "d4b33c09aa", "state": "things", "source": "https://updates.example/u3.fwb", "restarts": 2,
    "started": 1764000000.5, "no_reboot": False, "origin": {"ddi_action": 12}, "links": {"#u3.img": "https://x/u3"},
    "stage": True, "released": True, "manifest": MANIFEST, "target": "A", "previous": "B", "sequence": 3,
    "digest": SHA, "version": "2.0.1", "things_only": False, "boot_id": "boot-1",
    "things": {"mcu": {"result": "failure", "size": 10, "digest": SHA, "tried": True, "reason": "r", "code": "c"},
               "m2": {"result": "success", "size": 4, "digest": SHA, "verified": True, "seconds": 1.5}},
    "downloads": {"rootfs.A": {"url": "https://x/r", "offset": 4096, "validator": None}},
    "stream": {"validator": "\"etag\"", "written": {"rootfs.A": 8192}},
    "delta": {"rootfs.A": {"method": "full", "size": 10}}, "reason": "Thing mcu was not updated",
    "code": "thing-failed",
}
MINIMAL_UPDATE: Record = {"id": "d4b33c09aa", "state": "verify", "restarts": 0, "source": "/tmp/u3.fwb"}
NULLS_UPDATE: Record = {**MINIMAL_UPDATE, "origin": None, "version": None, "delta": None, "links": {},
                        "no_reboot": False, "stage": False, "future": {"kept": 1}}


@pytest.mark.parametrize("update", [FULL_UPDATE, MINIMAL_UPDATE, NULLS_UPDATE], ids=["full", "minimal", "nulls"])
def test_an_old_update_record_round_trips_unchanged(tmp_path: Path, update: Record) -> None:
    """Read and written back, a journal's update is the same table: no field renamed, added or
    dropped (an absent one stays absent, a null one null, an unknown one kept), byte for byte."""
    from agent.install.update_record import UpdateRecord
    from agent.journal import Journal
    from agent.journal_check import empty_record, problem

    on_disk = {**empty_record(), "update": update}
    assert problem(on_disk) is None
    journal = Journal(tmp_path)
    journal.save(on_disk)
    before = journal.read()
    loaded = journal.load()
    typed = UpdateRecord.of(loaded)
    assert typed is not None
    assert typed.as_dict() == update
    journal.save({**loaded, "update": typed.as_dict()})
    assert journal.read() == before


def test_the_update_the_agent_writes_reads_back_the_same(gateway: Gateway) -> None:
    from agent.install.update_record import UpdateRecord

    update = record(gateway)["update"]
    typed = UpdateRecord.from_dict(update)
    assert (typed.state.value, typed.target, typed.previous, typed.version) == ("reboot", "A", "B", "2.0.1")
    assert typed.as_dict() == update
