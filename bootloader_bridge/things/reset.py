"""Entering a Thing's bootloader, and resetting it into its application afterwards.

``[things.<name>].reset`` picks the method:

* ``none``: the Thing is in its bootloader already (a pty, QEMU, a button pressed by hand);
* ``dtr-rts``: the USB-serial adapter's modem lines, wired as most boards do it: DTR to the
  reset pin (asserted = held in reset), RTS to the boot pin (asserted = boot the bootloader);
* ``gpio:<chip>:<reset>,<boot>``: two lines of a kernel GPIO character device
  (``/dev/gpiochipN``): the reset line is active low, the boot line active high;
  ``gpio:<chip>:<reset>`` is the reset line alone, for a Thing whose bootloader is entered
  some other way (MCUboot's serial recovery waiting after every reset);
* a command (a list of strings): run with ``FWAGENT_THING`` set to the Thing's name and
  ``FWAGENT_RESET`` to ``enter`` or ``leave``, for boards wired some other way.

The pulse and settle times follow ST's AN2606 and what MCUboot needs to start.
"""

from __future__ import annotations

import errno
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from agent.errors import BootloaderError, BootloaderTimeoutError, ThingError, ThingPortError, ThingTimeoutError
from bootloader_bridge.bootchooser.command import run

PULSE = 0.1              # seconds a reset is held
SETTLE = 0.3             # seconds for the bootloader to start listening
COMMAND_TIMEOUT = 30.0

# Linux GPIO character device (linux/gpio.h). uAPI v2 first; v1 (GPIO_GET_LINEHANDLE_IOCTL) only on
# kernels without v2 (before 5.10), as kernels built without CONFIG_GPIO_CDEV_V1 lack v1.
GPIO_LINES_MAX = 64
GPIO_V2_LINE_FLAG_OUTPUT = 1 << 3
GPIO_V2_LINE_ATTR_ID_OUTPUT_VALUES = 2
GPIOHANDLE_REQUEST_OUTPUT = 1 << 1
# struct gpio_v2_line_request: offsets[64], consumer[32], config {flags, num_attrs, padding[5],
# attrs[10] of {id, padding, values, mask}} with one output-values attribute, num_lines,
# event_buffer_size, padding[5], fd.
_V2_REQUEST = struct.Struct(f"={GPIO_LINES_MAX}I 32s QI20x I4xQQ {9 * 24}x I4x20x i")    # 592 bytes
_V2_VALUES = struct.Struct("=QQ")                                                         # bits, mask
# struct gpiohandle_request: lineoffsets[64], flags, default_values[64], consumer_label[32], lines, fd.
_V1_REQUEST = struct.Struct(f"={GPIO_LINES_MAX}I I {GPIO_LINES_MAX}B 32s I i")           # 364 bytes
_V1_VALUES = struct.Struct(f"={GPIO_LINES_MAX}B")                                        # 64 bytes
LABEL = "fwagent"


def _iowr(kind: int, number: int, size: int) -> int:
    return (3 << 30) | (size << 16) | (kind << 8) | number


GPIO_V2_GET_LINE_IOCTL = _iowr(0xB4, 0x07, _V2_REQUEST.size)
GPIO_V2_LINE_SET_VALUES_IOCTL = _iowr(0xB4, 0x0F, _V2_VALUES.size)
GPIO_GET_LINEHANDLE_IOCTL = _iowr(0xB4, 0x03, _V1_REQUEST.size)
GPIOHANDLE_SET_LINE_VALUES_IOCTL = _iowr(0xB4, 0x09, _V1_VALUES.size)


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


def _check_lines(offsets: tuple[int, ...], values: tuple[int, ...]) -> None:
    if not offsets or len(offsets) != len(values) or len(offsets) > GPIO_LINES_MAX:
        raise ValueError(f"one value per line, 1 to {GPIO_LINES_MAX} lines")


def _bits(values: tuple[int, ...]) -> int:
    """Line values as the v2 bitmap: bit i is the line at index i of the request."""
    return sum(1 << i for i, value in enumerate(values) if value)


def v2_line_request(offsets: tuple[int, ...], values: tuple[int, ...], label: str) -> bytes:
    """A ``struct gpio_v2_line_request`` for output lines starting at ``values`` (pure)."""
    _check_lines(offsets, values)
    padded = list(offsets) + [0] * (GPIO_LINES_MAX - len(offsets))
    every_line = (1 << len(offsets)) - 1
    return _V2_REQUEST.pack(*padded, label.encode()[:31], GPIO_V2_LINE_FLAG_OUTPUT, 1,
                            GPIO_V2_LINE_ATTR_ID_OUTPUT_VALUES, _bits(values), every_line, len(offsets), 0)


def v2_line_values(values: tuple[int, ...]) -> bytes:
    """A ``struct gpio_v2_line_values`` setting every requested line (pure)."""
    return _V2_VALUES.pack(_bits(values), (1 << len(values)) - 1)


def v1_line_request(offsets: tuple[int, ...], values: tuple[int, ...], label: str) -> bytes:
    """A ``struct gpiohandle_request`` for output lines starting at ``values`` (pure)."""
    _check_lines(offsets, values)
    padded = list(offsets) + [0] * (GPIO_LINES_MAX - len(offsets))
    defaults = list(values) + [0] * (GPIO_LINES_MAX - len(values))
    return _V1_REQUEST.pack(*padded, GPIOHANDLE_REQUEST_OUTPUT, *defaults, label.encode()[:31], len(offsets), 0)


