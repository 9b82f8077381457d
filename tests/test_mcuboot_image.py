"""MCUboot image files: parsed and checked before any byte goes to a Thing.

Images made by imgtool (PyPI, the dev group) are the real thing; images built
here byte by byte from the format cover the faults imgtool never makes.
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bootloader_bridge.things.mcuboot_image import McubootImageError, parse
from hil.sim.smp_device import imgtool_path, keygen, sign_image
from conftest import missing

PAYLOAD = bytes((i * 7 + 3) & 0xFF for i in range(20000))


@pytest.fixture(scope="module")
def imgtool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tool = imgtool_path()
    if tool is None:
        missing("imgtool is not installed (uv sync installs the dev group)")
    return tmp_path_factory.mktemp("imgtool")


def imgtool_digest(image: bytes, directory: Path, key: Path | None = None) -> tuple[tuple[int, ...], bytes]:
    """Version and hash as imgtool's own verifier reads them."""
    from imgtool import image as imgtool_image
    from imgtool import keys as imgtool_keys

    path = directory / "verify.bin"
    path.write_bytes(image)
    result, version, digest, _ = imgtool_image.Image.verify(str(path), imgtool_keys.load(str(key)) if key else None)
    assert result == imgtool_image.VerifyResult.OK
    return tuple(version), digest


# --- made by imgtool -----------------------------------------------------------------


def test_hash_only_image(imgtool: Path) -> None:
    image = sign_image(PAYLOAD, imgtool, version="1.2.3+4")
    parsed = parse(image)
    assert (parsed.version, parsed.hash) == imgtool_digest(image, imgtool)
    assert parsed.version_text == "1.2.3.4"
    assert (parsed.header_size, parsed.image_size, parsed.end) == (0x200, len(PAYLOAD), len(image))
    assert parsed.signature is None and parsed.hash_checked
    assert parsed.hash != hashlib.sha256(image).digest()     # the TLV hash is not the file's


def test_signed_image_with_protected_tlvs(imgtool: Path) -> None:
    key = keygen(imgtool, "ecdsa-p256")
    image = sign_image(PAYLOAD, imgtool, version="2.0.0", key=key, extra=("--security-counter", "7"))
    parsed = parse(image)
    assert (parsed.version, parsed.hash) == imgtool_digest(image, imgtool, key)
    assert parsed.version_text == "2.0.0"
    assert parsed.signature == "ECDSA"
    assert (0x50, struct.pack("<I", 7)) in parsed.tlvs     # SEC_CNT, protected
    assert hashlib.sha256(image[:parsed.hashed_end]).digest() == parsed.hash
    assert len(PAYLOAD) + 0x200 < parsed.hashed_end < parsed.end


def test_padded_confirmed_image_for_a_whole_slot(imgtool: Path) -> None:
    key = keygen(imgtool, "ed25519")
    image = sign_image(PAYLOAD, imgtool, version="0.9.1", key=key, slot_size=0x8000, extra=("--pad", "--confirm"))
    assert len(image) == 0x8000
    parsed = parse(image)
    assert parsed.hash == imgtool_digest(image, imgtool, key)[1]
    assert parsed.signature == "Ed25519"
    assert parsed.end < len(image)


def test_imgtool_images_damaged(imgtool: Path) -> None:
    image = bytearray(sign_image(PAYLOAD, imgtool))
    image[0x200 + 100] ^= 0x40
    with pytest.raises(McubootImageError, match="wrong hash"):
        parse(bytes(image))
    with pytest.raises(McubootImageError, match="truncated"):
        parse(sign_image(PAYLOAD, imgtool)[:-10])


# --- built per the format ---------------------------------------------------------------


def tlv(kind: int, value: bytes) -> bytes:
    return struct.pack("<HH", kind, len(value)) + value


def build(payload: bytes = PAYLOAD, *, version: tuple[int, int, int, int] = (1, 0, 0, 0), header_size: int = 0x200,
          protected: bytes = b"", flags: int = 0, magic: int = 0x96F3B83D, hash_tlv: bool = True,
          extra_tlvs: bytes = b"", damage_hash: bool = False) -> bytes:
    protected_area = struct.pack("<HH", 0x6908, 4 + len(protected)) + protected if protected else b""
    header = struct.pack("<IIHHIIBBHII", magic, 0, header_size, len(protected_area), len(payload), flags,
                         *version, 0)
    hashed = header.ljust(header_size, b"\0") + payload + protected_area
    digest = bytearray(hashlib.sha256(hashed).digest())
    if damage_hash:
        digest[0] ^= 1
    tlvs = (tlv(0x10, bytes(digest)) if hash_tlv else b"") + extra_tlvs
    return hashed + struct.pack("<HH", 0x6907, 4 + len(tlvs)) + tlvs


def test_built_image_parses() -> None:
    image = build(version=(3, 4, 513, 0x01020304), protected=tlv(0x50, b"\1\0\0\0"), extra_tlvs=tlv(0x24, bytes(64)))
    parsed = parse(image)
    assert parsed.version == (3, 4, 513, 0x01020304)
    assert parsed.version_text == "3.4.513.16909060"
    assert parsed.signature == "Ed25519"
    assert [kind for kind, _ in parsed.tlvs] == [0x50, 0x10, 0x24]


