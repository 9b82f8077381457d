"""A/B slots: which one is booted, which one to write, and writing it.

A slot device is a block device or a regular file. Slots of every class are
switched together as group A or group B: updating while group A runs writes
the B device of each class. The booted group comes from the kernel command
line (``fwagent.slot=A``), never guessed.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from collections.abc import Iterator
from pathlib import Path

from agent.errors import FwagentError
from bootloader_bridge.bootchooser.base import SLOTS

CHUNK = 1 << 20
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
        self.sha = hashlib.sha256() if hashing else None

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
    sha = hashlib.sha256()
    fd = os.open(device, os.O_RDONLY)
    try:
        for block in read_chunks(fd, size, str(device)):
            sha.update(block)
    finally:
        os.close(fd)
    return sha.digest()


def size_text(size: int) -> str:
    return f"{size >> 20} MiB" if size >= 1 << 20 else f"{size} bytes"
