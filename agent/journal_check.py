"""What a journal record must hold, field by field, and what of a damaged one can be kept.

Pure: no I/O. ``problem`` names the first field the agent could not rely on
(``update.digest: not a SHA-256 in hex, got 'xyz'``), or returns None.
``salvage`` builds a new record from the parts of a damaged one that still
check out: the anti-rollback record and the outcomes waiting to be reported.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.update.flow import State
from bootloader_bridge.bootchooser.base import SLOTS

SCHEMA = 1
THING_RESULTS = ("pending", "success", "failure", "offline", "skipped")
OUTCOME_RESULTS = ("success", "failure")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# From verify on, an update knows its manifest, slots and counter; from the switch on, its boot.
_BEFORE_VERIFIED = {State.VERIFY.value}
_SWITCHED = {s.value for s in (State.REBOOT, State.CHECK_BOOT, State.HEALTH, State.COMMIT)}

# (field, test, what it must be)
Rule = tuple[str, Callable[[Any], bool], str]


def empty_record() -> dict[str, Any]:
    return {"schema": SCHEMA, "update": None, "installed": None, "outbox": []}


def problem(record: Any) -> str | None:
    if not isinstance(record, dict) or record.get("schema") != SCHEMA:
        found = record.get("schema") if isinstance(record, dict) else type(record).__name__
        return f"schema {found!r} is not {SCHEMA}"
    for key in ("update", "installed", "outbox"):
        if key not in record:
            return f"{key} is missing"
    if not isinstance(record["outbox"], list):
        return f"outbox: not a list, got {_shown(record['outbox'])}"
    return (update_problem(record["update"]) or installed_problem(record["installed"])
            or next(filter(None, (outcome_problem(o, f"outbox[{i}]") for i, o in enumerate(record["outbox"]))),
                    None))


def update_problem(update: Any) -> str | None:
    """The update in flight: what every step reads, and what the steps after verify and after
    the switch read besides."""
    if update is None:
        return None
    if not isinstance(update, dict):
        return f"update: not a table, got {_shown(update)}"
    state = update.get("state")
    required: list[Rule] = [
        ("id", _name, "a non-empty string"),
        ("state", lambda v: v in {s.value for s in State}, "a step of the update flow"),
        ("restarts", _count, "an integer >= 0"),
        ("source", _str, "a string"),
    ]
    if state not in _BEFORE_VERIFIED:
        required += [("manifest", _base64, "base64 text"), ("target", _slot, "A or B"),
                     ("previous", _slot, "A or B"), ("sequence", _count, "an integer >= 0"),
                     ("digest", _sha256, "a SHA-256 in hex")]
    if state in _SWITCHED:
        required.append(("boot_id", _str, "a string"))
    optional: list[Rule] = [
        ("no_reboot", _bool, "true or false"), ("origin", _table_or_none, "a table or null"),
        ("links", _links, "a table of strings"), ("reason", _str, "a string"), ("code", _str, "a string"),
        ("version", _str_or_none, "a string or null"), ("boot_id", _str, "a string"),
        ("things_only", _bool, "true or false"), ("downloads", _downloads, "a table of download positions"),
        ("stream", _stream, "a bundle stream's position: validator and written bytes per slot"),
        ("things", lambda v: isinstance(v, dict), "a table"),
        ("delta", _table_or_none, "a table or null"),
        ("stage", _bool, "true or false"), ("released", _bool, "true or false"),
    ]
    found = _check(update, "update", required, optional)
    if found:
        return found
    if state not in _BEFORE_VERIFIED and update["target"] == update["previous"]:
        return f"update.target: the slot other than update.previous, got {_shown(update['target'])}"
    for name, thing in (update.get("things") or {}).items():
        where = f"update.things.{name}"
        if not isinstance(thing, dict):
            return f"{where}: not a table, got {_shown(thing)}"
        found = _check(thing, where, [("result", lambda v: v in THING_RESULTS, " or ".join(THING_RESULTS)),
                                      ("size", _count, "an integer >= 0"), ("digest", _sha256, "a SHA-256 in hex")],
                       [("tried", _bool, "true or false"), ("reason", _str, "a string"), ("code", _str, "a string")])
        if found:
            return found
    return None


def installed_problem(installed: Any) -> str | None:
    """The anti-rollback record: the last committed manifest, and the slot it went to."""
    if installed is None:
        return None
    if not isinstance(installed, dict):
        return f"installed: not a table, got {_shown(installed)}"
    return _check(installed, "installed",
                  [("sequence", _count, "an integer >= 0"), ("digest", _sha256, "a SHA-256 in hex"),
                   ("slot", _slot, "A or B")],
                  [("version", _str_or_none, "a string or null"), ("time", _number, "a number")])


def outcome_problem(outcome: Any, where: str) -> str | None:
    """A final outcome waiting in the outbox, as the reporters read it."""
    if not isinstance(outcome, dict):
        return f"{where}: not a table, got {_shown(outcome)}"
    found = _check(outcome, where,
                   [("id", _name, "a non-empty string"),
                    ("result", lambda v: v in OUTCOME_RESULTS, " or ".join(OUTCOME_RESULTS)),
                    ("state", _name, "a non-empty string")],
                   [("reason", _str, "a string"), ("code", _str, "a string"),
                    ("version", _str_or_none, "a string or null"), ("origin", _table_or_none, "a table or null"),
                    ("things", _table_or_none, "a table or null"), ("delta", _table_or_none, "a table or null")])
    if found:
        return found
    for name, thing in (outcome.get("things") or {}).items():
        if not isinstance(thing, dict) or not _name(thing.get("result")):
            return f"{where}.things.{name}: a table with a result, got {_shown(thing)}"
    return None


@dataclass(frozen=True)
class Salvage:
    record: dict[str, Any]
    installed_lost: bool        # the anti-rollback record could not be read: it is gone
    outbox_dropped: int         # outcomes that could not be read
    update_reported: bool       # the update in flight was dropped; its outcome is in the outbox


def salvage(text: bytes, booted: str, outcome_id: str) -> Salvage:
    """A new record from a damaged journal's ``text``: ``installed`` and the outcomes that check
    out. The update in flight is dropped (the booted slot is kept); if it can be told which
    update that was, a failure is reported for it under its id (else under ``outcome_id``)."""
    try:
        raw = json.loads(text)
    except ValueError:
        raw = None
    old = raw if isinstance(raw, dict) else {}
    record = empty_record()
    installed = old.get("installed")
    installed_lost = installed_problem(installed) is not None or "installed" not in old
    if not installed_lost:
        record["installed"] = installed
    entries = old.get("outbox") if isinstance(old.get("outbox"), list) else []
    record["outbox"] = [o for o in entries if outcome_problem(o, "") is None]
    dropped = len(entries) - len(record["outbox"])
    update = old.get("update")
    if update is not None:
        update = update if isinstance(update, dict) else {}
        record["outbox"].append({
            "id": update["id"] if _name(update.get("id")) else outcome_id, "result": "failure", "state": "failed",
            "code": "journal-damaged", "reason": f"the journal was damaged during the update; recovered by hand "
                                                 f"on slot {booted}",
            "version": update.get("version") if _str(update.get("version")) else None,
            "origin": update.get("origin") if isinstance(update.get("origin"), dict) else None})
    return Salvage(record, installed_lost, dropped, update is not None)


# --- the tests of a field --------------------------------------------------------------------


def _check(table: dict[str, Any], where: str, required: list[Rule], optional: list[Rule]) -> str | None:
    for key, test, what in required:
        if key not in table:
            return f"{where}.{key} is missing"
        if not test(table[key]):
            return f"{where}.{key}: {what}, got {_shown(table[key])}"
    for key, test, what in optional:
        if key in table and not test(table[key]):
            return f"{where}.{key}: {what}, got {_shown(table[key])}"
    return None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _str(value: Any) -> bool:
    return isinstance(value, str)


def _name(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _str_or_none(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _bool(value: Any) -> bool:
    return isinstance(value, bool)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _slot(value: Any) -> bool:
    return value in SLOTS


def _sha256(value: Any) -> bool:
    return isinstance(value, str) and _SHA256_HEX.fullmatch(value) is not None


def _base64(value: Any) -> bool:
    try:
        return isinstance(value, str) and bool(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError):
        return False


def _table_or_none(value: Any) -> bool:
    return value is None or isinstance(value, dict)


def _links(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def _stream(value: Any) -> bool:
    """How far a bundle streamed from a URL is in its slots (bundle_source.StreamProgress)."""
    return (isinstance(value, dict) and _str_or_none(value.get("validator"))
            and isinstance(value.get("written"), dict)
            and all(_str(k) and _count(n) for k, n in value["written"].items()))


def _downloads(value: Any) -> bool:
    """Where each slot's download stands (the downloader's Resume): url, offset, validator."""
    return isinstance(value, dict) and all(
        isinstance(d, dict) and _str(d.get("url")) and _count(d.get("offset")) and _str_or_none(d.get("validator"))
        for d in value.values())
