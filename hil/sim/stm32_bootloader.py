"""A simulated STM32 system bootloader (ST AN3155, USART) on a pseudo-terminal.

Two layers:

* ``Bootloader``: the device, pure. ``feed(bytes)`` returns the replies, each
  with the time the device is busy before it (programming, erasing). It holds
  the flash as NOR flash behaves: erased is 0xFF and programming only clears
  bits (``new = old & data``), so writing over bytes that were not erased does
  not give the data back. Faults are injected by Write Memory number.
* ``Stm32Simulator``: the pty adapter. A thread reads the master side, sleeps
  for the line time of what it receives and sends (``chars * bits_per_byte /
  baud``; a pty itself has no baud rate) and for the device's busy time, and
  writes the replies. The slave is raw (no echo) and stays open, so clients
  can come and go.

The frames are parsed here on their own, not with fwagent's codec
(``bootloader_bridge.things.an3155``), so the two check each other; the
simulator itself is checked with Debian's ``stm32flash`` (tests/test_stm32_sim.py).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Generator
from dataclasses import dataclass, field

from hil.sim.pty_end import PtyEnd

SYNC, ACK, NACK = 0x7F, 0x79, 0x1F
FLASH_BASE = 0x08000000
KIB = 1024


@dataclass(frozen=True)
class Chip:
    """A family's bootloader as far as flashing goes (AN2606, the reference manuals' flash
    timing). ``pages`` lists (count, size) runs from the flash base; erase time scales with
    the page size from ``page_erase`` for the first page's size."""

    pid: int
    name: str
    version: int                       # bootloader version byte, 0x22 = v2.2
    erase: int                         # 0x43 (Erase) or 0x44 (Extended Erase)
    pages: tuple[tuple[int, int], ...]
    page_erase: float                  # seconds for a page of the first size
    mass_erase: float                  # seconds
    program: float                     # seconds per byte programmed


CHIPS = {
    0x410: Chip(0x410, "STM32F10xxx medium-density", 0x22, 0x43, ((128, 1 * KIB),),
                page_erase=0.020, mass_erase=0.030, program=26e-6),     # 52 us per half-word
    0x414: Chip(0x414, "STM32F10xxx high-density", 0x22, 0x43, ((256, 2 * KIB),),
                page_erase=0.020, mass_erase=0.030, program=26e-6),
    0x413: Chip(0x413, "STM32F40xxx/41xxx", 0x31, 0x44, ((4, 16 * KIB), (1, 64 * KIB), (7, 128 * KIB)),
                page_erase=0.250, mass_erase=8.0, program=4e-6),        # x32 word programming
}


@dataclass(frozen=True)
class Faults:
    """Each fault fires once, on the Nth Write Memory (counted from 1 over the simulator's
    life, resets included); 0 is off."""

    nack_write: int = 0          # its data is NACKed, nothing programmed (a checksum error)
    garble_write: int = 0        # programming fails: wrong bits cleared, then NACK
    ignore_write: int = 0        # ACKed but not programmed (a write-protected page reports nothing)
    drop_address_ack: int = 0    # the ACK of its address is lost: the device waits for the data
    drop_write_ack: int = 0      # programmed, but its final ACK is lost
    noise_write: int = 0         # ``noise`` arrives before its final ACK
    reset_write: int = 0         # the device resets halfway through programming it: state lost
    noise: bytes = b"\x00\x55\xaa\xf0"
    banner: bytes = b""          # sent before the ACK of the first sync (a boot banner, line noise)


@dataclass(frozen=True)
class Reply:
    busy: float      # seconds the device works before the first byte goes out
    data: bytes


def _xor(data: bytes) -> int:
    result = 0
    for byte in data:
        result ^= byte
    return result


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
        table.append(crc & 0xFFFFFFFF)
    return table


_CRC_TABLE = _crc_table()


def stm32_crc(data: bytes) -> int:
    """The STM32 CRC unit over little-endian words: CRC-32/MPEG-2 of each word's bytes, most
    significant first (the simulator's own, table-driven; fwagent's is in its codec)."""
    crc = 0xFFFFFFFF
    for i in range(0, len(data), 4):
        for byte in reversed(data[i:i + 4]):
            crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC_TABLE[(crc >> 24) ^ byte]
    return crc


Steps = Generator[int, bytes, str | None]   # yields how many bytes it needs next, is sent them


