"""Build an Installer from the configuration: the one place that picks implementations."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

from agent.config import Config
from agent.download.downloader import Downloader
from agent.errors import BootloaderError, BootloaderTimeoutError
from agent.install.boot import KernelBoot, SimulatedBoot
from agent.install.executor import Progress
from agent.install.installer import Installer
from bootloader_bridge.bootchooser import registry

REBOOT_TIMEOUT = 60.0


def make_bootloader(config: Config):  # type: ignore[no-untyped-def]
    boot = config.bootloader
    options = {
        "grub": {"env_file": boot.grubenv},
        "uboot": {"config": boot.fw_env_config, "attempts": boot.attempts},
        "custom": {"script": boot.script},
        "file": {"path": boot.env_file, "cmdline": boot.cmdline, "attempts": boot.attempts},
    }[boot.type]
    return registry.create(boot.type, **options)


def build_installer(config: Config, *, progress: Progress | None = None,
                    log: Callable[[str], None] = lambda _m: None, downloader: Downloader | None = None) -> Installer:
    from agent.install.bundle_source import open_update_source

    bootloader = make_bootloader(config)
    if config.bootloader.simulate_reboot:
        boot = SimulatedBoot(config.bootloader.cmdline, config.device.state_dir / "simulated-boot-id",
                             bootloader)
        reboot: Callable[[], None] = boot.reboot
    else:
        boot = KernelBoot(config.bootloader.cmdline)
        command = config.bootloader.reboot or ()
        reboot = lambda: _run_reboot(command)  # noqa: E731
    return Installer(config, bootloader, boot, reboot=reboot, open_source=open_update_source,
                     progress=progress, log=log, downloader=downloader)


def _run_reboot(command: tuple[str, ...]) -> None:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=REBOOT_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise BootloaderTimeoutError(f"reboot command {' '.join(command)!r} did not return in "
                                     f"{REBOOT_TIMEOUT:g} s") from None
    except OSError as exc:
        raise BootloaderError(f"reboot command {' '.join(command)!r} cannot run: {exc.strerror}") from None
    if result.returncode != 0:
        raise BootloaderError(f"reboot command {' '.join(command)!r} exited {result.returncode}: "
                              f"{result.stderr.strip()[:200]}")
