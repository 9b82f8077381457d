"""The journal: what the agent must remember across crashes and power cuts.

One JSON document in ``state_dir``, replaced atomically: written to a temp
file, fsynced, renamed over the old one, and the directory fsynced, so that a
power cut leaves either the old or the new record, never a mix. Every record
carries a schema version; an unknown version or unreadable record is an error,
not a silent reset (it might hold an update in flight).

What it holds:
* ``update``: the update in flight (its persisted state, manifest, target, counters), or None;
* ``installed``: the anti-rollback counter, the manifest digest and version last committed;
* ``outbox``: final outcomes not yet delivered to a server (never lost, never sent twice).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from agent.errors import FwagentError

SCHEMA = 1
FILENAME = "journal.json"


class JournalError(FwagentError, ValueError):
    code = "journal"


def empty_record() -> dict[str, Any]:
    return {"schema": SCHEMA, "update": None, "installed": None, "outbox": []}


class Journal:
    def __init__(self, state_dir: Path) -> None:
        self.dir = Path(state_dir)
        self.path = self.dir / FILENAME

    def load(self) -> dict[str, Any]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return empty_record()
        except OSError as exc:
            raise JournalError(f"{self.path}: cannot read: {exc.strerror}") from None
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            raise JournalError(f"{self.path}: not a journal record ({exc.msg} at {exc.pos})") from None
        if not isinstance(record, dict) or record.get("schema") != SCHEMA:
            raise JournalError(f"{self.path}: schema {record.get('schema') if isinstance(record, dict) else '?'} "
                               f"is not {SCHEMA}")
        return record

    def save(self, record: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{FILENAME}.tmp")
        data = json.dumps(record, indent=1, sort_keys=True).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dir_fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
