"""SMP over a serial console: byte-exact vectors for fwagent's own codec.

The frames marked "reference" are the ones the smp package produced in the
protocol notes (docs in shared/reference/serial-protocols.md, section 1.2);
the smp package is used here only as a second opinion, never by fwagent.
"""

from __future__ import annotations

import base64
import binascii
import os
import struct

import pytest

from bootloader_bridge.things import smp_codec as codec

SHA = bytes(range(32))


# --- CRC-16/XMODEM ---------------------------------------------------------------


def test_crc16_xmodem_check_value() -> None:
    assert codec.crc16_xmodem(b"123456789") == 0x31C3
    assert codec.crc16_xmodem(b"") == 0


def test_crc16_xmodem_of_a_packet_and_its_crc_is_zero() -> None:
    packet = bytes.fromhex("0800000100012a00a0")
    assert codec.crc16_xmodem(packet) == 0xEE06
    assert codec.crc16_xmodem(packet + b"\xee\x06") == 0


def test_crc16_xmodem_agrees_with_binascii() -> None:
    for size in (1, 2, 7, 64, 1021):
        data = os.urandom(size)
        assert codec.crc16_xmodem(data) == binascii.crc_hqx(data, 0)


# --- header and packets ------------------------------------------------------------


def test_header_packing() -> None:
    header = codec.Header(op=codec.WRITE, group=1, id=1, seq=7, length=0x0123, version=1)
    assert header.pack() == bytes.fromhex("0a 00 0123 0001 07 01")
    assert codec.Header.unpack(header.pack()) == header
    v1 = codec.Header(op=codec.READ_RSP, group=0x0040, id=0xFE, seq=0xFF, length=2)
    assert v1.pack() == bytes.fromhex("01 00 0002 0040 ff fe")
    assert codec.Header.unpack(bytes.fromhex("1b 00 0000 0001 00 00")).version == 3


def test_requests_are_smp_v1_with_the_documented_bodies() -> None:
    assert codec.image_state_read(0x2A) == bytes.fromhex("00 00 0001 0001 2a 00 a0")
    assert codec.reset(0x2B) == bytes.fromhex("02 00 0001 0000 2b 05 a0")
    assert codec.params_read(1) == bytes.fromhex("00 00 0001 0000 01 06 a0")
    # {"hash": h'00..1f', "confirm": false}
    assert codec.image_state_write(9, SHA, False) == (
        bytes.fromhex("02 00 0031 0001 09 00 a2 64 68617368 58 20") + SHA
        + bytes.fromhex("67 636f6e6669726d f4"))
    # {"confirm": true}
    assert codec.image_state_write(10, None, True) == bytes.fromhex("02 00 000a 0001 0a 00 a1 67 636f6e6669726d f5")


def test_first_upload_request_carries_len_sha_and_image() -> None:
    packet = codec.image_upload(3, codec.upload_fields(0, 2, SHA, 0), b"\x01\x02")
    body = (bytes.fromhex("a5 63 6f6666 00 63 6c656e 02 63 736861 58 20") + SHA
            + bytes.fromhex("65 696d616765 00 64 64617461 42 0102"))
    assert len(body) == 0x40
    assert packet == bytes.fromhex("02 00 0040 0001 03 01") + body


def test_later_upload_requests_carry_only_off_and_data() -> None:
    packet = codec.image_upload(4, codec.upload_fields(1000, 5000, SHA, 0), b"\xaa")
    assert packet == bytes.fromhex("02 00 000f 0001 04 01 a2 63 6f6666 19 03e8 64 64617461 41 aa")


@pytest.mark.parametrize("max_packet", [80, 90, 100, 300, 320, 1020, 2044, 65000])
@pytest.mark.parametrize("off", [0, 23, 24, 4096, 70000])
def test_upload_room_fills_the_packet_exactly(max_packet: int, off: int) -> None:
    fields = codec.upload_fields(off, 100000, SHA, 0)
    room = codec.upload_room(max_packet, fields)
    assert room > 0
    assert len(codec.image_upload(0, fields, bytes(room))) <= max_packet
    assert len(codec.image_upload(0, fields, bytes(room + 1))) > max_packet
    # where the length prefix grows (23 -> 24, 255 -> 256 bytes) the packet may end one short
    assert max_packet - len(codec.image_upload(0, fields, bytes(room))) <= 2


