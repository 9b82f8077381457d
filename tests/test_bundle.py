"""The update bundle: cpio codec, sw-description, writer, streaming reader."""

from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import uuid
from pathlib import Path

import cbor2
import libconf
import pytest
from conftest import require_tool
from cryptography.hazmat.primitives.asymmetric import ec

from agent.bundle.cpio import (ByteSum, Header, checksum, check_name, decode_header, decode_name,
                               encode_header, pad4, trailer)
from agent.bundle.digest import MemberDigest
from agent.bundle.reader import MAX_TAIL, BundleReader, bundle_info, verify_bundle
from agent.bundle.swdescription import quote, render, software_version, unquote
from agent.bundle.writer import create_bundle
from agent.errors import AuthenticationError, BundleError, InputFileError
from agent.manifest.check import check, plan
from agent.manifest.cose import TrustAnchor, key_id, sign1
from agent.manifest.envelope import encode_envelope
from agent.manifest.verify import Trust, inspect_envelope

KEY = ec.generate_private_key(ec.SECP256R1())
TRUST = Trust(anchors=(TrustAnchor(KEY.public_key(), key_id(KEY.public_key()), "test key"),))
VENDOR = uuid.uuid5(uuid.NAMESPACE_DNS, "vendor.example").bytes
CLASS = uuid.uuid5(uuid.NAMESPACE_DNS, "gateway.example").bytes
ROOTFS = bytes(range(256)) * 40 + b"end"      # 10243 bytes: not a multiple of 4
APPFS = b"application image" * 3


# --- helpers -------------------------------------------------------------------------


def suit_digest(data: bytes) -> bytes:
    return cbor2.dumps([-16, hashlib.sha256(data).digest()])


def make_envelope(payloads: list[tuple[str, bytes]], *, sequence: int = 1, key=KEY,
                  remote: list[tuple[str, bytes]] = ()) -> bytes:
    """A signed envelope whose install sequence fetches each payload as '#name', then ``remote`` URIs."""
    first = payloads[0][1] if payloads else b""
    shared = cbor2.dumps([20, {1: VENDOR, 2: CLASS, 3: suit_digest(first), 14: len(first)},
                          1, 15, 2, 15])
    install = []
    for uri, data in [("#" + name, data) for name, data in payloads] + list(remote):
        install += [20, {21: uri, 3: suit_digest(data), 14: len(data)}, 21, 2, 3, 15]
    common = cbor2.dumps({2: [[b"rootfs"]], 4: shared})
    manifest = cbor2.dumps({1: 1, 2: sequence, 3: common, 20: cbor2.dumps(install)})
    digest = suit_digest(cbor2.dumps(manifest))  # covers the manifest bstr, header included
    return encode_envelope(cbor2.dumps([digest, cbor2.dumps(sign1(digest, key))]), manifest)


PAYLOADS = [("rootfs.img", ROOTFS), ("app.img", APPFS)]
ENVELOPE = make_envelope(PAYLOADS)
VERIFIED = check(ENVELOPE, TRUST)


def member(name: str, data: bytes, fmt: str = "crc", **fields) -> bytes:
    header = encode_header(name, len(data), fmt=fmt, check=checksum(data), **fields)
    return header + data + bytes(pad4(len(data)) - len(data))


def archive(members: list[tuple[str, bytes]], fmt: str = "crc", end: bool = True) -> bytes:
    body = b"".join(member(name, data, fmt) for name, data in members)
    return body + (trailer(fmt) if end else b"")


def good_members(payloads=PAYLOADS, envelope=ENVELOPE) -> list[tuple[str, bytes]]:
    return [("sw-description", b'software = { version = "1"; };\n'), ("manifest.suit", envelope),
            *payloads]


def read_all(data: bytes, verified=VERIFIED) -> dict[str, bytes]:
    reader = BundleReader(io.BytesIO(data))
    return {stream.name: stream.read() for stream in reader.payloads(verified)}


def refused(code: str, data: bytes, verified=VERIFIED) -> BundleError:
    with pytest.raises(BundleError) as info:
        read_all(data, verified)
    assert info.value.code == code, info.value
    return info.value


