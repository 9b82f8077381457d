"""The booted slot, from the kernel command line (``/proc/cmdline``).

The boot scripts pass ``fwagent.slot=<slot>``; RAUC's ``rauc.slot=<bootname>``
is read too, so that a device moving from RAUC keeps its boot scripts. When
both are given they must agree.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from agent.errors import BootEnvCorruptError, BootloaderError

from bootloader_bridge.bootchooser.base import SLOTS

PARAMETERS = ("fwagent.slot", "rauc.slot")


def booted_slot(cmdline: str) -> str | None:
    """The slot named on a kernel command line; ``None`` when none is named."""
    try:
        words = shlex.split(cmdline)
    except ValueError as err:
        raise BootEnvCorruptError(f"kernel command line cannot be split into parameters: {err}") from err
    named = {_slot(word) for word in words if word.partition("=")[0] in PARAMETERS}
    if len(named) > 1:
        raise BootEnvCorruptError(f"kernel command line names more than one slot: {', '.join(sorted(named))}")
    return named.pop() if named else None


def read_booted_slot(path: str | Path = "/proc/cmdline") -> str | None:
    """``booted_slot`` of the command line in ``path``."""
    try:
        text = Path(path).read_bytes().decode(errors="replace")
    except OSError as err:
        raise BootloaderError(f"cannot read the kernel command line {path}: {err.strerror or err}") from err
    return booted_slot(text)


def _slot(word: str) -> str:
    name, _, value = word.partition("=")
    if value not in SLOTS:
        raise BootEnvCorruptError(f"kernel command line has {word!r}; {name} must be one of {', '.join(SLOTS)}")
    return value
