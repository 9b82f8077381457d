"""A byte pipe to a Thing over a serial line: opened once, never reconfigured.

The port is a pyserial URL: a device (``/dev/ttyUSB0``, ``/dev/serial/by-id/...``),
a pseudo-terminal, ``socket://host:port`` or ``rfc2217://host:port``. It is
opened with its final settings and never changed afterwards: on a pty,
pyserial's reconfiguration (even of a timeout) fails once parity was asked
for, and real adapters lose bytes while reconfiguring. Every read therefore
takes its own deadline and loops on short reads, instead of setting
``serial.timeout``.
"""

from __future__ import annotations

import time
from typing import Any

from agent.errors import ThingPortError, ThingTimeoutError

PARITY = {"none": "N", "even": "E", "odd": "O"}
POLL = 0.05          # the port's own read timeout: how often a deadline is looked at


class SerialLink:
    def __init__(self, url: str, *, baud: int = 115200, parity: str = "none", name: str = "",
                 exclusive: bool = True) -> None:
        import serial  # pyserial

        if parity not in PARITY:
            raise ValueError(f"parity {parity!r} is not one of {', '.join(PARITY)}")
        self.url, self.name = url, name or url
        self.received = 0          # bytes read since the port was opened: 0 means the Thing never spoke
        try:
            self.port: Any = serial.serial_for_url(url, baudrate=baud, parity=PARITY[parity], bytesize=8,
                                                   stopbits=1, timeout=POLL, write_timeout=5.0,
                                                   exclusive=exclusive if "://" not in url else None)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise ThingPortError(f"{self.name}: cannot open {url}: {exc}") from None

    def write(self, data: bytes) -> None:
        import serial

        try:
            self.port.write(data)      # bounded by write_timeout; no tcdrain, which has no timeout
        except (serial.SerialException, OSError) as exc:
            raise ThingPortError(f"{self.name}: writing to {self.url} failed: {exc}") from None

    def read(self, count: int, timeout: float, what: str = "an answer") -> bytes:
        """Exactly ``count`` bytes within ``timeout`` seconds, or ThingTimeoutError."""
        deadline = time.monotonic() + timeout
        data = bytearray()
        while len(data) < count:
            data += self._read_some(count - len(data))
            if len(data) < count and time.monotonic() > deadline:
                raise ThingTimeoutError(f"{self.name}: no {what} within {timeout:g} s "
                                        f"({len(data)} of {count} bytes)")
        return bytes(data)

    def read_until(self, terminator: bytes, timeout: float, limit: int, what: str = "a line") -> bytes:
        """Bytes up to and including ``terminator`` (at most ``limit``), within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        data = bytearray()
        while not data.endswith(terminator):
            if len(data) >= limit:
                raise ThingTimeoutError(f"{self.name}: {what} longer than {limit} bytes")
            data += self._read_some(1)
            if not data.endswith(terminator) and time.monotonic() > deadline:
                raise ThingTimeoutError(f"{self.name}: no {what} within {timeout:g} s")
        return bytes(data)

    def drain(self, quiet: float = 0.05, timeout: float = 1.0) -> bytes:
        """Read and return what is pending until the line is quiet for ``quiet`` seconds
        (a boot banner, a stale reply): before a sync or after a timeout."""
        deadline = time.monotonic() + timeout
        data = bytearray()
        last = time.monotonic()
        while time.monotonic() < deadline:
            chunk = self._read_some(4096)
            if chunk:
                data += chunk
                last = time.monotonic()
            elif time.monotonic() - last >= quiet:
                break
        return bytes(data)

    def set_lines(self, *, dtr: bool | None = None, rts: bool | None = None) -> None:
        """Modem lines for reset and boot pins; a port without them (a pty) says so clearly."""
        try:
            if dtr is not None:
                self.port.dtr = dtr
            if rts is not None:
                self.port.rts = rts
        except OSError as exc:
            raise ThingPortError(f"{self.name}: {self.url} has no DTR/RTS lines ({exc.strerror}); "
                                 "use reset = \"none\" or another reset method") from None

    def close(self) -> None:
        self.port.close()

    def __enter__(self) -> "SerialLink":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read_some(self, count: int) -> bytes:
        import serial

        try:
            data = self.port.read(count)
        except (serial.SerialException, OSError) as exc:
            raise ThingPortError(f"{self.name}: reading from {self.url} failed: {exc}") from None
        self.received += len(data)
        return data
