"""Custom backend: an integrator's script, called with RAUC's custom-backend arguments.

* ``SCRIPT get-primary`` prints the bootname of the primary slot;
* ``SCRIPT set-primary <bootname>`` makes it primary with one boot try;
* ``SCRIPT get-state <bootname>`` prints ``good`` or ``bad``;
* ``SCRIPT set-state <bootname> good|bad`` marks it;
* ``SCRIPT get-current`` prints the bootname of the slot that is running.

A non-zero exit is a :class:`BootloaderError` carrying the script's stderr;
a script that does not finish within ``timeout`` seconds is killed, with all
it started, and is a :class:`BootloaderTimeoutError`.
"""

from __future__ import annotations

from pathlib import Path

from agent.errors import BootloaderError

from bootloader_bridge.bootchooser import command
from bootloader_bridge.bootchooser.base import DEFAULT_TIMEOUT, SLOTS, check_slot
from bootloader_bridge.options import Option


class CustomBootloader:
    OPTIONS = (Option("script", "path", "/usr/lib/fwagent/bootloader-hook"),)

    def __init__(self, script: str | Path, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.script = str(script)
        self.timeout = timeout

    def get_primary(self) -> str | None:
        """The printed bootname; ``None`` when the script prints nothing (no slot would boot)."""
        return self._bootname("get-primary")

    def set_primary(self, slot: str) -> None:
        self._call("set-primary", check_slot(slot))

    def get_state(self, slot: str) -> bool:
        state = self._call("get-state", check_slot(slot))
        if state not in ("good", "bad"):
            raise BootloaderError(f"{self.script} get-state {slot} printed {state!r}, not good or bad")
        return state == "good"

    def set_state(self, slot: str, good: bool) -> None:
        self._call("set-state", check_slot(slot), "good" if good else "bad")

    def get_current(self) -> str | None:
        """The slot the running system was booted from, as the script knows it."""
        return self._bootname("get-current")

    def variables(self) -> dict[str, str]:
        """What the script tells: primary, each slot's state, and the booted slot."""
        found = {"primary": self.get_primary() or ""}
        found.update({f"{slot}_state": "good" if self.get_state(slot) else "bad" for slot in SLOTS})
        found["current"] = self.get_current() or ""
        return found

    def _bootname(self, action: str) -> str | None:
        name = self._call(action)
        if not name:
            return None
        if name not in SLOTS:
            raise BootloaderError(f"{self.script} {action} printed {name!r}, not a slot ({', '.join(SLOTS)})")
        return name

    def _call(self, *args: str) -> str:
        return command.run([self.script, *args], timeout=self.timeout).strip()