def write_payloads(directory: Path, payloads=PAYLOADS) -> list[tuple[str, Path]]:
    files = []
    for name, data in payloads:
        path = directory / f"src-{name}"
        path.write_bytes(data)
        files.append((name, path))
    return files


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    out = tmp_path / "update.bundle"
    create_bundle(out, ENVELOPE, write_payloads(tmp_path), "1.2.0", [("gw", "rev1")], "test update")
    return out


# --- cpio codec ------------------------------------------------------------------------


def test_crc_header_vector():
    assert encode_header("sw-description", 5, check=532, ino=1) == (
        b"070702"        # magic: crc
        b"00000001"      # ino
        b"000081A4"      # mode: regular file, 0644
        b"00000000"      # uid
        b"00000000"      # gid
        b"00000001"      # nlink
        b"00000000"      # mtime
        b"00000005"      # filesize
        b"00000000"      # devmajor
        b"00000000"      # devminor
        b"00000000"      # rdevmajor
        b"00000000"      # rdevminor
        b"0000000F"      # namesize, NUL included
        b"00000214"      # check: 532 = sum(b"hello")
        b"sw-description\0" + b"\0" * 3)   # 110 + 15 = 125, padded to 128


def test_newc_header_and_trailer_vectors():
    assert encode_header("a", 3, fmt="newc", check=99, ino=2) == (
        b"070701" b"00000002" b"000081A4" b"00000000" b"00000000" b"00000001" b"00000000"
        b"00000003" b"00000000" b"00000000" b"00000000" b"00000000" b"00000002" b"00000000" b"a\0")
    assert trailer("newc") == (
        b"070701" b"00000000" b"00000000" b"00000000" b"00000000" b"00000001" b"00000000"
        b"00000000" b"00000000" b"00000000" b"00000000" b"00000000" b"0000000B" b"00000000"
        b"TRAILER!!!\0" + b"\0" * 3)
    assert trailer("crc")[:6] == b"070702"


def test_header_round_trip():
    raw = encode_header("rootfs.img", 10243, check=0xDEADBEEF)
    header = decode_header(raw[:110], 0)
    assert header == Header("crc", 0o100644, 10243, 11, 0xDEADBEEF)
    assert header.name_length == len(raw) - 110 == 14
    assert header.data_padding == 1
    assert decode_name(raw[110:], header, 0) == "rootfs.img"


@pytest.mark.parametrize("raw, fragment", [
    (b"070707" + b"0" * 104, "magic"),                                   # old portable ASCII (odc)
    (encode_header("a", 1)[:54] + b"0x000001" + encode_header("a", 1)[62:110], "filesize"),
    (encode_header("a", 1)[:54] + b"+0000001" + encode_header("a", 1)[62:110], "filesize"),
    (encode_header("a", 1)[:54] + b"0000_001" + encode_header("a", 1)[62:110], "filesize"),
    (encode_header("a", 1)[:54] + b" 0000001" + encode_header("a", 1)[62:110], "filesize"),
    (encode_header("a", 1)[:94] + b"00000001" + encode_header("a", 1)[102:110], "name size 1"),
    (encode_header("a", 1)[:94] + b"00000000" + encode_header("a", 1)[102:110], "name size 0"),
    (encode_header("a", 1)[:94] + b"00000101" + encode_header("a", 1)[102:110], "name size 257"),
])
def test_header_refusals(raw, fragment):
    with pytest.raises(BundleError, match=fragment) as info:
        decode_header(raw, 0)
    assert info.value.code == "bundle-format"


def test_header_bounds():
    raw = encode_header("x" * 255, 0)
    assert decode_header(raw[:110], 0).namesize == 256
    with pytest.raises(BundleError) as info:
        encode_header("x" * 256, 0)
    assert info.value.code == "bundle-name"
    with pytest.raises(BundleError) as info:
        encode_header("x", 1 << 32)
    assert info.value.code == "bundle-too-large"
    with pytest.raises(BundleError) as info:
        decode_header(raw[:100], 40)
    assert info.value.code == "bundle-truncated" and "offset 40" in str(info.value)


