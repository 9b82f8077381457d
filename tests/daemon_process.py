"""``fwagent run`` as a child process, as systemd runs it: its log in a file, stopped with SIGTERM."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from agent.demo.local import stop_process

ROOT = Path(__file__).resolve().parents[1]


class DaemonProcess:
    def __init__(self, config: Path, log: Path, *, env: dict[str, str] | None = None) -> None:
        self.log_path = log
        self._log = open(log, "w", encoding="utf-8")
        environment = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        self.process = subprocess.Popen([sys.executable, "-m", "agent", "run", "--config", str(config)],
                                        stdout=self._log, stderr=subprocess.STDOUT, env=environment)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8")

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_for(self, condition: Callable[[], object], what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            if not self.alive():
                raise AssertionError(f"the daemon ended ({self.process.returncode}) before {what}\n{self.log()}")
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}\n--- log ---\n{self.log()}")

    def stop(self) -> int:
        stop_process(self.process, timeout=30.0)
        self._log.close()
        return self.process.returncode

    def __enter__(self) -> "DaemonProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._log.closed:
            self.stop()
