"""Reset methods: parsing, the GPIO uAPI structures as bytes, the line sequences (GPIO against a
recording stand-in for the kernel's ioctls, DTR/RTS on a recording link and on a pty), commands."""

from __future__ import annotations

import errno
import fcntl
import os
import pty
import struct
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent.errors import ThingError, ThingPortError
from bootloader_bridge.things import reset
from bootloader_bridge.things.link import SerialLink
from bootloader_bridge.things.reset import (GPIO_GET_LINEHANDLE_IOCTL, GPIO_V2_GET_LINE_IOCTL,
                                            GPIO_V2_LINE_SET_VALUES_IOCTL, GPIOHANDLE_SET_LINE_VALUES_IOCTL,
                                            CommandReset, DtrRts, GpioLines, NoReset, parse_reset,
                                            v1_line_request, v1_line_values, v2_line_request, v2_line_values)

PULSE, SETTLE = 0.03, 0.06       # the reset module's times, shortened for these tests


def test_parse() -> None:
    assert isinstance(parse_reset("none", "m"), NoReset) and isinstance(parse_reset("dtr-rts", "m"), DtrRts)
    assert parse_reset("gpio:gpiochip2:17,18", "m") == GpioLines("/dev/gpiochip2", 17, 18, "m")
    assert parse_reset("gpio:/dev/gpiochip0:3,4", "m") == GpioLines("/dev/gpiochip0", 3, 4, "m")
    assert parse_reset("gpio:gpiochip1:5", "m") == GpioLines("/dev/gpiochip1", 5, None, "m")
    assert parse_reset(("board-reset", "--mcu"), "m") == CommandReset(("board-reset", "--mcu"), "m")


@pytest.mark.parametrize(("spec", "message"), [
    ("gpio:x:1,y", "m: reset 'gpio:x:1,y' is not gpio:<chip>:<reset line>[,<boot line>]"),
    ("gpio:x:-1", "m: reset 'gpio:x:-1' is not gpio:<chip>:<reset line>[,<boot line>]"),
    ("gpio::1", "m: reset 'gpio::1' is not gpio:<chip>:<reset line>[,<boot line>]"),
    ("gpio:x:1:2", "m: reset 'gpio:x:1:2' is not gpio:<chip>:<reset line>[,<boot line>]"),
    ("gpio:x:4294967296", "m: reset 'gpio:x:4294967296' is not gpio:<chip>:<reset line>[,<boot line>]"),
    ("gpio:x:1,2,3", "m: reset 'gpio:x:1,2,3' names 3 lines; it takes a reset line and at most a boot line"),
    ("gpio:x:7,7", "m: reset 'gpio:x:7,7' uses line 7 for both reset and boot"),
    ("pulse", "m: unknown reset method 'pulse'"),
])
def test_a_malformed_spec_is_refused_in_one_line(spec: str, message: str) -> None:
    with pytest.raises(ThingError) as caught:
        parse_reset(spec, "m")
    assert caught.value.detail == message


def test_the_gpio_ioctl_numbers_are_the_kernels() -> None:
    # linux/gpio.h: _IOWR(0xB4, 0x07, struct gpio_v2_line_request), _IOWR(0xB4, 0x0F, struct gpio_v2_line_values),
    # _IOWR(0xB4, 0x03, struct gpiohandle_request) and _IOWR(0xB4, 0x09, struct gpiohandle_data)
    assert GPIO_V2_GET_LINE_IOCTL == 0xC250B407
    assert GPIO_V2_LINE_SET_VALUES_IOCTL == 0xC010B40F
    assert GPIO_GET_LINEHANDLE_IOCTL == 0xC16CB403
    assert GPIOHANDLE_SET_LINE_VALUES_IOCTL == 0xC040B409