@pytest.mark.parametrize("name, code", [
    (b"abcd", "bundle-format"),        # no NUL where namesize puts it
    (b"abc\0\0\1", "bundle-format"),    # padding is not zero
    (b"a\0c\0", "bundle-name"),
    (b"\xff\xfe\0\0", "bundle-name"),
])
def test_name_refusals(name, code):
    header = Header("crc", 0o100644, 0, 4, 0)
    with pytest.raises(BundleError) as info:
        decode_name(name + bytes(header.name_length - len(name)), header, 0)
    assert info.value.code == code


@pytest.mark.parametrize("name", ["", "a/b", "/abs", "..", ".", "a..b", "tab\tname", "é" * 128])
def test_unsafe_names(name):
    with pytest.raises(BundleError) as info:
        check_name(name)
    assert info.value.code == "bundle-name"


@pytest.mark.parametrize("length", [0, 1, 255, 256, 257, 4099, (1 << 20) + 7])
def test_checksum_is_the_byte_sum(length):
    data = os.urandom(length)
    assert checksum(data) == sum(data) & 0xFFFFFFFF


def test_byte_sum_over_a_reused_buffer():
    buffer = bytearray(b"\xff" * 1000)
    summer = ByteSum(buffer)
    assert [summer.sum(n) for n in (0, 255, 256, 257, 1000)] == [0, 255 * 255, 256 * 255, 257 * 255,
                                                                  1000 * 255]
    buffer[:3] = b"\x01\x02\x03"
    assert summer.sum(3) == 6


@pytest.mark.parametrize("crc", [True, False])
def test_member_digest_matches_hashlib_and_sum(crc: bool):
    data = os.urandom(3 * 200_000 + 11)
    buffer = bytearray(200_000)
    digest = MemberDigest(crc)
    for start in range(0, len(data), len(buffer)):
        chunk = data[start:start + len(buffer)]
        digest.before_fill(buffer)            # a "newc" chunk is hashed behind: done before reuse
        buffer[:len(chunk)] = chunk
        digest.update(buffer, len(chunk))
    assert digest.sha256() == hashlib.sha256(data).digest()
    assert digest.check == (sum(data) & 0xFFFFFFFF if crc else 0)


# --- sw-description ---------------------------------------------------------------------


def test_sw_description_without_hardware():
    assert render("1.2.0", [("rootfs.img", "ab" * 32)], description="nightly") == (
        'software =\n{\n'
        '    version = "1.2.0";\n'
        '    description = "nightly";\n'
        '    images: (\n'
        '        {\n'
        '            filename = "rootfs.img";\n'
        f'            sha256 = "{"ab" * 32}";\n'
        '        }\n'
        '    );\n'
        '};\n')


def test_sw_description_groups_revisions_by_board():
    text = render("2.0", [("a.img", "00"), ("b.img", "11")],
                  [("gw-imx8", "rev1"), ("gw-am62", "1.0"), ("gw-imx8", "rev2"), ("gw-imx8", "rev1")])
    assert text.count("hardware-compatibility") == 2
    assert '    gw-imx8 =\n    {\n        hardware-compatibility = [ "rev1", "rev2" ];\n' in text
    assert '        hardware-compatibility = [ "1.0" ];\n' in text
    assert text.index("gw-imx8") < text.index("gw-am62")
    assert text.count('filename = "a.img";') == 2 and text.count('filename = "b.img";') == 2
    assert software_version(text) == "2.0"


def test_sw_description_escapes_strings():
    assert quote('a"b\\c\n\x01é') == '"a\\"b\\\\c\\n\\x01é"'
    assert unquote(quote('a"b\\c\n\x01é')) == 'a"b\\c\n\x01é'
    text = render('1.0 "beta"\\', [], description='version = "9"')
    assert 'description = "version = \\"9\\"";' in text
    assert software_version(text) == '1.0 "beta"\\'


