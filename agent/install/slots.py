"""A/B slots: which one is booted, which one to write, and writing it.

A slot device is a block device or a regular file. Slots of every class are
switched together as group A or group B: updating while group A runs writes
the B device of each class. The booted group comes from the kernel command
line (``fwagent.slot=A``), never guessed.
"""

from __future__ import annotations

import os
import queue
import stat
import threading
from dataclasses import dataclass
from collections.abc import Iterator
from pathlib import Path

from agent.errors import FwagentError
from agent.sha256 import sha256
from bootloader_bridge.bootchooser.base import SLOTS

CHUNK = 1 << 20
# Per write behind a bundle's reading: large enough that the calls cost nothing next to the copying
# and hashing, small enough that the two buffers in flight keep an install's memory near 30 MiB.
WRITE_SIZE = 512 << 10
MAX_BUFFER = 4 << 20
FLUSH_BYTES = 8 << 20      # written behind: handed to the device this far apart (flush_behind)
OTHER = dict(zip(SLOTS, reversed(SLOTS)))
SLOT_INDEX = {name: index for index, name in enumerate(SLOTS)}     # SUIT component-slot numbers


class SlotError(FwagentError, OSError):
    code = "slot"


@dataclass(frozen=True)
class Slot:
    slot_class: str
    name: str          # "A" | "B"
    device: Path

    @property
    def label(self) -> str:
        return f"{self.slot_class}.{self.name}"


def slot_size(device: Path) -> int:
    """Size in bytes of a block device or a regular file."""
    try:
        with open(device, "rb") as stream:
            return stream.seek(0, os.SEEK_END)
    except OSError as exc:
        raise SlotError(f"{device}: cannot open slot device: {exc.strerror}", code="slot-missing") from None


def check_fits(slot: Slot, size: int) -> int:
    """The slot's capacity, or SlotError slot-too-small."""
    capacity = slot_size(slot.device)
    if size > capacity:
        raise SlotError(f"{slot.label} holds {size_text(capacity)}, image is {size_text(size)}",
                        code="slot-too-small")
    return capacity


def device_identity(device: Path) -> tuple[int, int]:
    """What a path is, whatever its name: (0, rdev) for a block device, (dev, inode) for a file."""
    try:
        st = os.stat(device)
    except OSError as exc:
        raise SlotError(f"{device}: cannot open slot device: {exc.strerror}", code="slot-missing") from None
    return (0, st.st_rdev) if stat.S_ISBLK(st.st_mode) else (st.st_dev, st.st_ino)


class SlotSink:
    """A slot written from an offset: the device must exist and is never created or truncated
    (a regular file keeps its size; the image covers its start). Also a download sink."""

    def __init__(self, slot: Slot, size: int | None) -> None:
        self.slot = slot
        self.capacity = check_fits(slot, size or 0)
        try:
            self.fd = os.open(slot.device, os.O_RDWR)
        except OSError as exc:
            raise SlotError(f"{slot.label}: cannot open {slot.device}: {exc.strerror}") from None
        self.position = 0

    def write(self, data: bytes | memoryview) -> None:
        if self.position + len(data) > self.capacity:
            raise SlotError(f"{self.slot.label} holds {size_text(self.capacity)}; the payload is larger",
                            code="slot-too-small")
        view = memoryview(data)
        while view:
            done = os.write(self.fd, view)
            view = view[done:]
            self.position += done

    def sync(self) -> None:
        os.fsync(self.fd)

    def flush_behind(self, offset: int, length: int) -> None:
        """Start writing these bytes to the device now, without waiting, and let the page cache
        drop them once written: the fsync at the end has little left to wait for, and an image
        the size of the device's memory does not push out everything else."""
        os.posix_fadvise(self.fd, offset, length, os.POSIX_FADV_DONTNEED)

    def restart(self, offset: int) -> None:
        self.position = os.lseek(self.fd, offset, os.SEEK_SET)

    def read_back(self, size: int) -> Iterator[bytes]:
        return read_chunks(self.fd, size, self.slot.label)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class SlotWriter(SlotSink):
    """Streams an image into a slot from offset 0, hashing what it writes (unless its
    source already does: a bundle). ``finish`` fsyncs, then gives digest and size."""

    def __init__(self, slot: Slot, size: int | None, *, hashing: bool = True) -> None:
        super().__init__(slot, size)
        self.sha = sha256() if hashing else None

    def write(self, data: bytes | memoryview) -> None:
        super().write(data)
        if self.sha is not None:
            self.sha.update(data)

    @property
    def written(self) -> int:
        return self.position

    def finish(self) -> tuple[bytes | None, int]:
        self.sync()
        self.close()
        return (self.sha.digest() if self.sha is not None else None), self.position


