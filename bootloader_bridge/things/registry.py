"""Thing protocols by name, as ``[things.<name>].protocol`` names them.

A protocol is imported only when a configured Thing names it. Each declares itself as a
``ThingProtocol`` (bootloader_bridge/things/base.py) beside its flasher.
"""

from __future__ import annotations

import importlib
from typing import Any

from agent.errors import ConfigError

from bootloader_bridge.things.base import ThingProtocol

BUILTIN = {
    "stm32": "bootloader_bridge.things.stm32:PROTOCOL",        # ST AN3155 system bootloader
    "mcuboot-smp": "bootloader_bridge.things.smp:PROTOCOL",    # MCUboot serial recovery / SMP
}


def protocol(name: str) -> ThingProtocol:
    """The protocol called ``name``, imported now."""
    if name not in BUILTIN:
        raise ConfigError(f"unknown Thing protocol {name!r}; known: {', '.join(BUILTIN)}")
    module, _, attribute = BUILTIN[name].partition(":")
    return getattr(importlib.import_module(module), attribute)


def create(name: str, link: Any, **options: Any) -> Any:
    """A flasher for protocol ``name`` on an open SerialLink; options are its constructor's."""
    return protocol(name).flasher(link, **options)
