"""The gateway's states, as labgrid strategies go: off -> on -> bootloader -> shell.

* ``off``: no power (a QEMU gateway: its process killed).
* ``on``: powered on, booting; nothing awaited yet.
* ``bootloader``: powered on, and the boot script has said which slot it
  boots: the line the board's YAML names as ``bootloader_marker`` (a regular
  expression whose group ``slot`` is A or B), printed by the GRUB or U-Boot
  scripts of docs/bootloaders.md.
* ``shell``: logged in on the console, systemd done starting (the update
  service among the rest).

Scenarios also cut the power at any moment (``power_cut``), start from the
factory disk (``fresh``, where the board can be given it), and follow a
device that reboots by itself (``await_boot``). Nothing here depends on the
board being QEMU: power, console and shell come from the board's YAML.
"""

from __future__ import annotations

import enum
import re
import time

import attr
import pexpect
from labgrid.factory import target_factory
from labgrid.step import step
from labgrid.strategy import Strategy, StrategyError, never_retry


class Status(enum.Enum):
    unknown = 0
    off = 1
    on = 2
    bootloader = 3
    shell = 4


@target_factory.reg_driver
@attr.s(eq=False)
class GatewayStrategy(Strategy):
    bindings = {
        "power": "PowerProtocol",
        "console": "ConsoleProtocol",
        "shell": "ShellDriver",
    }

    bootloader_marker = attr.ib(validator=attr.validators.instance_of(str))
    boot_timeout = attr.ib(default=180, validator=attr.validators.instance_of(int))
    status = attr.ib(default=Status.unknown)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.marker = re.compile(self.bootloader_marker.encode())
        self.slot: str | None = None          # the slot the boot script chose last

    @never_retry
    @step(args=["status"])
    def transition(self, status: Status | str, *, step) -> None:  # noqa: ANN001 - labgrid's step
        status = status if isinstance(status, Status) else Status[status]
        if status is Status.unknown:
            raise StrategyError(f"can not transition to {status.name}")
        if status is self.status:
            step.skip("nothing to do")
            return
        if status is Status.off:
            self.power_cut()
        elif status is Status.on:
            self.transition(Status.off)
            self.power.on()
        elif status is Status.bootloader:
            if self.status is not Status.on:
                self.transition(Status.on)
            self.await_bootloader()
        elif status is Status.shell:
            if self.status is not Status.bootloader:
                self.transition(Status.bootloader)
            self.login()
        self.status = status

    # --- what scenarios do besides ------------------------------------------------------

    @step()
    def fresh(self) -> None:
        """Off, with the factory disk where the board can be given it (a QEMU board: its pristine
        image); a real board starts from the state it is in."""
        self.target.activate(self.power)
        self.target.deactivate(self.shell)
        restore = getattr(self.power, "restore_disk", None)
        if restore is not None:
            restore()
        else:
            self.power.off()
        self.status = Status.off

    @step()
    def power_cut(self) -> None:
        """The power goes out now, whatever the device is doing."""
        self.target.activate(self.power)
        self.target.deactivate(self.shell)
        self.power.off()
        self._forget_console()
        self.status = Status.off

    @step(result=True)
    def await_bootloader(self, timeout: float | None = None) -> str:
        """The slot the boot script chooses at the next boot (after a power-on, or a reboot the
        device makes by itself). The shell is given up: after a boot it must log in again."""
        self.target.deactivate(self.shell)
        self.target.activate(self.console)
        _, _, match, _ = self.console.expect(self.marker, timeout=timeout or self.boot_timeout)
        self.slot = match.group("slot").decode()
        self.status = Status.bootloader
        return self.slot

    def listen(self, seconds: float) -> None:
        """Read the console for ``seconds``, as a terminal on a real serial line always does. A
        console nobody reads fills up, and a board whose UART waits for room (QEMU's PL011 does)
        stops dead. A boot seen meanwhile is noted (the slot chosen; a shell needs a login)."""
        if self.status is Status.off:
            time.sleep(seconds)
            return
        self.target.activate(self.console)
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            index, _, match, _ = self.console.expect([self.marker, pexpect.TIMEOUT], timeout=left)
            if index == 0:
                self.target.deactivate(self.shell)
                self.slot = match.group("slot").decode()
                self.status = Status.bootloader

    @step(result=True)
    def await_boot(self, timeout: float | None = None) -> str:
        """A reboot the device makes by itself, through its boot script, to a logged-in shell."""
        slot = self.await_bootloader(timeout)
        self.login()
        return slot

    @step()
    def login(self) -> None:
        self.target.activate(self.shell)
        self.shell.run_check("systemctl is-system-running --wait || true", timeout=self.boot_timeout)
        self.status = Status.shell

    def _forget_console(self) -> None:
        """What the console printed before the cut belongs to the old boot: drop it, so that no
        line of it is taken for the next boot's. (A console that is the power driver's own, as a
        QEMU board's, begins afresh with the next power-on.)"""
        if self.console is self.power:
            return
        self.target.activate(self.console)
        self.console.expect([pexpect.TIMEOUT], timeout=0.2)
