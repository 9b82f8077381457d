"""A mosquitto MQTT broker on a free loopback port: for the tests, the benches and the demo.

Debian installs mosquitto in /usr/sbin, which is not on every user's PATH, so
it is looked up there too. Started as root, mosquitto drops to its own user
unless told otherwise and could then not read the files a test hands it
(a password file): the configuration keeps the current user.
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from agent.demo.local import free_port, listening, stop_process

SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin")


class BrokerError(RuntimeError):
    """mosquitto did not start."""


def find_mosquitto() -> str | None:
    return shutil.which("mosquitto") or shutil.which("mosquitto", path=os.pathsep.join(SBIN))


@contextmanager
def run_mosquitto(directory: Path, settings: str = "allow_anonymous true\n", *, binary: str | None = None,
                  timeout: float = 10.0) -> Iterator[str]:
    """Yields the broker's ``mqtt://127.0.0.1:PORT``; stops it on the way out."""
    binary = binary or find_mosquitto()
    if binary is None:
        raise BrokerError("mosquitto is not installed")
    port = free_port()
    user = f"user {getpass.getuser()}\n" if os.geteuid() == 0 else ""
    conf = Path(directory) / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\npersistence false\n{user}{settings}")
    process = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout
        while not listening(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise BrokerError(f"{binary} did not start (exit {process.poll()})")
            time.sleep(0.05)
        yield f"mqtt://127.0.0.1:{port}"
    finally:
        stop_process(process)

