"""Write an update bundle from a signed envelope and the payload files it fetches.

Everything is checked before the first byte is written: the payload names
against the manifest's ``#name`` fetches, and each file's size and SHA-256
against the manifest. Files are streamed in 1 MiB chunks; the bundle is built
in a temporary file beside ``out`` and renamed over it once synced, so ``out``
is either the old file or the complete new bundle.

The "crc" header of a member precedes its data and holds the sum of its
bytes, so each payload is read twice: once to check it and sum it, once to
copy it (and the copy is checked again, in case the file changed meanwhile).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from agent.bundle import MANIFEST, RESERVED_NAMES, SW_DESCRIPTION, carried_payloads
from agent.bundle.cpio import (FORMAT_MAGIC, Member, check_name, checksum, encode_header, pad4,
                               trailer)
from agent.bundle.digest import MemberDigest
from agent.bundle.swdescription import render
from agent.errors import BundleError, InputFileError
from agent.manifest.check import PayloadRef, payload_references
from agent.manifest.describe import manifest_version
from agent.manifest.verify import inspect_envelope

CHUNK = 1 << 20


@dataclass(frozen=True)
class BundleInfo:
    path: Path
    format: str
    size: int                    # bytes of the bundle file
    members: list[Member]
    sw_description: str
    remote: list[PayloadRef]     # fetched by the device itself, not carried


@dataclass(frozen=True)
class _Payload:
    name: str
    path: Path
    ref: PayloadRef
    check: int                   # byte sum, for the "crc" header


def create_bundle(out: Path, manifest: bytes, payloads: list[tuple[str, Path]], version: str,
                  hardware: list[tuple[str, str]] = (), description: str = "", *,
                  fmt: str = "newc") -> BundleInfo:
    """Write the bundle of ``manifest`` and ``payloads`` (member name, file) to ``out``.

    ``fmt`` is "newc" (cpio -H newc) or "crc" (cpio -H crc, with per-member byte sums).
    "newc" is the default: every payload is covered by its SHA-256 in the signed
    manifest, and the byte sum of "crc" costs a device as much CPU as the hash.
    """
    out = Path(out)
    if fmt not in FORMAT_MAGIC:
        raise BundleError(f"unknown cpio format {fmt!r} (newc or crc)", code="bundle-format")
    refs = payload_references(manifest)
    carried = carried_payloads(refs)
    files = _match(carried, payloads)
    checked = [_Payload(ref.integrated_name, files[ref.integrated_name], ref,
                        _measure(files[ref.integrated_name], ref)) for ref in carried]
    text = render(version, [(p.name, p.ref.digest.hex()) for p in checked], hardware, description)
    members = _write(out, fmt, text.encode(), manifest, checked)
    return BundleInfo(out, fmt, out.stat().st_size, members, text,
                      [r for r in refs if r.integrated_name is None])


def bundle_version(manifest: bytes, requested: str | None = None) -> tuple[str, str | None]:
    """The version a bundle is labelled with, which servers show, and a warning when it is not
    the one the device will report. That is the signed manifest's (``sw_version`` once the device
    runs the update); a ``requested`` version must be that one: were they to differ, a server
    would show one and the device report the other (goosebit then sets the device's version to
    what the device says). A manifest without a version takes ``requested`` with a warning: the
    updated device will report none."""
    version = manifest_version(inspect_envelope(manifest))
    if version is None:
        if requested is None:
            raise BundleError("the manifest gives no component a version, and no --version was given: give the "
                              "image's component a version in the manifest's spec (fwagent manifest create)",
                              code="bundle-version")
        return requested, (f"the manifest gives no component a version: servers will show {requested}, but the "
                           "updated device will report none; give the image's component a version in the "
                           "manifest's spec")
    if requested is not None and requested != version:
        raise BundleError(f"--version {requested} is not the manifest's version {version}: servers would show "
                          "one and the device report the other", code="bundle-version")
    return version, None


def _match(carried: list[PayloadRef], payloads: list[tuple[str, Path]]) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for name, path in payloads:
        check_name(name)
        if name in RESERVED_NAMES:
            raise BundleError(f"payload name {name!r} is reserved by the bundle format", code="bundle-name")
        if name in files:
            raise BundleError(f"payload {name!r} is given twice ({files[name]}, {path})",
                              code="bundle-payload-duplicate")
        files[name] = Path(path)
    wanted = [ref.integrated_name for ref in carried]
    extra = [name for name in files if name not in wanted]
    if extra:
        raise BundleError(f"payload(s) {', '.join(extra)} are not fetched by the manifest "
                          f"(it fetches: {', '.join('#' + n for n in wanted) or 'no #name payload'})",
                          code="bundle-payload-extra")
    missing = [name for name in wanted if name not in files]
    if missing:
        raise BundleError(f"the manifest fetches {', '.join('#' + n for n in missing)} but no such "
                          "payload is given", code="bundle-payload-missing")
    return files


def _measure(path: Path, ref: PayloadRef) -> int:
    """Check a payload file against the manifest; return its byte sum."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read payload: {exc.strerror}") from None
    if size != ref.size:
        raise BundleError(f"{path}: {size} bytes, but the manifest's image-size for "
                          f"#{ref.integrated_name} is {ref.size}", code="bundle-payload-size")
    size, digest, check = _stream(path, None)
    if digest != ref.digest:
        raise BundleError(f"{path}: SHA-256 {digest.hex()} differs from the manifest's image-digest "
                          f"{ref.digest.hex()} for #{ref.integrated_name}", code="bundle-payload-digest")
    return check


def _stream(path: Path, out: BinaryIO | None) -> tuple[int, bytes, int]:
    """Size, SHA-256 and byte sum of a file, copied to ``out`` on the way if given."""
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    digest = MemberDigest(crc=True)
    size = 0
    try:
        with open(path, "rb", buffering=0) as source:
            while count := source.readinto(buffer):
                digest.update(buffer, count)
                size += count
                if out is not None:
                    out.write(view[:count])
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read payload: {exc.strerror}") from None
    return size, digest.sha256(), digest.check


def _write(out: Path, fmt: str, sw_description: bytes, manifest: bytes,
           payloads: list[_Payload]) -> list[Member]:
    try:
        handle, temp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    except OSError as exc:
        raise BundleError(f"{out}: cannot write the bundle: {exc.strerror}", code="bundle-output") from None
    members: list[Member] = []
    try:
        with os.fdopen(handle, "wb") as f:
            os.fchmod(f.fileno(), 0o644)
            for name, data in ((SW_DESCRIPTION, sw_description), (MANIFEST, manifest)):
                members.append(_header(f, fmt, name, len(data), checksum(data), len(members)))
                f.write(data + _padding(len(data)))
            for payload in payloads:
                members.append(_header(f, fmt, payload.name, payload.ref.size, payload.check,
                                       len(members)))
                if _stream(payload.path, f) != (payload.ref.size, payload.ref.digest, payload.check):
                    raise BundleError(f"{payload.path}: changed while the bundle was written",
                                      code="bundle-payload-changed")
                f.write(_padding(payload.ref.size))
            f.write(trailer(fmt))
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, out)
    except BaseException:
        os.unlink(temp)
        raise
    directory = os.open(out.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return members


def _header(f: BinaryIO, fmt: str, name: str, size: int, check: int, index: int) -> Member:
    member = Member(name, size, f.tell())
    f.write(encode_header(name, size, fmt=fmt, check=check, ino=index + 1))
    return member


def _padding(size: int) -> bytes:
    return bytes(pad4(size) - size)
