"""``fwagent check``: each check with a setup that passes and one that fails, on a gateway with
file-backed slots, the reference DDI server, mosquitto and a pseudo-terminal for a Thing."""

from __future__ import annotations

import json
import os
import pty
import socket
import subprocess
from pathlib import Path

import pytest
from conftest import require_tool
from install_bench import Gateway, make_gateway

from agent.check import mounted
from agent.cli import main
from agent.demo.ddi_server import DdiServer


def check(gateway: Gateway, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict[str, dict]]:
    """Exit code and the checks by name, from ``--json``."""
    code = main(["check", "--config", str(gateway.config_path), "--json", *extra])
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] == (code == 0)
    return code, {item["name"]: item for item in report["checks"]}


def add(gateway: Gateway, text: str) -> None:
    gateway.config_path.write_text(gateway.config_path.read_text() + "\n" + text)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def gateway(tmp_path: Path) -> Gateway:
    return make_gateway(tmp_path / "gw")


def test_a_good_setup_passes_every_check_and_shows_the_effective_configuration(
        gateway: Gateway, broker: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    master, slave = pty.openpty()
    try:
        with DdiServer(sleep="00:00:07", record=True) as server:
            add(gateway, f'[server]\nurl = "{server.url}"\ntarget_token = "s3cret"\n\n'
                         f'[mqtt]\nurl = "{broker}"\n\n'
                         f'[things.mcu]\nport = "{os.ttyname(slave)}"\nprotocol = "mcuboot-smp"\n')
            bundle = gateway.bundle("u2", sequence=2)
            code, checks = check(gateway, capsys, "--bundle", str(bundle))
            assert code == 0, checks
            polls = [e.path for e in server.exchanges if e.method == "GET"]
            assert polls == ["/DEFAULT/controller/v1/gw-test"]          # one poll, as the service's first
            assert main(["check", "--config", str(gateway.config_path)]) == 0
            text = capsys.readouterr().out
    finally:
        os.close(master)
        os.close(slave)
    assert set(checks) == {"trust", "kernel command line", "slots.rootfs", f"bundle {bundle}", "bootloader",
                           "server", "broker", "thing mcu"}
    assert checks["kernel command line"]["detail"].startswith("booted slot A")
    assert "an update writes B" in checks["slots.rootfs"]["detail"]
    assert checks["server"]["detail"].endswith("no action; the server's polling interval 7 s")
    assert "accepts the connection" in checks["broker"]["detail"]
    assert "opens (mcuboot-smp, 115200 baud, parity none); not talked to" in checks["thing mcu"]["detail"]
    # The configuration as read: defaults shown, paths resolved, the token hidden.
    assert f'state_dir = "{gateway.root / "state"}"' in text and "max_attempts = 10" in text
    assert 'target_token = "(set)"' in text and "s3cret" not in text
    assert text.rstrip().endswith("7 of 7 checks passed")                   # no bundle this time


def test_a_missing_trust_key_fails_its_check(gateway: Gateway, capsys: pytest.CaptureFixture[str]) -> None:
    (gateway.root / "release.pub.pem").unlink()
    code, checks = check(gateway, capsys)
    assert code == 1 and not checks["trust"]["ok"]
    assert "release.pub.pem" in checks["trust"]["detail"]
    assert all(item["ok"] for name, item in checks.items() if name != "trust")


def test_a_command_line_without_the_slot_fails(gateway: Gateway, capsys: pytest.CaptureFixture[str]) -> None:
    (gateway.root / "cmdline").write_text("root=/dev/vda2 ro quiet\n")
    code, checks = check(gateway, capsys)
    assert code == 1
    assert "names no slot (fwagent.slot= or rauc.slot=)" in checks["kernel command line"]["detail"]


def test_a_missing_or_small_slot_fails(gateway: Gateway, capsys: pytest.CaptureFixture[str]) -> None:
    (gateway.root / "rootfs-b.img").unlink()
    code, checks = check(gateway, capsys)
    assert code == 1 and "slot-missing" in checks["slots.rootfs"]["detail"]
    (gateway.root / "rootfs-b.img").write_bytes(b"\0" * 4096)
    add(gateway, "[slots.rootfs]\nmin_size = 65536\n")
    code, checks = check(gateway, capsys)
    assert code == 1
    assert "B " in checks["slots.rootfs"]["detail"] and "(slot-too-small)" in checks["slots.rootfs"]["detail"]


def test_a_bundle_too_large_for_the_slot_fails(gateway: Gateway, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = gateway.bundle("big", sequence=2, size=5 << 20)          # the slots hold 4 MiB
    code, checks = check(gateway, capsys, "--bundle", str(bundle))
    assert code == 1
    assert checks[f"bundle {bundle}"]["detail"] == ("['rootfs']: the image has 5 MiB, the slot holds 4 MiB "
                                                    "(slot-too-small)")
    other = gateway.bundle("other", sequence=2, component="appfs")
    code, checks = check(gateway, capsys, "--bundle", str(other))
    assert code == 1 and "(unknown-slot)" in checks[f"bundle {other}"]["detail"]


def test_a_damaged_boot_environment_fails(gateway: Gateway, capsys: pytest.CaptureFixture[str]) -> None:
    assert check(gateway, capsys)[0] == 0                  # the file bootloader made its environment
    (gateway.root / "bootenv.json").write_text("{not json")
    code, checks = check(gateway, capsys)
    assert code == 1 and not checks["bootloader"]["ok"], checks["bootloader"]


def test_a_grub_environment_of_the_wrong_size_fails(gateway: Gateway, capsys: pytest.CaptureFixture[str]) -> None:
    editenv = require_tool("grub-editenv", "grub-common")
    grubenv = gateway.root / "grubenv"
    subprocess.run([editenv, str(grubenv), "create"], check=True, timeout=30)
    subprocess.run([editenv, str(grubenv), "set", "ORDER=A B", "A_OK=1", "B_OK=1", "A_TRY=0", "B_TRY=0"],
                   check=True, timeout=30)
    text = gateway.config_path.read_text().replace('type = "file"\nenv_file = "bootenv.json"',
                                                   f'type = "grub"\ngrubenv = "{grubenv}"')
    text = text.replace('reboot = "simulate"\n', "")
    gateway.config_path.write_text(text)
    code, checks = check(gateway, capsys)
    assert code == 0 and checks["bootloader"]["detail"].startswith("grub: primary A"), checks["bootloader"]
    grubenv.write_bytes(grubenv.read_bytes()[:512])
    code, checks = check(gateway, capsys)
    assert code == 1 and not checks["bootloader"]["ok"]
    assert "grubenv" in checks["bootloader"]["detail"]


def test_a_u_boot_environment_that_fw_printenv_cannot_read_fails(gateway: Gateway,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """fw_env.config reachable, the environment's CRC good and its variables there: ok; a
    variable missing, or fw_env.config gone: the check fails."""
    from test_bootchooser import RAUC_UBOOT, file_backed_uboot

    config, _ = file_backed_uboot(gateway.root, RAUC_UBOOT)
    text = gateway.config_path.read_text().replace('type = "file"\nenv_file = "bootenv.json"',
                                                   f'type = "uboot"\nfw_env_config = "{config}"')
    gateway.config_path.write_text(text.replace('reboot = "simulate"\n', ""))
    code, checks = check(gateway, capsys)
    assert code == 0 and checks["bootloader"]["detail"].startswith("uboot: primary A"), checks["bootloader"]
    file_backed_uboot(gateway.root, {"BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3"})        # no BOOT_ORDER
    code, checks = check(gateway, capsys)
    assert code == 1 and "BOOT_ORDER" in checks["bootloader"]["detail"], checks["bootloader"]
    config.unlink()
    code, checks = check(gateway, capsys)
    assert code == 1 and "fw_env.config" in checks["bootloader"]["detail"], checks["bootloader"]


def test_a_server_and_a_broker_that_do_not_answer_fail(gateway: Gateway,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    add(gateway, f'[server]\nurl = "http://127.0.0.1:{closed_port()}"\ntimeout = 2\n\n'
                 f'[mqtt]\nurl = "mqtt://127.0.0.1:{closed_port()}"\n\n'
                 '[things.mcu]\nport = "/dev/fwagent-no-such-port"\nprotocol = "stm32"\n')
    code, checks = check(gateway, capsys)
    assert code == 1
    assert not checks["server"]["ok"] and "ddi" in checks["server"]["detail"]
    assert not checks["broker"]["ok"] and "Connection refused" in checks["broker"]["detail"]
    assert not checks["thing mcu"]["ok"] and "/dev/fwagent-no-such-port" in checks["thing mcu"]["detail"]
    assert checks["slots.rootfs"]["ok"] and checks["trust"]["ok"]


def test_a_server_that_refuses_the_token_fails(gateway: Gateway, capsys: pytest.CaptureFixture[str]) -> None:
    with DdiServer(tokens={"gw-test": "right"}) as server:
        add(gateway, f'[server]\nurl = "{server.url}"\ntarget_token = "wrong"\n')
        code, checks = check(gateway, capsys)
    assert code == 1 and "401" in checks["server"]["detail"], checks["server"]


def test_mountinfo_gives_each_device_its_mount_point() -> None:
    text = ("22 28 0:21 / /proc rw,nosuid - proc proc rw\n"
            "28 1 254:2 / / ro,relatime shared:1 - ext4 /dev/vda2 ro\n"
            "35 28 254:4 / /data rw - ext4 /dev/vda4 rw\n"
            "36 28 254:1 / /boot/loader\\040efi rw - vfat /dev/vda1 rw\n"
            "garbage\n")
    assert mounted(text) == {os.makedev(0, 21): "/proc", os.makedev(254, 2): "/",
                             os.makedev(254, 4): "/data", os.makedev(254, 1): "/boot/loader efi"}