def test_sw_description_parses_as_libconfig():
    revision = 'r"1\\\n\x01'
    text = render('1.2.0 "rc"', [("a.img", "00"), ("b.img", "11")],
                  [("gw-imx8", "rev1"), ("gw-am62", revision), ("gw-imx8", "rev2")], 'say "hi"\\')
    software = libconf.loads(text)["software"]
    assert (software["version"], software["description"]) == ('1.2.0 "rc"', 'say "hi"\\')
    assert list(software["gw-imx8"]["hardware-compatibility"]) == ["rev1", "rev2"]
    assert list(software["gw-am62"]["hardware-compatibility"]) == [revision]
    for board in ("gw-imx8", "gw-am62"):
        assert [(i["filename"], i["sha256"]) for i in software[board]["images"]] == [("a.img", "00"),
                                                                                   ("b.img", "11")]
    bare = libconf.loads(render("1", [("a.img", "00")]))["software"]
    assert "hardware-compatibility" not in bare
    assert [i["filename"] for i in bare["images"]] == ["a.img"]
    assert list(libconf.loads(render("1", []))["software"]["images"]) == []


def test_software_version_skips_strings_and_comments():
    text = ('/* version = "a" */ # version = "b"\n// version = "c"\n'
            'software = { description = "version = \\"d\\""; hw-version = "e"; version = "f"; };')
    assert software_version(text) == "f"
    assert software_version("software = { };") is None


@pytest.mark.parametrize("version, hardware", [
    ("", []), ("1", [("bad board", "r1")]), ("1", [("images", "r1")]), ("1", [("9lives", "r1")]),
    ("1", [("gw", "")]),
])
def test_sw_description_refusals(version, hardware):
    with pytest.raises(BundleError) as info:
        render(version, [], hardware)
    assert info.value.code in ("bundle-version", "bundle-hardware")


# --- writer ------------------------------------------------------------------------------


def test_round_trip(bundle: Path):
    report = verify_bundle(bundle, TRUST)
    assert report.format == "newc"
    assert [(m.name, m.size) for m in report.payloads] == [("rootfs.img", len(ROOTFS)),
                                                             ("app.img", len(APPFS))]
    assert report.remote == []
    assert report.result.manifest.sequence == 1
    with open(bundle, "rb") as f:
        assert {s.name: s.read() for s in BundleReader(f).payloads(VERIFIED)} == dict(PAYLOADS)


def test_layout(bundle: Path, tmp_path: Path):
    info = create_bundle(tmp_path / "again.bundle", ENVELOPE, write_payloads(tmp_path), "1.2.0",
                         [("gw", "rev1")], "test update")
    assert info.path.read_bytes() == bundle.read_bytes()    # reproducible: no time stamps
    assert [m.name for m in info.members] == ["sw-description", "manifest.suit", "rootfs.img", "app.img"]
    data = bundle.read_bytes()
    assert data.startswith(b"070701") and data[110:125] == b"sw-description\0"
    assert data.endswith(trailer("newc"))
    assert info.size == len(data)
    for m in info.members:
        body = info.sw_description.encode() if m.name == "sw-description" else \
            dict(PAYLOADS + [("manifest.suit", ENVELOPE)])[m.name]
        assert data[m.data_offset:m.data_offset + m.size] == body
    assert software_version(info.sw_description) == "1.2.0"
    assert f'sha256 = "{hashlib.sha256(ROOTFS).hexdigest()}"' in info.sw_description


def test_large_payload_round_trip(tmp_path: Path):
    big = os.urandom(2 * 1024 * 1024 + 5)
    envelope = make_envelope([("big.img", big)])
    out = tmp_path / "big.bundle"
    create_bundle(out, envelope, write_payloads(tmp_path, [("big.img", big)]), "1")
    report = verify_bundle(out, TRUST)
    assert [(m.name, m.size) for m in report.payloads] == [("big.img", len(big))]
    with open(out, "rb") as f:
        assert b"".join(next(BundleReader(f).payloads(check(envelope, TRUST)))) == big
    data = bytearray(out.read_bytes())
    data[-200] ^= 1                                   # inside the payload, near its end
    out.write_bytes(data)
    with pytest.raises(BundleError) as info:
        verify_bundle(out, TRUST)
    assert info.value.code == "bundle-digest-mismatch"


