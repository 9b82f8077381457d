"""An install driving the real grub-editenv: RAUC's variables at every step.

GRUB itself cannot run here, so its boot decision is played by the test with
the rules of the reference grub.cfg in docs/bootloaders.md: the first slot of
ORDER with X_OK=1 and X_TRY=0 is booted and its X_TRY set to 1.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from agent.config import load_config
from agent.install.boot import KernelBoot
from agent.install.bundle_source import open_update_source
from agent.install.installer import Installer
from bootloader_bridge.bootchooser.grub import GrubBootloader
from conftest import require_tool
from install_bench import make_gateway


class PlayedGrub:
    """Power-on as the reference grub.cfg decides, through grub-editenv."""

    def __init__(self, tool: str, env: Path, cmdline: Path, boot_id: Path) -> None:
        self.tool, self.env, self.cmdline, self.boot_id = tool, env, cmdline, boot_id

    def variables(self) -> dict[str, str]:
        out = subprocess.run([self.tool, str(self.env), "list"], capture_output=True, text=True, check=True)
        return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)

    def power_on(self) -> None:
        env = self.variables()
        for slot in env["ORDER"].split():
            if env.get(f"{slot}_OK") == "1" and env.get(f"{slot}_TRY") == "0":
                subprocess.run([self.tool, str(self.env), "set", f"{slot}_TRY=1"], check=True)
                self.cmdline.write_text(f"root=PARTLABEL=rootfs_{slot} fwagent.slot={slot}\n")
                self.boot_id.write_text(str(int(self.boot_id.read_text()) + 1))
                return
        raise AssertionError(f"GRUB would boot nothing: {env}")


@pytest.fixture
def grub(tmp_path: Path):  # type: ignore[no-untyped-def]
    tool = require_tool("grub-editenv")
    gateway = make_gateway(tmp_path)
    env = tmp_path / "grubenv"
    subprocess.run([tool, str(env), "create"], check=True)
    subprocess.run([tool, str(env), "set", "ORDER=A B", "A_OK=1", "A_TRY=0", "B_OK=1", "B_TRY=0"], check=True)
    (tmp_path / "boot_id").write_text("1")
    played = PlayedGrub(tool, env, tmp_path / "cmdline", tmp_path / "boot_id")
    played.power_on()
    subprocess.run([tool, str(env), "set", "A_TRY=0"], check=True)   # the factory image marked itself good
    config = load_config(gateway.config_path)
    installer = Installer(config, GrubBootloader(env), KernelBoot(tmp_path / "cmdline", tmp_path / "boot_id"),
                          reboot=played.power_on, open_source=open_update_source)
    return gateway, played, installer


def test_grub_install_commits_with_raucs_variables(grub) -> None:  # type: ignore[no-untyped-def]
    gateway, played, installer = grub
    outcome = installer.install(str(gateway.bundle("u2", sequence=2)), no_reboot=True)
    assert outcome.state == "reboot"
    assert played.variables() == {"ORDER": "B A", "A_OK": "1", "A_TRY": "0", "B_OK": "1", "B_TRY": "0"}
    played.power_on()
    assert played.variables()["B_TRY"] == "1"            # GRUB spent B's try
    assert installer.resume().result == "success"
    assert played.variables() == {"ORDER": "B A", "A_OK": "1", "A_TRY": "0", "B_OK": "1", "B_TRY": "0"}


def test_grub_falls_back_when_the_new_slot_never_confirms(grub) -> None:  # type: ignore[no-untyped-def]
    gateway, played, installer = grub
    installer.install(str(gateway.bundle("u2", sequence=2)), no_reboot=True)
    played.power_on()       # B boots once and hangs before fwagent runs
    played.power_on()       # B_TRY=1: skipped, A boots
    assert installer.boot.booted_slot() == "A"
    outcome = installer.resume()
    assert (outcome.state, outcome.code) == ("rolled-back", "fell-back")
    assert played.variables() == {"ORDER": "A B", "A_OK": "1", "A_TRY": "0", "B_OK": "0", "B_TRY": "0"}
