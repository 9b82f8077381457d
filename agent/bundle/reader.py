"""Read an update bundle as a stream, in constant memory, trusting only the signed manifest.

``BundleReader`` reads ``sw-description`` and ``manifest.suit`` (both bounded)
when it is made. Payload bytes are only reachable through
``payloads(verified)``, which takes the result of ``check`` on that very
manifest: an unauthenticated or different manifest is refused. Every payload
member must be the next one the verified manifest fetches, of exactly the size
it gives, and its SHA-256 (and, in a "crc" archive, its cpio checksum) is
checked by the read that reaches its end. Anything else in the archive is
refused with a BundleError naming the member and its offset.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from agent.bundle import MANIFEST, SW_DESCRIPTION, carried_payloads
from agent.bundle.cpio import (FILE_TYPE_MASK, HEADER_SIZE, REGULAR_FILE, TRAILER, Header, Member,
                               check_name, checksum, decode_header, decode_name)
from agent.bundle.digest import MemberDigest
from agent.bundle.swdescription import software_version
from agent.errors import BundleError, InputFileError
from agent.manifest.check import CheckResult, PayloadRef, check, payload_references
from agent.manifest.envelope import parse_envelope
from agent.manifest.processor import DeviceIdentity
from agent.manifest.targets import component_label
from agent.manifest.verify import RollbackState, Trust, inspect_envelope

CHUNK = 1 << 20
MAX_SW_DESCRIPTION = 64 * 1024
MAX_MANIFEST = 64 * 1024
MAX_TAIL = 1 << 20      # zeros after the trailer (GNU cpio pads to blocks); a stream must end
TAIL_READ = 64 * 1024


class BundleReader:
    """The members of a bundle, read in order from ``fileobj``."""

    def __init__(self, fileobj: BinaryIO, max_manifest: int = MAX_MANIFEST) -> None:
        self._file = fileobj
        self._offset = 0
        self._started = False
        self._scratch: tuple[bytearray, bytearray] | None = None
        self.format = ""
        self.members: list[Member] = []
        self.sw_description = self._small(SW_DESCRIPTION, MAX_SW_DESCRIPTION, "first",
                                          "bundle-no-sw-description")
        self.manifest = self._small(MANIFEST, max_manifest, "second", "bundle-no-manifest")

    def payloads(self, verified: CheckResult) -> Iterator[PayloadStream]:
        """The carried payloads of this bundle's manifest, once ``check`` has accepted it.

        Streams come in fetch order; a stream left unread when the next one is
        asked for is read to its end (and checked) first. The archive must end
        after the last payload.
        """
        manifest = verified.manifest
        if not manifest.authenticated_by:
            raise BundleError("payloads are only read for a manifest whose signature was verified",
                              code="bundle-unverified")
        if manifest.envelope.manifest != parse_envelope(self.manifest).manifest:
            raise BundleError("the verified manifest is not the one this bundle carries",
                              code="bundle-manifest-mismatch")
        if self._started:
            raise BundleError("the payloads of a bundle can be read only once", code="bundle-usage")
        self._started = True
        return self._streams(carried_payloads(verified.payloads))

    def _streams(self, expected: list[PayloadRef]) -> Iterator[PayloadStream]:
        names = [ref.integrated_name for ref in expected]
        for index, ref in enumerate(expected):
            header, member = self._next_member()
            if member.name == TRAILER:
                raise BundleError(f"the archive ends at offset {member.offset} without payload(s) "
                                  f"{', '.join(names[index:])}", code="bundle-missing-payload")
            if member.name != ref.integrated_name:
                self._unexpected(member, names, index)
            if member.size != ref.size:
                raise BundleError(f"payload {member.name} at offset {member.offset} has {member.size} "
                                  f"bytes, the manifest says {ref.size}", code="bundle-size-mismatch")
            stream = PayloadStream(self, header, member, ref)
            yield stream
            stream.drain()
        header, member = self._next_member()
        if member.name != TRAILER:
            self._unexpected(member, names, len(names))
        self._check_tail()

    def _unexpected(self, member: Member, names: list[str], index: int) -> None:
        where = f"member {member.name!r} at offset {member.offset}"
        if member.name in names[index + 1:]:
            raise BundleError(f"{where} comes before {names[index]}: payloads must be in the "
                              f"manifest's fetch order ({', '.join(names)})", code="bundle-order")
        if member.name in names[:index]:
            raise BundleError(f"{where} appears a second time", code="bundle-duplicate-member")
        wanted = f"payload {names[index]}" if index < len(names) else "the trailer"
        raise BundleError(f"{where} is not fetched by the manifest (expected {wanted})",
                          code="bundle-unknown-member")

    def _skip(self, count: int, what: str) -> None:
        """Pass over ``count`` bytes: a seek where the file can, else a read."""
        if self._file.seekable():
            self._file.seek(count, 1)
            self._offset += count
        else:
            while count:
                count -= len(self._read(min(count, CHUNK), what))

    def _skim(self) -> None:
        """Read the remaining member headers, skipping their data: for display only."""
        while True:
            header, member = self._next_member()
            if member.name == TRAILER:
                return
            self._skip(header.filesize + header.data_padding, f"member {member.name}")

    # --- members -----------------------------------------------------------------

    def _small(self, name: str, limit: int, ordinal: str, code: str) -> bytes:
        header, member = self._next_member()
        if member.name != name:
            raise BundleError(f"the {ordinal} member is {member.name!r}, not {name}", code=code)
        if member.size > limit:
            raise BundleError(f"{name} has {member.size} bytes, more than the {limit} allowed",
                              code="bundle-too-large")
        data = self._read(member.size, name)
        self._end_member(header, member, checksum(data))
        return data

    def _next_member(self) -> tuple[Header, Member]:
        offset = self._offset
        header = decode_header(self._read(HEADER_SIZE, f"the member header at offset {offset}"), offset)
        if self.format and header.format != self.format:
            raise BundleError(f"member at offset {offset} is cpio {header.format} in a {self.format} "
                              "archive", code="bundle-format")
        self.format = header.format
        name = decode_name(self._read(header.name_length, f"the member name at offset {offset}"),
                           header, offset)
        member = Member(name, header.filesize, offset)
        if name == TRAILER:
            if header.filesize:
                raise BundleError(f"the trailer at offset {offset} has data", code="bundle-format")
            return header, member
        check_name(name)
        if header.mode & FILE_TYPE_MASK != REGULAR_FILE:
            raise BundleError(f"member {name!r} at offset {offset} is not a regular file "
                              f"(mode {header.mode:o})", code="bundle-member-type")
        self.members.append(member)
        return header, member

    def _end_member(self, header: Header, member: Member, check: int) -> None:
        """Read the padding after a member's data and compare its "crc" checksum."""
        if any(self._read(header.data_padding, f"the padding of {member.name}")):
            raise BundleError(f"the padding after {member.name} is not zero", code="bundle-format")
        if header.format == "crc" and check != header.check:
            raise BundleError(f"{member.name} at offset {member.offset}: cpio checksum {check:08x}, "
                              f"the header says {header.check:08x}", code="bundle-checksum")

    def _check_tail(self) -> None:
        """After the trailer only zeros may follow (GNU cpio pads to 512-byte blocks), and at most
        ``MAX_TAIL`` of them: a bundle read from the network ends where the archive does."""
        end = self._offset + MAX_TAIL
        while chunk := self._file.read(min(TAIL_READ, end + 1 - self._offset)):
            if chunk.strip(b"\0"):
                raise BundleError(f"non-zero bytes follow the trailer (after offset {self._offset})",
                                  code="bundle-trailing-data")
            self._offset += len(chunk)
            if self._offset > end:
                raise BundleError(f"more than {MAX_TAIL} bytes follow the trailer (at offset {self._offset})",
                                  code="bundle-trailing-data")

    # --- bytes -------------------------------------------------------------------

    @property
    def _buffers(self) -> tuple[bytearray, bytearray]:
        """For reads that bring no buffer of their own (``read``, ``drain``), made on first use:
        two, so that ``drain`` reads into one while the other's chunk is hashed."""
        if self._scratch is None:
            self._scratch = (bytearray(CHUNK), bytearray(CHUNK))
        return self._scratch

    def _read(self, size: int, what: str) -> bytes:
        data = bytearray(size)
        self._fill(memoryview(data), what)
        return bytes(data)

    def _fill(self, view: memoryview, what: str) -> None:
        """Fill ``view`` from the file; EOF first means the archive is truncated."""
        done = 0
        while done < len(view):
            count = self._file.readinto(view[done:])
            if not count:
                raise BundleError(f"the archive is truncated in {what} (offset {self._offset + done}: "
                                  f"{done} of {len(view)} bytes)", code="bundle-truncated")
            done += count
        self._offset += done