def test_a_v2_line_request_as_bytes() -> None:
    data = v2_line_request((17, 18), (0, 1), "fwagent")
    assert len(data) == 592
    assert data[:8] == struct.pack("=II", 17, 18) and data[8:256] == bytes(248)          # offsets[64]
    assert data[256:288] == b"fwagent" + bytes(25)                                         # consumer[32]
    assert data[288:296] == struct.pack("=Q", 8)                                           # config.flags: output
    assert data[296:300] == struct.pack("=I", 1) and data[300:320] == bytes(20)           # num_attrs, padding
    assert data[320:328] == struct.pack("=II", 2, 0)                                       # attrs[0]: output values
    assert data[328:344] == struct.pack("=QQ", 0b10, 0b11)                                 # values, mask
    assert data[344:560] == bytes(216)                                                     # attrs[1..9]
    assert data[560:568] == struct.pack("=II", 2, 0)                                       # num_lines, event buffer
    assert data[568:592] == bytes(24)                                                      # padding[5], fd
    assert v2_line_values((1, 0)) == struct.pack("=QQ", 0b01, 0b11)
    assert v2_line_values((1,)) == struct.pack("=QQ", 1, 1) and len(v2_line_values((1,))) == 16
    with pytest.raises(ValueError):
        v2_line_request((1, 2), (0,), "x")


def test_a_v1_line_request_as_bytes() -> None:
    data = v1_line_request((17, 18), (0, 1), "fwagent")
    assert len(data) == 364
    assert data[:8] == struct.pack("=II", 17, 18) and data[8:256] == bytes(248)        # lineoffsets[64]
    assert data[256:260] == struct.pack("=I", 2)                                          # flags: output
    assert data[260:262] == b"\x00\x01" and data[262:324] == bytes(62)                   # default_values[64]
    assert data[324:356] == b"fwagent" + bytes(25)                                       # consumer_label[32]
    assert data[356:360] == struct.pack("=I", 2) and data[360:364] == bytes(4)           # lines, fd
    assert v1_line_values((1, 0)) == b"\x01\x00" + bytes(62)
    with pytest.raises(ValueError):
        v1_line_request((1, 2), (0,), "x")


def v2_request(offsets: tuple[int, ...], bits: int) -> bytes:
    """The request the kernel should see, laid out field by field from linux/gpio.h."""
    return (b"".join(struct.pack("=I", o) for o in offsets).ljust(256, b"\0") + b"fwagent".ljust(32, b"\0")
            + struct.pack("=QI", 8, 1) + bytes(20)
            + struct.pack("=IIQQ", 2, 0, bits, (1 << len(offsets)) - 1) + bytes(9 * 24)
            + struct.pack("=II", len(offsets), 0) + bytes(20) + struct.pack("=i", 0))


def v1_request(offsets: tuple[int, ...], values: bytes) -> bytes:
    return (b"".join(struct.pack("=I", o) for o in offsets).ljust(256, b"\0") + struct.pack("=I", 2)
            + values.ljust(64, b"\0") + b"fwagent".ljust(32, b"\0") + struct.pack("=Ii", len(offsets), 0))


@dataclass
class FakeGpioKernel:
    """Stands in for the kernel's GPIO ioctls (there is no GPIO chip here): records each call with
    its time, and hands out one end of a pipe as the line handle, so that its closing shows."""

    no_v2: int = 0                              # the errno of a kernel without uAPI v2
    error: int = 0                              # the errno of a refused request
    calls: list[tuple[int, int, bytes, float]] = field(default_factory=list)
    handles: list[tuple[int, int]] = field(default_factory=list)     # (handle, the pipe's read end)

    def ioctl(self, fd: int, request: int, arg: Any, mutate: bool = True) -> int:
        self.calls.append((fd, request, bytes(arg), time.monotonic()))
        if request == GPIO_V2_GET_LINE_IOCTL and self.no_v2:
            raise OSError(self.no_v2, os.strerror(self.no_v2))
        if request in (GPIO_V2_GET_LINE_IOCTL, GPIO_GET_LINEHANDLE_IOCTL):
            if self.error:
                raise OSError(self.error, os.strerror(self.error))
            read_end, write_end = os.pipe()
            os.set_blocking(read_end, False)
            self.handles.append((write_end, read_end))
            arg[-4:] = struct.pack("=i", write_end)
        return 0

    def requests(self) -> list[tuple[int, bytes]]:
        return [(request, data) for _, request, data, _ in self.calls]

    def all_closed(self) -> bool:
        """Every line handle was closed: its pipe reads as ended, not as empty but open."""
        try:
            return all(os.read(read_end, 1) == b"" for _, read_end in self.handles)
        except BlockingIOError:
            return False


