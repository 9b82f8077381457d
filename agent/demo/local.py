"""Helpers for the services the bench and the tests run on this machine: a free loopback
port, and stopping a child process (SIGTERM, then SIGKILL if it lingers)."""

from __future__ import annotations

import signal
import socket
import subprocess


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def listening(port: int) -> bool:
    """Whether something accepts connections on the loopback ``port``."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def stop_process(process: subprocess.Popen, timeout: float = 5.0) -> None:
    """SIGTERM, up to ``timeout`` seconds to exit, then SIGKILL; nothing if it has exited."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)
