"""Reading and writing the user's files: bounded reads, atomic writes, one-line errors."""

from __future__ import annotations

import os
from pathlib import Path

from agent.errors import InputFileError, ManifestError, UsageError


def read_input(path: Path, what: str, limit: int) -> bytes:
    """A user's file of at most ``limit`` bytes. What the file system says of its size is not
    trusted (a device or a FIFO says 0): ``limit`` + 1 bytes at most are read, and one more
    than ``limit`` refuses it."""
    data = read_at_most(path, limit + 1, what)
    if len(data) > limit:
        raise ManifestError(f"{path}: more than the limit of {limit} bytes for a {what}", code="cbor-too-large")
    return data


def read_at_most(path: Path, size: int, what: str) -> bytes:
    """The first ``size`` bytes of ``path`` (fewer if it ends before); errors are one line."""
    try:
        with open(path, "rb", buffering=0) as stream:
            data = bytearray()
            while len(data) < size and (chunk := stream.read(min(size - len(data), 1 << 20))):
                data += chunk
            return bytes(data)
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read {what}: {exc.strerror}") from None


def write_output(path: Path, data: bytes, mode: int = 0o644, force: bool = True) -> None:
    """Write a user's output file atomically; errors are one line."""
    if not force and path.exists():
        raise UsageError(f"{path} exists; use --force to overwrite it")
    try:
        write_atomic(path, data, mode)
    except OSError as exc:
        raise InputFileError(f"{path}: cannot write: {exc.strerror}") from None


def private_dir(path: Path) -> Path:
    """``path`` as a directory only its owner can enter (0700), made if missing with its parents.

    The state directory holds downloads, the journal and the bootloader's copy of the
    boot environment: nothing in it is for other users. A directory an older version
    made 0755 is narrowed, unless it belongs to another user (then it is left alone).
    """
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if info.st_mode & 0o077 and info.st_uid == os.geteuid():
        os.chmod(path, info.st_mode & 0o700)
    return path


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` so that a power cut leaves the old or the new content, never a mix:
    temp file, fsync, rename, fsync of the directory (which makes the rename durable)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
