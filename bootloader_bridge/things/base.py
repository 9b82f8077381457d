"""What every Thing flasher offers (one per bootloader protocol), what it reports, and what each
protocol declares for agent.toml and the agent (``ThingProtocol``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from bootloader_bridge.options import Option

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


def _no_arguments(_settings: Mapping[str, Any], _reset_lines: bool) -> dict[str, Any]:
    return {}


def _never(_settings: Mapping[str, Any]) -> bool:
    return False


@dataclass(frozen=True)
class ThingProtocol:
    """A Thing protocol as ``[things.<name>]`` and agent/things.py know it: its defaults, its own
    keys, how its flasher is made, and how a Thing of it is flashed. agent/things.py opens the
    Thing (link, reset into the bootloader), hands it to ``flash`` and resets it afterwards.

    ``settings`` are the protocol's options by key, as agent/config.py read them; ``reset_lines``
    says whether the gateway drives the Thing's reset (and boot) lines, or the Thing has none.
    """

    parity: str                                 # its serial line's, when the configuration names none
    options: tuple[Option, ...]                 # its own keys in [things.<name>]
    flasher: type                               # the ThingFlasher, made on an open link
    arguments: Callable[[Mapping[str, Any], bool], dict[str, Any]] = _no_arguments   # (settings, reset_lines)
    flow: Callable[..., FlashResult] | None = None   # (session, image, progress, name, settings); None: flasher's
    rolls_back: Callable[[Mapping[str, Any]], bool] = _never   # boots a new image on trial, when not configured
    no_rollback: str = ""                       # why rollback = true is refused; "" when it can go back

    def settings(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Every option's value: the given ones, the declared defaults for the rest."""
        return {option.key: given.get(option.key, option.default) for option in self.options}

    def flash(self, session: Any, image: bytes, progress: FlashProgress | None, name: str,
              settings: Mapping[str, Any]) -> FlashResult:
        """Write, verify and start ``image`` on an opened Thing by the protocol's flow."""
        if self.flow is None:
            return session.flasher.flash(image, progress)
        return self.flow(session, image, progress, name, settings)