def v1_line_values(values: tuple[int, ...]) -> bytes:
    """A ``struct gpiohandle_data`` (pure)."""
    return _V1_VALUES.pack(*(list(values) + [0] * (GPIO_LINES_MAX - len(values))))


@dataclass(frozen=True)
class GpioUapi:
    """One version of the GPIO character device's line ioctls."""

    get_line: int
    set_values: int
    request: Callable[[tuple[int, ...], tuple[int, ...], str], bytes]
    values: Callable[[tuple[int, ...]], bytes]


V2 = GpioUapi(GPIO_V2_GET_LINE_IOCTL, GPIO_V2_LINE_SET_VALUES_IOCTL, v2_line_request, v2_line_values)
V1 = GpioUapi(GPIO_GET_LINEHANDLE_IOCTL, GPIOHANDLE_SET_LINE_VALUES_IOCTL, v1_line_request, v1_line_values)
_NO_V2 = (errno.ENOTTY, errno.EINVAL)       # what a kernel without uAPI v2 answers to its ioctl


@dataclass(frozen=True)
class GpioLines:
    """A reset line (active low) and, optionally, a boot line (active high: the bootloader).
    Without a boot line the Thing's bootloader is entered some other way (MCUboot's serial
    recovery waits for a while after every reset), so entering and leaving are both a reset."""

    chip: str                     # /dev/gpiochipN
    reset_line: int
    boot_line: int | None
    thing: str

    @property
    def offsets(self) -> tuple[int, ...]:
        return (self.reset_line,) if self.boot_line is None else (self.reset_line, self.boot_line)

    def steps(self, boot: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The line values (pure): held in reset with the boot pin at ``boot``, then released."""
        if self.boot_line is None:
            return (0,), (1,)
        return (0, boot), (1, boot)

    def enter(self, link: Any) -> None:
        self._sequence(boot=1)

    def leave(self, link: Any) -> None:
        self._sequence(boot=0)

    def _sequence(self, boot: int) -> None:
        import fcntl

        held, released = self.steps(boot)
        handle, uapi = self._request(held)
        try:
            time.sleep(PULSE)
            try:
                fcntl.ioctl(handle, uapi.set_values, bytearray(uapi.values(released)))
            except OSError:
                # Once more: a line given up while asserted may stay so, holding the Thing in reset.
                fcntl.ioctl(handle, uapi.set_values, bytearray(uapi.values(released)))
            time.sleep(SETTLE)
        except OSError as exc:
            raise ThingPortError(f"{self.thing}: GPIO chip {self.chip} lines {self.offsets}: "
                                 f"setting them failed: {exc.strerror}") from None
        finally:
            os.close(handle)

    def _request(self, values: tuple[int, ...]) -> tuple[int, GpioUapi]:
        """The lines as outputs starting at ``values``, and the uAPI that got them: v2, or v1
        on a kernel without v2."""
        try:
            chip = os.open(self.chip, os.O_RDWR)
        except OSError as exc:
            raise ThingPortError(f"{self.thing}: GPIO chip {self.chip}: {exc.strerror}") from None
        try:
            try:
                return _get_line(chip, V2, self.offsets, values), V2
            except OSError as exc:
                if exc.errno not in _NO_V2:
                    raise self._refused(exc) from None
            try:
                return _get_line(chip, V1, self.offsets, values), V1
            except OSError as exc:
                raise self._refused(exc) from None
        finally:
            os.close(chip)

    def _refused(self, exc: OSError) -> ThingPortError:
        return ThingPortError(f"{self.thing}: GPIO chip {self.chip} lines {self.offsets}: {exc.strerror}")


def _get_line(chip: int, uapi: GpioUapi, offsets: tuple[int, ...], values: tuple[int, ...]) -> int:
    """The file descriptor of the requested lines; the kernel writes it into the struct's last field."""
    import fcntl

    request = bytearray(uapi.request(offsets, values, LABEL))
    fcntl.ioctl(chip, uapi.get_line, request)
    return int(struct.unpack_from("=i", request, len(request) - 4)[0])


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
        return _gpio_lines(spec, thing)
    raise ThingError(f"{thing}: unknown reset method {spec!r}")


def _gpio_lines(spec: str, thing: str) -> GpioLines:
    """``gpio:<chip>:<reset>`` or ``gpio:<chip>:<reset>,<boot>`` (pure). Errors start with
    ``<thing>: reset``; the configuration loader names its key with them."""
    parts = spec.split(":")
    chip, lines = (parts[1], parts[2]) if len(parts) == 3 else ("", "")
    numbers = lines.split(",")
    if len(numbers) > 2:
        raise ThingError(f"{thing}: reset {spec!r} names {len(numbers)} lines; it takes a reset line "
                         "and at most a boot line")
    if not chip or not all(n.isascii() and n.isdigit() and int(n) < 1 << 32 for n in numbers):
        raise ThingError(f"{thing}: reset {spec!r} is not gpio:<chip>:<reset line>[,<boot line>]")
    offsets = [int(n) for n in numbers]
    if len(set(offsets)) < len(offsets):
        raise ThingError(f"{thing}: reset {spec!r} uses line {offsets[0]} for both reset and boot")
    path = chip if chip.startswith("/") else f"/dev/{chip}"
    return GpioLines(path, offsets[0], offsets[1] if len(offsets) == 2 else None, thing)
