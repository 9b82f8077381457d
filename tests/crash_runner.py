"""Run an fwagent command that kills itself (SIGKILL) at a chosen point.

    python tests/crash_runner.py KIND N -- fwagent-arguments...

KIND is where the cut happens, N which occurrence:
  journal-before  before the N-th journal write
  journal-after   after the N-th journal write
  bootenv         before the N-th write of the bootloader's state
  bytes           once N bytes have been written to a slot
Exit codes are fwagent's when no cut happens.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent import journal  # noqa: E402
from agent.cli import main  # noqa: E402
from agent.install import slots  # noqa: E402
from bootloader_bridge.bootchooser import file as file_bootloader  # noqa: E402


def cut() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def cutting_write(original, target: int):  # type: ignore[no-untyped-def]
    """A slot write that dies once ``target`` bytes of the payload have been written."""
    written = {"n": 0}

    def write(self, chunk):  # type: ignore[no-untyped-def]
        if written["n"] + len(chunk) >= target:
            original(self, memoryview(chunk)[:max(0, target - written["n"])])
            cut()
        original(self, chunk)
        written["n"] += len(chunk)
    return write


def arm(kind: str, target: int) -> None:
    count = {"n": 0}

    def counting(original, before: bool):  # type: ignore[no-untyped-def]
        def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
            count["n"] += 1
            if before and count["n"] == target:
                cut()
            result = original(*args, **kwargs)
            if not before and count["n"] == target:
                cut()
            return result
        return wrapper

    if kind in ("journal-before", "journal-after"):
        journal.Journal.save = counting(journal.Journal.save, kind == "journal-before")
    elif kind == "bootenv":
        file_bootloader.write_atomically = counting(file_bootloader.write_atomically, True)
    elif kind == "bytes":
        for writer in (slots.SlotWriter, slots.SlotSink):   # streamed payloads and downloads
            writer.write = cutting_write(writer.write, target)
    else:
        raise SystemExit(f"unknown cut kind {kind!r}")


if __name__ == "__main__":
    kind, target, separator, *argv = sys.argv[1:]
    assert separator == "--"
    arm(kind, int(target))
    raise SystemExit(main(argv))
