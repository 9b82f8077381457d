"""The protocol every A/B bootloader backend implements.

The semantics are RAUC's, so that boot scripts written for RAUC keep working:

* ``get_primary()`` is the slot the bootloader will try first, or ``None``
  when it would boot no slot at all.
* ``set_primary(slot)`` puts the slot first in the boot order and gives it
  exactly one boot try: if the booted system never marks it good, the next
  boot falls back to the other slot.
* ``get_state(slot)`` tells whether the bootloader considers the slot bootable.
* ``set_state(slot, True)`` marks the slot good and restores its normal boot
  attempts; ``set_state(slot, False)`` marks it bad: it is never booted again
  until it is made primary again.
* ``variables()`` are the raw bootloader variables, shown by ``fwagent status``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from agent.errors import BootEnvCorruptError, UsageError

SLOTS = ("A", "B")      # the two slot groups: the only place their names are spelled
DEFAULT_TIMEOUT = 10.0
DEFAULT_ATTEMPTS = 3


@runtime_checkable
class Bootloader(Protocol):
    def get_primary(self) -> str | None: ...

    def set_primary(self, slot: str) -> None: ...

    def get_state(self, slot: str) -> bool: ...

    def set_state(self, slot: str, good: bool) -> None: ...

    def variables(self) -> dict[str, str]: ...


def check_slot(slot: str) -> str:
    """The slot name itself, or a UsageError for anything but A or B."""
    if slot not in SLOTS:
        raise UsageError(f"unknown slot {slot!r}; the slots are {', '.join(SLOTS)}")
    return slot


def parse_order(text: str, *, variable: str) -> list[str]:
    """A space-separated boot order of known, distinct slots."""
    order = text.split()
    unknown = [name for name in order if name not in SLOTS]
    if unknown or len(set(order)) != len(order):
        raise BootEnvCorruptError(f"{variable}={text!r} is not a boot order of {', '.join(SLOTS)}")
    return order


def order_with_first(order: Sequence[str], slot: str) -> list[str]:
    """``order`` with ``slot`` moved (or added) to the front; the others keep their order."""
    return [slot] + [name for name in order if name != slot]
