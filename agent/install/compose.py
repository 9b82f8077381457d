"""Build an Installer from the configuration: the one place that picks implementations."""

from __future__ import annotations

import functools
from collections.abc import Callable

from typing import TYPE_CHECKING

from agent.config import Config
from agent.install.boot import KernelBoot, SimulatedBoot
from agent.install.executor import Progress
from agent.install.installer import Installer
from bootloader_bridge.bootchooser import registry
from bootloader_bridge.bootchooser.command import run

if TYPE_CHECKING:
    from agent.download.downloader import Downloader

REBOOT_TIMEOUT = 60.0


def make_bootloader(config: Config):  # type: ignore[no-untyped-def]
    """The configured backend, given the options it declares (read by agent/config.py)."""
    return registry.create(config.bootloader.type, **config.bootloader.options)


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
        reboot = functools.partial(run, command, timeout=REBOOT_TIMEOUT)
    return Installer(config, bootloader, boot, reboot=reboot, open_source=open_update_source,
                     progress=progress, log=log, downloader=downloader)
