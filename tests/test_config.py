"""agent.toml: the documented keys load, and every mistake names its key."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from agent.config import config_path, load_config
from agent.errors import ConfigError, InputFileError

GOOD = """
[device]
id = "gw-0001"
vendor_domain = "example.com"
class_name = "gw-board-rev1"
state_dir = "state"

[trust]
keys = ["keys/release.pub.pem"]

[bootloader]
type = "file"
env_file = "bootenv.json"
cmdline = "cmdline"
reboot = "simulate"

[slots.rootfs.A]
device = "slots/rootfs-a.img"
[slots.rootfs.B]
device = "slots/rootfs-b.img"

[health]
commands = [["true"], ["systemctl", "is-active", "myapp.service"]]
timeout = 30
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def test_documented_keys_load(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    vendor = uuid.uuid5(uuid.NAMESPACE_DNS, "example.com")
    assert (config.device.vendor_id, config.device.class_id) == (vendor, uuid.uuid5(vendor, "gw-board-rev1"))
    assert config.device.state_dir == tmp_path / "state"
    assert config.trust.keys == (tmp_path / "keys/release.pub.pem",)
    assert config.bootloader.simulate_reboot and config.bootloader.options["path"] == tmp_path / "bootenv.json"
    assert config.slots == {"rootfs": {"A": tmp_path / "slots/rootfs-a.img", "B": tmp_path / "slots/rootfs-b.img"}}
    assert config.min_image_sizes == {"rootfs": 1}          # an empty image is never installed
    assert config.health.commands[1] == ("systemctl", "is-active", "myapp.service")
    assert config.health.timeout == 30.0


def test_a_slot_class_takes_the_least_size_of_its_images(tmp_path: Path) -> None:
    text = GOOD.replace("[slots.rootfs.A]", "[slots.rootfs]\nmin_size = 1048576\n[slots.rootfs.A]")
    text += '[slots.boot.A]\ndevice = "boot-a"\n[slots.boot.B]\ndevice = "boot-b"\n'
    config = load_config(write(tmp_path, text))
    assert config.min_image_sizes == {"rootfs": 1 << 20, "boot": 1}
    assert config.slots["rootfs"] == {"A": tmp_path / "slots/rootfs-a.img", "B": tmp_path / "slots/rootfs-b.img"}


def test_absolute_device_paths_stay_absolute(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD.replace("slots/rootfs-a.img", "/dev/mmcblk0p2")))
    assert config.slots["rootfs"]["A"] == Path("/dev/mmcblk0p2")


