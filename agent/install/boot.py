"""Which boot this is, and which slot it booted.

The booted slot is read from the kernel command line (``fwagent.slot=A``).
The boot id tells one boot from the next: after a switch, an unchanged boot
id means the reboot has not happened yet, which is not a fallback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from agent.errors import BootloaderError
from agent.files import private_dir, write_atomic

from bootloader_bridge.cmdline import read_booted_slot

KERNEL_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


class BootInfo(Protocol):
    def boot_id(self) -> str: ...
    def booted_slot(self) -> str | None: ...


class KernelBoot:
    """The running Linux boot."""

    def __init__(self, cmdline: Path, boot_id_path: Path = KERNEL_BOOT_ID) -> None:
        self.cmdline = cmdline
        self.boot_id_path = boot_id_path

    def boot_id(self) -> str:
        try:
            return self.boot_id_path.read_text().strip()
        except OSError as exc:
            raise BootloaderError(f"cannot read the boot id {self.boot_id_path}: {exc.strerror}") from None

    def booted_slot(self) -> str | None:
        return read_booted_slot(self.cmdline)


class SimulatedBoot(KernelBoot):
    """Boots played by the file bootloader, for development, tests and the demo.

    ``reboot`` asks the file bootloader to choose a slot as it would at power-on
    (it writes the cmdline file) and counts the boot.
    """

    def __init__(self, cmdline: Path, counter: Path, bootloader) -> None:  # type: ignore[no-untyped-def]
        super().__init__(cmdline, counter)
        self.bootloader = bootloader

    def boot_id(self) -> str:
        try:
            return self.boot_id_path.read_text().strip()
        except FileNotFoundError:
            return "0"

    def reboot(self) -> None:
        self.bootloader.boot()
        private_dir(self.boot_id_path.parent)
        write_atomic(self.boot_id_path, str(int(self.boot_id()) + 1).encode(), mode=0o600)
