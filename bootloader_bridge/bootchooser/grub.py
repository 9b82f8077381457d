"""GRUB backend: RAUC's variables in a GRUB environment block, through ``grub-editenv``.

Variables (values exactly as RAUC writes them, so RAUC's boot scripts work):

* ``ORDER`` -- the boot order, slot names separated by spaces (``"A B"``);
* ``A_OK`` / ``B_OK`` -- ``"1"`` when the slot is good, ``"0"`` when bad;
* ``A_TRY`` / ``B_TRY`` -- ``"0"`` while the slot has its try, ``"1"`` once
  the boot script has booted it; the script skips a slot whose try is used,
  until the booted system marks it good again.

All variables of one change go to ``grub-editenv`` in one call, which writes
the 1024-byte block once. ``grub-editenv`` creates a missing file with an
empty environment; that would hide a wrong path or a lost ``/boot``, so a
missing file is an error here.
"""

from __future__ import annotations

from pathlib import Path

from agent.errors import BootEnvCorruptError, BootloaderError

from bootloader_bridge.bootchooser import command
from bootloader_bridge.bootchooser.base import DEFAULT_TIMEOUT, check_slot, order_with_first, parse_order
from bootloader_bridge.envcodec import grubenv
from bootloader_bridge.envcodec.listing import parse_listing
from bootloader_bridge.options import Option

_CORRUPT = ("invalid environment block",)


class GrubBootloader:
    OPTIONS = (Option("grubenv", "path", "/boot/grub/grubenv", argument="env_file"),)

    def __init__(self, env_file: str | Path = "/boot/grub/grubenv", *, timeout: float = DEFAULT_TIMEOUT,
                 tool: str = "grub-editenv") -> None:
        self.env_file = Path(env_file)
        self.timeout = timeout
        self.tool = tool

    def get_primary(self) -> str | None:
        env = self.variables()
        for slot in self._order(env):
            if _flag(env, f"{slot}_OK"):
                return slot
        return None

    def set_primary(self, slot: str) -> None:
        check_slot(slot)
        order = order_with_first(self._order(self.variables()), slot)
        self._set({"ORDER": " ".join(order), f"{slot}_OK": "1", f"{slot}_TRY": "0"})

    def get_state(self, slot: str) -> bool:
        return _flag(self.variables(), f"{check_slot(slot)}_OK")

    def set_state(self, slot: str, good: bool) -> None:
        check_slot(slot)
        self._order(self.variables())  # never write into a corrupt environment
        self._set({f"{slot}_OK": "1" if good else "0", f"{slot}_TRY": "0"})

    def variables(self) -> dict[str, str]:
        self._require_file()
        return parse_listing(self._run("list"))

    def check_environment(self) -> str:
        """The block as GRUB and grub-editenv make it (1024 bytes, the signature, variable lines),
        read from the file itself: ``fwagent check`` says so before an update relies on it."""
        self._require_file()
        try:
            block = self.env_file.read_bytes()
        except OSError as exc:
            raise BootloaderError(f"cannot read {self.env_file}: {exc.strerror}") from None
        try:
            grubenv.decode(block)
        except BootEnvCorruptError as exc:
            raise BootEnvCorruptError(f"{self.env_file}: {exc.detail}") from None
        return f"{self.env_file}: a {grubenv.BLOCK_SIZE}-byte GRUB environment block"

    def _order(self, env: dict[str, str]) -> list[str]:
        if "ORDER" not in env:
            raise BootEnvCorruptError(f"{self.env_file} has no ORDER variable")
        return parse_order(env["ORDER"], variable="ORDER")

    def _set(self, assignments: dict[str, str]) -> None:
        self._run("set", *(f"{name}={value}" for name, value in assignments.items()))

    def _run(self, *args: str) -> str:
        return command.run([self.tool, str(self.env_file), *args], timeout=self.timeout, corrupt_if=_CORRUPT)

    def _require_file(self) -> None:
        if not self.env_file.is_file():
            raise BootloaderError(f"GRUB environment {self.env_file} does not exist "
                                  f"(create it with: grub-editenv {self.env_file} create)")


def _flag(env: dict[str, str], name: str) -> bool:
    """A ``"0"``/``"1"`` variable; missing or anything else means the environment is corrupt."""
    value = env.get(name)
    if value not in ("0", "1"):
        raise BootEnvCorruptError(f"GRUB environment variable {name}={value!r}, expected '0' or '1'"
                                  if value is not None else f"GRUB environment has no {name} variable")
    return value == "1"