@pytest.mark.parametrize("change, message", [
    (("[health]", "[health]\nretries = 2"), r"\[health\].retries is not a known key"),
    (('type = "file"', 'type = "lilo"'), r"\[bootloader\].type 'lilo' is not one of grub, uboot, custom, file"),
    (('type = "file"', 'type = "grub"'), r'reboot = "simulate" needs type = "file"'),
    (("timeout = 30", 'timeout = "30"'), r"\[health\].timeout must be int or float, got str"),
    (('id = "gw-0001"', "id = 7"), r"\[device\].id must be str, got int"),
    (('vendor_domain = "example.com"', 'vendor_domain = "example.com"\nvendor_id = "%s"' % uuid.uuid4()),
     r"exactly one of vendor_id and vendor_domain"),
    (("[slots.rootfs.B]", "[slots.rootfs.C]"), r"\[slots.rootfs\] must have exactly the slots A and B, has A, C"),
    (('device = "slots/rootfs-b.img"', 'path = "x"'), r"\[slots.rootfs.B\].device is required"),
    (('keys = ["keys/release.pub.pem"]', "keys = []"), r"\[trust\].keys must name at least one public key"),
    (("[slots.rootfs.A]", "[slots.rootfs]\nmin_size = 0\n[slots.rootfs.A]"),
     r"\[slots.rootfs\].min_size must be a positive number of bytes"),
    (("[slots.rootfs.A]", "[slots.rootfs]\nmin_size = -4096\n[slots.rootfs.A]"),
     r"\[slots.rootfs\].min_size must be a positive number of bytes"),
    (("[slots.rootfs.A]", "[slots.rootfs]\nmin_size = 1.5\n[slots.rootfs.A]"),
     r"\[slots.rootfs\].min_size must be int, got float"),
    (("[slots.rootfs.A]", "[slots.rootfs]\nmin_size = true\n[slots.rootfs.A]"),
     r"\[slots.rootfs\].min_size must be int, got bool"),
    (("[slots.rootfs.A]", "[slots.rootfs]\nminsize = 9\n[slots.rootfs.A]"),
     r"\[slots.rootfs\].minsize is not a known key"),
    (('[slots.rootfs.A]\ndevice = "slots/rootfs-a.img"', "[slots.rootfs]\nA = 9"),
     r"\[slots.rootfs.A\] must be a table"),
    (("[trust]", "[trusted]"), r"\[trust\] is required|\[top level\].trust is required"),
])
def test_mistakes_name_the_key(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, GOOD.replace(*change, 1)))


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="cannot read configuration"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[device\n"))


def test_a_configuration_that_is_not_utf8_is_a_config_error(tmp_path: Path, capsys) -> None:
    from agent.cli import main
    path = tmp_path / "agent.toml"
    path.write_bytes(GOOD.encode().replace(b"gw-0001", b"gw-\xff"))
    with pytest.raises(ConfigError, match=r"agent.toml: not UTF-8 text \(byte \d+\)$"):
        load_config(path)
    assert main(["status", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: config: {path}: not UTF-8 text") and len(err.splitlines()) == 1
    (tmp_path / "mqtt.pass").write_bytes(b"\xfe\xff")
    with pytest.raises(ConfigError, match=r"\[mqtt\].password_file .*mqtt.pass: not UTF-8 text \(byte 0\)$"):
        load_config(write(tmp_path, GOOD + '[mqtt]\nurl = "mqtt://x"\npassword_file = "mqtt.pass"\n'))


def test_a_configuration_is_read_with_a_bound(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"/dev/zero: more than 1048576 bytes: not a configuration file"):
        load_config(Path("/dev/zero"))
    big = tmp_path / "big.toml"
    with open(big, "wb") as sparse:
        sparse.truncate(1 << 30)
    with pytest.raises(ConfigError, match="more than 1048576 bytes"):
        load_config(big)


NUMBERS = [
    ("health", "timeout", lambda v: GOOD.replace("timeout = 30", f"timeout = {v}")),
    *[("download", key, lambda v, key=key: GOOD + f"[download]\n{key} = {v}\n")
      for key in ("connect_timeout", "stall_timeout", "max_time")],
    *[("server", key, lambda v, key=key: GOOD + f'[server]\nurl = "http://x"\n{key} = {v}\n')
      for key in ("poll_min", "poll_max", "poll_default", "timeout", "startup_spread", "progress_interval")],
    *[("mqtt", key, lambda v, key=key: GOOD + f'[mqtt]\nurl = "mqtt://x"\n{key} = {v}\n')
      for key in ("spread", "progress_interval")],
    ("things.m", "boot_timeout",
     lambda v: GOOD + f'[things.m]\nport = "x"\nprotocol = "mcuboot-smp"\nboot_timeout = {v}\n'),
]


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
@pytest.mark.parametrize("table, key, text", NUMBERS, ids=[f"{t}.{k}" for t, k, _ in NUMBERS])
def test_every_number_is_finite(tmp_path: Path, table: str, key: str, text, value: str) -> None:
    import re
    with pytest.raises(ConfigError, match=rf"^\[{re.escape(table)}\]\.{key} must be a number from [0-9.]+ to "
                                          rf"[0-9]+, got {value}$"):
        load_config(write(tmp_path, text(value)))
    in_range = "600.5" if key in ("poll_max", "poll_default") else "1.5"
    load_config(write(tmp_path, text(in_range)))         # the same key with a number in range


def test_config_path_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FWAGENT_CONFIG", raising=False)
    assert config_path() == Path("/etc/fwagent/agent.toml")
    monkeypatch.setenv("FWAGENT_CONFIG", "/tmp/x.toml")
    assert config_path() == Path("/tmp/x.toml")
    assert config_path(Path("given.toml")) == Path("given.toml")


SERVER = """
[server]
url = "https://ddi.example.com"
tenant = "acme"
target_token = "s3cret"
ca_file = "ca.pem"
poll_min = 60
poll_default = 600

[mqtt]
url = "mqtts://broker.example.com:8883"
broadcast_topic = "fwagent/all/wakeup"
spread = 120
username = "gw"
password_file = "mqtt.pass"
"""


def test_server_and_mqtt_sections(tmp_path: Path) -> None:
    (tmp_path / "mqtt.pass").write_text("pw\n")
    text = GOOD.replace('state_dir = "state"', 'state_dir = "state"\nhardware_board = "gw-board"\n'
                        'hardware_revision = "rev2"\n[device.attributes]\nsite = "plant-3"\n')
    config = load_config(write(tmp_path, text + SERVER))
    server, mqtt = config.server, config.mqtt
    assert server is not None and mqtt is not None
    assert (server.url, server.tenant, server.controller_id, server.target_token) == (
        "https://ddi.example.com", "acme", "gw-0001", "s3cret")
    assert (server.ca_file, server.poll_min, server.poll_default, server.poll_max) == (
        tmp_path / "ca.pem", 60.0, 600.0, 86400.0)
    assert server.startup_spread == 600.0          # by default, one poll interval
    assert (mqtt.device_id, mqtt.spread, mqtt.username, mqtt.password) == ("gw-0001", 120.0, "gw", "pw")
    assert mqtt.broadcast_topic == "fwagent/all/wakeup" and mqtt.wakeup_topic is None
    assert config.device.hardware_board == "gw-board" and config.device.attributes == {"site": "plant-3"}
    assert load_config(write(tmp_path, GOOD)).server is None


@pytest.mark.parametrize(("section", "message"), [
    ('[server]\nurl = "ftp://x"\n', r"\[server\].url 'ftp://x' must be an http:// or https:// URL"),
    ('[server]\n', r"\[server\].url is required"),
    ('[server]\nurl = "http://x"\ntarget_token = "a"\ngateway_token = "b"\n', "not both"),
    ('[server]\nurl = "http://x"\npoll_min = 900\n', "poll_min <= poll_default <= poll_max"),
    ('[server]\nurl = "http://x"\nclient_cert = "c.pem"\n', "client_cert and client_key go together"),
    ('[server]\nurl = "http://x"\npol_min = 9\n', r"\[server\].pol_min is not a known key"),
    ('[mqtt]\nurl = "tcp://x"\n', r"\[mqtt\].url 'tcp://x' must be an mqtt:// or mqtts:// URL"),
    ('[mqtt]\nurl = "mqtt://x"\npassword = "a"\npassword_file = "b"\n', "password or password_file"),
    ('[mqtt]\nurl = "mqtt://x"\nspread = -1\n', r"^\[mqtt\].spread must be a number from 0 to 86400, got -1$"),
    ('[mqtt]\nurl = "mqtt://x"\nkeepalive = 4\n', r"^\[mqtt\].keepalive must be from 5 to 65535 seconds$"),
    ('[server]\nurl = "http://x"\ntimeout = 0\n', r"^\[server\].timeout must be a number from 0.001 to 3600, got 0$"),
    ('[server]\nurl = "http://x"\npoll_max = 2592001\n', r"^\[server\].poll_max must be a number from 0.001 to "
     r"2592000, got 2592001$"),
    ('[download]\nmax_time = 1e9\n', r"^\[download\].max_time must be a number from 0.001 to 604800, got 1000000000.0$"),
])
def test_server_and_mqtt_mistakes_name_the_key(tmp_path: Path, section: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, GOOD + section))


THINGS = """
[things.mcu1]
port = "/dev/serial/by-id/usb-STM32-if00"
protocol = "stm32"
reset = "dtr-rts"
address = 0x08004000
version_command = ["cat", "/run/mcu1.version"]

[things.radio]
port = "socket://127.0.0.1:7000"
protocol = "mcuboot-smp"
baud = 1000000
reset = ["gpioset", "gpiochip0", "17=0"]
"""


def test_things(tmp_path: Path) -> None:
    things = load_config(write(tmp_path, GOOD + THINGS)).things
    mcu, radio = things["mcu1"], things["radio"]
    assert (mcu.protocol, mcu.parity, mcu.baud, mcu.reset, mcu.options["address"]) == ("stm32", "even", 115200, "dtr-rts",
                                                                            0x08004000)
    assert mcu.version_command == ("cat", "/run/mcu1.version")
    assert (radio.protocol, radio.parity, radio.baud) == ("mcuboot-smp", "none", 1000000)
    assert radio.reset == ("gpioset", "gpiochip0", "17=0") and radio.version_command is None
    assert (mcu.rolls_back, radio.rolls_back) == (False, True)
    assert load_config(write(tmp_path, GOOD)).things == {}
    recovery = '[things.rec]\nport = "x"\nprotocol = "mcuboot-smp"\nrollback = false\n'
    assert load_config(write(tmp_path, GOOD + recovery)).things["rec"].rolls_back is False
    for mode, can in (("ram-load", False), ("direct-xip-revert", True), ("serial-recovery", False)):
        section = f'[things.x]\nport = "x"\nprotocol = "mcuboot-smp"\nmcuboot_mode = "{mode}"\n'
        thing = load_config(write(tmp_path, GOOD + section)).things["x"]
        assert (thing.options["mcuboot_mode"], thing.rolls_back) == (mode, can)


@pytest.mark.parametrize(("section", "message"), [
    ('[things.m]\nport = "/dev/ttyS1"\n', r"\[things.m\].protocol is required"),
    ('[things.m]\nport = "/dev/ttyS1"\nprotocol = "esp"\n', "'esp' is not one of stm32, mcuboot-smp"),
    ('[things.m]\nprotocol = "stm32"\n', r"\[things.m\].port is required"),
    ('[things.m]\nport = "x"\nprotocol = "stm32"\nparity = "mark"\n', "parity 'mark'"),
    ('[things.m]\nport = "x"\nprotocol = "stm32"\nreset = "pulse"\n', "reset 'pulse'"),
    ('[things.m]\nport = "x"\nprotocol = "stm32"\nreset = "gpio:gpiochip0:17,x"\n',
     r"^\[things.m\].reset 'gpio:gpiochip0:17,x' is not gpio:<chip>:<reset line>\[,<boot line>\]$"),
    ('[things.m]\nport = "x"\nprotocol = "stm32"\nreset = "gpio:gpiochip0:1,2,3"\n',
     r"^\[things.m\].reset 'gpio:gpiochip0:1,2,3' names 3 lines; it takes a reset line and at most a boot line$"),
    ('[things.m]\nport = "x"\nprotocol = "stm32"\nreset = "gpio:gpiochip0:17,17"\n',
     r"^\[things.m\].reset 'gpio:gpiochip0:17,17' uses line 17 for both reset and boot$"),
    ('[things.m]\nport = "x"\nprotocol = "stm32"\naddress = -1\n', "32-bit address"),
    ('[things."m/1"]\nport = "x"\nprotocol = "stm32"\n', "a Thing's name"),
    ('[things.m]\nport = "x"\nprotocol = "stm32"\nspeed = 9600\n', r"\[things.m\].speed is not a known key"),
    ('[things.m]\nport = "x"\nprotocol = "stm32"\nrollback = true\n', "cannot go back to an earlier image"),
    ('[things.m]\nport = "x"\nprotocol = "mcuboot-smp"\nrollback = "yes"\n', r"rollback must be bool"),
    ('[things.m]\nport = "x"\nprotocol = "mcuboot-smp"\nmcuboot_mode = "xip"\n',
     r"^\[things.m\].mcuboot_mode 'xip': for protocol mcuboot-smp, one of swap, swap-scratch, "),
    ('[things.m]\nport = "x"\nprotocol = "stm32"\nmcuboot_mode = "swap"\n', r"mcuboot_mode 'swap': for protocol "
     "mcuboot-smp"),
])
def test_thing_mistakes_name_the_key(tmp_path: Path, section: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, GOOD + section))
