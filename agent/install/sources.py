"""Payloads of a manifest installed from a file: ``#name`` beside it, or ``file://``.

(Bundled payloads stream from the bundle reader; ``http(s)://`` payloads go
through the downloader, straight into their slot: see executor.py.)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlparse

from agent.errors import FwagentError

CHUNK = 1 << 20


class SourceError(FwagentError, OSError):
    code = "source"


def read_file_chunks(path: Path, size: int | None) -> Iterator[bytes]:
    try:
        stream = open(path, "rb")
    except OSError as exc:
        raise SourceError(f"{path}: cannot read payload: {exc.strerror}", code="payload-missing") from None
    with stream:
        yield from _bounded(iter(lambda: stream.read(CHUNK), b""), size, str(path))


def _bounded(chunks: Iterator[bytes], size: int | None, name: str) -> Iterator[bytes]:
    """Refuse a payload longer than the manifest's image-size before writing the excess."""
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if size is not None and total > size:
            raise SourceError(f"{name}: longer than the {size} bytes the manifest declares",
                              code="payload-too-large")
        yield chunk


class DirectorySource:
    """Payloads of a manifest installed from a file: ``#name`` beside it, or file://."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def open(self, uri: str, size: int | None) -> Iterator[bytes]:
        if uri.startswith("#"):
            name = uri[1:]
            if not name or "/" in name or name in (".", ".."):
                raise SourceError(f"payload name {name!r} is not a plain file name", code="payload-missing")
            return read_file_chunks(self.directory / name, size)
        return open_uri(uri, size)

    def finish(self) -> None:
        """Nothing is left to check: each file was read to its end as it was fetched."""


def open_uri(uri: str, size: int | None) -> Iterator[bytes]:
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return read_file_chunks(Path(unquote(parsed.path)), size)
    raise SourceError(f"payload URI {uri!r}: scheme {parsed.scheme or 'none'} is not supported",
                      code="payload-missing")