@pytest.fixture
def kernel(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGpioKernel]:
    fake = FakeGpioKernel()
    monkeypatch.setattr(fcntl, "ioctl", fake.ioctl)
    monkeypatch.setattr(reset, "PULSE", PULSE)
    monkeypatch.setattr(reset, "SETTLE", SETTLE)
    yield fake
    for _, read_end in fake.handles:
        os.close(read_end)


@pytest.fixture
def chip(tmp_path: Path) -> str:
    """A file to open as the chip: the ioctls on it are the fake kernel's."""
    path = tmp_path / "gpiochip0"
    path.touch()
    return str(path)


def timed(step: Any) -> float:
    started = time.monotonic()
    step(None)
    return time.monotonic() - started


def test_gpio_enter_holds_boot_high_through_the_reset_pulse(kernel: FakeGpioKernel, chip: str) -> None:
    seconds = timed(GpioLines(chip, 17, 18, "mcu1").enter)
    assert kernel.requests() == [(GPIO_V2_GET_LINE_IOCTL, v2_request((17, 18), 0b10)),       # reset low, boot high
                                 (GPIO_V2_LINE_SET_VALUES_IOCTL, struct.pack("=QQ", 0b11, 0b11))]  # reset released
    (chip_fd, _, _, requested), (line_fd, _, _, released) = kernel.calls
    assert line_fd == kernel.handles[0][0] != chip_fd
    assert released - requested >= PULSE and seconds >= PULSE + SETTLE
    assert kernel.all_closed()


def test_gpio_leave_pulses_reset_with_boot_low(kernel: FakeGpioKernel, chip: str) -> None:
    GpioLines(chip, 17, 18, "mcu1").leave(None)
    assert kernel.requests() == [(GPIO_V2_GET_LINE_IOCTL, v2_request((17, 18), 0b00)),
                                 (GPIO_V2_LINE_SET_VALUES_IOCTL, struct.pack("=QQ", 0b01, 0b11))]
    assert kernel.calls[1][3] - kernel.calls[0][3] >= PULSE and kernel.all_closed()


def test_a_reset_line_alone_is_pulsed_to_enter_and_to_leave(kernel: FakeGpioKernel, chip: str) -> None:
    lines = GpioLines(chip, 5, None, "radio")
    lines.enter(None)
    lines.leave(None)
    pulse = [(GPIO_V2_GET_LINE_IOCTL, v2_request((5,), 0)), (GPIO_V2_LINE_SET_VALUES_IOCTL, struct.pack("=QQ", 1, 1))]
    assert kernel.requests() == pulse + pulse
    assert kernel.all_closed()


@pytest.mark.parametrize("no_v2", [errno.ENOTTY, errno.EINVAL])
def test_a_kernel_without_uapi_v2_gets_v1(kernel: FakeGpioKernel, chip: str, no_v2: int) -> None:
    kernel.no_v2 = no_v2
    lines = GpioLines(chip, 17, 18, "mcu1")
    lines.enter(None)
    lines.leave(None)
    assert kernel.requests() == [
        (GPIO_V2_GET_LINE_IOCTL, v2_request((17, 18), 0b10)),
        (GPIO_GET_LINEHANDLE_IOCTL, v1_request((17, 18), b"\x00\x01")),
        (GPIOHANDLE_SET_LINE_VALUES_IOCTL, b"\x01\x01" + bytes(62)),
        (GPIO_V2_GET_LINE_IOCTL, v2_request((17, 18), 0b00)),
        (GPIO_GET_LINEHANDLE_IOCTL, v1_request((17, 18), b"\x00\x00")),
        (GPIOHANDLE_SET_LINE_VALUES_IOCTL, b"\x01\x00" + bytes(62)),
    ]
    assert kernel.calls[2][3] - kernel.calls[1][3] >= PULSE and kernel.all_closed()


