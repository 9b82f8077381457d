"""The fwagent command itself: what it does whatever the command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("module", ["agent.cli.install", "agent.config"])
def test_ctrl_c_while_the_commands_load_is_one_line(module: str) -> None:
    """A real SIGINT, which the process sends itself as ``fwagent status`` imports ``module`` (the
    command's module, and what that imports, as the command starts)."""
    # Python's own SIGINT handler, whatever the parent left (a background job starts with SIGINT
    # ignored, and Python keeps an ignored SIGINT ignored).
    script = ("import os, signal, sys\n"
              "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
              "def hook(event, args):\n"
              f"    if event == 'import' and args[0] == {module!r}:\n"
              "        os.kill(os.getpid(), signal.SIGINT)\n"
              "sys.addaudithook(hook)\n"
              "from agent.cli import main\n"
              "raise SystemExit(main(['status']))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert (done.returncode, done.stderr, done.stdout) == (130, "error: interrupted\n", "")


def test_the_parser_imports_no_command() -> None:
    """``fwagent --help`` (and a mistyped option) load the parser alone: no configuration, no
    installer, no daemon, no manifest machinery."""
    script = ("import sys\n"
              "from agent.cli import build_parser\n"
              "build_parser()\n"
              "print(' '.join(sorted(m for m in sys.modules if m.startswith(('agent', 'bootloader_bridge')))))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["agent", "agent.cli", "agent.cli.examples", "agent.cli.output", "agent.cli.parser",
                                   "agent.errors"], done.stdout
