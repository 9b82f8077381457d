"""Thing flashers by protocol name, as ``[things.<name>].protocol`` names them."""

from __future__ import annotations

import importlib
from typing import Any

from agent.errors import ConfigError

BUILTIN = {
    "stm32": "bootloader_bridge.things.stm32:Stm32Flasher",        # ST AN3155 system bootloader
    "mcuboot-smp": "bootloader_bridge.things.smp:SmpFlasher",      # MCUboot serial recovery / SMP
}


def create(protocol: str, link: Any, **options: Any) -> Any:
    """A flasher for ``protocol`` on an open SerialLink."""
    if protocol not in BUILTIN:
        raise ConfigError(f"unknown Thing protocol {protocol!r}; known: {', '.join(BUILTIN)}")
    module, _, attribute = BUILTIN[protocol].partition(":")
    return getattr(importlib.import_module(module), attribute)(link, **options)
