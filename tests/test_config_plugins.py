"""[bootloader] read from the options each backend declares, a third-party backend included:
one installed for the test as a distribution (a dist-info directory on sys.path), found through
the fwagent.bootloaders entry point group. [things.<name>] read from what its protocol declares,
and flashed by the protocol's flow."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from agent import things
from agent.config import load_config
from agent.errors import ConfigError
from agent.install.compose import make_bootloader
from bootloader_bridge.bootchooser import registry
from bootloader_bridge.options import Option
from bootloader_bridge.things import registry as thing_registry
from bootloader_bridge.things.base import FlashResult, ThingProtocol

BASE = """
[device]
id = "gw-0001"
vendor_domain = "example.com"
class_name = "gw-board-rev1"
state_dir = "state"

[trust]
keys = ["keys/release.pub.pem"]

[slots.rootfs.A]
device = "slots/rootfs-a.img"
[slots.rootfs.B]
device = "slots/rootfs-b.img"

[bootloader]
"""

PLUGIN = '''
from bootloader_bridge.options import Option


class DevBoard:
    """A board whose boot ROM keeps the slot in a register file."""

    OPTIONS = (Option("register_file", "path", "/sys/devboard/slot", argument="registers"),
               Option("retries", "int", 1, low=0, high=5),
               Option("flavour", "str", "plain", choices=("plain", "secure")),
               Option("probe", "command"),
               Option("settle", "number", 0.5, low=0, high=10),
               Option("verbose", "bool", False))

    def __init__(self, registers, *, retries=1, flavour="plain", probe=None, settle=0.5, verbose=False):
        self.registers, self.retries, self.flavour = registers, retries, flavour
        self.probe, self.settle, self.verbose = probe, settle, verbose

    def get_primary(self):
        return "A"

    def set_primary(self, slot):
        pass

    def get_state(self, slot):
        return True

    def set_state(self, slot, good):
        pass

    def variables(self):
        return {}
'''


@pytest.fixture
def devboard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The distribution fwagent-devboard, installed on sys.path for this test only."""
    site = tmp_path / "site"
    info = site / "fwagent_devboard-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fwagent-devboard\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{registry.ENTRY_POINT_GROUP}]\ndevboard = fwagent_devboard:DevBoard\n")
    (site / "fwagent_devboard.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "fwagent_devboard", raising=False)
    return tmp_path


def load(tmp_path: Path, bootloader: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "agent.toml"
    path.write_text(BASE + textwrap.dedent(bootloader))
    return load_config(path)


def test_a_plugin_backend_is_chosen_from_agent_toml_with_its_options(devboard: Path) -> None:
    config = load(devboard, 'type = "devboard"\nregister_file = "regs"\nretries = 3\nprobe = ["devboard-probe", "-q"]\n'
                            "settle = 2\nverbose = true\n")
    assert config.bootloader.options == {"registers": devboard / "regs", "retries": 3, "flavour": "plain",
                                         "probe": ("devboard-probe", "-q"), "settle": 2.0, "verbose": True}
    backend = make_bootloader(config)
    assert type(backend).__name__ == "DevBoard"
    assert (backend.registers, backend.retries, backend.flavour) == (devboard / "regs", 3, "plain")
    assert (backend.probe, backend.settle, backend.verbose) == (("devboard-probe", "-q"), 2.0, True)
    assert load(devboard, 'type = "devboard"\n').bootloader.options == {
        "registers": Path("/sys/devboard/slot"), "retries": 1, "flavour": "plain", "probe": None, "settle": 0.5,
        "verbose": False}
    assert "devboard" in registry.names()


@pytest.mark.parametrize("keys, message", [
    ("retries = 6", r"^\[bootloader\].retries must be from 0 to 5, got 6$"),
    ('retries = "3"', r"^\[bootloader\].retries must be int, got str$"),
    ('flavour = "fancy"', r"^\[bootloader\].flavour 'fancy': for type devboard, one of plain, secure$"),
    ('register_file = ""', r"^\[bootloader\].register_file must not be empty$"),
    ("colour = 1", r"^\[bootloader\].colour is not a known key$"),
    ("probe = []", r"^\[bootloader\].probe must be a command \(a list of strings\)$"),
    ("settle = nan", r"^\[bootloader\].settle must be a number from 0 to 10, got nan$"),
    ('verbose = "yes"', r"^\[bootloader\].verbose must be bool, got str$"),
    ('grubenv = "/boot/grubenv"', r"^\[bootloader\].grubenv '/boot/grubenv': for type grub, not devboard$"),
    ("attempts = 3", r"^\[bootloader\].attempts 3: for type uboot or file, not devboard$"),
    ('reboot = "simulate"', r'needs type = "file" .*not .devboard.$'),
])
def test_a_plugin_backends_options_are_validated(devboard: Path, keys: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(devboard, f'type = "devboard"\n{keys}\n')


def test_an_unknown_type_names_the_installed_ones(devboard: Path) -> None:
    with pytest.raises(ConfigError, match=r"^\[bootloader\].type 'lilo' is not one of grub, uboot, custom, file, "
                                          r"devboard$"):
        load(devboard, 'type = "lilo"\n')


@pytest.mark.parametrize("bootloader, options", [
    ('type = "grub"', {"env_file": Path("/boot/grub/grubenv")}),
    ('type = "uboot"\nattempts = 9', {"config": Path("/etc/fw_env.config"), "attempts": 9}),
    ('type = "custom"\nscript = "hook"', {"script": "HERE/hook"}),
    ('type = "file"', {"path": Path("/var/lib/fwagent/bootenv"), "cmdline": Path("/proc/cmdline"), "attempts": 3}),
])
def test_builtin_backends_declare_their_options(tmp_path: Path, bootloader: str, options: dict) -> None:
    expected = {k: tmp_path / v.removeprefix("HERE/") if isinstance(v, str) else v for k, v in options.items()}
    assert load(tmp_path, bootloader).bootloader.options == expected


@pytest.mark.parametrize("bootloader, message", [
    ('type = "uboot"\nattempts = 10', r"^\[bootloader\].attempts must be from 1 to 9, got 10$"),
    ('type = "grub"\nfw_env_config = "x"', r"^\[bootloader\].fw_env_config 'x': for type uboot, not grub$"),
    ('type = "file"\nscript = "x"', r"^\[bootloader\].script 'x': for type custom, not file$"),
])
def test_builtin_backends_refuse_what_is_not_theirs(tmp_path: Path, bootloader: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, bootloader)


# --- Thing protocols: [things.<name>] read from what the protocol declares, flashed by its flow -----


class LoopFlasher:
    """A flasher that flashes nothing, on pyserial's loop:// port."""

    def __init__(self, link, *, name: str, speed: int, go: bool) -> None:  # type: ignore[no-untyped-def]
        self.link, self.name, self.speed, self.go = link, name, speed, go


def loop_flow(session, image, progress, name, settings):  # type: ignore[no-untyped-def]
    flasher = session.flasher
    return FlashResult(len(image), f"{name} at {flasher.speed}, go {flasher.go}, {settings['colour']}")


LOOP = ThingProtocol(
    parity="odd",
    options=(Option("speed", "int", 9, low=1, high=10), Option("colour", "str", "red", choices=("red", "blue"))),
    flasher=LoopFlasher, arguments=lambda settings, reset_lines: {"speed": settings["speed"], "go": not reset_lines},
    flow=loop_flow, rolls_back=lambda settings: settings["colour"] == "blue", no_rollback="")


@pytest.fixture
def loop_protocol(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "fwagent_loop_protocol", type(sys)("fwagent_loop_protocol"))
    monkeypatch.setattr(sys.modules["fwagent_loop_protocol"], "PROTOCOL", LOOP, raising=False)
    monkeypatch.setitem(thing_registry.BUILTIN, "loop", "fwagent_loop_protocol:PROTOCOL")


def test_a_thing_protocol_declares_its_keys_defaults_and_flow(tmp_path: Path, loop_protocol: None) -> None:
    config = load(tmp_path, 'type = "file"\n[things.m]\nport = "loop://"\nprotocol = "loop"\nspeed = 3\n')
    thing = config.things["m"]
    assert (thing.parity, thing.options, thing.rolls_back) == ("odd", {"speed": 3, "colour": "red"}, False)
    result = things.flash(thing, b"\x01" * 10)
    assert (result.written, result.verified) == (10, "m at 3, go True, red")
    blue = load(tmp_path, 'type = "file"\n[things.m]\nport = "loop://"\nprotocol = "loop"\ncolour = "blue"\n')
    assert blue.things["m"].rolls_back


@pytest.mark.parametrize("keys, message", [
    ("speed = 11", r"^\[things.m\].speed must be from 1 to 10, got 11$"),
    ('colour = "green"', r"^\[things.m\].colour 'green': for protocol loop, one of red, blue$"),
    ("address = 4096", r"^\[things.m\].address 4096: for protocol stm32, not loop$"),
    ("boot_timeout = 5", r"^\[things.m\].boot_timeout 5: for protocol mcuboot-smp, not loop$"),
    ('protocol = "esp"', r"^\[things.m\].protocol 'esp' is not one of stm32, mcuboot-smp, loop$"),
])
def test_a_thing_protocols_keys_are_checked(tmp_path: Path, loop_protocol: None, keys: str, message: str) -> None:
    section = f'[things.m]\nport = "loop://"\n{keys}\n' + ('protocol = "loop"\n' if "protocol" not in keys else "")
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, 'type = "file"\n' + section)


def test_the_builtin_protocols_declare_their_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, 'type = "file"\n[things.a]\nport = "x"\nprotocol = "stm32"\n'
                            '[things.b]\nport = "y"\nprotocol = "mcuboot-smp"\n')
    stm32, smp = config.things["a"], config.things["b"]
    assert (stm32.parity, stm32.options) == ("even", {"address": 0x08000000, "flash_size": None, "page_size": None})
    assert (smp.parity, smp.options) == ("none", {"boot_timeout": 60.0, "mcuboot_mode": None})
    assert (stm32.rolls_back, smp.rolls_back) == (False, True)