def test_a_reset_line_alone_on_v1(kernel: FakeGpioKernel, chip: str) -> None:
    kernel.no_v2 = errno.ENOTTY
    GpioLines(chip, 5, None, "radio").enter(None)
    assert kernel.requests()[1:] == [(GPIO_GET_LINEHANDLE_IOCTL, v1_request((5,), b"\x00")),
                                     (GPIOHANDLE_SET_LINE_VALUES_IOCTL, b"\x01" + bytes(63))]


def test_lines_refused_by_the_kernel_are_named_with_the_thing(kernel: FakeGpioKernel, chip: str) -> None:
    kernel.error = errno.EBUSY
    with pytest.raises(ThingPortError) as caught:
        GpioLines(chip, 17, 18, "mcu1").enter(None)
    assert caught.value.detail == f"mcu1: GPIO chip {chip} lines (17, 18): Device or resource busy"
    assert [request for request, _ in kernel.requests()] == [GPIO_V2_GET_LINE_IOCTL]     # no v1 attempt


def test_a_missing_gpio_chip_is_named() -> None:
    with pytest.raises(ThingPortError) as caught:
        GpioLines("/dev/fwagent-no-chip", 1, 2, "mcu1").enter(None)
    assert caught.value.detail == "mcu1: GPIO chip /dev/fwagent-no-chip: No such file or directory"


@dataclass
class RecordingLink:
    """Stands in for a USB-serial adapter's modem lines (a pty has none)."""

    calls: list[tuple[float, dict[str, bool]]] = field(default_factory=list)

    def set_lines(self, **lines: bool) -> None:
        self.calls.append((time.monotonic(), lines))


def test_dtr_rts_enter_and_leave_in_order_and_in_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reset, "PULSE", PULSE)
    monkeypatch.setattr(reset, "SETTLE", SETTLE)
    link = RecordingLink()
    seconds = timed(lambda _: DtrRts().enter(link))
    assert [lines for _, lines in link.calls] == [{"rts": True, "dtr": True}, {"dtr": False}]
    assert link.calls[1][0] - link.calls[0][0] >= PULSE and seconds >= PULSE + SETTLE
    link.calls.clear()
    DtrRts().leave(link)
    assert [lines for _, lines in link.calls] == [{"rts": False, "dtr": True}, {"dtr": False}]
    assert link.calls[1][0] - link.calls[0][0] >= PULSE


def test_dtr_rts_on_a_port_without_modem_lines_says_so() -> None:
    master, slave = pty.openpty()
    try:
        with SerialLink(os.ttyname(slave), name="mcu1") as link:
            with pytest.raises(ThingPortError, match='mcu1: .* has no DTR/RTS lines.*reset = "none"'):
                DtrRts().enter(link)
    finally:
        os.close(master)
        os.close(slave)


def test_a_reset_command_runs_with_the_thing_and_the_step(tmp_path: Path) -> None:
    log = tmp_path / "log"
    script = f'import os; open({str(log)!r}, "a").write(os.environ["FWAGENT_THING"] + " " + os.environ["FWAGENT_RESET"] + "\\n")'
    command = CommandReset((sys.executable, "-c", script), "mcu1")
    command.enter(None)
    command.leave(None)
    assert log.read_text() == "mcu1 enter\nmcu1 leave\n"
    failing = CommandReset((sys.executable, "-c", "import sys; sys.stderr.write('no board'); sys.exit(3)"), "mcu1")
    with pytest.raises(ThingError, match=r"mcu1: reset \(enter\): .* failed with exit status 3: no board"):
        failing.enter(None)
