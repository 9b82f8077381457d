"""Update sources for an install: a bundle (a file or a URL), or a signed manifest file.

A bundle is read as one stream: the manifest first, then its payloads in
fetch order, each checked against the verified manifest by the bundle reader
as well as by the slot writer, then to its end, under the same rules as
``fwagent bundle verify``. A bundle URL is read as it arrives
(agent/download/remote.py): its payloads go straight into their slots, and
nothing of it is kept on disk.
"""

from __future__ import annotations

import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from agent.errors import InputFileError
from agent.files import read_input
from agent.install.sources import DirectorySource, SourceError

if TYPE_CHECKING:   # the readers come with the first update, not with a service that waits for one
    from agent.bundle.reader import BundleReader, PayloadStream
    from agent.manifest.verify import VerifiedManifest

CPIO_MAGIC = b"0707"
URL_SCHEMES = ("http://", "https://")


@dataclass
class StreamProgress:
    """How far a bundle streamed from a URL is in its slots, durable (the journal's
    ``update.stream``): ``written`` bytes per slot label, synced, of the bundle whose
    ETag or Last-Modified is ``validator``."""

    validator: str | None = None
    written: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"validator": self.validator, "written": dict(self.written)}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "StreamProgress":
        if not data:
            return cls()
        return cls(data.get("validator"), {str(k): int(v) for k, v in data["written"].items()})


class BundleSource:
    """A bundle read front to back from what ``opener`` opens: a file, or a RemoteFile.

    The manifest read first stays with the open stream: the payloads that follow are
    read from the same stream (one GET for a URL), unless the source is closed between.
    """

    def __init__(self, name: str, opener: Callable[[], BinaryIO]) -> None:
        self.name = name
        self.opener = opener
        self._file: BinaryIO | None = None
        self._reader: BundleReader | None = None
        self._payloads_read = False

    @property
    def streamed(self) -> bool:
        """Read from the network: written payloads are checkpointed, to resume without them."""
        return self.name.startswith(URL_SCHEMES)

    @property
    def validator(self) -> str | None:
        """The ETag or Last-Modified of a bundle read from a URL (once its manifest was read)."""
        return getattr(self._file, "validator", None)

    def read_manifest(self) -> bytes:
        from agent.bundle.reader import BundleReader
        if self._reader is not None and not self._payloads_read:
            return self._reader.manifest
        self.close()
        self._file = self.opener()
        self._reader = BundleReader(self._file)
        self._payloads_read = False
        return self._reader.manifest

    def payloads(self, manifest: VerifiedManifest, slot: int | None) -> "_BundlePayloads":
        from agent.bundle import carried_payloads
        from agent.manifest.check import plan
        assert self._reader is not None and not self._payloads_read, "read_manifest first"
        self._payloads_read = True
        checked = plan(manifest, slot=slot)
        payloads = _BundlePayloads(self._reader.payloads(checked))
        if not carried_payloads(checked.payloads):
            # A bundle of the manifest only: its end is read now, not once the payloads the
            # device fetches itself are in, with the bundle's connection idle all along (on the
            # HIL gateway its trailer then came truncated).
            payloads.finish()
        return payloads

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._reader = None


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

    def readinto(self, buffer: Any) -> int:
        return self.stream.readinto(buffer)

    def skip_written(self, blocks: Iterable[bytes]) -> int:
        """The payload's first bytes, already in its slot: hashed from there, not read again."""
        return self.stream.skip_written(blocks)

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


def open_update_source(source: str, remote: Callable[[str], BinaryIO] | None = None
                       ) -> BundleSource | ManifestFileSource:
    """A bundle URL (read through ``remote``), a bundle file or a manifest file. Only a regular
    file: an update reads its source more than once (verify, then write), and a device or a FIFO
    would not give the same bytes again."""
    if source.startswith(URL_SCHEMES):
        if remote is None:
            raise InputFileError(f"{source}: bundles are read from URLs only by an installer that downloads",
                                 code="source-not-file")
        return BundleSource(source, lambda: remote(source))
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
    return BundleSource(source, lambda: _open_file(path)) if magic == CPIO_MAGIC else ManifestFileSource(path)


def _open_file(path: Path) -> BinaryIO:
    try:
        return open(path, "rb", buffering=0)
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read bundle: {exc.strerror}") from None