# --- console framing -------------------------------------------------------------------


def test_reference_frames() -> None:
    state_read_v2 = codec.encode_packet(codec.READ, codec.GROUP_IMAGE, codec.IMAGE_STATE, 0x2A, {}, version=1)
    reset_v2 = codec.encode_packet(codec.WRITE, codec.GROUP_OS, codec.OS_RESET, 0x2B, {}, version=1)
    assert state_read_v2 == bytes.fromhex("0800000100012a00a0")
    assert codec.encode_frame(state_read_v2) == b"\x06\x09AAsIAAABAAEqAKDuBg==\n"
    assert codec.encode_frame(reset_v2) == b"\x06\x09AAsKAAABAAArBaCWEA==\n"
    assert codec.FrameDecoder().feed(b"\x06\x09AAsIAAABAAEqAKDuBg==\n") == [state_read_v2]


def test_a_packet_over_one_line_is_split_into_127_byte_lines() -> None:
    packet = bytes(range(200))          # 2 + 200 + 2 bytes -> 272 base64 characters
    raw = struct.pack(">H", 202) + packet + struct.pack(">H", binascii.crc_hqx(packet, 0))
    text = base64.b64encode(raw)
    assert len(text) == 272
    expected = (b"\x06\x09" + text[:124] + b"\n" + b"\x04\x14" + text[124:248] + b"\n"
                + b"\x04\x14" + text[248:] + b"\n")
    frame = codec.encode_frame(packet)
    assert frame == expected
    lines = frame.split(b"\n")[:-1]
    assert [len(line) + 1 for line in lines] == [127, 127, 27]
    assert frame.count(b"=") == 0 and len(raw) % 3 == 0
    assert codec.FrameDecoder().feed(frame) == [packet]


def test_framing_agrees_with_the_smp_package() -> None:
    from smp import packet as smp_packet       # smpclient's framing, test-only
    for size in (9, 89, 90, 91, 92, 500, 1020, 4000):
        packet = os.urandom(size)
        theirs = b"".join(smp_packet.encode(packet, line_length=128))
        assert codec.encode_frame(packet) == theirs
        decoder = smp_packet.decode()
        next(decoder)
        with pytest.raises(StopIteration) as done:
            for line in theirs.split(b"\n")[:-1]:
                decoder.send(line + b"\n")
        assert done.value.value == packet


def test_decoding_skips_log_lines_between_and_inside_frames() -> None:
    first, second = os.urandom(150), codec.image_state_read(5)
    frame = codec.encode_frame(first)
    cut = frame.index(b"\n") + 1
    stream = (b"*** Booting MCUboot ***\r\n" + frame[:cut] + b"[00:00:01.000] <inf> log line\r\n"
              + frame[cut:] + b"noise without a newline" + codec.encode_frame(second) + b"\r\n\r\n")
    decoder = codec.FrameDecoder()
    packets = [p for i in range(len(stream)) for p in decoder.feed(stream[i:i + 1])]
    assert packets == [first, second]
    assert list(decoder.console) == [b"*** Booting MCUboot ***", b"[00:00:01.000] <inf> log line",
                                     b"noise without a newline"]
    assert decoder.damaged == 0


def test_a_frame_with_a_bad_crc_is_dropped_and_the_next_one_read() -> None:
    packet = codec.image_state_read(1)
    good = codec.encode_frame(packet)
    raw = bytearray(base64.b64decode(good[2:-1]))
    raw[-1] ^= 1
    bad = b"\x06\x09" + base64.b64encode(bytes(raw)) + b"\n"
    decoder = codec.FrameDecoder()
    assert decoder.feed(bad + good) == [packet]
    assert decoder.damaged == 1