class Bootloader:
    """The device: a generator per session (power-up or reset to the next reset) that asks for
    the bytes it needs next; ``feed`` hands them over and collects the replies."""

    def __init__(self, chip: Chip | int = 0x410, *, flash_size: int | None = None,
                 get_checksum: bool = False, faults: Faults = Faults()) -> None:
        self.chip = CHIPS[chip] if isinstance(chip, int) else chip
        self.pages = _pages(self.chip.pages, flash_size)
        self.flash = bytearray(b"\xff" * sum(self.pages))
        self.faults = faults
        self.commands_listed = (0x00, 0x01, 0x02, 0x11, 0x21, 0x31, self.chip.erase) + ((0xA1,) if get_checksum else ())
        self.commands: Counter[int] = Counter()   # by code, ACKed or not
        self.writes = 0                           # Write Memory commands seen: the fault counter
        self.syncs = 0
        self.resets = 0
        self.went_to: int | None = None           # the address of the last Go
        self.bytes_in = self.bytes_out = 0
        self.busy = 0.0                           # seconds spent erasing and programming
        self._replies: list[Reply] = []
        self._start()

    # -- the byte pump -------------------------------------------------------

    def feed(self, data: bytes) -> list[Reply]:
        self.bytes_in += len(data)
        self._buffer += data
        while len(self._buffer) >= self._want:
            chunk = bytes(self._buffer[:self._want])
            del self._buffer[:self._want]
            try:
                self._want = self._steps.send(chunk)
            except StopIteration:            # the session ended: the device reset, what came with it is lost
                self.resets += 1
                self._start()
        replies, self._replies = self._replies, []
        self.bytes_out += sum(len(reply.data) for reply in replies)
        self.busy += sum(reply.busy for reply in replies)
        return replies

    def _start(self) -> None:
        self._buffer = bytearray()
        self._steps = self._session()
        self._want = next(self._steps)

    def _send(self, data: bytes, busy: float = 0.0) -> None:
        self._replies.append(Reply(busy, data))

    # -- the protocol ----------------------------------------------------------

    def _session(self) -> Steps:
        while (yield 1)[0] != SYNC:          # autobaud: anything but 0x7F goes unnoticed
            pass
        self.syncs += 1
        self._send((self.faults.banner if self.syncs == 1 else b"") + bytes((ACK,)))
        answers = {0x00: self._get, 0x01: self._get_version, 0x02: self._get_id}
        exchanges = {0x11: self._read, 0x21: self._go, 0x31: self._write, 0x43: self._erase,
                     0x44: self._extended_erase, 0xA1: self._checksum}
        while True:
            code, check = yield 2
            self.commands[code] += 1
            if code ^ check != 0xFF or code not in self.commands_listed:
                self._send(bytes((NACK,)))
            elif code in answers:
                self._send(bytes((ACK,)) + answers[code]() + bytes((ACK,)))
            else:
                self._send(bytes((ACK,)))
                if (yield from exchanges[code]()) == "reset":
                    return

    def _get(self) -> bytes:
        listed = self.commands_listed
        return bytes((len(listed), self.chip.version, *listed))

    def _get_version(self) -> bytes:
        return bytes((self.chip.version, 0x00, 0x00))

    def _get_id(self) -> bytes:
        return bytes((1, *self.chip.pid.to_bytes(2, "big")))

    def _address(self, *, aligned: bool = False) -> Generator[int, bytes, int | None]:
        """A flash address frame, ACKed; None after a NACK (bad XOR, outside flash, unaligned)."""
        frame = yield 5
        value = int.from_bytes(frame[:4], "big")
        offset = value - FLASH_BASE
        if _xor(frame[:4]) != frame[4] or not 0 <= offset < len(self.flash) or (aligned and value % 4):
            self._send(bytes((NACK,)))
            return None
        return offset

    def _read(self) -> Steps:
        offset = yield from self._address()
        if offset is None:
            return
        self._send(bytes((ACK,)))
        count, check = yield 2
        if count ^ check != 0xFF or offset + count + 1 > len(self.flash):
            self._send(bytes((NACK,)))
            return
        self._send(bytes((ACK,)) + bytes(self.flash[offset:offset + count + 1]))

    def _write(self) -> Steps:
        self.writes += 1
        nth, faults = self.writes, self.faults
        offset = yield from self._address(aligned=True)
        if offset is None:
            return
        if nth != faults.drop_address_ack:
            self._send(bytes((ACK,)))
        count = (yield 1)[0]
        rest = yield count + 2
        data = rest[:-1]
        if (_xor(bytes((count,)) + data) != rest[-1] or (count + 1) % 4
                or offset + count + 1 > len(self.flash) or nth == faults.nack_write):
            self._send(bytes((NACK,)))
            return
        busy = len(data) * self.chip.program
        if nth == faults.reset_write:
            half = len(data) // 2
            self._program(offset, data[:half])
            return "reset"
        if nth == faults.garble_write:
            self._program(offset, bytes(byte & 0x5A for byte in data))
            self._send(bytes((NACK,)), busy)
            return
        if nth != faults.ignore_write:
            self._program(offset, data)
        if nth == faults.drop_write_ack:
            return
        self._send((faults.noise if nth == faults.noise_write else b"") + bytes((ACK,)), busy)

    def _program(self, offset: int, data: bytes) -> None:
        """NOR flash: programming clears bits, only erasing sets them."""
        old = self.flash[offset:offset + len(data)]
        self.flash[offset:offset + len(data)] = bytes(a & b for a, b in zip(old, data))

    def _erase(self) -> Steps:
        count = (yield 1)[0]
        if count == 0xFF:                                   # global erase: FF 00
            if (yield 1)[0] != 0x00:
                self._send(bytes((NACK,)))
                return
            self._send(bytes((ACK,)), self._mass_erase())
            return
        rest = yield count + 2
        pages = list(rest[:-1])
        if _xor(bytes((count,)) + rest[:-1]) != rest[-1]:
            self._send(bytes((NACK,)))
            return
        self._erase_pages(pages)

    def _extended_erase(self) -> Steps:
        head = yield 2
        count = int.from_bytes(head, "big")
        if count >= 0xFFF0:                                 # special codes: only mass erase here
            if (yield 1)[0] != head[0] ^ head[1] or count != 0xFFFF:
                self._send(bytes((NACK,)))
                return
            self._send(bytes((ACK,)), self._mass_erase())
            return
        rest = yield 2 * (count + 1) + 1
        if _xor(head + rest[:-1]) != rest[-1]:
            self._send(bytes((NACK,)))
            return
        self._erase_pages([int.from_bytes(rest[i:i + 2], "big") for i in range(0, len(rest) - 1, 2)])

    def _erase_pages(self, pages: list[int]) -> None:
        if any(page >= len(self.pages) for page in pages):
            self._send(bytes((NACK,)))
            return
        busy = 0.0
        for page in pages:
            start = sum(self.pages[:page])
            self.flash[start:start + self.pages[page]] = b"\xff" * self.pages[page]
            busy += self.chip.page_erase * self.pages[page] / self.pages[0]
        self._send(bytes((ACK,)), busy)

    def _mass_erase(self) -> float:
        self.flash[:] = b"\xff" * len(self.flash)
        return self.chip.mass_erase

    def _go(self) -> Steps:
        offset = yield from self._address()
        if offset is None:
            return
        self._send(bytes((ACK,)))
        self.went_to = FLASH_BASE + offset
        return "reset"                # the application runs; back in the bootloader after a reset

    def _checksum(self) -> Steps:
        offset = yield from self._address(aligned=True)
        if offset is None:
            return
        self._send(bytes((ACK,)))
        frame = yield 5
        length = int.from_bytes(frame[:4], "big")
        if _xor(frame[:4]) != frame[4] or length == 0 or length % 4 or offset + length > len(self.flash):
            self._send(bytes((NACK,)))
            return
        crc = stm32_crc(bytes(self.flash[offset:offset + length])).to_bytes(4, "big")
        self._send(bytes((ACK, ACK)) + crc + bytes((_xor(crc),)))