class PayloadStream:
    """The bytes of one payload member, checked against its manifest reference as they are read.

    The read that reaches the end of the member checks the SHA-256 against the
    manifest's digest (code bundle-digest-mismatch) and, in a "crc" archive,
    the cpio checksum, and raises instead of returning if either differs.
    After an error every read raises it again.
    """

    def __init__(self, reader: BundleReader, header: Header, member: Member, ref: PayloadRef) -> None:
        self.name = member.name
        self.size = member.size
        self.offset = member.data_offset
        self.ref = ref
        self._reader = reader
        self._header = header
        self._member = member
        self._remaining = member.size
        self._digest = MemberDigest(crc=header.format == "crc")
        self._done = False
        self._error: BundleError | None = None

    def readinto(self, buffer: Any) -> int:
        """Read up to ``len(buffer)`` bytes into it; 0 at the end. Reuse one buffer: it is fastest."""
        return self._take(buffer, memoryview(buffer).nbytes)

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all that is left if negative); b"" at the end."""
        want = self._remaining if size < 0 else min(size, self._remaining)
        buffer = self._reader._buffers[0]
        view = memoryview(buffer)
        parts = []
        got = 0
        while True:
            count = self._take(buffer, min(want - got, CHUNK))
            parts.append(bytes(view[:count]))
            got += count
            if got >= want:
                return b"".join(parts)

    def __iter__(self) -> Iterator[bytes]:
        """The payload in chunks of up to 1 MiB."""
        while chunk := self.read(CHUNK):
            yield chunk

    def drain(self) -> None:
        """Read (and check) whatever is left of the payload."""
        if self._done and self._error is None:
            return
        buffers, turn = self._reader._buffers, 0
        while self._take(buffers[turn], CHUNK):
            turn ^= 1

    def skip_written(self, blocks: Iterable[bytes | memoryview]) -> int:
        """Take ``blocks``, the first bytes of this payload as an earlier process wrote them into
        its slot, instead of reading them again: they are hashed (and summed) as if read, and the
        archive is passed over by as many bytes. The rest is read and checked as usual, so a
        slot that does not hold what the bundle does fails the payload's digest. Returns the count."""
        if self._remaining != self.size:
            raise BundleError(f"payload {self.name}: written bytes are taken only before any is read",
                              code="bundle-usage")
        taken = 0
        try:
            for block in blocks:
                count = len(block)
                if count > self._remaining:
                    raise BundleError(f"payload {self.name}: more written bytes than its {self.size}",
                                      code="bundle-usage")
                self._digest.update(block, count)
                self._remaining -= count
                taken += count
            self._reader._skip(taken, f"payload {self.name}")
            if not self._remaining:
                self._finish()
        except BundleError as exc:
            self._error = exc
            raise
        return taken

    @property
    def verified(self) -> bool:
        """True once the whole payload was read and matched the manifest."""
        return self._done and self._error is None

    def _take(self, buffer: Any, limit: int) -> int:
        if self._error is not None:
            raise self._error
        view = memoryview(buffer).cast("B")
        count = min(limit, self._remaining)
        try:
            if count:
                self._digest.before_fill(buffer)
                self._reader._fill(view[:count], f"payload {self.name}")
                self._digest.update(buffer, count)
                self._remaining -= count
            if not self._remaining and not self._done:
                self._finish()
        except BundleError as exc:
            self._error = exc
            raise
        return count

    def _finish(self) -> None:
        self._done = True
        digest = self._digest.sha256()
        if digest != self.ref.digest:
            raise BundleError(f"payload {self.name} at offset {self.offset}: SHA-256 {digest.hex()}, the "
                              f"manifest says {self.ref.digest.hex()}", code="bundle-digest-mismatch")
        self._reader._end_member(self._header, self._member, self._digest.check)


