"""Timing of child processes for the bench scripts."""

from __future__ import annotations

import resource
import subprocess
import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Run:
    wall: float      # seconds
    cpu: float       # user + system seconds of the children
    stdout: str
    stderr: str


def measure(command: list[str], **kwargs: Any) -> Run:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(command, check=True, capture_output=True, text=True, **kwargs)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return Run(wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
               result.stdout, result.stderr)