def _pages(runs: tuple[tuple[int, int], ...], flash_size: int | None) -> list[int]:
    """Page sizes from the flash base, cut at ``flash_size`` (which must end on a page)."""
    pages = [size for count, size in runs for _ in range(count)]
    if flash_size is None:
        return pages
    total, kept = 0, []
    for size in pages:
        if total >= flash_size:
            break
        kept.append(size)
        total += size
    if total != flash_size:
        raise ValueError(f"flash size {flash_size} does not end on a page boundary")
    return kept


@dataclass
class Stm32Simulator:
    """``with Stm32Simulator(0x410, baud=115200, bits_per_byte=11) as sim: sim.port`` is the
    pty path a client opens. ``baud=0`` drops the line-time model, ``delays=False`` the
    device's programming and erase times (for fast tests)."""

    chip: Chip | int = 0x410
    flash_size: int | None = None
    baud: int = 115200
    bits_per_byte: int = 10          # 8N1; 11 models 8E1 as on real hardware (a pty drops parity)
    get_checksum: bool = False
    faults: Faults = Faults()
    delays: bool = True
    bootloader: Bootloader = field(init=False)
    port: str = field(init=False, default="")

    def __post_init__(self) -> None:
        self.bootloader = Bootloader(self.chip, flash_size=self.flash_size,
                                     get_checksum=self.get_checksum, faults=self.faults)
        self._char_time = self.bits_per_byte / self.baud if self.baud else 0.0
        self.pty = PtyEnd("STM32 simulator")
        self._line_free = 0.0

    @property
    def flash(self) -> bytes:
        return bytes(self.bootloader.flash)

    def __enter__(self) -> "Stm32Simulator":
        self.port = self.pty.start(self._serve)
        return self

    def __exit__(self, *exc: object) -> None:
        self.pty.stop()

    def _serve(self) -> None:
        while not self.pty.stopping.is_set():
            data = self.pty.read(0.05)
            if not data:
                continue
            self._line(len(data))
            for reply in self.bootloader.feed(data):
                if self.delays and reply.busy:
                    self._busy(reply.busy)
                self._line(len(reply.data))
                self.pty.write(reply.data)

    def _line(self, chars: int) -> None:
        """Wait the line time of ``chars`` characters, counted from when the line was last free."""
        self._busy(chars * self._char_time)

    def _busy(self, seconds: float) -> None:
        now = time.monotonic()
        self._line_free = max(self._line_free, now) + seconds
        if self._line_free > now:
            self.pty.wait(self._line_free - now)       # a long erase does not hold up __exit__
