"""Bootloader backends by name.

The built-in backends are a table here, merged with the entry point group
``fwagent.bootloaders`` where third-party backends register a class: a
built-in name is found without scanning the installed distributions (which
costs time and memory on a gateway), works from a source tree that was never
installed, and cannot be taken over by a plug-in. A backend is imported only
when asked for, so a device using one never loads the others. Each backend
class declares its agent.toml keys in ``OPTIONS`` (bootloader_bridge/options.py).
"""

from __future__ import annotations

import importlib
from typing import Any

from agent.errors import ConfigError

from bootloader_bridge.bootchooser.base import Bootloader

ENTRY_POINT_GROUP = "fwagent.bootloaders"

BUILTIN = {
    "grub": "bootloader_bridge.bootchooser.grub:GrubBootloader",
    "uboot": "bootloader_bridge.bootchooser.uboot:UBootBootloader",
    "custom": "bootloader_bridge.bootchooser.custom:CustomBootloader",
    "file": "bootloader_bridge.bootchooser.file:FileBootloader",
}


def names() -> list[str]:
    """Every backend name that ``create`` accepts, built-in ones first."""
    return list(BUILTIN) + sorted(set(_plugins()) - set(BUILTIN))


def backend_class(name: str) -> type:
    """The class registered as ``name``, imported now."""
    if name in BUILTIN:
        module, _, attribute = BUILTIN[name].partition(":")
        return getattr(importlib.import_module(module), attribute)
    plugin = _plugins().get(name)
    if plugin is None:
        raise ConfigError(f"unknown bootloader {name!r}; known: {', '.join(names())}")
    try:
        return plugin.load()
    except Exception as err:  # a broken plug-in is a configuration problem of this device
        raise ConfigError(f"bootloader {name!r} ({plugin.value}) cannot be loaded: {err}") from err


def create(name: str, **options: Any) -> Bootloader:
    """A backend instance; options are its constructor's keyword arguments."""
    cls = backend_class(name)
    try:
        backend = cls(**options)
    except TypeError as err:
        raise ConfigError(f"bootloader {name!r}: {err}") from err
    if not isinstance(backend, Bootloader):
        raise ConfigError(f"bootloader {name!r} ({cls.__qualname__}) does not implement the protocol")
    return backend


def _plugins() -> dict[str, Any]:
    from importlib.metadata import entry_points   # only when a name is not built in: it costs memory

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
