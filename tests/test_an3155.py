"""The AN3155 codec against frames worked out by hand from the application note."""

from __future__ import annotations

import os

import pytest

from bootloader_bridge.things import an3155
from bootloader_bridge.things.an3155 import Command, FrameError, SpecialErase


def hexes(data: bytes) -> str:
    return data.hex(" ")


@pytest.mark.parametrize(("code", "frame"), [
    (Command.GET, "00 ff"), (Command.GET_VERSION, "01 fe"), (Command.GET_ID, "02 fd"),
    (Command.READ_MEMORY, "11 ee"), (Command.GO, "21 de"), (Command.WRITE_MEMORY, "31 ce"),
    (Command.ERASE, "43 bc"), (Command.EXTENDED_ERASE, "44 bb"), (Command.GET_CHECKSUM, "a1 5e"),
])
def test_a_command_is_its_code_and_complement(code: int, frame: str) -> None:
    assert hexes(an3155.command(code)) == frame


def test_the_constants_of_the_note() -> None:
    assert (an3155.SYNC, an3155.ACK, an3155.NACK) == (0x7F, 0x79, 0x1F)


@pytest.mark.parametrize(("value", "frame"), [
    (0x08000000, "08 00 00 00 08"),          # 08^00^00^00
    (0x08001F40, "08 00 1f 40 57"),          # 08^1F = 17, 17^40 = 57
    (0x20000200, "20 00 02 00 22"),
    (0xFFFFFFFF, "ff ff ff ff 00"),
    (0x00000000, "00 00 00 00 00"),
])
def test_an_address_is_four_bytes_msb_first_and_their_xor(value: int, frame: str) -> None:
    assert hexes(an3155.address(value)) == frame


@pytest.mark.parametrize("value", [-1, 1 << 32])
def test_an_address_must_fit_32_bits(value: int) -> None:
    with pytest.raises(FrameError, match="does not fit 32 bits"):
        an3155.address(value)


def test_a_write_block_is_count_minus_one_data_and_xor() -> None:
    # N = 03; 03^01^02^03^04 = 07
    assert hexes(an3155.write_block(bytes([1, 2, 3, 4]))) == "03 01 02 03 04 07"


def test_a_write_block_is_padded_to_whole_words_with_the_erased_value() -> None:
    # N = 03 for 4 bytes; 03^AA^FF^FF^FF = 03^AA^FF = 56
    assert hexes(an3155.write_block(b"\xaa")) == "03 aa ff ff ff 56"
    # 6 bytes -> 8: N = 07; 07^(01..06 = 07)^FF^FF = 00
    assert hexes(an3155.write_block(bytes([1, 2, 3, 4, 5, 6]))) == "07 01 02 03 04 05 06 ff ff 00"


def test_a_full_write_block_is_256_bytes_with_n_ff() -> None:
    frame = an3155.write_block(bytes(256))
    assert len(frame) == 258 and frame[0] == 0xFF and frame[1:257] == bytes(256) and frame[-1] == 0xFF
    assert an3155.xor(frame) == 0       # the XOR over the whole frame, checksum included, is zero


@pytest.mark.parametrize("size", [0, 257])
def test_a_write_block_holds_1_to_256_bytes(size: int) -> None:
    with pytest.raises(FrameError, match="1 to 256 bytes"):
        an3155.write_block(bytes(size))


def test_pad_leaves_whole_words_alone() -> None:
    assert an3155.pad(b"abcd") == b"abcd"
    assert an3155.pad(b"abcde") == b"abcde\xff\xff\xff"


@pytest.mark.parametrize(("count", "frame"), [(1, "00 ff"), (256, "ff 00"), (128, "7f 80")])
def test_a_read_length_is_count_minus_one_and_its_complement(count: int, frame: str) -> None:
    assert hexes(an3155.read_length(count)) == frame


@pytest.mark.parametrize("count", [0, 257])
def test_a_read_takes_1_to_256_bytes(count: int) -> None:
    with pytest.raises(FrameError):
        an3155.read_length(count)


def test_legacy_erase_lists_one_byte_pages() -> None:
    assert hexes(an3155.erase_pages([5])) == "00 05 05"
    assert hexes(an3155.erase_pages([0, 1, 2])) == "02 00 01 02 01"     # 02^00^01^02 = 01
    assert hexes(an3155.GLOBAL_ERASE) == "ff 00"


def test_legacy_erase_limits() -> None:
    assert len(an3155.erase_pages(list(range(255)))) == 257
    with pytest.raises(FrameError, match="1 to 255 pages"):
        an3155.erase_pages(list(range(256)))        # a count byte of 0xFF would mean global erase
    with pytest.raises(FrameError, match="1 to 255 pages"):
        an3155.erase_pages([])
    with pytest.raises(FrameError, match="single bytes"):
        an3155.erase_pages([256])


