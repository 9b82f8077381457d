"""The MCU attached to the gateway, as a scenario sees it: its power, from the board's YAML (the
``mcu`` target). What runs on it is read through the gateway, as the agent sees it. Nothing here
knows whether the MCU is QEMU or real."""

from __future__ import annotations

from typing import Any

from labgrid.protocol import PowerProtocol
from labgrid.step import step


class Mcu:
    def __init__(self, target: Any) -> None:
        self.target = target
        self.power = target.get_driver(PowerProtocol)

    @step()
    def fresh(self) -> None:
        """Powered on with its factory firmware where the board can be given it (a QEMU MCU); a
        real one starts from what it runs."""
        factory = getattr(self.power, "factory", None)
        if factory is not None:
            factory()
        else:
            self.power.off()
        self.power.on()

    def power_cut(self) -> None:
        """Its power goes out (its flash keeps what was written)."""
        self.power.off()

    def power_on(self) -> None:
        self.power.on()
