"""File backend: a JSON file that plays the bootloader, for development and tests.

The state has U-Boot's shape -- a boot order and the boot tries left per
slot -- plus, per slot, whether its try is *pending*: given by
``set_primary`` and not yet confirmed by a good mark. :meth:`FileBootloader.boot`
is the bootloader's decision at power-on:

1. take the first slot of the order with tries left;
2. if its try is pending, consume it (tries left 1 -> 0); a good slot keeps
   its tries, because the running system restores them every time it marks
   the slot good, as a U-Boot script's decrement would need;
3. write the kernel command line with ``fwagent.slot=<slot>``, when a
   ``cmdline`` path is configured, and return the slot.

So after ``set_primary("B")`` the next boot runs B once; if B is not marked
good, the boot after that skips B (no tries left) and falls back to A, which
is still good. If no slot has tries left, ``boot`` raises: on a device the
bootloader would have nothing to start. A missing state file is a new device
whose two slots hold the same, good image.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agent.errors import BootEnvCorruptError, BootloaderError, ConfigError
from agent.files import write_atomic as write_atomically   # a module name of its own: tests cut power inside it
from bootloader_bridge.bootchooser.base import DEFAULT_ATTEMPTS, SLOTS, check_slot, order_with_first
from bootloader_bridge.options import Option


class FileBootloader:
    # cmdline is also every backend's [bootloader].cmdline: the file written at a simulated boot is the one read.
    OPTIONS = (Option("env_file", "path", "/var/lib/fwagent/bootenv", argument="path"),
               Option("cmdline", "path", "/proc/cmdline"),
               Option("attempts", "int", DEFAULT_ATTEMPTS, low=1, high=255))

    def __init__(self, path: str | Path, *, cmdline: str | Path | None = None,
                 attempts: int = DEFAULT_ATTEMPTS) -> None:
        if attempts < 1:
            raise ConfigError(f"file bootloader attempts must be at least 1, not {attempts}")
        self.path = Path(path)
        self.cmdline = Path(cmdline) if cmdline is not None else None
        self.attempts = attempts

    def get_primary(self) -> str | None:
        return _first_bootable(self._load())

    def set_primary(self, slot: str) -> None:
        state = self._load()
        state["order"] = order_with_first(state["order"], check_slot(slot))
        state["slots"][slot] = {"left": 1, "pending": True}
        self._save(state)

    def get_state(self, slot: str) -> bool:
        return self._load()["slots"][check_slot(slot)]["left"] > 0

    def set_state(self, slot: str, good: bool) -> None:
        state = self._load()
        state["slots"][check_slot(slot)] = {"left": self.attempts if good else 0, "pending": False}
        self._save(state)

    def variables(self) -> dict[str, str]:
        state = self._load()
        found = {"order": " ".join(state["order"])}
        for slot, info in state["slots"].items():
            found[f"{slot}_left"] = str(info["left"])
            found[f"{slot}_pending"] = "1" if info["pending"] else "0"
        return found

    def boot(self) -> str:
        """Power-on: the slot the bootloader starts, with its pending try consumed."""
        state = self._load()
        slot = _first_bootable(state)
        if slot is None:
            raise BootloaderError(f"{self.path}: no slot has boot tries left; nothing would boot")
        if state["slots"][slot]["pending"]:
            state["slots"][slot]["left"] -= 1
            self._save(state)
        if self.cmdline is not None:
            write_atomically(self.cmdline, kernel_cmdline(slot).encode())
        return slot

    def _load(self) -> dict[str, Any]:
        if not self.path.exists():
            return {"order": list(SLOTS),
                    "slots": {slot: {"left": self.attempts, "pending": False} for slot in SLOTS}}
        try:
            state = json.loads(self.path.read_bytes())
        except (OSError, ValueError) as err:
            raise BootEnvCorruptError(f"{self.path} is not a readable bootloader state: {err}") from err
        _check(state, self.path)
        return state

    def _save(self, state: dict[str, Any]) -> None:
        write_atomically(self.path, json.dumps(state, indent=2).encode() + b"\n")


def _first_bootable(state: dict[str, Any]) -> str | None:
    return next((slot for slot in state["order"] if state["slots"][slot]["left"] > 0), None)


def kernel_cmdline(slot: str) -> str:
    """The command line a real bootloader would pass for ``slot``."""
    return f"root=PARTLABEL=rootfs_{slot} ro rootwait fwagent.slot={slot}\n"


def _check(state: Any, path: Path) -> None:
    """The state must have exactly the shape this module writes."""
    try:
        order, slots = state["order"], state["slots"]
        valid = (isinstance(order, list) and isinstance(slots, dict)
                 and sorted(slots) == sorted(SLOTS) and len(set(order)) == len(order)
                 and all(name in SLOTS for name in order)
                 and all(type(info["left"]) is int and info["left"] >= 0
                         and type(info["pending"]) is bool for info in slots.values()))
    except (KeyError, TypeError):
        valid = False
    if not valid:
        raise BootEnvCorruptError(f"{path} does not hold a bootloader state (order and slots A, B)")
