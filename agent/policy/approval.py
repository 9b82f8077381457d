"""The ``approve`` commands of ``[policy]``: what their exit codes mean (pure), and running one
(with a timeout and bounded output; called on a worker thread, never the orchestrator's).

0 = go; 21 = wait (Mender's state-script "retry later" code): its output may give the seconds
to wait, bounded; anything else = refuse, the reason the first line of its output (else the command's name
and exit status). The command
learns the gate, the action and the version from its environment: FWAGENT_GATE (download |
install | reboot), FWAGENT_ACTION, FWAGENT_VERSION.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
from dataclasses import dataclass

GO, WAIT, REFUSE = "go", "wait", "refuse"
RETRY_LATER = 21                 # the exit code that asks to wait
DEFAULT_WAIT = 300.0             # seconds, when a waiting command names none
WAIT_BOUNDS = (1.0, 86400.0)     # seconds a command may ask to wait
COMMAND_TIMEOUT = 60.0           # seconds for one command
MAX_OUTPUT = 4096                # bytes of a command's output read
MAX_REASON = 200                 # characters of the reason reported


@dataclass(frozen=True)
class Verdict:
    decision: str                # go | wait | refuse
    reason: str = ""
    wait: float = 0.0            # seconds, for wait


def verdict(command: str, status: int, output: bytes) -> Verdict:
    """What an approval command's exit status and output mean."""
    text = output[:MAX_OUTPUT].decode("utf-8", "replace").strip()
    first = text.splitlines()[0][:MAX_REASON] if text else ""
    if status == 0:
        return Verdict(GO)
    if status == RETRY_LATER:
        try:
            seconds = float(first) if first else DEFAULT_WAIT
        except ValueError:
            seconds = DEFAULT_WAIT
        if seconds != seconds:   # nan
            seconds = DEFAULT_WAIT
        low, high = WAIT_BOUNDS
        return Verdict(WAIT, f"{command} asks to wait", min(max(seconds, low), high))
    if first:
        return Verdict(REFUSE, first)
    return Verdict(REFUSE, f"{command} refused: " + (f"exit status {status}" if status >= 0 else
                                                     f"killed by signal {-status}"))


def run_approval(argv: tuple[str, ...], gate: str, action: str, version: str | None,
                 timeout: float = COMMAND_TIMEOUT) -> Verdict:
    """Run one approval command (no shell) and read its verdict; a command that cannot start, or
    overruns its timeout, refuses."""
    name = os.path.basename(argv[0])
    env = {**os.environ, "FWAGENT_GATE": gate, "FWAGENT_ACTION": action, "FWAGENT_VERSION": version or ""}
    with tempfile.TemporaryFile() as out:      # its output, of which MAX_OUTPUT bytes are read
        try:
            process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env=env, start_new_session=True)
        except OSError as err:
            return Verdict(REFUSE, f"{name} cannot run: {err.strerror or err}")
        try:
            status = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)      # its children too (its own session)
            process.wait(timeout=5)
            return Verdict(REFUSE, f"{name} refused: no answer within {timeout:.0f} s")
        out.seek(0)
        return verdict(name, status, out.read(MAX_OUTPUT))
