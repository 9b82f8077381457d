"""The journal: what the agent must remember across crashes and power cuts.

One JSON document in ``state_dir``, kept as agent/state_file.py keeps a record:
replaced atomically (a power cut leaves either the old or the new record, never
a mix). Every record carries a schema version; an unknown version or an
unreadable record is an error, not a silent reset (it might hold an update in
flight).

What it holds:
* ``update``: the update in flight (its persisted state, manifest, target, counters), or None;
  read and written only through ``UpdateRecord`` (agent/install/update_record.py);
* ``installed``: the anti-rollback counter, the manifest digest and version last committed;
* ``outbox``: final outcomes not yet delivered to a server (never lost, never sent twice).

``locked()`` keeps a second fwagent process from working on the same update.

Every field the agent relies on is checked as the record is read
(agent/journal_check.py); a damaged record is refused with the field named,
and ``fwagent rollback`` recovers from it (``replace_damaged``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agent.errors import FwagentError, UsageError
from agent.journal_check import empty_record, problem
from agent.state_file import StateFile

FILENAME = "journal.json"
LOCKNAME = "lock"


class JournalError(FwagentError, ValueError):
    code = "journal"


class JournalDamagedError(JournalError):
    """The journal holds what is not a record this agent can use; ``problem`` says where."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}; run 'fwagent rollback' to recover")
        self.problem = problem


class Journal:
    def __init__(self, state_dir: Path) -> None:
        self.dir = Path(state_dir)
        self.path = self.dir / FILENAME
        self.file = StateFile(self.path, "journal record", check=problem, empty=empty_record,
                              damaged=JournalDamagedError, failed=JournalError)

    def load(self) -> dict[str, Any]:
        return self.file.load()

    def read(self) -> bytes | None:
        """The record's bytes as they are on disk; None if there is no journal yet."""
        return self.file.read()

    def replace_damaged(self, text: bytes, record: dict[str, Any]) -> Path:
        """Keep the damaged ``text`` beside the journal, then make ``record`` the journal.
        A power cut between the two leaves the damaged journal in place: recovering again works."""
        kept = self.path.with_name(f"{FILENAME}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
        self.file.write_bytes(kept, text)
        self.save(record)
        return kept

    def save(self, record: dict[str, Any]) -> None:
        self.file.save(record)

    @contextmanager
    def locked(self, wait: float = 5.0) -> Iterator[None]:
        """Hold the journal's lock. Another process holding it is refused at once, not waited
        for; another thread of this process is waited for up to ``wait`` seconds (a flock is
        held per open file, so the threads of one process would refuse each other too)."""
        guard = _THREAD_LOCKS.setdefault(self.path, threading.Lock())
        if not guard.acquire(timeout=wait):
            raise UsageError("the update in progress holds the journal", code="busy")
        try:
            with self.file.exclusive(LOCKNAME, "another fwagent process is working on the update right now"):
                yield
        finally:
            guard.release()


_THREAD_LOCKS: dict[Path, threading.Lock] = {}