def test_a_server_reading_only_the_first_member_finds_sw_description(bundle: Path):
    """Servers such as goosebit read the first header, the name up to its NUL, then exactly 3
    bytes of padding (right for a 14-character name) and the sw-description text after it."""
    data = bundle.read_bytes()
    size = int(data[54:62], 16)
    end = data.index(b"\0", 110)
    assert data[110:end] == b"sw-description"
    text = data[end + 1 + 3:end + 1 + 3 + size].decode()
    software = libconf.loads(text)["software"]
    assert software["version"] == "1.2.0"
    assert list(software["gw"]["hardware-compatibility"]) == ["rev1"]


def test_remote_payloads_are_not_carried(tmp_path: Path):
    remote = [("https://updates.example/app.img", APPFS)]
    envelope = make_envelope([PAYLOADS[0]], remote=remote)
    out = tmp_path / "b"
    info = create_bundle(out, envelope, write_payloads(tmp_path, [PAYLOADS[0]]), "1")
    assert [m.name for m in info.members][2:] == ["rootfs.img"]
    assert [r.uri for r in info.remote] == ["https://updates.example/app.img"]
    assert "app.img" not in info.sw_description
    report = verify_bundle(out, TRUST)
    assert [m.name for m in report.payloads] == ["rootfs.img"]
    assert [r.uri for r in report.remote] == ["https://updates.example/app.img"]


@pytest.mark.parametrize("fmt", ["crc", "newc"])
def test_gnu_cpio_extracts_our_bundle(tmp_path: Path, fmt: str):
    cpio = require_tool("cpio")
    out = tmp_path / "update.bundle"
    info = create_bundle(out, ENVELOPE, write_payloads(tmp_path), "1.2.0", fmt=fmt)
    target = tmp_path / "x"
    target.mkdir()
    with open(out, "rb") as f:
        run = subprocess.run([cpio, "-idv"], stdin=f, cwd=target, capture_output=True, text=True,
                             check=True)
    assert run.stderr.split()[:4] == ["sw-description", "manifest.suit", "rootfs.img", "app.img"]
    assert sorted(p.name for p in target.iterdir()) == ["app.img", "manifest.suit", "rootfs.img",
                                                        "sw-description"]
    assert (target / "sw-description").read_text() == info.sw_description
    assert (target / "manifest.suit").read_bytes() == ENVELOPE
    for name, data in PAYLOADS:
        assert (target / name).read_bytes() == data


@pytest.mark.parametrize("fmt", ["crc", "newc"])
def test_read_archive_made_by_gnu_cpio(tmp_path: Path, fmt: str):
    cpio = require_tool("cpio")
    (tmp_path / "sw-description").write_text('software = { version = "3.1"; };\n')
    (tmp_path / "manifest.suit").write_bytes(ENVELOPE)
    for name, data in PAYLOADS:
        (tmp_path / name).write_bytes(data)
    names = "sw-description\nmanifest.suit\nrootfs.img\napp.img\n"
    made = subprocess.run([cpio, "-o", "-H", fmt], input=names.encode(), cwd=tmp_path,
                          capture_output=True, check=True).stdout
    assert len(made) % 512 == 0          # GNU pads the archive with zeros after the trailer
    path = tmp_path / "gnu.bundle"
    path.write_bytes(made)
    report = verify_bundle(path, TRUST)
    assert report.format == fmt and [m.name for m in report.payloads] == ["rootfs.img", "app.img"]
    assert read_all(made) == dict(PAYLOADS)
    assert bundle_info(path)["sw_description_version"] == "3.1"


