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
    """Write a file atomically (temp file, fsync, rename)."""
    if not force and path.exists():
        raise UsageError(f"{path} exists; use --force to overwrite it")
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise InputFileError(f"{path}: cannot write: {exc.strerror}") from None
