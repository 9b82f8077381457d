"""SHA-256 and cpio checksum of a member, computed together, chunk by chunk.

hashlib releases the GIL while it hashes a large chunk; the byte sum of the
"crc" format holds it. So the sum of each large chunk runs in a worker thread
while the calling thread hashes the same (unchanging) bytes: with two cores,
checking both takes about as long as SHA-256 alone.
"""

from __future__ import annotations

import functools
import hashlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from agent.bundle.cpio import ByteSum

PARALLEL_MIN = 64 * 1024   # below this, a hand-off to the worker costs more than it saves


@functools.cache
def _worker() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="bundle-checksum")


class MemberDigest:
    """Feed it the start of one reused buffer at a time; ``crc`` also sums the bytes."""

    def __init__(self, crc: bool) -> None:
        self._sha = hashlib.sha256()
        self._crc = crc
        self._summer: ByteSum | None = None
        self._check = 0

    def update(self, buffer: Any, count: int) -> None:
        """Account for ``buffer[:count]``; the buffer must not change until this returns."""
        view = memoryview(buffer).cast("B")[:count]
        if not self._crc:
            self._sha.update(view)
            return
        if self._summer is None or self._summer.buffer is not buffer:
            self._summer = ByteSum(buffer)
        if count < PARALLEL_MIN:
            self._sha.update(view)
            self._check += self._summer.sum(count)
            return
        pending = _worker().submit(self._summer.sum, count)
        self._sha.update(view)
        self._check += pending.result()

    def sha256(self) -> bytes:
        return self._sha.digest()

    @property
    def check(self) -> int:
        """The "crc" checksum so far: the byte sum modulo 2**32 (0 when not asked for)."""
        return self._check & 0xFFFFFFFF
