"""A record the agent keeps across crashes and power cuts: one JSON document in the state
directory, checked as it is read, replaced atomically, owned by one process at a time.

The journal (agent/journal.py) and the daemon's server action (agent/daemon/store.py) are
both kept this way; each gives its file name, how to check a record, and its empty record.

* ``load()``: a missing file is the empty record; anything else that is not a record this
  agent can use (not UTF-8 JSON, the check's objection) raises the owner's error naming the
  file and the problem. Never a silent reset: the file may hold an update in flight.
* ``save()``: temp file, fsync, rename, fsync of the directory (agent/files.py): a power
  cut leaves the old or the new record; the file is 0600 in a 0700 directory.
* ``exclusive(lockname, busy)``: an flock on a lock file beside it, refused at once (not
  waited for) when another process holds it.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agent.errors import FwagentError, UsageError
from agent.files import private_dir, write_atomic


class StateFile:
    def __init__(self, path: Path, what: str, *, check: Callable[[Any], str | None],
                 empty: Callable[[], dict[str, Any]], damaged: Callable[[Path, str], FwagentError],
                 failed: Callable[[str], FwagentError]) -> None:
        """``what``: the record's name in messages ("journal record"); ``check(record)``: what is
        wrong with a decoded record, or None; ``damaged(path, problem)``: the owner's error for a
        record it cannot use; ``failed(detail)``: its error for a file it cannot read or write."""
        self.path, self.what = path, what
        self.check, self.empty, self.damaged, self.failed = check, empty, damaged, failed

    def load(self) -> dict[str, Any]:
        data = self.read()
        if data is None:
            return self.empty()
        try:
            record = json.loads(data)
        except json.JSONDecodeError as exc:
            raise self.damaged(self.path, f"not a {self.what} ({exc.msg} at {exc.pos})") from None
        except ValueError:                # not UTF-8 (nor UTF-16/32) text
            raise self.damaged(self.path, f"not a {self.what} (not UTF-8 text)") from None
        found = self.check(record)
        if found:
            raise self.damaged(self.path, found)
        return record

    def read(self) -> bytes | None:
        """The record's bytes as they are on disk; None when there is none yet."""
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self.failed(f"{self.path}: cannot read: {exc.strerror}") from None

    def save(self, record: dict[str, Any]) -> None:
        self.write_bytes(self.path, json.dumps(record, indent=1, sort_keys=True).encode())

    def write_bytes(self, path: Path, data: bytes) -> None:
        """``data`` atomically into ``path`` (the record's file, or a copy beside it)."""
        try:
            private_dir(path.parent)
            write_atomic(path, data, mode=0o600)
        except OSError as exc:
            raise self.failed(f"{path}: cannot write: {exc.strerror}") from None

    @contextmanager
    def exclusive(self, lockname: str, busy: str) -> Iterator[None]:
        """Held while it runs: another process holding the same lock is refused at once, with
        UsageError ``busy`` (the message ``busy``)."""
        directory = self.path.parent
        try:
            private_dir(directory)
            fd = os.open(directory / lockname, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise self.failed(f"{directory}: cannot take the lock: {exc.strerror}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UsageError(busy, code="busy") from None
            yield
        finally:
            os.close(fd)
