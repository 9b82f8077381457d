"""The serial link to a Thing, on a real pseudo-terminal."""

from __future__ import annotations

import os
import pty
import threading
import time
import tty

import pytest

from agent.errors import ThingPortError, ThingTimeoutError
from bootloader_bridge.things.link import SerialLink


@pytest.fixture
def pty_pair():  # type: ignore[no-untyped-def]
    master, slave = pty.openpty()
    tty.setraw(slave)                      # no echo: what the link writes is not read back
    yield master, os.ttyname(slave)
    os.close(master)
    os.close(slave)


def test_reads_exactly_what_arrives_in_pieces(pty_pair) -> None:  # type: ignore[no-untyped-def]
    master, path = pty_pair
    with SerialLink(path, name="mcu1") as link:
        def feed() -> None:
            for piece in (b"\x79", b"\x31\x00", b"OK\n"):
                os.write(master, piece)
                time.sleep(0.05)
        threading.Thread(target=feed).start()
        assert link.read(3, 2.0) == b"\x79\x31\x00"
        assert link.read_until(b"\n", 2.0, 64) == b"OK\n"
        link.write(b"\x7f")
        assert os.read(master, 1) == b"\x7f"


def test_a_silent_thing_times_out_with_a_clear_error(pty_pair) -> None:  # type: ignore[no-untyped-def]
    master, path = pty_pair
    with SerialLink(path, name="mcu1") as link:
        os.write(master, b"\x79")
        started = time.monotonic()
        with pytest.raises(ThingTimeoutError, match=r"mcu1: no ACK within 0.3 s \(1 of 2 bytes\)"):
            link.read(2, 0.3, "ACK")
        assert 0.25 < time.monotonic() - started < 1.0
        with pytest.raises(ThingTimeoutError, match="longer than 4 bytes"):
            os.write(master, b"abcdefgh")
            link.read_until(b"\n", 1.0, 4)


def test_drain_takes_a_boot_banner_until_the_line_is_quiet(pty_pair) -> None:  # type: ignore[no-untyped-def]
    master, path = pty_pair
    with SerialLink(path) as link:
        os.write(master, b"*** Booting Zephyr OS ***\r\n")
        assert link.drain(quiet=0.1) == b"*** Booting Zephyr OS ***\r\n"
        assert link.drain(quiet=0.05) == b""


def test_a_missing_port_is_named() -> None:
    with pytest.raises(ThingPortError, match="mcu9: cannot open /dev/fwagent-no-such-tty"):
        SerialLink("/dev/fwagent-no-such-tty", name="mcu9")


def test_even_parity_opens_on_a_pty_and_is_never_reconfigured(pty_pair) -> None:  # type: ignore[no-untyped-def]
    """A pty drops PARENB; a later reconfiguration would fail with EINVAL. The link never makes one."""
    master, path = pty_pair
    with SerialLink(path, parity="even") as link:
        os.write(master, b"\x79")
        assert link.read(1, 1.0) == b"\x79"
        with pytest.raises(ThingTimeoutError):
            link.read(1, 0.1)
