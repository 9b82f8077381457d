"""How manifest components map to the things fwagent writes (docs/manifest.md).

* ``["<class>"]``, one element naming a slot class (``rootfs``, ``appfs``...):
  the gateway's A/B slots of that class.
* ``["thing", "<name>"]``: the attached microcontroller configured as
  ``[things.<name>]`` (docs/things.md), flashed after the gateway commits.

Any other identifier (such as the ``[h'00']`` of the IETF examples) maps to no
target on a gateway; a manifest naming one can be inspected but not installed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class Target:
    kind: str      # "slot" | "thing" | "unmapped"
    name: str

    def describe(self) -> str:
        if self.kind == "slot":
            return f"gateway A/B slot class {self.name!r}"
        if self.kind == "thing":
            return f"attached Thing {self.name!r}"
        return f"no gateway target ({self.name})"


def component_label(component_id: tuple[bytes, ...]) -> str:
    """A readable form of a component identifier: ['thing','mcu0'] or [h'00']."""
    parts = []
    for part in component_id:
        try:
            text = part.decode("ascii")
            parts.append(repr(text) if text.isprintable() and text else f"h'{part.hex()}'")
        except UnicodeDecodeError:
            parts.append(f"h'{part.hex()}'")
    return "[" + ", ".join(parts) + "]"


def target_of(component_id: tuple[bytes, ...]) -> Target:
    names = []
    for part in component_id:
        try:
            names.append(part.decode("ascii"))
        except UnicodeDecodeError:
            return Target("unmapped", component_label(component_id))
    if len(names) == 1 and _NAME.match(names[0]) and names[0] != "thing":
        return Target("slot", names[0])
    if len(names) == 2 and names[0] == "thing" and _NAME.match(names[1]):
        return Target("thing", names[1])
    return Target("unmapped", component_label(component_id))