def test_a_new_start_line_abandons_a_frame_in_progress() -> None:
    long, short = os.urandom(300), codec.reset(2)
    first_line = codec.encode_frame(long).split(b"\n")[0] + b"\n"
    decoder = codec.FrameDecoder()
    assert decoder.feed(first_line + codec.encode_frame(short)) == [short]
    assert decoder.feed(b"\x04\x14AAAA\n") == []        # a stray continuation goes nowhere


def test_device_limits_cut_long_lines_and_drop_big_frames() -> None:
    packet = os.urandom(200)
    raw = struct.pack(">H", 202) + packet + struct.pack(">H", codec.crc16_xmodem(packet))
    one_long_line = b"\x06\x09" + base64.b64encode(raw) + b"\n"          # 275 bytes: fine for a lenient reader
    assert codec.FrameDecoder().feed(one_long_line) == [packet]
    mcuboot = codec.FrameDecoder(max_line=128)
    assert mcuboot.feed(one_long_line) == []
    small_buffer = codec.FrameDecoder(max_frame=200)
    assert small_buffer.feed(codec.encode_frame(packet)) == []
    assert small_buffer.damaged == 1
    assert codec.FrameDecoder(max_frame=204).feed(codec.encode_frame(packet)) == [packet]


# --- answers ------------------------------------------------------------------------------


def test_answers_with_indefinite_maps_as_zcbor_writes_them() -> None:
    body = bytes.fromhex("bf 62 7263 00 63 6f6666 19 0400 ff")           # {_ "rc": 0, "off": 1024}
    message = codec.decode_packet(bytes.fromhex("03 00 000d 0001 07 01") + body)
    assert message.header == codec.Header(op=codec.WRITE_RSP, group=1, id=1, seq=7, length=13)
    assert message.body == {"rc": 0, "off": 1024}
    codec.check_rc(message.body)
    assert codec.upload_offset(message.body) == 1024


def test_malformed_answers() -> None:
    with pytest.raises(codec.SmpFormatError, match="says 5 body bytes, 1 came"):
        codec.decode_packet(bytes.fromhex("03 00 0005 0001 07 01 a0"))
    with pytest.raises(codec.SmpFormatError, match="not a map"):
        codec.decode_packet(bytes.fromhex("03 00 0001 0001 07 01 80"))
    with pytest.raises(codec.SmpFormatError, match="header is 8 bytes"):
        codec.decode_packet(b"\x03\x00")
    with pytest.raises(codec.SmpFormatError, match="no offset"):
        codec.upload_offset({"rc": 0})


def test_return_codes_are_named() -> None:
    codec.check_rc({"rc": 0, "off": 5})
    codec.check_rc({"off": 5})
    with pytest.raises(codec.SmpStatusError, match=r"^rc 3 \(EINVAL\): too big$") as refused:
        codec.check_rc({"rc": 3, "rsn": "too big"})
    assert refused.value.rc == 3
    with pytest.raises(codec.SmpStatusError, match=r"^rc 8 \(ENOTSUP\)$"):
        codec.check_rc({"rc": 8})
    with pytest.raises(codec.SmpStatusError, match=r"rc 300 \(user-defined\)"):
        codec.check_rc({"rc": 300})
    with pytest.raises(codec.SmpStatusError, match=r"rc 2 \(group-specific\) of group 1"):
        codec.check_rc({"err": {"group": 1, "rc": 2}})
    codec.check_rc({"err": {"group": 1, "rc": 0}})


def test_image_state_list_and_params() -> None:
    states = codec.image_states({"images": [
        {"slot": 0, "version": "1.2.3", "hash": SHA, "bootable": True, "active": True, "confirmed": True},
        {"image": 1, "slot": 1, "version": "2.0.0.7", "pending": True}]})
    assert states[0] == codec.ImageState(slot=0, version="1.2.3", hash=SHA, bootable=True, active=True,
                                         confirmed=True)
    assert states[1].image == 1 and states[1].pending and states[1].hash is None
    assert states[0].as_dict()["hash"] == SHA.hex()
    with pytest.raises(codec.SmpFormatError):
        codec.image_states({"rc": 0})
    assert codec.params({"buf_size": 2048, "buf_count": 4}) == (2048, 4)
    with pytest.raises(codec.SmpFormatError):
        codec.params({"buf_size": 8})
