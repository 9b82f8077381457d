"""Health checks after booting a new slot: every command must succeed in time."""

from __future__ import annotations

import subprocess
import time

from agent.config import HealthConfig


def run_health(config: HealthConfig) -> tuple[bool, str]:
    """(healthy, reason). The timeout covers all commands together."""
    deadline = time.monotonic() + config.timeout
    for command in config.commands:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False, f"health checks took longer than {config.timeout:g} s"
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=remaining)
        except subprocess.TimeoutExpired:
            return False, f"health check {' '.join(command)!r} did not finish within {config.timeout:g} s"
        except OSError as exc:
            return False, f"health check {' '.join(command)!r} cannot run: {exc.strerror}"
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or [""]
            return False, f"health check {' '.join(command)!r} exited {result.returncode}: {tail[0][:200]}"
    return True, ""
