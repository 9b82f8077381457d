"""What every Thing flasher offers (one per bootloader protocol), and what it reports."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

# (phase, bytes done, bytes total): phases are entering, erasing, writing, verifying, activating
FlashProgress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class ThingInfo:
    protocol: str                       # "stm32", "mcuboot-smp"
    device: str                         # what the bootloader says it is (chip id, board)
    bootloader: str                     # its version
    images: tuple[dict[str, object], ...] = ()   # per slot or flash bank: version, hash, flags
    details: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class FlashResult:
    written: int                        # bytes
    verified: str                       # how: "read-back", "sha256 reported by the device", ...
    retries: int = 0
    seconds: float = 0.0


@runtime_checkable
class ThingFlasher(Protocol):
    """A Thing's bootloader, already entered (see agent-side reset methods), on an open link."""

    def info(self) -> ThingInfo: ...

    def flash(self, image: bytes, progress: FlashProgress | None = None) -> FlashResult: ...
