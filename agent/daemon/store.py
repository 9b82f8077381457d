"""The server action in hand, persisted: one JSON file beside the journal.

Written only by the orchestrator thread, atomically (agent/files.py), before
it acts on a new phase. Kept apart from the journal, which the install owns
while it runs: neither ever overwrites the other's latest record.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agent.daemon.actions import Phase
from agent.errors import FwagentError, UsageError
from agent.files import private_dir, write_atomic

SCHEMA = 1
FILENAME = "ddi-action.json"
LOCKNAME = "daemon.lock"


class ActionStoreError(FwagentError, ValueError):
    code = "journal"


def idle_record() -> dict[str, Any]:
    return {"schema": SCHEMA, "phase": Phase.IDLE.value, "action": None}


class ActionStore:
    def __init__(self, state_dir: Path) -> None:
        self.dir = Path(state_dir)
        self.path = self.dir / FILENAME

    def load(self) -> dict[str, Any]:
        try:
            record = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return idle_record()
        except (OSError, ValueError) as exc:
            raise ActionStoreError(f"{self.path}: not readable: {exc}") from None
        phases = {p.value for p in Phase}
        if not isinstance(record, dict) or record.get("schema") != SCHEMA or record.get("phase") not in phases:
            raise ActionStoreError(f"{self.path}: not a server action record of schema {SCHEMA}")
        return record

    def save(self, record: dict[str, Any]) -> None:
        private_dir(self.dir)
        write_atomic(self.path, json.dumps(record, indent=1, sort_keys=True).encode(), mode=0o600)

    def reset(self) -> dict[str, Any]:
        record = idle_record()
        self.save(record)
        return record

    @contextmanager
    def owned(self) -> Iterator[None]:
        """Held for a daemon's lifetime: one daemon per state directory."""
        private_dir(self.dir)
        fd = os.open(self.dir / LOCKNAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UsageError(f"another fwagent daemon runs on {self.dir}", code="busy") from None
            yield
        finally:
            os.close(fd)
