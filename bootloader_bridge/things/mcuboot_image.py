"""MCUboot image files (as ``imgtool sign`` writes them): parse and check, pure.

Layout, all little-endian::

    header (32 bytes, padded to hdr_size)  magic 0x96f3b83d, load address, hdr_size,
                                           protected TLV size, img_size, flags, version
    payload (img_size bytes)
    protected TLV area (optional)          {0x6908, total}, TLVs   -- covered by the hash
    TLV area                               {0x6907, total}, TLVs   -- SHA-256, key hash, signature
    [0xff padding and the boot trailer]    only in ``imgtool sign --pad`` images

The SHA-256 TLV (type 0x10) is the hash over header, payload and protected TLVs:
the one a device reports in its image state list and takes in a state write. It
is not the SHA-256 of the file. Checking it here refuses a damaged or truncated
file before a single byte goes to a Thing; the signature is the bootloader's to
check (a device lists only images that validate).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from agent.errors import ThingError

MAGIC = 0x96F3B83D
MAGIC_V1 = 0x96F3B83C
TLV_INFO_MAGIC = 0x6907
TLV_PROT_INFO_MAGIC = 0x6908
TLV_SHA256 = 0x10
TLV_OTHER_HASHES = {0x11: "SHA-384", 0x12: "SHA-512"}
SIGNATURE_TLVS = {0x20: "RSA-2048", 0x22: "ECDSA", 0x23: "RSA-3072", 0x24: "Ed25519", 0x25: "pure"}
FLAG_ENCRYPTED = 0x04 | 0x08          # ENCRYPTED_AES128, ENCRYPTED_AES256
FLAG_NON_BOOTABLE = 0x10

HEADER = struct.Struct("<IIHHIIBBHI")  # without the final 4 pad bytes
HEADER_SIZE = 32
TLV_INFO = struct.Struct("<HH")
TLV_HEAD = struct.Struct("<HH")
# The last 16 bytes of a padded image (its boot trailer), for a max-align of 8 or,
# after a 2-byte align field, for any other.
TRAILER_MAGIC = bytes.fromhex("77c295f360d2ef7f3552500f2cb67980")
TRAILER_MAGIC_TAIL = bytes.fromhex("2de15d29410b8d77679c110f1f8a")


class McubootImageError(ThingError, ValueError):
    """A file that is not a sound MCUboot image; nothing was sent to the Thing."""

    code = "thing-image"


@dataclass(frozen=True)
class McubootImage:
    version: tuple[int, int, int, int]   # major, minor, revision, build
    hash: bytes                          # the SHA-256 TLV: what the device will report
    header_size: int
    image_size: int                      # payload bytes
    flags: int
    load_address: int
    tlvs: tuple[tuple[int, bytes], ...]  # protected, then unprotected, in file order
    hashed_end: int                      # header, payload and protected TLVs: what the hash and signature cover
    end: int                             # offset after the TLV area
    hash_checked: bool                   # False only for an encrypted payload (hashed in clear)

    @property
    def version_text(self) -> str:
        """The version as MCUboot reports it: ``major.minor.revision[.build]``."""
        major, minor, revision, build = self.version
        return f"{major}.{minor}.{revision}" + (f".{build}" if build else "")

    @property
    def signature(self) -> str | None:
        """The kind of signature TLV, if any ("ECDSA", "Ed25519", ...)."""
        return next((SIGNATURE_TLVS[t] for t, _ in self.tlvs if t in SIGNATURE_TLVS), None)


def parse(data: bytes, *, what: str = "MCUboot image") -> McubootImage:
    """Parse and check ``data``; McubootImageError names the first fault and its offset."""
    data = bytes(data)
    if len(data) < HEADER_SIZE:
        raise McubootImageError(f"{what}: truncated: {len(data)} bytes, the header alone is {HEADER_SIZE}")
    (magic, load_address, header_size, protected_size, image_size, flags,
     major, minor, revision, build) = HEADER.unpack_from(data)
    if magic == MAGIC_V1:
        raise McubootImageError(f"{what}: version 1 header (magic 0x{magic:08x}), which MCUboot no longer boots")
    if magic != MAGIC:
        raise McubootImageError(f"{what}: bad magic 0x{magic:08x} at offset 0 (expected 0x{MAGIC:08x}); "
                                "is it signed with imgtool?")
    if header_size < HEADER_SIZE:
        raise McubootImageError(f"{what}: header size {header_size} is smaller than the {HEADER_SIZE}-byte header")
    body_end = header_size + image_size
    if len(data) < body_end:
        raise McubootImageError(f"{what}: truncated: header and payload need {body_end} bytes, "
                                f"the file has {len(data)}")
    protected: list[tuple[int, bytes]] = []
    hashed_end = body_end
    if protected_size:
        protected, hashed_end = _tlv_area(data, body_end, TLV_PROT_INFO_MAGIC, "protected TLV area", what)
        if hashed_end - body_end != protected_size:
            raise McubootImageError(f"{what}: protected TLV area at offset {body_end} is {hashed_end - body_end} "
                                    f"bytes, the header says {protected_size}")
    unprotected, end = _tlv_area(data, hashed_end, TLV_INFO_MAGIC, "TLV area", what)
    _check_tail(data, end, what)

    hashes = [value for kind, value in unprotected if kind == TLV_SHA256]
    if not hashes:
        other = [name for kind, name in TLV_OTHER_HASHES.items() if any(t == kind for t, _ in unprotected)]
        found = f" (it has a {other[0]} TLV, which fwagent does not check)" if other else ""
        raise McubootImageError(f"{what}: no SHA-256 TLV in the TLV area at offset {hashed_end}{found}")
    if len(hashes) > 1:
        raise McubootImageError(f"{what}: {len(hashes)} SHA-256 TLVs in the TLV area at offset {hashed_end}")
    expected = hashes[0]
    if len(expected) != 32:
        raise McubootImageError(f"{what}: SHA-256 TLV of {len(expected)} bytes (expected 32)")
    encrypted = bool(flags & FLAG_ENCRYPTED)
    if not encrypted:
        actual = hashlib.sha256(data[:hashed_end]).digest()
        if actual != expected:
            raise McubootImageError(f"{what}: wrong hash: the SHA-256 TLV says {expected.hex()[:16]}…, "
                                    f"header, payload and protected TLVs hash to {actual.hex()[:16]}… "
                                    "(damaged or altered file)")
    return McubootImage(version=(major, minor, revision, build), hash=expected, header_size=header_size,
                        image_size=image_size, flags=flags, load_address=load_address,
                        tlvs=tuple(protected + unprotected), hashed_end=hashed_end,
                        end=end, hash_checked=not encrypted)


def _tlv_area(data: bytes, offset: int, magic: int, name: str, what: str) -> tuple[list[tuple[int, bytes]], int]:
    """The TLVs of the area at ``offset``, and the offset after it."""
    if len(data) < offset + TLV_INFO.size:
        raise McubootImageError(f"{what}: truncated: no {name} at offset {offset} (the file has {len(data)} bytes)")
    found, total = TLV_INFO.unpack_from(data, offset)
    if found != magic:
        raise McubootImageError(f"{what}: bad {name} magic 0x{found:04x} at offset {offset} "
                                f"(expected 0x{magic:04x})")
    end = offset + total
    if total < TLV_INFO.size or end > len(data):
        raise McubootImageError(f"{what}: truncated: the {name} at offset {offset} claims {total} bytes, "
                                f"{len(data) - offset} remain")
    tlvs = []
    position = offset + TLV_INFO.size
    while position < end:
        if position + TLV_HEAD.size > end:
            raise McubootImageError(f"{what}: TLV header at offset {position} runs past the {name}")
        kind, length = TLV_HEAD.unpack_from(data, position)
        value_end = position + TLV_HEAD.size + length
        if value_end > end:
            raise McubootImageError(f"{what}: TLV 0x{kind:02x} at offset {position} ({length} bytes) "
                                    f"runs past the {name}")
        tlvs.append((kind, data[position + TLV_HEAD.size:value_end]))
        position = value_end
    return tlvs, end


def _check_tail(data: bytes, end: int, what: str) -> None:
    """Bytes after the TLV area are allowed only as a padded image's erased space and trailer."""
    if end == len(data):
        return
    tail = data[-16:]
    if len(data) - end >= 16 and (tail == TRAILER_MAGIC or tail[2:] == TRAILER_MAGIC_TAIL):
        return
    raise McubootImageError(f"{what}: {len(data) - end} unexpected bytes after the TLV area "
                            f"(offset {end}); neither the end of the image nor a padded slot with a trailer")
