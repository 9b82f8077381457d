"""The device end of a pseudo-terminal, served by a thread: what a simulated Thing sits behind.

Clients open ``port`` (the slave side) as they would a UART. The slave is put
in raw mode before anyone opens it (a fresh pty echoes what it receives, and
the simulator would read its own replies back) and is kept open, so the
master never sees EIO between two client sessions. Writes never block: bytes
nobody reads are lost, as on a UART. Every wait of the serving thread goes
through ``wait``, so a stop cuts it short.
"""

from __future__ import annotations

import os
import pty
import select
import threading
import tty
from collections.abc import Callable


class PtyEnd:
    def __init__(self, name: str) -> None:
        self.name = name
        self.port = ""
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._master = self._slave = -1

    def start(self, serve: Callable[[], None]) -> str:
        """Open the pty and run ``serve`` in a thread until ``stopping`` is set; the port's path."""
        self._master, self._slave = pty.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.port = os.ttyname(self._slave)
        self._thread = threading.Thread(target=serve, name=f"{self.name} {self.port}", daemon=True)
        self._thread.start()
        return self.port

    def stop(self) -> None:
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            if self._thread.is_alive():     # never close descriptors a live thread may still write to
                raise RuntimeError(f"the {self.name} on {self.port} did not stop")
        os.close(self._master)
        os.close(self._slave)

    def read(self, timeout: float) -> bytes:
        """What the client sent, waiting up to ``timeout`` seconds; b"" when nothing came."""
        ready, _, _ = select.select([self._master], [], [], timeout)
        if not ready:
            return b""
        try:
            return os.read(self._master, 4096)
        except (BlockingIOError, InterruptedError, OSError):
            return b""

    def write(self, data: bytes) -> None:
        while data:
            try:
                data = data[os.write(self._master, data):]
            except BlockingIOError:
                return                      # nobody reads: the bytes are lost on the line

    def wait(self, seconds: float) -> bool:
        """Sleep, unless stopped first; True when stopped."""
        return self.stopping.wait(max(0.0, seconds))