def test_create_refusals_write_nothing(tmp_path: Path):
    files = dict(write_payloads(tmp_path))
    out = tmp_path / "out.bundle"
    out.write_bytes(b"previous")
    wrong = tmp_path / "wrong.img"
    wrong.write_bytes(ROOTFS[:-1] + b"X")
    short = tmp_path / "short.img"
    short.write_bytes(ROOTFS[:-1])
    cases = [
        ([("rootfs.img", files["rootfs.img"])], "bundle-payload-missing", "#app.img"),
        ([*files.items(), ("extra.img", wrong)], "bundle-payload-extra", "extra.img"),
        ([*files.items(), ("rootfs.img", wrong)], "bundle-payload-duplicate", "rootfs.img"),
        ([("rootfs.img", short), ("app.img", files["app.img"])], "bundle-payload-size", "short.img"),
        ([("rootfs.img", wrong), ("app.img", files["app.img"])], "bundle-payload-digest", "wrong.img"),
        ([*files.items(), ("a/b", wrong)], "bundle-name", "a/b"),
        ([*files.items(), ("..", wrong)], "bundle-name", ".."),
        ([*files.items(), ("", wrong)], "bundle-name", "''"),
        ([*files.items(), ("sw-description", wrong)], "bundle-name", "sw-description"),
        ([*files.items(), ("manifest.suit", wrong)], "bundle-name", "manifest.suit"),
        ([*files.items(), ("TRAILER!!!", wrong)], "bundle-name", "TRAILER!!!"),
    ]
    for payloads, code, fragment in cases:
        with pytest.raises(BundleError, match=re.escape(fragment)) as info:
            create_bundle(out, ENVELOPE, payloads, "1")
        assert info.value.code == code, payloads
    with pytest.raises(InputFileError):
        create_bundle(out, ENVELOPE, [("rootfs.img", tmp_path / "nope"), ("app.img", files["app.img"])],
                      "1")
    assert out.read_bytes() == b"previous"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_create_refuses_payload_without_digest(tmp_path: Path):
    install = cbor2.dumps([20, {21: "#rootfs.img"}, 21, 2])
    manifest = cbor2.dumps({1: 1, 2: 1, 3: cbor2.dumps({2: [[b"rootfs"]]}), 20: install})
    digest = suit_digest(cbor2.dumps(manifest))
    envelope = encode_envelope(cbor2.dumps([digest, cbor2.dumps(sign1(digest, KEY))]), manifest)
    with pytest.raises(BundleError) as info:
        create_bundle(tmp_path / "b", envelope, write_payloads(tmp_path, [PAYLOADS[0]]), "1")
    assert info.value.code == "bundle-unbounded-payload"


# --- reader refusals ---------------------------------------------------------------------


def test_reads_a_hand_made_archive():
    assert read_all(archive(good_members())) == dict(PAYLOADS)
    assert read_all(archive(good_members(), fmt="newc")) == dict(PAYLOADS)


def test_first_member_must_be_sw_description():
    members = good_members()
    refused("bundle-no-sw-description", archive([members[1], members[0], *members[2:]]))
    refused("bundle-no-sw-description", archive([("sw-description.txt", b"x"), *members[1:]]))


def test_second_member_must_be_the_manifest():
    members = good_members()
    refused("bundle-no-manifest", archive([members[0], *members[2:], members[1]]))


@pytest.mark.parametrize("name", ["../rootfs.img", "dir/rootfs.img", "/rootfs.img", "..", "root\0fs"])
def test_unsafe_member_names(name: str):
    members = good_members()
    refused("bundle-name", archive([*members[:2], (name, ROOTFS), *members[3:]]))


def test_payload_larger_than_the_manifest_says_is_refused_before_its_body():
    members = good_members()
    header = encode_header("rootfs.img", len(ROOTFS) + 4096)
    data = archive(members[:2], end=False) + header   # no body at all: it must not be read
    error = refused("bundle-size-mismatch", data)
    assert f"{len(ROOTFS) + 4096} bytes, the manifest says {len(ROOTFS)}" in str(error)
    refused("bundle-size-mismatch", archive([*members[:2], ("rootfs.img", ROOTFS[:-1]), members[3]]))


@pytest.mark.parametrize("cut", [10, 120, 200, 400, -1500, -700, -130, -124, -1])
def test_truncated_archives(cut: int):
    data = archive(good_members())
    with pytest.raises(BundleError) as info:
        read_all(data[:cut])
    assert info.value.code == "bundle-truncated", info.value


def test_missing_trailer():
    error = refused("bundle-truncated", archive(good_members(), end=False))
    assert "member header" in str(error)


