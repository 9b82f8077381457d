"""Flashing an STM32 Thing through its ST system bootloader over a serial line (AN3155).

The Thing is already in its bootloader (BOOT0 high at reset, or an
application that jumped there); the link is open. ``flash`` then:

1. syncs (0x7F; a NACK means an earlier session left it synced) and asks Get,
   Get Version and Get ID: which erase command, whether Get Checksum exists,
   which part (its flash map);
2. refuses an image that does not fit the flash or does not start on a page
   boundary, before anything is erased (before any byte is sent when
   ``flash_size`` and ``page_size`` are configured);
3. erases the pages the image covers (or the whole flash with ``erase="mass"``);
4. writes 256-byte blocks, skipping blocks that are all 0xFF (erased already);
5. verifies: with Get Checksum when the bootloader lists it (one CRC for the
   whole image instead of reading it back, which costs as much line time as
   writing it), else, and to find the first differing offset, by Read Memory;
6. optionally jumps to the image (Go).

The protocol has no sequence numbers: after a NACK, a timeout or a garbled
reply the flasher resyncs and repeats the whole command, at most ``retries``
times per command. A block is rewritten only where flash can take it: NOR
flash only clears bits, so a block that already holds other bits (a failed
programming) gets its pages erased again, and the image's blocks before it in
those pages rewritten.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from agent.errors import ConfigError, ThingError, ThingTimeoutError, ThingVerifyError
from bootloader_bridge.things import an3155
from bootloader_bridge.things.an3155 import ACK, NACK, SYNC, Command
from bootloader_bridge.options import Option
from bootloader_bridge.things.base import FlashProgress, FlashResult, ThingInfo, ThingProtocol

FLASH_BASE = 0x08000000
KIB = 1024
FILL = an3155.MAX_BLOCK + 2   # 0xFF bytes that complete any frame a device may still wait for
T = TypeVar("T")


@dataclass(frozen=True)
class Part:
    name: str
    pages: tuple[tuple[int, int], ...]    # (count, size) runs from the flash base; the family's largest flash


PARTS = {      # product id (Get ID) -> flash map, after AN2606 and the reference manuals
    0x412: Part("STM32F10xxx low-density", ((32, 1 * KIB),)),
    0x410: Part("STM32F10xxx medium-density", ((128, 1 * KIB),)),
    0x414: Part("STM32F10xxx high-density", ((256, 2 * KIB),)),
    0x413: Part("STM32F40xxx/41xxx", ((4, 16 * KIB), (1, 64 * KIB), (7, 128 * KIB))),
    0x460: Part("STM32G07xxx/08xxx", ((64, 2 * KIB),)),
}


@dataclass(frozen=True)
class FlashMap:
    """Page start offsets from the flash base, and the end of the flash."""

    starts: tuple[int, ...]
    size: int

    @classmethod
    def of(cls, runs: tuple[tuple[int, int], ...], size: int | None = None) -> "FlashMap":
        starts, offset = [], 0
        for count, page in runs:
            for _ in range(count):
                if size is not None and offset >= size:
                    break
                starts.append(offset)
                offset += page
        return cls(tuple(starts), offset if size is None else min(size, offset))

    def page(self, offset: int) -> int:
        """The page holding ``offset``."""
        return bisect.bisect_right(self.starts, offset) - 1

    def pages(self, offset: int, length: int) -> range:
        """The pages the bytes ``offset .. offset+length`` lie in."""
        return range(self.page(offset), self.page(offset + length - 1) + 1)


@dataclass(frozen=True)
class Plan:
    address: int
    data: bytes           # the image padded to whole words with 0xFF
    pages: range
    flash: FlashMap


class _Refused(Exception):
    """A NACK."""


class _Silent(Exception):
    """No reply, or not all of it, in time."""


class _Garbled(Exception):
    """Bytes that are no reply."""


_RETRYABLE = (_Refused, _Silent, _Garbled)


class Stm32Flasher:
    """An STM32 in its system bootloader on an open SerialLink; see the module docstring.

    Timeouts are seconds: ``sync_timeout`` for each of ``sync_tries`` first
    0x7F, ``probe_timeout`` for each byte of a resync, ``ack_timeout`` for a
    command's ACK (and the start of any reply), ``write_timeout`` for the ACK
    that follows programming a block, ``erase_timeout`` per page or sector,
    ``mass_erase_timeout`` for erasing everything.
    """

    def __init__(self, link: Any, *, address: int = FLASH_BASE, name: str = "",
                 flash_size: int | None = None, page_size: int | None = None,
                 erase: str = "pages", verify: str = "auto", go: bool = False, retries: int = 5,
                 sync_timeout: float = 0.5, sync_tries: int = 3, probe_timeout: float = 0.1,
                 ack_timeout: float = 1.0, write_timeout: float = 1.0, erase_timeout: float = 5.0,
                 mass_erase_timeout: float = 35.0) -> None:
        if erase not in ("pages", "mass"):
            raise ConfigError(f"stm32 erase must be \"pages\" or \"mass\", not {erase!r}")
        if verify not in ("auto", "read-back", "checksum"):
            raise ConfigError(f"stm32 verify must be \"auto\", \"read-back\" or \"checksum\", not {verify!r}")
        if page_size is not None and page_size <= 0 or flash_size is not None and flash_size <= 0:
            raise ConfigError("stm32 page_size and flash_size must be positive")
        self.link, self.address, self.name = link, address, name or link.name
        self.flash_size, self.page_size = flash_size, page_size
        self.erase, self.verify, self.go, self.retries = erase, verify, go, retries
        self.sync_timeout, self.sync_tries, self.probe_timeout = sync_timeout, sync_tries, probe_timeout
        self.ack_timeout, self.write_timeout = ack_timeout, write_timeout
        self.erase_timeout, self.mass_erase_timeout = erase_timeout, mass_erase_timeout
        # Line time per character at 8E1, for replies of many bytes; the link was opened at this rate.
        self._char_time = 11 / getattr(getattr(link, "port", None), "baudrate", 9600)
        self._quiet = max(0.02, 4 * self._char_time)
        self._get: an3155.GetReply | None = None      # set while the bootloader is synced
        self._pid = 0
        self._retried = 0

    # -- the ThingFlasher protocol ----------------------------------------------

    def info(self) -> ThingInfo:
        get = self._identify()
        version = self._attempt("Get Version", None, lambda _: self._get_version())
        part, flash = PARTS.get(self._pid), self._flash_map()
        return ThingInfo(
            protocol="stm32",
            device=f"0x{self._pid:03X} {part.name if part else 'unknown STM32 part'}",
            bootloader=an3155.version_text(get.version),
            details={"pid": self._pid, "commands": [f"0x{code:02X}" for code in get.commands],
                     "option_bytes": f"{version.option1:02X} {version.option2:02X}",
                     "flash_size": flash.size if flash else None})

    def flash(self, image: bytes, progress: FlashProgress | None = None) -> FlashResult:
        started = time.monotonic()
        report = progress or (lambda phase, done, total: None)
        self._retried = 0
        if not image:
            raise ThingError(f"{self.name}: the image is empty", code="thing-image")
        if self.flash_size is not None and self.page_size is not None:
            self._plan(image, self._flash_map())       # refused before any byte goes out
        get = self._identify()
        plan = self._plan(image, self._flash_map())
        checksum = self.verify == "checksum" or self.verify == "auto" and Command.GET_CHECKSUM in get.commands
        needed = [(Command.WRITE_MEMORY, "Write Memory"),
                  (Command.GET_CHECKSUM, "Get Checksum") if checksum else (Command.READ_MEMORY, "Read Memory")]
        if self.go:
            needed.append((Command.GO, "Go"))
        missing = [f"{what} (0x{code:02X})" for code, what in needed if code not in get.commands]
        if not {Command.ERASE, Command.EXTENDED_ERASE} & set(get.commands):
            missing.append("Erase (0x43 or 0x44)")
        if missing:
            raise ThingError(f"{self.name}: the bootloader on {self.link.url} does not list {', '.join(missing)}",
                             code="thing-config")
        self._erase_image(plan, report)
        self._write_image(plan, report)
        verified = self._verify_image(plan, checksum, report)
        if self.go:
            report("activating", 0, 1)
            self._attempt("Go", plan.address, lambda _: self._go(plan.address))
            self._get = None                           # the application runs now
            report("activating", 1, 1)
        return FlashResult(written=len(image), verified=verified, retries=self._retried,
                           seconds=time.monotonic() - started)

    # -- planning -----------------------------------------------------------------

    def _flash_map(self) -> FlashMap | None:
        """From ``flash_size`` and ``page_size`` where configured, else from the part's id; None
        for a part fwagent does not know."""
        if self.page_size is not None and self.flash_size is not None:
            return FlashMap.of(((self.flash_size // self.page_size, self.page_size),), self.flash_size)
        part = PARTS.get(self._pid)
        if part is None:
            return None
        if self.page_size is not None:
            size = self.flash_size or FlashMap.of(part.pages).size
            return FlashMap.of(((size // self.page_size, self.page_size),), size)
        return FlashMap.of(part.pages, self.flash_size)

    def _plan(self, image: bytes, flash: FlashMap | None) -> Plan:
        if flash is None:
            raise ThingError(f"{self.name}: unknown STM32 part 0x{self._pid:03X} on {self.link.url}; "
                             "set flash_size and page_size", code="thing-config")
        offset, end = self.address - FLASH_BASE, FLASH_BASE + flash.size
        if not 0 <= offset < flash.size:
            raise ThingError(f"{self.name}: address 0x{self.address:08X} is outside the flash "
                             f"(0x{FLASH_BASE:08X}-0x{end:08X})", code="thing-image")
        page = flash.page(offset)
        if flash.starts[page] != offset:
            raise ThingError(f"{self.name}: address 0x{self.address:08X} is not on a page boundary "
                             f"(page {page} starts at 0x{FLASH_BASE + flash.starts[page]:08X})", code="thing-image")
        if offset + len(image) > flash.size:
            raise ThingError(f"{self.name}: an image of {len(image)} bytes at 0x{self.address:08X} does not fit "
                             f"the flash, which ends at 0x{end:08X}", code="thing-image")
        data = an3155.pad(image)
        return Plan(self.address, data, flash.pages(offset, len(data)), flash)

    # -- the phases -----------------------------------------------------------------

    def _identify(self) -> an3155.GetReply:
        if self._get is None:
            self._sync()
            self._get = self._attempt("Get", None, lambda _: self._get_commands())
            self._pid = self._attempt("Get ID", None, lambda _: self._get_id())
        return self._get

    def _erase_image(self, plan: Plan, report: FlashProgress) -> None:
        total = sum(self._page_size(plan.flash, page) for page in plan.pages)
        report("erasing", 0, total)
        if self.erase == "mass":
            self._attempt("mass erase", None, lambda _: self._erase_all())
        else:
            self._erase_pages(plan.flash, list(plan.pages))
        report("erasing", total, total)

    def _write_image(self, plan: Plan, report: FlashProgress) -> None:
        report("writing", 0, len(plan.data))
        for offset in range(0, len(plan.data), an3155.MAX_BLOCK):
            self._write_block(plan, offset)
            report("writing", min(offset + an3155.MAX_BLOCK, len(plan.data)), len(plan.data))

    def _write_block(self, plan: Plan, offset: int) -> None:
        block = plan.data[offset:offset + an3155.MAX_BLOCK]
        target = plan.address + offset
        if block.count(0xFF) == len(block):
            return                                   # erased flash holds it already

        def step(attempt: int) -> None:
            if attempt:      # the last try may have programmed some or all of it
                held = self._read_memory(target, len(block))
                if held == block:
                    return
                # Flash words are programmed once after an erase: many parts refuse a second
                # programming (F1 PGERR), and ECC parts (G0, L4, H7) must never get one.
                if held.count(0xFF) != len(held):
                    self._erase_again(plan, offset)
            self._write_memory(target, block)

        self._attempt("write", target, step)

    def _erase_again(self, plan: Plan, offset: int) -> None:
        """Erase the pages of the block at ``offset`` and rewrite the image's blocks before it in them."""
        pages = plan.flash.pages(plan.address - FLASH_BASE + offset, an3155.MAX_BLOCK)
        self._erase_frames(list(pages))
        first = plan.flash.starts[pages.start] - (plan.address - FLASH_BASE)
        for before in range(first, offset, an3155.MAX_BLOCK):
            block = plan.data[before:before + an3155.MAX_BLOCK]
            if block.count(0xFF) != len(block):
                self._write_memory(plan.address + before, block)

    def _verify_image(self, plan: Plan, checksum: bool, report: FlashProgress) -> str:
        total = len(plan.data)
        report("verifying", 0, total)
        if checksum:
            crc = self._attempt("Get Checksum", plan.address, lambda _: self._checksum(plan.address, total))
            if crc == an3155.stm32_crc(plan.data):
                report("verifying", total, total)
                return "crc32 by the device (Get Checksum)"
        for offset in range(0, total, an3155.MAX_BLOCK):
            expected = plan.data[offset:offset + an3155.MAX_BLOCK]
            held = self._attempt("read", plan.address + offset,
                                 lambda _, at=plan.address + offset, n=len(expected): self._read_memory(at, n))
            if held != expected:
                first = offset + next(i for i, (a, b) in enumerate(zip(held, expected)) if a != b)
                raise ThingVerifyError(f"{self.name}: verify mismatch at offset 0x{first:X} "
                                       f"(0x{plan.address + first:08X})")
            report("verifying", offset + len(expected), total)
        return "read-back"

    def _erase_pages(self, flash: FlashMap, pages: list[int]) -> None:
        for start in range(0, len(pages), an3155.MAX_PAGES):
            chunk = pages[start:start + an3155.MAX_PAGES]
            self._attempt("erase", FLASH_BASE + flash.starts[chunk[0]], lambda _, c=chunk: self._erase_frames(c))

    @staticmethod
    def _page_size(flash: FlashMap, page: int) -> int:
        end = flash.starts[page + 1] if page + 1 < len(flash.starts) else flash.size
        return end - flash.starts[page]

    # -- retry and sync -------------------------------------------------------------

    def _attempt(self, what: str, at: int | None, step: Callable[[int], T]) -> T:
        """``step(attempt)`` until it succeeds; after a NACK, a timeout or a garbled reply, resync
        and try again, ``retries`` times at most. The last failure names the Thing and where."""
        for attempt in range(self.retries + 1):
            try:
                if attempt:
                    self._retried += 1
                    self._resync()
                return step(attempt)
            except _RETRYABLE as exc:
                failure = exc
        where = f"0x{at:08X}" if at is not None else self.link.url
        tries = f"{self.retries + 1} attempt{'s' if self.retries else ''}"
        detail = f"{self.name}: {failure} on {what} at {where} ({tries})"
        if isinstance(failure, _Silent):
            raise ThingTimeoutError(detail)
        raise ThingError(detail, code="thing-nack" if isinstance(failure, _Refused) else "thing-protocol")

    def _sync(self) -> None:
        """First contact: 0x7F. ACK: the bootloader measured the baud rate on it. NACK: it was synced
        already and took 0x7F for a command byte. Silence: it may have waited for a command's
        second byte, which the next 0x7F completes (NACK). What else arrives (a boot banner,
        line noise) is skipped."""
        self.link.drain(quiet=self._quiet)
        for _ in range(self.sync_tries):
            if self._probe(SYNC, self.sync_timeout):
                return
        raise ThingTimeoutError(f"{self.name}: no sync on {self.link.url} "
                                f"(0x7F unanswered {self.sync_tries} times within {self.sync_timeout:g} s)")

    def _resync(self) -> None:
        """Back to a command boundary after a failed command. A reset device ACKs 0x7F; a synced one
        NACKs 0x7F 0xFF; one still inside a frame (a lost ACK left it waiting for an address
        or a block) gets 0xFF until that frame is complete: 0xFF never makes a valid address,
        length or erase frame, and a block of 0xFF programs nothing."""
        self.link.drain(quiet=self._quiet)
        if self._probe(SYNC, self.probe_timeout) or self._probe(0xFF, self.probe_timeout):
            return
        self.link.write(b"\xff" * FILL)
        self.link.drain(quiet=max(self._quiet, 0.1))
        if self._probe(0xFF, self.probe_timeout) or self._probe(0xFF, self.probe_timeout):
            return
        raise _Silent("no sync")

    def _probe(self, byte: int, timeout: float) -> bool:
        """Send ``byte``: True when ACK or NACK comes within ``timeout``, other bytes skipped."""
        self.link.write(bytes((byte,)))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                reply = self.link.read(1, left, "sync")[0]
            except ThingTimeoutError:
                return False
            if reply in (ACK, NACK):
                self.link.drain(quiet=self._quiet)     # what a noisy line still holds
                return True
        return False

    # -- single exchanges: raise _Refused, _Silent or _Garbled ----------------------

    def _get_commands(self) -> an3155.GetReply:
        self._command(Command.GET)
        count = self._reply(1)
        get = _parse(an3155.parse_get, count + self._reply(count[0] + 1))
        self._ack()
        return get

    def _get_version(self) -> an3155.VersionReply:
        self._command(Command.GET_VERSION)
        version = _parse(an3155.parse_get_version, self._reply(3))
        self._ack()
        return version

    def _get_id(self) -> int:
        self._command(Command.GET_ID)
        count = self._reply(1)
        pid = _parse(an3155.parse_get_id, count + self._reply(count[0] + 1))
        self._ack()
        return pid

    def _read_memory(self, address: int, count: int) -> bytes:
        self._command(Command.READ_MEMORY)
        self._send_ack(an3155.address(address))
        self._send_ack(an3155.read_length(count))
        return self._reply(count)

    def _write_memory(self, address: int, block: bytes) -> None:
        self._command(Command.WRITE_MEMORY)
        self._send_ack(an3155.address(address))
        self._send_ack(an3155.write_block(block), self.write_timeout)

    def _erase_frames(self, pages: list[int]) -> None:
        timeout = self.erase_timeout * len(pages)
        if Command.EXTENDED_ERASE in self._commands():
            self._command(Command.EXTENDED_ERASE)
            self._send_ack(an3155.extended_erase_pages(pages), timeout)
        else:
            self._command(Command.ERASE)
            self._send_ack(an3155.erase_pages(pages), timeout)

    def _erase_all(self) -> None:
        if Command.EXTENDED_ERASE in self._commands():
            self._command(Command.EXTENDED_ERASE)
            self._send_ack(an3155.extended_erase_special(an3155.SpecialErase.MASS), self.mass_erase_timeout)
        else:
            self._command(Command.ERASE)
            self._send_ack(an3155.GLOBAL_ERASE, self.mass_erase_timeout)

    def _checksum(self, address: int, count: int) -> int:
        self._command(Command.GET_CHECKSUM)
        self._send_ack(an3155.address(address))
        self._send_ack(an3155.checksum_length(count))
        self._ack(self.ack_timeout + count * 1e-6)     # the device computes: about 1 s per MB at most
        return _parse(an3155.parse_checksum, self._reply(5))

    def _go(self, address: int) -> None:
        self._command(Command.GO)
        self._send_ack(an3155.address(address))

    def _commands(self) -> tuple[int, ...]:
        return self._get.commands if self._get else ()

    def _command(self, code: int) -> None:
        self._send_ack(an3155.command(code))

    def _send_ack(self, frame: bytes, timeout: float | None = None) -> None:
        self.link.write(frame)
        self._ack(timeout)

    def _ack(self, timeout: float | None = None) -> None:
        reply = self._reply(1, timeout)[0]
        if reply == NACK:
            raise _Refused("NACK")
        if reply != ACK:
            raise _Garbled(f"0x{reply:02X} instead of ACK")

    def _reply(self, count: int, timeout: float | None = None) -> bytes:
        wait = (self.ack_timeout if timeout is None else timeout) + count * self._char_time
        try:
            return self.link.read(count, wait, "reply")
        except ThingTimeoutError:
            raise _Silent("no reply") from None


def _parse(parser: Callable[[bytes], T], body: bytes) -> T:
    try:
        return parser(body)
    except an3155.FrameError as exc:
        raise _Garbled(str(exc)) from None


def _arguments(settings: Mapping[str, Any], reset_lines: bool) -> dict[str, Any]:
    """Without reset lines only the bootloader's Go starts the application."""
    return {**settings, "go": not reset_lines}


def _positive(value: int) -> bool:
    return value > 0


PROTOCOL = ThingProtocol(
    parity="even",                              # the system bootloader's line is 8E1
    options=(Option("address", "int", FLASH_BASE, check=lambda value: 0 <= value < 1 << 32,
                    must="a 32-bit address"),     # where the image goes
             # for parts fwagent does not know by their id
             Option("flash_size", "int", check=_positive, must="a positive number of bytes"),
             Option("page_size", "int", check=_positive, must="a positive number of bytes")),
    flasher=Stm32Flasher, arguments=_arguments,
    no_rollback="the STM32 system bootloader cannot go back to an earlier image")