@pytest.mark.parametrize(("image", "message"), [
    (b"", r"truncated: 0 bytes, the header alone is 32"),
    (b"\x3d\xb8\xf3\x96" + bytes(20), r"truncated: 24 bytes"),
    (build(magic=0x12345678), r"bad magic 0x12345678 at offset 0 \(expected 0x96f3b83d\)"),
    (build(magic=0x96F3B83C), r"version 1 header"),
    (build(header_size=16), r"header size 16 is smaller"),
    (build()[:0x200 + 100], r"truncated: header and payload need 20512 bytes, the file has 612"),
    (build()[:0x200 + len(PAYLOAD) + 2], r"truncated: no TLV area at offset 20512"),
    (build()[:-1], r"truncated: the TLV area at offset 20512 claims 40 bytes, 39 remain"),
    (build(hash_tlv=False, extra_tlvs=tlv(0x01, bytes(32))), r"no SHA-256 TLV in the TLV area at offset 20512$"),
    (build(hash_tlv=False, extra_tlvs=tlv(0x11, bytes(48))), r"it has a SHA-384 TLV"),
    (build(extra_tlvs=tlv(0x10, bytes(32))), r"2 SHA-256 TLVs"),
    (build(damage_hash=True), r"wrong hash: the SHA-256 TLV says"),
    (build() + b"\0\0\0\0", r"4 unexpected bytes after the TLV area \(offset 20552\)"),
    (build(extra_tlvs=struct.pack("<HH", 0x22, 70) + bytes(10)), r"TLV 0x22 at offset 20552 \(70 bytes\) runs past"),
])
def test_faults_are_named(image: bytes, message: str) -> None:
    with pytest.raises(McubootImageError, match=message) as fault:
        parse(image, what="app.bin")
    assert str(fault.value).startswith("app.bin: ")
    assert fault.value.code == "thing-image"
    assert isinstance(fault.value, ValueError)


def test_protected_area_must_match_the_header() -> None:
    image = bytearray(build(protected=tlv(0x50, b"\1\0\0\0")))
    struct.pack_into("<H", image, 10, 20)          # the header claims 20 bytes, the area is 12
    with pytest.raises(McubootImageError, match="protected TLV area at offset 20512 is 12 bytes, the header says 20"):
        parse(bytes(image))
    image = bytearray(build(protected=tlv(0x50, b"\1\0\0\0")))
    image[0x200 + len(PAYLOAD)] = 0x07              # 0x6907 where 0x6908 belongs
    with pytest.raises(McubootImageError, match="bad protected TLV area magic 0x6907"):
        parse(bytes(image))


def test_a_padded_slot_needs_its_trailer() -> None:
    image = build()
    padded = image + b"\xff" * (4096 - len(image) % 4096 - 16) + bytes.fromhex("77c295f360d2ef7f3552500f2cb67980")
    assert parse(padded).end == len(image)
    other_align = image + b"\xff" * 100 + b"\x10\x00" + bytes.fromhex("2de15d29410b8d77679c110f1f8a")
    assert parse(other_align).end == len(image)
    with pytest.raises(McubootImageError, match="unexpected bytes"):
        parse(image + b"\xff" * 100)


def test_encrypted_payload_is_not_rehashed() -> None:
    image = build(flags=0x04, damage_hash=True)   # the TLV hashes the clear payload, not the file
    parsed = parse(image)
    assert not parsed.hash_checked


MUTABLE = build(payload=PAYLOAD[:300], header_size=0x40, protected=tlv(0x50, b"\1\0\0\0"))


@settings(max_examples=300, deadline=None)
@given(offset=st.integers(0, len(MUTABLE) - 1), change=st.integers(1, 255))
@example(offset=16, change=0x04)
@example(offset=16, change=0x08)
def test_any_changed_byte_is_refused_with_a_named_fault(offset: int, change: int) -> None:
    """Header, payload, protected TLVs, TLV area: one changed byte anywhere is a McubootImageError
    (nothing else escapes), except the encryption flags (AES-128 0x04, AES-256 0x08), whose
    payload is hashed in the clear."""
    image = bytearray(MUTABLE)
    image[offset] ^= change
    flags = struct.unpack_from("<I", image, 16)[0]
    if 16 <= offset < 20 and flags & 0x0C:
        assert not parse(bytes(image)).hash_checked
        return
    with pytest.raises(McubootImageError, match=r"^MCUboot image: "):
        parse(bytes(image))


@settings(max_examples=200, deadline=None)
@given(tail=st.binary(max_size=600))
def test_random_bytes_after_the_magic_are_refused_with_a_named_fault(tail: bytes) -> None:
    with pytest.raises(McubootImageError, match=r"^MCUboot image: "):
        parse(b"\x3d\xb8\xf3\x96" + tail)
