"""Entering a Thing's bootloader, and resetting it into its application afterwards.

``[things.<name>].reset`` picks the method:

* ``none``: the Thing is in its bootloader already (a pty, QEMU, a button pressed by hand);
* ``dtr-rts``: the USB-serial adapter's modem lines, wired as most boards do it: DTR to the
  reset pin (asserted = held in reset), RTS to the boot pin (asserted = boot the bootloader);
* ``gpio:<chip>:<reset>,<boot>``: two lines of a kernel GPIO character device
  (``/dev/gpiochipN``): the reset line is active low, the boot line active high;
* a command (a list of strings): run with ``FWAGENT_THING`` set to the Thing's name and
  ``FWAGENT_RESET`` to ``enter`` or ``leave``, for boards wired some other way.

The pulse and settle times follow ST's AN2606 and what MCUboot needs to start.
"""

from __future__ import annotations

import os
import struct
import time
from dataclasses import dataclass
from typing import Any, Protocol

from agent.errors import BootloaderError, BootloaderTimeoutError, ThingError, ThingPortError, ThingTimeoutError
from bootloader_bridge.bootchooser.command import run

PULSE = 0.1              # seconds a reset is held
SETTLE = 0.3             # seconds for the bootloader to start listening
COMMAND_TIMEOUT = 30.0

# Linux GPIO character device, uAPI v1 (linux/gpio.h): a line handle request and line values.
GPIOHANDLES_MAX = 64
GPIOHANDLE_REQUEST_OUTPUT = 1 << 1
_REQUEST = struct.Struct(f"={GPIOHANDLES_MAX}I I {GPIOHANDLES_MAX}B 32s I i")     # 364 bytes
_VALUES = struct.Struct(f"={GPIOHANDLES_MAX}B")                                      # 64 bytes


def _iowr(kind: int, number: int, size: int) -> int:
    return (3 << 30) | (size << 16) | (kind << 8) | number


GPIO_GET_LINEHANDLE_IOCTL = _iowr(0xB4, 0x03, _REQUEST.size)
GPIOHANDLE_SET_LINE_VALUES_IOCTL = _iowr(0xB4, 0x09, _VALUES.size)


class ResetMethod(Protocol):
    def enter(self, link: Any) -> None: ...        # into the bootloader
    def leave(self, link: Any) -> None: ...        # reset into the application


class NoReset:
    def enter(self, link: Any) -> None:
        """The Thing waits in its bootloader already."""

    def leave(self, link: Any) -> None:
        """Nothing to pull: the flasher's own command (Go, reset) starts the application."""


class DtrRts:
    def enter(self, link: Any) -> None:
        link.set_lines(rts=True, dtr=True)          # boot pin up, into reset
        time.sleep(PULSE)
        link.set_lines(dtr=False)                   # out of reset: the bootloader starts
        time.sleep(SETTLE)

    def leave(self, link: Any) -> None:
        link.set_lines(rts=False, dtr=True)
        time.sleep(PULSE)
        link.set_lines(dtr=False)


def line_request(offsets: tuple[int, ...], values: tuple[int, ...], label: str) -> bytes:
    """A ``struct gpiohandle_request`` for output lines (pure)."""
    if not offsets or len(offsets) != len(values) or len(offsets) > GPIOHANDLES_MAX:
        raise ValueError("one value per line, 1 to 64 lines")
    padded = list(offsets) + [0] * (GPIOHANDLES_MAX - len(offsets))
    defaults = list(values) + [0] * (GPIOHANDLES_MAX - len(values))
    return _REQUEST.pack(*padded, GPIOHANDLE_REQUEST_OUTPUT, *defaults, label.encode()[:31], len(offsets), 0)


def line_values(values: tuple[int, ...]) -> bytes:
    """A ``struct gpiohandle_data`` (pure)."""
    return _VALUES.pack(*(list(values) + [0] * (GPIOHANDLES_MAX - len(values))))


@dataclass(frozen=True)
class GpioLines:
    chip: str                # /dev/gpiochipN
    reset_line: int          # active low
    boot_line: int           # active high

    def enter(self, link: Any) -> None:
        self._sequence(boot=1)

    def leave(self, link: Any) -> None:
        self._sequence(boot=0)

    def _sequence(self, boot: int) -> None:
        import fcntl

        offsets = (self.reset_line, self.boot_line)
        try:
            chip = os.open(self.chip, os.O_RDWR)
        except OSError as exc:
            raise ThingPortError(f"GPIO chip {self.chip}: {exc.strerror}") from None
        try:
            request = bytearray(line_request(offsets, (0, boot), "fwagent"))    # in reset, boot pin set
            try:
                fcntl.ioctl(chip, GPIO_GET_LINEHANDLE_IOCTL, request)
            except OSError as exc:
                raise ThingPortError(f"GPIO chip {self.chip} lines {offsets}: {exc.strerror}") from None
            handle = _REQUEST.unpack(bytes(request))[-1]
            try:
                time.sleep(PULSE)
                fcntl.ioctl(handle, GPIOHANDLE_SET_LINE_VALUES_IOCTL, bytearray(line_values((1, boot))))
                time.sleep(SETTLE)
            finally:
                os.close(handle)
        finally:
            os.close(chip)


@dataclass(frozen=True)
class CommandReset:
    command: tuple[str, ...]
    thing: str

    def enter(self, link: Any) -> None:
        self._run("enter")

    def leave(self, link: Any) -> None:
        self._run("leave")

    def _run(self, step: str) -> None:
        try:
            run(self.command, timeout=COMMAND_TIMEOUT, env={"FWAGENT_THING": self.thing, "FWAGENT_RESET": step})
        except BootloaderTimeoutError as err:
            raise ThingTimeoutError(f"{self.thing}: reset ({step}): {err.detail}") from None
        except BootloaderError as err:
            raise ThingError(f"{self.thing}: reset ({step}): {err.detail}") from None


def parse_reset(spec: str | tuple[str, ...], thing: str) -> ResetMethod:
    """The method ``[things.<name>].reset`` names (pure)."""
    if isinstance(spec, tuple):
        return CommandReset(spec, thing)
    if spec == "none":
        return NoReset()
    if spec == "dtr-rts":
        return DtrRts()
    if spec.startswith("gpio:"):
        try:
            _, chip, lines = spec.split(":")
            reset_line, boot_line = (int(n) for n in lines.split(","))
        except ValueError:
            raise ThingError(f"{thing}: reset {spec!r} is not gpio:<chip>:<reset line>,<boot line>") from None
        return GpioLines(chip if chip.startswith("/") else f"/dev/{chip}", reset_line, boot_line)
    raise ThingError(f"{thing}: unknown reset method {spec!r}")
