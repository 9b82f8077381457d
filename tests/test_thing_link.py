"""The serial link to a Thing, on a real pseudo-terminal and on a loopback TCP socket (socket://)."""

from __future__ import annotations

import os
import pty
import random
import socket
import threading
import time
import tty
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from agent.errors import ThingPortError, ThingTimeoutError
from bootloader_bridge.things.link import SerialLink
from bootloader_bridge.things.stm32 import Stm32Flasher
from hil.sim.stm32_bootloader import Bootloader


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


@contextmanager
def tcp_device(serve: Callable[[socket.socket], None]) -> Iterator[str]:
    """A loopback TCP server for one connection, handed to ``serve``; yields its socket:// URL."""
    failures: list[BaseException] = []
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(5.0)

        def accept() -> None:
            try:
                connection, _ = server.accept()
                with connection:
                    connection.settimeout(5.0)
                    serve(connection)
            except Exception as exc:       # reported by the test, not lost in the thread
                failures.append(exc)

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        yield f"socket://127.0.0.1:{server.getsockname()[1]}"
        thread.join(5.0)
    assert not thread.is_alive() and failures == []


@pytest.fixture
def socket_reconfigurations(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every reconfiguration of a socket:// port: the one in opening it, and any after."""
    from serial.urlhandler import protocol_socket

    calls: list[object] = []
    original = protocol_socket.Serial._reconfigure_port

    def counted(port: object) -> None:
        calls.append(port)
        original(port)

    monkeypatch.setattr(protocol_socket.Serial, "_reconfigure_port", counted)
    return calls


def test_a_socket_port_carries_bytes_both_ways_unreconfigured(socket_reconfigurations: list[object]) -> None:
    """The device speaks only when spoken to, as a bootloader does: pyserial's socket:// drops
    whatever arrived before its open() returned."""
    received = bytearray()

    def device(connection: socket.socket) -> None:
        received.extend(connection.recv(1))
        connection.sendall(b"\x79")
        time.sleep(0.05)
        connection.sendall(b"\x31\x00OK\n")
        while data := connection.recv(64):
            received.extend(data)

    with tcp_device(device) as url, SerialLink(url, parity="even", name="mcu1") as link:
        link.write(b"\x7f")
        assert link.read(3, 2.0) == b"\x79\x31\x00"
        assert link.read_until(b"\n", 2.0, 64) == b"OK\n"
        link.write(b"\x00\xff")
        with pytest.raises(ThingTimeoutError, match=r"mcu1: no ACK within 0.1 s \(0 of 1 bytes\)"):
            link.read(1, 0.1, "ACK")
        assert link.drain(quiet=0.05) == b""
    assert bytes(received) == b"\x7f\x00\xff"
    assert len(socket_reconfigurations) == 1          # in opening the port, never after


def test_an_stm32_flashes_over_a_socket_port(socket_reconfigurations: list[object]) -> None:
    """The simulated STM32 bootloader behind a TCP socket, as a serial-to-network bridge serves one."""
    thing = Bootloader(0x410)
    image = random.Random(7).randbytes(4096)

    def device(connection: socket.socket) -> None:
        while data := connection.recv(4096):
            for reply in thing.feed(data):
                connection.sendall(reply.data)

    with tcp_device(device) as url, SerialLink(url, parity="even", name="mcu1") as link:
        result = Stm32Flasher(link, sync_timeout=0.3, ack_timeout=0.5).flash(image)
    assert thing.flash[:len(image)] == image and set(thing.flash[len(image):]) == {0xFF}
    assert (result.written, result.verified, result.retries) == (len(image), "read-back", 0)
    assert len(socket_reconfigurations) == 1
