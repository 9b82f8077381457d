"""Update sources for an install: a bundle file, or a signed manifest file.

A bundle is read as one stream: the manifest first, then its payloads in
fetch order, each checked against the verified manifest by the bundle reader
as well as by the slot writer, then to its end, under the same rules as
``fwagent bundle verify``.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from agent.errors import InputFileError
from agent.files import read_input
from agent.install.sources import DirectorySource, SourceError

if TYPE_CHECKING:   # the readers come with the first update, not with a service that waits for one
    from agent.bundle.reader import BundleReader, PayloadStream
    from agent.manifest.verify import VerifiedManifest

CPIO_MAGIC = b"0707"


class BundleSource:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: BinaryIO | None = None
        self._reader: BundleReader | None = None

    def read_manifest(self) -> bytes:
        from agent.bundle.reader import BundleReader
        self.close()
        try:
            self._file = open(self.path, "rb", buffering=0)
        except OSError as exc:
            raise InputFileError(f"{self.path}: cannot read bundle: {exc.strerror}") from None
        self._reader = BundleReader(self._file)
        return self._reader.manifest

    def payloads(self, manifest: VerifiedManifest, slot: int | None) -> "_BundlePayloads":
        from agent.manifest.check import plan
        assert self._reader is not None, "read_manifest first"
        return _BundlePayloads(self._reader.payloads(plan(manifest, slot=slot)))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class _BundlePayloads:
    def __init__(self, streams: Iterator[PayloadStream]) -> None:
        self.streams = streams

    def finish(self) -> None:
        """Read the bundle to its end with the bundle reader's checks (``fwagent bundle verify``'s):
        what follows the last payload (a member the manifest does not fetch, a second copy, the
        trailer and what comes after it) is refused before anything is switched."""
        for stream in self.streams:
            stream.drain()

    def open(self, uri: str, size: int | None) -> Iterator[memoryview]:
        if not uri.startswith("#"):
            raise SourceError(f"{uri}: a bundle install fetches only the payloads it carries",
                              code="payload-missing")
        stream = next(self.streams, None)
        if stream is None or stream.ref.uri != uri:
            raise SourceError(f"the bundle does not carry {uri} next", code="payload-missing")
        return _CheckedStream(stream)


class _CheckedStream:
    """A payload member's bytes; the bundle reader checks its SHA-256 as the last chunk is read."""

    def __init__(self, stream: PayloadStream) -> None:
        self.stream = stream

    def __iter__(self) -> Iterator[memoryview]:
        from agent.bundle.reader import CHUNK
        buffer = bytearray(CHUNK)
        view = memoryview(buffer)
        while count := self.stream.readinto(buffer):
            yield view[:count]

    @property
    def checked_digest(self) -> bytes | None:
        return self.stream.ref.digest if self.stream.verified else None


class ManifestFileSource:
    """A signed manifest installed from a file, its payloads beside it or at their URIs."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read_manifest(self) -> bytes:
        from agent.manifest.cbor import DEFAULT_MAX_SIZE
        return read_input(self.path, "manifest", DEFAULT_MAX_SIZE)

    def payloads(self, manifest: VerifiedManifest, slot: int | None) -> DirectorySource:
        return DirectorySource(self.path.parent)

    def close(self) -> None:
        """Nothing stays open between reads."""


def open_update_source(source: str) -> BundleSource | ManifestFileSource:
    """A bundle or a manifest file. Only a regular file: an update reads its source more than
    once (verify, then write), and a device or a FIFO would not give the same bytes again."""
    path = Path(source)
    try:
        mode = path.stat().st_mode                      # before any open: a FIFO's would block
        if stat.S_ISREG(mode):
            with open(path, "rb") as stream:
                magic = stream.read(len(CPIO_MAGIC))
    except OSError as exc:
        raise InputFileError(f"{source}: cannot read: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise InputFileError(f"{source}: not a regular file; an update is read from a file",
                             code="source-not-file")
    return BundleSource(path) if magic == CPIO_MAGIC else ManifestFileSource(path)
