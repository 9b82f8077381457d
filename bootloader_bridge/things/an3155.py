"""The STM32 system bootloader's USART protocol (ST AN3155) as pure frames: bytes in, bytes out.

Every host frame carries its own check: a command byte is followed by its
complement, an address or a length by the XOR of its four bytes, a block by
the XOR of its count byte and its data. The device answers ACK (0x79) or NACK
(0x1F) after each frame. No I/O here: ``bootloader_bridge.things.stm32`` sends
these frames and reads the replies.

Get Checksum (0xA1) is listed by newer bootloaders only; its framing here is
the one ``stm32flash -C`` speaks (address frame, length frame, two ACKs, then
the CRC as four bytes MSB first and their XOR), and its CRC is the STM32 CRC
unit's: polynomial 0x04C11DB7, initial value 0xFFFFFFFF, no reflection, no
final XOR, fed with little-endian 32-bit words.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from enum import IntEnum

SYNC = 0x7F        # the first byte after reset: the bootloader measures the baud rate on it
ACK = 0x79
NACK = 0x1F

MAX_BLOCK = 256    # bytes per Write Memory or Read Memory
MAX_PAGES = 255    # pages per legacy Erase: its count byte 0xFF means global erase
MAX_EXTENDED_PAGES = 0xFFF0   # Extended Erase counts from 0xFFF0 up are special codes


class Command(IntEnum):
    GET = 0x00
    GET_VERSION = 0x01         # version and read protection status
    GET_ID = 0x02
    READ_MEMORY = 0x11
    GO = 0x21
    WRITE_MEMORY = 0x31
    ERASE = 0x43               # bootloader v2.x and older: 1-byte page numbers
    EXTENDED_ERASE = 0x44      # bootloader v3.0 and newer: 2-byte page numbers
    WRITE_PROTECT = 0x63
    WRITE_UNPROTECT = 0x73
    READOUT_PROTECT = 0x82
    READOUT_UNPROTECT = 0x92
    GET_CHECKSUM = 0xA1


class SpecialErase(IntEnum):
    """Extended Erase codes sent in place of a page count."""

    MASS = 0xFFFF
    BANK1 = 0xFFFE
    BANK2 = 0xFFFD


class FrameError(ValueError):
    """A reply that is not what AN3155 says the device sends, or a frame that cannot be built."""


def xor(data: bytes) -> int:
    result = 0
    for byte in data:
        result ^= byte
    return result


def command(code: int) -> bytes:
    """``code`` and its complement: ``31 CE`` for Write Memory."""
    _check(0 <= code <= 0xFF, f"command code {code} is not a byte")
    return bytes((code, code ^ 0xFF))


def address(value: int) -> bytes:
    """Four bytes MSB first and their XOR: 0x08000000 -> ``08 00 00 00 08``."""
    _check(0 <= value <= 0xFFFFFFFF, f"address {value:#x} does not fit 32 bits")
    word = value.to_bytes(4, "big")
    return word + bytes((xor(word),))


def pad(data: bytes) -> bytes:
    """``data`` made a multiple of 4 bytes with 0xFF, the erased value: Write Memory takes whole words."""
    return data + b"\xff" * (-len(data) % 4)


def write_block(data: bytes) -> bytes:
    """The data frame of Write Memory: ``N`` (= bytes - 1), the bytes padded to whole words, the XOR of all."""
    block = pad(data)
    _check(0 < len(block) <= MAX_BLOCK, f"a Write Memory block holds 1 to {MAX_BLOCK} bytes, not {len(data)}")
    frame = bytes((len(block) - 1,)) + block
    return frame + bytes((xor(frame),))


def read_length(count: int) -> bytes:
    """The length frame of Read Memory: ``N`` (= bytes - 1) and its complement."""
    _check(0 < count <= MAX_BLOCK, f"Read Memory reads 1 to {MAX_BLOCK} bytes, not {count}")
    return bytes((count - 1, (count - 1) ^ 0xFF))


def erase_pages(pages: list[int]) -> bytes:
    """The legacy Erase (0x43) frame: ``N`` (= pages - 1), one byte per page, the XOR of all."""
    _check(0 < len(pages) <= MAX_PAGES, f"Erase takes 1 to {MAX_PAGES} pages, not {len(pages)}")
    _check(all(0 <= page <= 0xFF for page in pages), "Erase page numbers are single bytes")
    frame = bytes([len(pages) - 1, *pages])
    return frame + bytes((xor(frame),))


GLOBAL_ERASE = b"\xff\x00"     # legacy Erase of the whole flash


def extended_erase_pages(pages: list[int]) -> bytes:
    """The Extended Erase (0x44) frame: ``N`` (= pages - 1) and the page numbers, each 2 bytes MSB
    first, then the XOR of all."""
    _check(0 < len(pages) <= MAX_EXTENDED_PAGES,
           f"Extended Erase takes 1 to {MAX_EXTENDED_PAGES} pages, not {len(pages)}")
    _check(all(0 <= page <= 0xFFFF for page in pages), "Extended Erase page numbers are 2 bytes")
    frame = (len(pages) - 1).to_bytes(2, "big") + b"".join(page.to_bytes(2, "big") for page in pages)
    return frame + bytes((xor(frame),))


def extended_erase_special(code: SpecialErase) -> bytes:
    """Mass or bank erase: the code MSB first and its XOR, ``FF FF 00`` for mass erase."""
    frame = int(code).to_bytes(2, "big")
    return frame + bytes((xor(frame),))


def checksum_length(count: int) -> bytes:
    """The length frame of Get Checksum: a byte count of whole words, framed as an address."""
    _check(count > 0 and count % 4 == 0, f"Get Checksum covers whole words, not {count} bytes")
    return address(count)


@dataclass(frozen=True)
class GetReply:
    version: int                 # 0x22 is v2.2
    commands: tuple[int, ...]


def parse_get(body: bytes) -> GetReply:
    """What follows Get's first ACK up to (not including) its last: ``N``, version, N command codes."""
    _check(len(body) >= 2 and body[0] + 2 == len(body),
           f"Get reply of {len(body)} bytes does not match its count byte")
    return GetReply(version=body[1], commands=tuple(body[2:]))


