"""The serial line between the gateway's QEMU and the MCU's: two socket chardevs joined as a real
UART line joins two chips.

QEMU's emulated UARTs hand over bytes as fast as the host can, and a socket keeps what its
reader has not taken. A real line does neither: it carries ``baud / 10`` bytes a second (8N1),
and what is on it when either side loses power is gone; nothing waits in it for an MCU that is
off or still starting. The wire listens where the gateway's serial port connects (the gateway
reconnects after each power-on), connects to the MCU's UART socket while the MCU is powered, and
moves bytes both ways at the line's pace from one thread:

* each byte is delivered when the line would have carried it;
* the gateway going away (its QEMU killed: a power cut) drops what it had not got onto the line;
* the MCU powered off (``power(False)``) drops its connection and everything in flight; bytes
  the gateway sends meanwhile are lost, as on a line to a chip without power.
"""

from __future__ import annotations

import collections
import select
import socket
import threading
import time
from pathlib import Path

READ = 4096                  # bytes taken from a socket at a time
SEND = 64                    # bytes put on the line at a time: small enough to keep the pace even
RETRY = 0.1                  # seconds between two tries to reach the MCU's socket


class Wire:
    def __init__(self, listen: Path, device: Path, baud: int) -> None:
        self.listen, self.device_path, self.rate = listen, device, baud / 10
        self.sent_to_device = 0                  # bytes delivered to the MCU, for the bench's record
        self._powered = False
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._server: socket.socket | None = None
        self._gateway: socket.socket | None = None
        self._device: socket.socket | None = None
        self._to_device = _Pace(self.rate)
        self._to_gateway = _Pace(self.rate)
        self._tried = 0.0
        self._thread: threading.Thread | None = None
        self._running = False

    def start(self) -> None:
        self.listen.unlink(missing_ok=True)
        self._server = socket.socket(socket.AF_UNIX)
        self._server.bind(str(self.listen))
        self._server.listen(1)
        self._running = True
        self._thread = threading.Thread(target=self._run, name="mcu-wire", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._running = False
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for end in (self._server, self._gateway, self._device):
            if end is not None:
                end.close()
        self._server = self._gateway = self._device = None
        self.listen.unlink(missing_ok=True)

    def power(self, on: bool) -> None:
        """The MCU's power: off drops its connection and what is in flight either way."""
        with self._lock:
            self._powered = on
            if not on:
                self._drop_device()
        self._wake()

    # --- the wire's thread -----------------------------------------------------------------

    def _run(self) -> None:
        while self._running:
            with self._lock:
                self._reach_device()
                ends = [self._wake_r, *(e for e in (self._server, self._gateway, self._device) if e is not None)]
                due = min(self._to_device.next_at(), self._to_gateway.next_at(), time.monotonic() + RETRY)
            readable, _, _ = select.select(ends, [], [], max(0.0, due - time.monotonic()))
            with self._lock:
                for end in readable:
                    self._take(end)
                self._deliver()

    def _take(self, end: socket.socket) -> None:
        if end is self._wake_r:
            self._wake_r.recv(READ)
        elif end is self._server:
            gateway, _ = self._server.accept()
            if self._gateway is not None:
                self._gateway.close()
            self._gateway = gateway
            self._to_device.clear()
        elif end is self._gateway:
            data = _recv(end)
            if not data:                          # the gateway's power went out
                self._gateway.close()
                self._gateway = None
                self._to_device.clear()
                self._to_gateway.clear()
            elif self._device is not None:
                self._to_device.add(data)
        elif end is self._device:
            data = _recv(end)
            if not data:
                self._drop_device()
            elif self._gateway is not None:
                self._to_gateway.add(data)

    def _deliver(self) -> None:
        for pace, sink in ((self._to_device, self._device), (self._to_gateway, self._gateway)):
            data = pace.due()
            if data and sink is not None:
                try:
                    sink.sendall(data)
                except OSError:
                    continue
                if sink is self._device:
                    self.sent_to_device += len(data)

    def _reach_device(self) -> None:
        if not self._powered or self._device is not None or time.monotonic() - self._tried < RETRY:
            return
        self._tried = time.monotonic()
        device = socket.socket(socket.AF_UNIX)
        try:
            device.connect(str(self.device_path))
        except OSError:
            device.close()
            return
        self._device = device

    def _drop_device(self) -> None:
        if self._device is not None:
            self._device.close()
            self._device = None
        self._to_device.clear()
        self._to_gateway.clear()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"w")
        except OSError:
            pass


class _Pace:
    """Bytes waiting for their turn on one direction of the line."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.chunks: collections.deque[tuple[float, bytes]] = collections.deque()
        self.free_at = 0.0

    def add(self, data: bytes) -> None:
        for start in range(0, len(data), SEND):
            chunk = data[start:start + SEND]
            self.free_at = max(self.free_at, time.monotonic()) + len(chunk) / self.rate
            self.chunks.append((self.free_at, chunk))

    def next_at(self) -> float:
        return self.chunks[0][0] if self.chunks else float("inf")

    def due(self) -> bytes:
        now, out = time.monotonic(), []
        while self.chunks and self.chunks[0][0] <= now:
            out.append(self.chunks.popleft()[1])
        return b"".join(out)

    def clear(self) -> None:
        self.chunks.clear()
        self.free_at = 0.0


def _recv(end: socket.socket) -> bytes:
    try:
        return end.recv(READ)
    except OSError:
        return b""
