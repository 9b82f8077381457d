"""The journal: what the agent must remember across crashes and power cuts.

One JSON document in ``state_dir``, replaced atomically (agent/files.py):
a power cut leaves either the old or the new record, never a mix. Every
record carries a schema version; an unknown version or an unreadable record is
an error, not a silent reset (it might hold an update in flight).

What it holds:
* ``update``: the update in flight (its persisted state, manifest, target, counters), or None;
* ``installed``: the anti-rollback counter, the manifest digest and version last committed;
* ``outbox``: final outcomes not yet delivered to a server (never lost, never sent twice).

``locked()`` keeps a second fwagent process from working on the same update.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agent.errors import FwagentError, UsageError
from agent.files import private_dir, write_atomic

SCHEMA = 1
FILENAME = "journal.json"
LOCKNAME = "lock"


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
        _check(record, self.path)
        return record

    def save(self, record: dict[str, Any]) -> None:
        try:
            private_dir(self.dir)
            write_atomic(self.path, json.dumps(record, indent=1, sort_keys=True).encode(), mode=0o600)
        except OSError as exc:
            raise JournalError(f"{self.path}: cannot write: {exc.strerror}") from None

    @contextmanager
    def locked(self, wait: float = 5.0) -> Iterator[None]:
        """Hold the journal's lock. Another process holding it is refused at once, not waited
        for; another thread of this process is waited for up to ``wait`` seconds (a flock is
        held per open file, so the threads of one process would refuse each other too)."""
        guard = _THREAD_LOCKS.setdefault(self.path, threading.Lock())
        if not guard.acquire(timeout=wait):
            raise UsageError("the update in progress holds the journal", code="busy")
        try:
            try:
                private_dir(self.dir)
                fd = os.open(self.dir / LOCKNAME, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                raise JournalError(f"{self.dir}: cannot take the lock: {exc.strerror}") from None
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise UsageError("another fwagent process is working on the update right now",
                                     code="busy") from None
                yield
            finally:
                os.close(fd)
        finally:
            guard.release()


_THREAD_LOCKS: dict[Path, threading.Lock] = {}


def _check(record: Any, path: Path) -> None:
    """The shape the agent relies on; anything else is named, never half-used."""
    if not isinstance(record, dict) or record.get("schema") != SCHEMA:
        found = record.get("schema") if isinstance(record, dict) else type(record).__name__
        raise JournalError(f"{path}: schema {found!r} is not {SCHEMA}")
    update, installed, outbox = record.get("update"), record.get("installed"), record.get("outbox")
    if (not {"update", "installed", "outbox"} <= record.keys() or not isinstance(outbox, list)
            or not (installed is None or isinstance(installed, dict))):
        raise JournalError(f"{path}: 'outbox' must be a list and 'installed' a table or null")
    if update is not None:
        from agent.update.flow import State
        if (not isinstance(update, dict) or not isinstance(update.get("id"), str)
                or update.get("state") not in {s.value for s in State}
                or not isinstance(update.get("restarts"), int)):
            raise JournalError(f"{path}: the update in flight is not readable (id, state, restarts)")
