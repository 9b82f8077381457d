"""``fwagent things``: the configured Things, by hand."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from agent.cli import main
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
    assert err.startswith("error: thing-port: mcu1: cannot open /dev/fwagent-no-such-tty") and "\n" not in err


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
        image = tmp_path / "fw.bin"
        image.write_bytes(bytes(range(256)) * 24)
        assert main(["things", "flash", "mcu1", str(image), "--config", config, "--json"]) == 0
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert lines[-1]["event"] == "result" and lines[-1]["written"] == 6144
        assert {line["phase"] for line in lines if line["event"] == "progress"} >= {"writing", "verifying"}
        assert sim.flash[:6144] == image.read_bytes()
