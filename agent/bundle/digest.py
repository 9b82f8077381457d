"""SHA-256 and cpio checksum of a member, computed together, chunk by chunk.

SHA-256 releases the GIL while it hashes a large chunk; the byte sum of the
"crc" format holds it. So the sum of each large chunk runs in a worker thread
while the calling thread hashes the same (unchanging) bytes: with two cores,
checking both takes about as long as SHA-256 alone.

A "newc" member has no sum: its chunks are hashed on the worker instead, behind
the caller, which meanwhile reads the next chunk into another buffer (and a slot
writer writes this one). Chunks are hashed one at a time, in order; a buffer is
not refilled before its hash is done (``before_fill``).
"""

from __future__ import annotations

import functools
import queue
import threading
from collections.abc import Callable
from typing import Any

from agent.bundle.cpio import ByteSum
from agent.sha256 import sha256

PARALLEL_MIN = 64 * 1024   # below this, a hand-off to the worker costs more than it saves


class _Job:
    """One call run on the worker; ``result`` waits for it (its exception raised here)."""

    __slots__ = ("call", "done", "value", "error")

    def __init__(self, call: Callable[[], Any]) -> None:
        self.call, self.done = call, threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None

    def result(self) -> Any:
        self.done.wait()
        if self.error is not None:
            raise self.error
        return self.value


class _Worker:
    """One daemon thread running jobs in order (concurrent.futures would cost an install about
    1 MiB of imports, logging included, for this one thread)."""

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        threading.Thread(target=self._run, name="bundle-digest", daemon=True).start()

    def submit(self, function: Callable[..., Any], *args: Any) -> _Job:
        job = _Job(functools.partial(function, *args))
        self.jobs.put(job)
        return job

    def _run(self) -> None:
        while True:
            job = self.jobs.get()
            try:
                job.value = job.call()
            except BaseException as exc:    # handed to the caller of result()
                job.error = exc
            job.done.set()


@functools.cache
def _worker() -> _Worker:
    return _Worker()


class MemberDigest:
    """Feed it the start of a buffer at a time, from a few reused ones; ``crc`` also sums the bytes."""

    def __init__(self, crc: bool) -> None:
        self._sha = sha256()
        self._crc = crc
        self._summers: dict[int, ByteSum] = {}    # by id of the buffer (which each one keeps alive)
        self._check = 0
        self._pending: tuple[_Job, Any] | None = None    # the hash in flight, and its buffer

    def before_fill(self, buffer: Any) -> None:
        """``buffer`` is about to be overwritten: its hash, if in flight, is finished first."""
        if self._pending is not None and self._pending[1] is buffer:
            self._settle()

    def update(self, buffer: Any, count: int) -> None:
        """Account for ``buffer[:count]``; the buffer must not change until ``before_fill`` says so."""
        view = memoryview(buffer).cast("B")[:count]
        self._settle()
        if not self._crc:
            if count < PARALLEL_MIN:
                self._sha.update(view)
            else:
                self._pending = (_worker().submit(self._sha.update, view), buffer)
            return
        summer = self._summers.get(id(buffer))
        if summer is None or summer.buffer is not buffer:
            if len(self._summers) >= 4:
                self._summers.clear()
            summer = self._summers[id(buffer)] = ByteSum(buffer)
        if count < PARALLEL_MIN:
            self._sha.update(view)
            self._check += summer.sum(count)
            return
        pending = _worker().submit(summer.sum, count)
        self._sha.update(view)
        self._check += pending.result()

    def sha256(self) -> bytes:
        self._settle()
        return self._sha.digest()

    @property
    def check(self) -> int:
        """The "crc" checksum so far: the byte sum modulo 2**32 (0 when not asked for)."""
        return self._check & 0xFFFFFFFF

    def _settle(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending[0].result()