class WriteBehind:
    """Writes filled buffers into a slot on a worker thread while the caller fills the next.

    The caller reads (and hashes: hashlib releases the GIL) into one buffer while
    the worker's ``os.write`` (which releases it too) empties another: reading,
    hashing and writing use two cores. A few buffers go round, of ``size`` bytes
    each (``buffer_size``), so memory stays flat. A write error is raised in the
    caller at its next ``buffer``, ``put``, ``drain`` or ``close``.
    """

    BUFFERS = 2          # one filled by the caller while the worker writes the other
    WAIT = 1.0           # seconds per wait on the worker, between checks that it still runs

    def __init__(self, sink: SlotSink, size: int) -> None:
        self.sink = sink
        self.free: queue.Queue[bytearray] = queue.Queue()
        for _ in range(self.BUFFERS):
            self.free.put(bytearray(size))
        self.filled: queue.Queue[tuple[bytearray, int] | None] = queue.Queue()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="slot-writer", daemon=True)
        self.thread.start()

    def buffer(self) -> bytearray:
        """A buffer to fill, once the worker has written what it held."""
        while True:
            self._raise()
            try:
                return self.free.get(timeout=self.WAIT)
            except queue.Empty:
                if not self.thread.is_alive():
                    raise SlotError(f"{self.sink.slot.label}: the slot writer stopped") from None

    def put(self, buffer: bytearray, count: int) -> None:
        """Write ``buffer[:count]`` behind; the buffer comes back through ``buffer()``."""
        self._raise()
        self.filled.put((buffer, count))

    def give_back(self, buffer: bytearray) -> None:
        self.free.put(buffer)

    def drain(self) -> None:
        """Return once every buffer put so far is written (not yet synced)."""
        taken = []
        for _ in range(self.BUFFERS):     # all of them back: nothing is being written
            taken.append(self.buffer())
        for buffer in taken:
            self.free.put(buffer)
        self._raise()

    def close(self) -> None:
        self.filled.put(None)
        while self.thread.is_alive():
            self.thread.join(self.WAIT)
        self._raise()

    def _raise(self) -> None:
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def _run(self) -> None:
        flushed = self.sink.position
        while (item := self.filled.get()) is not None:
            buffer, count = item
            try:
                if self.error is None:
                    self.sink.write(memoryview(buffer)[:count])
                    if self.sink.position - flushed >= FLUSH_BYTES:
                        self.sink.flush_behind(flushed, self.sink.position - flushed)
                        flushed = self.sink.position
            except BaseException as exc:   # handed to the caller
                self.error = exc
            finally:
                self.free.put(buffer)


def buffer_size(device: Path) -> int:
    """Bytes per write into ``device``: ``WRITE_SIZE``, or a multiple of its preferred I/O size
    when that is larger (up to ``MAX_BUFFER``)."""
    try:
        preferred = os.stat(device).st_blksize
    except OSError:
        return WRITE_SIZE
    if preferred <= WRITE_SIZE:
        return WRITE_SIZE
    return min(MAX_BUFFER, preferred * (WRITE_SIZE // preferred + (WRITE_SIZE % preferred > 0)))


def read_chunks(fd: int, size: int, name: str) -> Iterator[bytes]:
    """The first ``size`` bytes of an open file or device, in chunks (to rehash or compare)."""
    position = 0
    while position < size:
        block = os.pread(fd, min(CHUNK, size - position), position)
        if not block:
            raise SlotError(f"{name}: ends before {size} bytes")
        position += len(block)
        yield block


def read_digest(device: Path, size: int) -> bytes:
    """SHA-256 of the first ``size`` bytes of a slot, read back from the device."""
    sha = sha256()
    fd = os.open(device, os.O_RDONLY)
    try:
        for block in read_chunks(fd, size, str(device)):
            sha.update(block)
    finally:
        os.close(fd)
    return sha.digest()


def size_text(size: int) -> str:
    return f"{size >> 20} MiB" if size >= 1 << 20 else f"{size} bytes"