@dataclass(frozen=True)
class BundleReport:
    format: str
    result: CheckResult              # the verified manifest and what it would do
    payloads: list[Member]           # carried, each read whole and matched to the manifest
    remote: list[PayloadRef]         # fetched by the device itself, not carried


def verify_bundle(path: Path, trust: Trust, *, device: DeviceIdentity = DeviceIdentity(),
                  rollback: RollbackState | None = None, slot: int | None = None) -> BundleReport:
    """Verify the manifest of the bundle at ``path``, then stream every payload through its check."""
    with _open(path) as f:
        reader = BundleReader(f)
        result = check(reader.manifest, trust, rollback=rollback, device=device, slot=slot)
        carried = []
        for stream in reader.payloads(result):
            stream.drain()
            carried.append(Member(stream.name, stream.size, stream.offset))
    return BundleReport(reader.format, result, carried,
                        [ref for ref in result.payloads if ref.integrated_name is None])


def bundle_info(path: Path) -> dict[str, Any]:
    """What a bundle holds, for display. Nothing in it is verified: its signature is not checked."""
    from agent.delta.param import delta_references
    with _open(path) as f:
        reader = BundleReader(f)
        reader._skim()
    text = reader.sw_description.decode("utf-8", "replace")
    manifest = inspect_envelope(reader.manifest)
    names = {m.name for m in reader.members[2:]}
    deltas = delta_references(reader.manifest)
    return {
        "format": reader.format,
        "members": [{"name": m.name, "size": m.size, "offset": m.offset, "data_offset": m.data_offset}
                    for m in reader.members],
        "sw_description": text,
        "sw_description_version": software_version(text),
        "manifest_verified": False,
        "manifest_sequence": manifest.sequence,
        "payloads": [{"component": component_label(ref.component), "uri": ref.uri,
                      "digest": ref.digest.hex() if ref.digest else None, "size": ref.size,
                      "carried": ref.integrated_name in names,
                      "delta": deltas[ref.component].as_dict() if ref.component in deltas else None}
                     for ref in payload_references(reader.manifest)],
    }


def _open(path: Path) -> BinaryIO:
    try:
        return open(path, "rb", buffering=0)
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read bundle: {exc.strerror}") from None
