"""``fwagent things``: the configured Things, by hand."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from agent.cli import main
from conftest import missing
from install_bench import make_gateway

THINGS = """
[things.mcu1]
port = "/dev/fwagent-no-such-tty"
protocol = "stm32"
version_command = ["{python}", "-c", "print('1.4.2')"]

[things.radio]
port = "socket://127.0.0.1:9"
protocol = "mcuboot-smp"
reset = "dtr-rts"
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    gateway = make_gateway(tmp_path / "gw")
    gateway.config_path.write_text(gateway.config_path.read_text() + THINGS.format(python=sys.executable))
    return gateway.config_path


def test_list_shows_each_thing_and_its_running_version(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["things", "list", "--config", str(config)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("mcu1") and "stm32" in out[0] and "version 1.4.2" in out[0]
    assert out[1].startswith("radio") and "reset dtr-rts" in out[1] and "version" not in out[1]
    assert main(["things", "list", "--config", str(config), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["name"], r["version"]) for r in rows] == [("mcu1", "1.4.2"), ("radio", None)]


def test_an_unknown_thing_and_a_missing_port_are_one_line_errors(config: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    image = config.parent / "fw.bin"
    image.write_bytes(b"\xff" * 1024)
    assert main(["things", "flash", "mcu9", str(image), "--config", str(config)]) == 2
    assert "error: usage: no Thing named 'mcu9' ([things.mcu9]); known: mcu1, radio" in capsys.readouterr().err
    assert main(["things", "flash", "mcu1", str(image), "--config", str(config)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: thing-offline: mcu1: cannot open /dev/fwagent-no-such-tty") and "\n" not in err


def test_info_and_flash_against_the_simulated_stm32(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hil.sim.stm32_bootloader import Stm32Simulator

    gateway = make_gateway(tmp_path / "gw")
    with Stm32Simulator(0x410, baud=0, delays=False) as sim:
        gateway.config_path.write_text(gateway.config_path.read_text() + (
            f'\n[things.mcu1]\nport = "{sim.port}"\nprotocol = "stm32"\nparity = "none"\n'))
        config = str(gateway.config_path)
        assert main(["things", "info", "mcu1", "--config", config, "--json"]) == 0
        info = json.loads(capsys.readouterr().out)
        assert info["protocol"] == "stm32" and "0x410" in info["device"]
        assert main(["things", "info", "mcu1", "--config", config]) == 0
        assert capsys.readouterr().out.splitlines()[0] == (
            f"mcu1: stm32, {info['device']}, bootloader {info['bootloader']}")
        image = tmp_path / "fw.bin"
        image.write_bytes(bytes(range(256)) * 24)
        assert main(["things", "flash", "mcu1", str(image), "--config", config, "--json"]) == 0
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert lines[-1]["event"] == "result" and lines[-1]["written"] == 6144
        assert {line["phase"] for line in lines if line["event"] == "progress"} >= {"writing", "verifying"}
        assert sim.flash[:6144] == image.read_bytes()


def test_info_of_an_mcuboot_thing_leaves_out_what_its_bootloader_does_not_say(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """MCUboot's SMP server names neither the device nor its own version: no empty fields."""
    from bootloader_bridge.things.mcuboot_image import parse
    from hil.sim.smp_device import SmpSimulator, imgtool_path, sign_image

    if imgtool_path() is None:
        missing("imgtool is not installed (uv sync installs the dev group)")
    image = sign_image(bytes(range(256)) * 16, tmp_path, version="1.0.0")
    gateway = make_gateway(tmp_path / "gw")
    with SmpSimulator(baud=0, primary=image) as sim:
        gateway.config_path.write_text(gateway.config_path.read_text() + (
            f'\n[things.radio]\nport = "{sim.port}"\nprotocol = "mcuboot-smp"\n'))
        assert main(["things", "info", "radio", "--config", str(gateway.config_path)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "radio: mcuboot-smp",
        f"  image 0, slot 0, version 1.0.0, hash {parse(image).hash.hex()}, bootable True, pending False, "
        "confirmed True, active True, permanent False",
        "  buf_size: 1024", "  buf_count: 1", "  buf_size_from: device", "  answers_from: application"]


def test_flash_draws_a_progress_bar_on_a_terminal(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Each phase redraws its line and ends full, on a line of its own; off a terminal, no bar."""
    from hil.sim.stm32_bootloader import Stm32Simulator

    gateway = make_gateway(tmp_path / "gw")
    image = tmp_path / "fw.bin"
    image.write_bytes(bytes(range(256)) * 24)
    with Stm32Simulator(0x410, baud=0, delays=False) as sim:
        gateway.config_path.write_text(gateway.config_path.read_text() + (
            f'\n[things.mcu1]\nport = "{sim.port}"\nprotocol = "stm32"\nparity = "none"\n'))
        command = ["things", "flash", "mcu1", str(image), "--config", str(gateway.config_path)]
        assert main(command) == 0
        assert capsys.readouterr().err == ""
        monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
        assert main(command) == 0
    drawn = capsys.readouterr().err
    assert drawn.startswith("\rmcu1 erasing    [                              ]   0%") and drawn.endswith("\n")
    assert [line.split("\r")[-1] for line in drawn.split("\n")[:-1]] == [
        f"mcu1 {phase:<10} [{'#' * 30}] 100%" for phase in ("erasing", "writing", "verifying", "activating")]
