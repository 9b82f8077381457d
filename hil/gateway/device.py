"""The gateway as an update scenario sees it: its strategy (power, boot, shell), the agent's
command line and journal. Nothing here knows whether the board is QEMU or real."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from hil.gateway.strategy import GatewayStrategy, Status


class Gateway:
    def __init__(self, strategy: GatewayStrategy) -> None:
        self.strategy = strategy

    # --- power and boot --------------------------------------------------------------------

    def fresh_boot(self) -> str:
        """From the factory disk (where the board can be given it) to a shell; the slot booted."""
        self.strategy.fresh()
        self.strategy.transition(Status.shell)
        assert self.strategy.slot is not None
        return self.strategy.slot

    def power_cut(self) -> None:
        self.strategy.power_cut()

    def power_on(self) -> str:
        """Power on after a cut, to a shell; the slot the boot script chose."""
        self.strategy.transition(Status.shell)
        assert self.strategy.slot is not None
        return self.strategy.slot

    def switch_on(self) -> None:
        """Power on after a cut, and wait for nothing: the next cut may come while it boots."""
        self.strategy.transition(Status.on)

    def await_reboot(self, timeout: float | None = None) -> str:
        """The device reboots by itself (an update): the slot the boot script chooses, then a shell."""
        return self.strategy.await_boot(timeout)

    def await_bootloader(self, timeout: float | None = None) -> str:
        return self.strategy.await_bootloader(timeout)

    def login(self) -> None:
        self.strategy.login()

    # --- the device's side -------------------------------------------------------------------

    def listen(self, seconds: float) -> None:
        """Wait, reading the console meanwhile (see ``GatewayStrategy.listen``)."""
        self.strategy.listen(seconds)

    def run(self, command: str, timeout: float = 60.0) -> list[str]:
        """A command on the device's shell (logged in again if a boot came between)."""
        if self.strategy.status is Status.bootloader:
            self.strategy.login()
        self.strategy.target.activate(self.strategy.shell)
        return self.strategy.shell.run_check(command, timeout=timeout)

    def agent_status(self) -> dict[str, Any]:
        """``fwagent status --json``: booted and primary slot, slots, update in flight, bootloader."""
        return json.loads("\n".join(self.run("fwagent status --json")))

    def thing_info(self, name: str) -> dict[str, Any]:
        """``fwagent things info NAME --json``: what the Thing's bootloader or application reports."""
        return json.loads("\n".join(self.run(f"fwagent things info {name} --json", timeout=180)))

    def journal(self) -> str:
        return "\n".join(self.run("journalctl -b -u fwagent --no-pager -o cat", timeout=120))

    def wait_until(self, condition: Callable[[], bool], what: str, timeout: float) -> None:
        """Poll the device (each check a command on its shell) until ``condition`` holds."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"the gateway did not get to {what} within {timeout:.0f} s")
            self.listen(2)