def test_unknown_members():
    members = good_members()
    refused("bundle-unknown-member", archive([*members, ("notes.txt", b"hello")]))
    refused("bundle-unknown-member", archive([*members[:2], ("notes.txt", b"x"), *members[2:]]))


def test_members_out_of_manifest_order():
    members = good_members()
    error = refused("bundle-order", archive([*members[:2], members[3], members[2]]))
    assert "fetch order (rootfs.img, app.img)" in str(error)


def test_duplicate_member():
    members = good_members()
    refused("bundle-duplicate-member", archive([*members[:3], members[2], members[3]]))


def test_missing_payload():
    members = good_members()
    error = refused("bundle-missing-payload", archive(members[:3]))
    assert "app.img" in str(error)


@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_bad_crc_checksum(index: int):
    members = good_members()
    parts = [member(name, data) for name, data in members]
    parts[index] = parts[index][:102] + b"%08X" % (checksum(members[index][1]) ^ 1) + parts[index][110:]
    error = refused("bundle-checksum", b"".join(parts) + trailer())
    assert members[index][0] in str(error)


def test_digest_mismatch_withholds_the_last_bytes():
    members = good_members()
    tampered = ROOTFS[:-3] + b"END"           # same size; the archive's own checksum is right
    reader = BundleReader(io.BytesIO(archive([*members[:2], ("rootfs.img", tampered), members[3]])))
    stream = next(reader.payloads(VERIFIED))
    assert stream.read(len(ROOTFS) - 1) == tampered[:-1]
    with pytest.raises(BundleError) as info:
        stream.read(1)
    assert info.value.code == "bundle-digest-mismatch"
    assert "rootfs.img" in str(info.value)
    with pytest.raises(BundleError) as again:
        stream.read()
    assert again.value is info.value
    assert not stream.verified


def test_size_limits_of_the_first_members():
    members = good_members()
    refused("bundle-too-large", archive([("sw-description", b" " * (64 * 1024 + 1)), *members[1:]]))
    data = archive(members)
    with pytest.raises(BundleError) as info:
        BundleReader(io.BytesIO(data), max_manifest=len(ENVELOPE) - 1)
    assert info.value.code == "bundle-too-large"
    assert BundleReader(io.BytesIO(data), max_manifest=len(ENVELOPE)).manifest == ENVELOPE


def test_after_the_trailer_only_zeros():
    data = archive(good_members())
    assert read_all(data + bytes(1000)) == dict(PAYLOADS)
    refused("bundle-trailing-data", data + bytes(10) + b"x")


def test_after_the_trailer_at_most_a_mebibyte_of_zeros():
    """A stream from the network must end: an endless run of zeros is refused, not read on."""
    data = archive(good_members())
    assert read_all(data + bytes(MAX_TAIL)) == dict(PAYLOADS)
    refused("bundle-trailing-data", data + bytes(MAX_TAIL + 1))


@pytest.mark.parametrize("fmt", ["crc", "newc"])
def test_written_bytes_are_hashed_instead_of_read(fmt: str):
    """A resumed install hands over what its slot already holds: checked as if read, and the
    archive is passed over by as many bytes."""
    data = archive(good_members(), fmt=fmt)
    streams = BundleReader(io.BytesIO(data)).payloads(VERIFIED)
    first = next(streams)
    assert first.skip_written([ROOTFS[:4096], ROOTFS[4096:8000]]) == 8000
    assert first.read() == ROOTFS[8000:] and first.verified
    second = next(streams)
    assert second.skip_written([APPFS]) == len(APPFS) and second.verified
    assert second.read() == b"" and next(streams, None) is None      # and the trailer was read


def test_written_bytes_that_differ_fail_the_digest():
    data = archive(good_members())
    first = next(BundleReader(io.BytesIO(data)).payloads(VERIFIED))
    first.skip_written([b"\0" * 100])
    with pytest.raises(BundleError) as info:
        first.read()
    assert info.value.code == "bundle-digest-mismatch"
    whole = next(BundleReader(io.BytesIO(data)).payloads(VERIFIED))
    with pytest.raises(BundleError) as info:
        whole.skip_written([bytes(len(ROOTFS))])        # all of it: checked at once
    assert info.value.code == "bundle-digest-mismatch"


