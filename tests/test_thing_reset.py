"""Reset methods: parsing, the GPIO uAPI structures as bytes, DTR/RTS on a pty, commands."""

from __future__ import annotations

import os
import pty
import struct
import sys
from pathlib import Path

import pytest

from agent.errors import ThingError, ThingPortError
from bootloader_bridge.things.link import SerialLink
from bootloader_bridge.things.reset import (GPIO_GET_LINEHANDLE_IOCTL, GPIOHANDLE_SET_LINE_VALUES_IOCTL,
                                            CommandReset, DtrRts, GpioLines, NoReset, line_request,
                                            line_values, parse_reset)


def test_parse() -> None:
    assert isinstance(parse_reset("none", "m"), NoReset) and isinstance(parse_reset("dtr-rts", "m"), DtrRts)
    assert parse_reset("gpio:gpiochip2:17,18", "m") == GpioLines("/dev/gpiochip2", 17, 18)
    assert parse_reset("gpio:/dev/gpiochip0:3,4", "m") == GpioLines("/dev/gpiochip0", 3, 4)
    assert parse_reset(("board-reset", "--mcu"), "m") == CommandReset(("board-reset", "--mcu"), "m")
    with pytest.raises(ThingError, match="m: reset 'gpio:x:1' is not gpio:<chip>:<reset line>,<boot line>"):
        parse_reset("gpio:x:1", "m")


def test_the_gpio_ioctl_numbers_are_the_kernels() -> None:
    # linux/gpio.h: _IOWR(0xB4, 0x03, struct gpiohandle_request) and _IOWR(0xB4, 0x09, struct gpiohandle_data)
    assert GPIO_GET_LINEHANDLE_IOCTL == 0xC16CB403
    assert GPIOHANDLE_SET_LINE_VALUES_IOCTL == 0xC040B409


def test_a_line_request_as_bytes() -> None:
    data = line_request((17, 18), (0, 1), "fwagent")
    assert len(data) == 364
    assert data[:8] == struct.pack("=II", 17, 18) and data[8:256] == bytes(248)        # lineoffsets[64]
    assert data[256:260] == struct.pack("=I", 2)                                          # flags: output
    assert data[260:262] == b"\x00\x01" and data[262:324] == bytes(62)                   # default_values[64]
    assert data[324:356] == b"fwagent" + bytes(25)                                       # consumer_label[32]
    assert data[356:360] == struct.pack("=I", 2) and data[360:364] == bytes(4)           # lines, fd
    assert line_values((1, 0)) == b"\x01\x00" + bytes(62)
    with pytest.raises(ValueError):
        line_request((1, 2), (0,), "x")


def test_a_missing_gpio_chip_is_named() -> None:
    with pytest.raises(ThingPortError, match="GPIO chip /dev/fwagent-no-chip"):
        GpioLines("/dev/fwagent-no-chip", 1, 2).enter(None)


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
    reset = CommandReset((sys.executable, "-c", script), "mcu1")
    reset.enter(None)
    reset.leave(None)
    assert log.read_text() == "mcu1 enter\nmcu1 leave\n"
    failing = CommandReset((sys.executable, "-c", "import sys; sys.stderr.write('no board'); sys.exit(3)"), "mcu1")
    with pytest.raises(ThingError, match=r"mcu1: reset \(enter\): .* failed with exit status 3: no board"):
        failing.enter(None)
