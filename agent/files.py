"""Reading and writing the user's files: bounded reads, atomic writes, one-line errors."""

from __future__ import annotations

import os
from pathlib import Path

from agent.errors import InputFileError, ManifestError, UsageError


def read_input(path: Path, what: str, limit: int | None = None) -> bytes:
    try:
        if limit is not None and path.stat().st_size > limit:
            raise ManifestError(f"{path}: {path.stat().st_size} bytes exceeds the limit of {limit} "
                                f"for a {what}", code="cbor-too-large")
        return path.read_bytes()
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
