"""Where an install's payloads come from.

* a bundle: ``#name`` payloads stream from the archive, in manifest order;
* a manifest file: ``#name`` is the file ``name`` beside it;
* ``file://`` paths, and ``http(s)://`` URLs streamed with timeouts.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlparse

from agent.errors import FwagentError

CHUNK = 1 << 20
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0


class SourceError(FwagentError, OSError):
    code = "source"


def read_file_chunks(path: Path, size: int | None) -> Iterator[bytes]:
    try:
        stream = open(path, "rb")
    except OSError as exc:
        raise SourceError(f"{path}: cannot read payload: {exc.strerror}", code="payload-missing") from None
    with stream:
        yield from _bounded(iter(lambda: stream.read(CHUNK), b""), size, str(path))


def read_http_chunks(url: str, size: int | None) -> Iterator[bytes]:
    import requests  # only for http sources: it costs several MiB of memory at import

    try:
        response = requests.get(url, stream=True, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
    except requests.RequestException as exc:
        raise SourceError(f"{url}: {type(exc).__name__}: {exc}", code="download-failed") from None
    with response:
        if response.status_code != 200:
            raise SourceError(f"{url}: HTTP {response.status_code}", code="download-failed")
        try:
            yield from _bounded(response.iter_content(CHUNK), size, url)
        except requests.RequestException as exc:
            raise SourceError(f"{url}: {type(exc).__name__}: {exc}", code="download-failed") from None


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
    """Payloads of a manifest installed from a file: ``#name`` beside it, file:// or http(s)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def open(self, uri: str, size: int | None) -> Iterator[bytes]:
        if uri.startswith("#"):
            name = uri[1:]
            if not name or "/" in name or name in (".", ".."):
                raise SourceError(f"payload name {name!r} is not a plain file name", code="payload-missing")
            return read_file_chunks(self.directory / name, size)
        return open_uri(uri, size)


def open_uri(uri: str, size: int | None) -> Iterator[bytes]:
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
        return read_http_chunks(uri, size)
    if parsed.scheme == "file":
        return read_file_chunks(Path(unquote(parsed.path)), size)
    raise SourceError(f"payload URI {uri!r}: scheme {parsed.scheme or 'none'} is not supported",
                      code="payload-missing")
