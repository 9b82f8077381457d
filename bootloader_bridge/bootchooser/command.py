"""Running a bootloader tool or hook with a time limit.

A hook may start children of its own (a shell script running ``sleep``);
killing only the direct child would leave them holding the output pipes open,
so the command runs in a session of its own and the whole group is killed
when the time is up.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
from collections.abc import Mapping, Sequence

from agent.errors import BootEnvCorruptError, BootloaderError, BootloaderTimeoutError

_STDERR_LIMIT = 500


def run(argv: Sequence[str], *, timeout: float, corrupt_if: Sequence[str] = (),
        env: Mapping[str, str] | None = None) -> str:
    """Standard output of ``argv``; a failure or timeout raises, naming the command and its stderr.

    ``corrupt_if`` are phrases (any case) by which the tool reports an unreadable
    environment; tools may report one and still exit 0 (``fw_printenv`` falling
    back to its default environment), so they are looked for in every stderr.
    """
    command = shlex.join(argv)
    try:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, encoding="utf-8", errors="replace",
                                   start_new_session=True, env=None if env is None else {**os.environ, **env})
    except OSError as err:
        raise BootloaderError(f"{command}: cannot run: {err.strerror or err}") from err
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process.pid)
        _, stderr = process.communicate()
        raise BootloaderTimeoutError(
            f"{command} did not finish within {timeout:g} s{_stderr_note(stderr)}") from None
    if any(phrase.lower() in stderr.lower() for phrase in corrupt_if):
        raise BootEnvCorruptError(f"{command} found the environment corrupt{_stderr_note(stderr)}")
    if process.returncode != 0:
        raise BootloaderError(f"{command} failed with exit status {process.returncode}"
                              f"{_stderr_note(stderr)}")
    return stdout


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _stderr_note(stderr: str) -> str:
    """``": <stderr>"`` on one line and shortened, or nothing when the tool said nothing."""
    text = " | ".join(line.strip() for line in stderr.splitlines() if line.strip())
    if len(text) > _STDERR_LIMIT:
        text = text[:_STDERR_LIMIT] + "..."
    return f": {text}" if text else ""
