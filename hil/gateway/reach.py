"""How the board reaches the bench's update server, whichever server a scenario runs.

The servers (the reference DDI server, goosebit) listen on loopback, each on
a port of its own. ``ServerDoor`` keeps the current one's port in a file;
what the board connects to forwards there:

* a QEMU board: QEMU's user network maps an address of the guest's
  (``guestfwd``) to a command run for each connection, ``relay_command()``,
  which joins the connection to the port in the file;
* a real board: ``TcpRelay`` listens on an address the board can reach (the
  board's YAML names it) and does the same.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

RELAY = """#!/bin/sh
# One connection from the board, joined to the bench's current update server.
exec socat - "TCP:127.0.0.1:$(cat '{port_file}')"
"""


class ServerDoor:
    def __init__(self, directory: Path) -> None:
        self.port_file = directory / "server-port"
        self.script = directory / "relay"
        self.script.write_text(RELAY.format(port_file=self.port_file))
        os.chmod(self.script, 0o755)

    def open_to(self, port: int) -> None:
        """From now on, connections from the board reach ``port`` on loopback."""
        tmp = self.port_file.with_suffix(".tmp")
        tmp.write_text(str(port))
        os.replace(tmp, self.port_file)

    def port(self) -> int:
        return int(self.port_file.read_text())


class TcpRelay:
    """``listen`` (host, port) relayed to the door's current port, one thread per connection."""

    def __init__(self, door: ServerDoor, listen: tuple[str, int]) -> None:
        self.door = door
        self.server = socket.create_server(listen, reuse_port=False)
        self.thread = threading.Thread(target=self._accept, name="hil-relay", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._join, args=(client,), daemon=True).start()

    def _join(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.door.port()), timeout=10)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=_pump, args=(source, sink), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for end in (source, sink):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