def test_extended_erase_lists_two_byte_pages_msb_first() -> None:
    assert hexes(an3155.extended_erase_pages([0x0102])) == "00 00 01 02 03"
    assert hexes(an3155.extended_erase_pages([0, 1])) == "00 01 00 00 00 01 00"   # 01^01 = 00
    assert hexes(an3155.extended_erase_pages([0x0100, 0x01FF])) == "00 01 01 00 01 ff fe"   # 01^01^01^FF


def test_extended_erase_limits() -> None:
    with pytest.raises(FrameError, match="1 to 65520 pages"):
        an3155.extended_erase_pages([])
    with pytest.raises(FrameError, match="2 bytes"):
        an3155.extended_erase_pages([0x10000])


@pytest.mark.parametrize(("code", "frame"), [
    (SpecialErase.MASS, "ff ff 00"), (SpecialErase.BANK1, "ff fe 01"), (SpecialErase.BANK2, "ff fd 02"),
])
def test_extended_erase_special_codes(code: SpecialErase, frame: str) -> None:
    assert hexes(an3155.extended_erase_special(code)) == frame


def test_checksum_length_is_framed_as_an_address() -> None:
    assert hexes(an3155.checksum_length(0x10000)) == "00 01 00 00 01"
    assert hexes(an3155.checksum_length(4)) == "00 00 00 04 04"
    with pytest.raises(FrameError, match="whole words"):
        an3155.checksum_length(6)
    with pytest.raises(FrameError, match="whole words"):
        an3155.checksum_length(0)


def test_get_reply_of_an_f1_bootloader() -> None:
    body = bytes.fromhex("0b 22 00 01 02 11 21 31 43 63 73 82 92")     # N = 11: version and 11 codes
    reply = an3155.parse_get(body)
    assert reply.version == 0x22 and an3155.version_text(reply.version) == "2.2"
    assert reply.commands == (0x00, 0x01, 0x02, 0x11, 0x21, 0x31, 0x43, 0x63, 0x73, 0x82, 0x92)


@pytest.mark.parametrize("body", ["0b 22 00 01", "", "00"])
def test_get_reply_must_match_its_count(body: str) -> None:
    with pytest.raises(FrameError, match="count byte"):
        an3155.parse_get(bytes.fromhex(body))


def test_get_version_reply() -> None:
    assert an3155.parse_get_version(bytes.fromhex("31 00 00")) == an3155.VersionReply(0x31, 0, 0)
    with pytest.raises(FrameError, match="3 bytes, not 2"):
        an3155.parse_get_version(b"\x31\x00")


def test_get_id_reply() -> None:
    assert an3155.parse_get_id(bytes.fromhex("01 04 10")) == 0x410
    assert an3155.parse_get_id(bytes.fromhex("01 04 13")) == 0x413
    with pytest.raises(FrameError, match="count byte"):
        an3155.parse_get_id(bytes.fromhex("02 04 10"))


def test_checksum_reply() -> None:
    assert an3155.parse_checksum(bytes.fromhex("12 34 56 78 08")) == 0x12345678   # 12^34^56^78 = 08
    with pytest.raises(FrameError, match="fails its XOR"):
        an3155.parse_checksum(bytes.fromhex("12 34 56 78 09"))
    with pytest.raises(FrameError, match="5 bytes"):
        an3155.parse_checksum(bytes.fromhex("12 34 56 78"))


def test_version_text() -> None:
    assert an3155.version_text(0x31) == "3.1"
    assert an3155.version_text(0x22) == "2.2"


def mpeg2(data: bytes) -> int:
    """CRC-32/MPEG-2 bit by bit from its definition: poly 04C11DB7, init FFFFFFFF, MSB first, no xorout."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) & 0xFFFFFFFF if crc & 0x80000000 else (crc << 1) & 0xFFFFFFFF
    return crc


def test_the_reference_crc_gives_the_catalogue_check_value() -> None:
    assert mpeg2(b"123456789") == 0x0376E6E7


def test_stm32_crc_is_mpeg2_over_little_endian_words() -> None:
    data = os.urandom(1024)
    words_msb_first = b"".join(data[i:i + 4][::-1] for i in range(0, len(data), 4))
    assert an3155.stm32_crc(data) == mpeg2(words_msb_first)
    assert an3155.stm32_crc(b"4321") == mpeg2(b"1234")
    assert an3155.stm32_crc(b"") == 0xFFFFFFFF


def test_stm32_crc_covers_whole_words_only() -> None:
    with pytest.raises(FrameError, match="whole words"):
        an3155.stm32_crc(b"abc")