@dataclass(frozen=True)
class VersionReply:
    version: int
    option1: int      # read protection status bytes; 0x00 0x00 on recent bootloaders
    option2: int


def parse_get_version(body: bytes) -> VersionReply:
    """The three bytes between the ACKs of Get Version: version, option byte 1, option byte 2."""
    _check(len(body) == 3, f"Get Version reply is 3 bytes, not {len(body)}")
    return VersionReply(*body)


def parse_get_id(body: bytes) -> int:
    """The product id from what lies between the ACKs of Get ID: ``N`` (=1), PID MSB, PID LSB."""
    _check(len(body) >= 3 and body[0] + 2 == len(body),
           f"Get ID reply of {len(body)} bytes does not match its count byte")
    return int.from_bytes(body[1:3], "big")


def parse_checksum(reply: bytes) -> int:
    """The CRC that ends Get Checksum: four bytes MSB first and their XOR."""
    _check(len(reply) == 5, f"Get Checksum reply is 5 bytes, not {len(reply)}")
    _check(xor(reply[:4]) == reply[4], f"Get Checksum reply {reply.hex(' ')} fails its XOR")
    return int.from_bytes(reply[:4], "big")


def version_text(version: int) -> str:
    """0x31 -> "3.1"."""
    return f"{version >> 4}.{version & 0xF}"


_BIT_REVERSED = bytes(int(f"{byte:08b}"[::-1], 2) for byte in range(256))


def stm32_crc(data: bytes) -> int:
    """The STM32 CRC unit's CRC-32 over little-endian words.

    It is CRC-32/MPEG-2 over each word's bytes most significant first. That
    equals zlib's reflected CRC-32 of the same bytes with their bits reversed,
    bit-reversed and without the final inversion: C speed for whole images.
    """
    _check(len(data) % 4 == 0, f"the STM32 CRC covers whole words, not {len(data)} bytes")
    msb_first = bytearray(len(data))
    for lane in range(4):
        msb_first[lane::4] = data[3 - lane::4]
    reflected = zlib.crc32(msb_first.translate(_BIT_REVERSED)) ^ 0xFFFFFFFF
    return int(f"{reflected:032b}"[::-1], 2)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise FrameError(message)