def test_mixed_formats_and_non_regular_members():
    members = good_members()
    mixed = archive(members[:3], fmt="crc", end=False) + member(*members[3], fmt="newc") + trailer()
    refused("bundle-format", mixed)
    directory = member("rootfs.img", ROOTFS, mode=0o040755)
    refused("bundle-member-type", archive(members[:2], end=False) + directory + member(*members[3])
            + trailer())


def test_payloads_need_the_verified_result_of_this_manifest():
    data = archive(good_members())
    reader = BundleReader(io.BytesIO(data))
    with pytest.raises(BundleError) as info:
        reader.payloads(plan(inspect_envelope(ENVELOPE)))     # parsed, signature not checked
    assert info.value.code == "bundle-unverified"
    other = check(make_envelope(PAYLOADS, sequence=2), TRUST)
    with pytest.raises(BundleError) as info:
        reader.payloads(other)
    assert info.value.code == "bundle-manifest-mismatch"
    list(reader.payloads(VERIFIED))
    with pytest.raises(BundleError) as info:
        reader.payloads(VERIFIED)
    assert info.value.code == "bundle-usage"


def test_bundle_signed_by_another_key_is_refused_before_any_payload(tmp_path: Path):
    other = ec.generate_private_key(ec.SECP256R1())
    envelope = make_envelope(PAYLOADS, key=other)
    path = tmp_path / "b"
    path.write_bytes(archive(good_members(envelope=envelope)))
    with pytest.raises(AuthenticationError):
        verify_bundle(path, TRUST)


# --- streams and show -----------------------------------------------------------------------


def test_stream_interfaces():
    empty = [("empty.img", b"")]
    payloads = [*PAYLOADS, *empty]
    envelope = make_envelope(payloads)
    verified = check(envelope, TRUST)
    reader = BundleReader(io.BytesIO(archive(good_members(payloads, envelope))))
    streams = reader.payloads(verified)
    rootfs = next(streams)
    assert (rootfs.name, rootfs.size, rootfs.ref.digest) == ("rootfs.img", len(ROOTFS),
                                                             hashlib.sha256(ROOTFS).digest())
    buffer = bytearray(4096)
    got = bytearray()
    while count := rootfs.readinto(buffer):
        got += buffer[:count]
    assert got == ROOTFS and rootfs.verified
    app = next(streams)
    assert b"".join(app) == APPFS and app.verified
    last = next(streams)
    assert last.read() == b"" and last.verified
    assert list(streams) == []


def test_unread_streams_are_checked_when_the_next_is_asked_for():
    members = good_members()
    reader = BundleReader(io.BytesIO(archive([*members[:2], ("rootfs.img", ROOTFS[:-1] + b"?"),
                                              members[3]])))
    streams = reader.payloads(VERIFIED)
    first = next(streams)
    assert first.read(10) == ROOTFS[:10]
    with pytest.raises(BundleError) as info:
        next(streams)
    assert info.value.code == "bundle-digest-mismatch"


def test_bundle_info(bundle: Path):
    info = bundle_info(bundle)
    assert info["format"] == "newc"
    assert info["manifest_verified"] is False
    assert info["manifest_sequence"] == 1
    assert info["sw_description_version"] == "1.2.0"
    assert [(m["name"], m["size"]) for m in info["members"]] == [
        ("sw-description", len(info["sw_description"])), ("manifest.suit", len(ENVELOPE)),
        ("rootfs.img", len(ROOTFS)), ("app.img", len(APPFS))]
    data = bundle.read_bytes()
    for m in info["members"]:
        assert data[m["offset"]:m["offset"] + 6] == b"070701"
    assert [(p["uri"], p["digest"], p["size"], p["carried"]) for p in info["payloads"]] == [
        ("#rootfs.img", hashlib.sha256(ROOTFS).hexdigest(), len(ROOTFS), True),
        ("#app.img", hashlib.sha256(APPFS).hexdigest(), len(APPFS), True)]
    assert info["payloads"][0]["component"] == "['rootfs']"
