"""The server action in hand, persisted: one JSON file beside the journal, kept as
agent/state_file.py keeps a record; read and written as an ActionRecord (agent/daemon/record.py).

Written only by the orchestrator thread, before it acts on a new phase. Kept apart from the
journal, which the install owns while it runs: neither ever overwrites the other's latest
record.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agent.daemon.actions import Phase
from agent.daemon.record import IDLE, SCHEMA, ActionRecord
from agent.errors import FwagentError
from agent.state_file import StateFile

FILENAME = "ddi-action.json"
LOCKNAME = "daemon.lock"


class ActionStoreError(FwagentError, ValueError):
    code = "journal"


def idle_record() -> dict[str, Any]:
    return IDLE.as_dict()


def problem(record: Any) -> str | None:
    """What keeps ``record`` from being a server action record this agent reads, or None."""
    phases = {p.value for p in Phase}
    if not isinstance(record, dict) or record.get("schema") != SCHEMA or record.get("phase") not in phases:
        return f"not a server action record of schema {SCHEMA}"
    return None


class ActionStore:
    def __init__(self, state_dir: Path) -> None:
        self.dir = Path(state_dir)
        self.path = self.dir / FILENAME
        self.file = StateFile(self.path, "server action record", check=problem, empty=idle_record,
                              damaged=lambda path, found: ActionStoreError(f"{path}: {found}"),
                              failed=ActionStoreError)

    def load(self) -> ActionRecord:
        return ActionRecord.from_dict(self.file.load())

    def save(self, record: ActionRecord) -> None:
        self.file.save(record.as_dict())

    def reset(self) -> ActionRecord:
        self.save(IDLE)
        return IDLE

    @contextmanager
    def owned(self) -> Iterator[None]:
        """Held for a daemon's lifetime: one daemon per state directory."""
        with self.file.exclusive(LOCKNAME, f"another fwagent daemon runs on {self.dir}"):
            yield
