"""The agent's configuration: TOML, validated once, into frozen dataclasses.

Default path /etc/fwagent/agent.toml; ``--config PATH`` or ``FWAGENT_CONFIG``
override it. Unknown keys, wrong types and numbers out of their range (nan
and infinities too) are errors that name the key (``[bootloader].reboot``);
so is a file that is not UTF-8 text. Relative paths are taken relative to the
configuration file. docs/install.md, docs/download.md and docs/things.md list every key. A
bootloader backend's keys, and a Thing protocol's own, are the options it declares
(bootloader_bridge/options.py): this module reads them from the declaration and names no
backend or protocol.
"""

from __future__ import annotations

import os
import re
import tomllib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.errors import ConfigError
from agent.files import read_at_most
from agent.manifest.ids import class_from_name, parse_uuid, vendor_from_domain
from agent.mqtt import MqttConfig
from agent.policy.gates import PolicyConfig
from agent.policy.windows import parse_windows
from bootloader_bridge.bootchooser import registry
from bootloader_bridge.bootchooser.base import SLOTS
from bootloader_bridge.options import Option, declared

DEFAULT_PATH = Path("/etc/fwagent/agent.toml")
MAX_CONFIG = 1 << 20           # bytes of agent.toml
# Bounds of the durations (seconds): each number of the configuration is finite and within its own.
SHORTEST, HOUR, DAY = 0.001, 3600.0, 86400.0
HOST = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                  r"(?::[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](?::[0-9]{1,5})?")


@dataclass(frozen=True)
class DeviceConfig:
    id: str
    vendor_id: uuid.UUID
    class_id: uuid.UUID
    state_dir: Path
    runtime_dir: Path = Path("/run/fwagent")   # what only matters while the service runs (a tmpfs)
    hardware_board: str | None = None          # reported as hw_boardname
    hardware_revision: str | None = None       # reported as hw_revision
    attributes: dict[str, str] = field(default_factory=dict)   # more attributes for the server


@dataclass(frozen=True)
class TrustConfig:
    keys: tuple[Path, ...]
    hmac_keys: tuple[Path, ...] = ()


@dataclass(frozen=True)
class BootloaderConfig:
    """The backend (built in, or from the ``fwagent.bootloaders`` entry point group) and its options,
    as the keyword arguments it declares (bootloader_bridge/options.py)."""

    type: str
    cmdline: Path = Path("/proc/cmdline")      # every backend's: where the booted slot is read
    reboot: tuple[str, ...] | None = ("systemctl", "reboot")   # None: "simulate"
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def simulate_reboot(self) -> bool:
        return self.reboot is None


@dataclass(frozen=True)
class HealthConfig:
    commands: tuple[tuple[str, ...], ...] = ()
    timeout: float = 120.0


@dataclass(frozen=True)
class DownloadConfig:
    connect_timeout: float = 10.0
    stall_timeout: float = 30.0     # fewer than stall_bytes in stall_timeout seconds is a stall
    stall_bytes: int = 1024
    max_attempts: int = 10
    max_time: float = 3600.0        # seconds for one download, waits included
    rate_limit: int = 0             # bytes per second; 0: no limit
    ca_file: Path | None = None     # CA bundle; default: the system's
    client_cert: Path | None = None
    client_key: Path | None = None
    proxy: str | None = None        # default: the usual environment variables
    hosts: tuple[str, ...] = ()     # hosts besides the server's that a server's artifact links may name


@dataclass(frozen=True)
class ServerConfig:
    """A hawkBit DDI server (hawkBit, goosebit)."""

    url: str
    tenant: str = "DEFAULT"
    controller_id: str = ""                    # default: [device].id
    target_token: str | None = None
    gateway_token: str | None = None
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    poll_min: float = 30.0                     # local bounds around the server's sleep
    poll_max: float = 24 * 3600.0
    poll_default: float = 300.0                # when the server suggests none
    startup_spread: float = 300.0              # first poll within this many seconds of a start
    timeout: float = 30.0                      # seconds for one request's answer
    progress_interval: float = 5.0             # seconds between two progress feedbacks of an action
    max_answer: int = 1 << 20                  # bytes of one JSON answer; a longer one is refused


THING_PARITY = ("none", "even", "odd")


@dataclass(frozen=True)
class ThingConfig:
    """A microcontroller on a serial line: how to reach its bootloader and read its version.
    What is particular to its protocol (bootloader_bridge/things/registry.py) is in ``options``,
    as the protocol declares it."""

    name: str
    port: str                                  # a pyserial URL: /dev/ttyUSB0, socket://..., rfc2217://...
    protocol: str                              # stm32 | mcuboot-smp
    baud: int = 115200
    parity: str = "none"                       # read from agent.toml: the protocol's default (stm32: even)
    reset: str | tuple[str, ...] = "none"      # none | dtr-rts | gpio:<chip>:<reset>[,<boot>] | a command
    version_command: tuple[str, ...] | None = None   # prints the running version (stm32 has no other way)
    rollback: bool | None = None               # boots a new image on trial, can go back; None: by protocol
    options: dict[str, Any] = field(default_factory=dict)   # the protocol's own: address, mcuboot_mode, ...

    @property
    def rolls_back(self) -> bool:
        """Whether it can go back to its old image: flashed before the Things that cannot."""
        if self.rollback is not None:
            return self.rollback
        from bootloader_bridge.things.registry import protocol

        declared = protocol(self.protocol)
        return declared.rolls_back(declared.settings(self.options))


@dataclass(frozen=True)
class Config:
    device: DeviceConfig
    trust: TrustConfig
    bootloader: BootloaderConfig
    slots: dict[str, dict[str, Path]]          # class -> {"A": device, "B": device}
    min_image_sizes: dict[str, int] = field(default_factory=dict)   # class -> bytes; a smaller image is refused
    health: HealthConfig = field(default_factory=HealthConfig)
    download: DownloadConfig = field(default_factory=DownloadConfig)
    server: ServerConfig | None = None
    mqtt: MqttConfig | None = None
    things: dict[str, ThingConfig] = field(default_factory=dict)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    path: Path | None = None


def config_path(explicit: Path | None = None) -> Path:
    if explicit is not None:
        return explicit
    env = os.environ.get("FWAGENT_CONFIG")
    return Path(env) if env else DEFAULT_PATH


def load_config(path: Path) -> Config:
    raw = read_at_most(Path(path), MAX_CONFIG + 1, "configuration")
    if len(raw) > MAX_CONFIG:
        raise ConfigError(f"{path}: more than {MAX_CONFIG} bytes: not a configuration file")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(data, Path(path).resolve().parent, Path(path))


class _Table:
    """One TOML table being read: every key taken is remembered, the rest are unknown."""

    def __init__(self, data: Any, name: str, base: Path) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"[{name}] must be a table")
        self.data, self.name, self.base, self.taken = data, name, base, set()

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None, *,
            required: bool = False) -> Any:
        self.taken.add(key)
        if key not in self.data:
            if required:
                raise ConfigError(f"[{self.name}].{key} is required")
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            names = " or ".join(k.__name__ for k in kinds)
            raise ConfigError(f"[{self.name}].{key} must be {names}, got {type(value).__name__}")
        return value

    def number(self, key: str, default: float, low: float, high: float) -> float:
        """A finite number (int or float) from ``low`` to ``high``: nan compares false and an
        infinity is out of range, so both are refused with the key named."""
        value = self.get(key, (int, float), default)
        if not low <= value <= high:
            raise ConfigError(f"[{self.name}].{key} must be a number from {low:.12g} to {high:.12g}, got {value!r}")
        return float(value)

    def path(self, key: str, default: Path | None = None, *, required: bool = False) -> Path:
        value = self.get(key, str, None, required=required)
        if value is None:
            assert default is not None
            return default
        if not value:
            raise ConfigError(f"[{self.name}].{key} must not be empty")
        return self.base / value

    def option(self, option: Option, owner: str) -> Any:
        """The value of an option a plug-in declares: of its kind, within its bounds, one of its
        choices, passing its check; its default when absent."""
        if option.key not in self.data:
            self.taken.add(option.key)
            return Path(option.default) if option.kind == "path" and option.default is not None else option.default
        if option.kind == "path":
            value: Any = self.path(option.key)
        elif option.kind == "number":
            value = self.number(option.key, 0.0, option.low, option.high)
        else:
            value = self.get(option.key, {"str": str, "int": int, "bool": bool, "command": list}[option.kind])
        if option.kind == "command":
            if not value or not all(isinstance(a, str) for a in value):
                raise ConfigError(f"[{self.name}].{option.key} must be a command (a list of strings)")
            value = tuple(value)
        problem = option.problem(value, owner)
        if problem:
            raise ConfigError(f"[{self.name}].{option.key} {problem}")
        return value

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.taken)
        if unknown:
            raise ConfigError(f"[{self.name}].{unknown[0]} is not a known key")


def parse_config(data: dict[str, Any], base: Path, path: Path | None = None) -> Config:
    top = _Table(data, "top level", base)
    device = _device(_Table(top.get("device", dict, required=True), "device", base))
    trust = _trust(_Table(top.get("trust", dict, required=True), "trust", base))
    bootloader = _bootloader(_Table(top.get("bootloader", dict, required=True), "bootloader", base))
    slots, min_image_sizes = _slots(top.get("slots", dict, required=True), base)
    health = _health(_Table(top.get("health", dict, {}), "health", base))
    download = parse_download(_Table(top.get("download", dict, {}), "download", base))
    server = top.get("server", dict)
    server_config = _server(_Table(server, "server", base), device.id) if server is not None else None
    mqtt = top.get("mqtt", dict)
    mqtt_config = _mqtt(_Table(mqtt, "mqtt", base), device.id) if mqtt is not None else None
    things = _things(top.get("things", dict, {}), base)
    policy = _policy(_Table(top.get("policy", dict, {}), "policy", base))
    top.done()
    return Config(device=device, trust=trust, bootloader=bootloader, slots=slots,
                  min_image_sizes=min_image_sizes, health=health, download=download, server=server_config,
                  mqtt=mqtt_config, things=things, policy=policy, path=path)


def _device(table: _Table) -> DeviceConfig:
    device_id = table.get("id", str, required=True)
    if not device_id or not device_id.isprintable() or "/" in device_id:
        raise ConfigError("[device].id must be a printable name without '/'")
    vendor = _identity(table, "vendor_id", "vendor_domain", None)
    klass = _identity(table, "class_id", "class_name", vendor)
    state_dir = table.path("state_dir", Path("/var/lib/fwagent"))
    runtime_dir = table.path("runtime_dir", Path("/run/fwagent"))
    board, revision = table.get("hardware_board", str), table.get("hardware_revision", str)
    attributes = table.get("attributes", dict, {})
    for key, value in attributes.items():
        if not isinstance(value, str) or not 1 <= len(key) <= 128 or len(value) > 128:
            raise ConfigError(f"[device.attributes].{key} must be a string; names and values up to 128 characters")
    table.done()
    return DeviceConfig(id=device_id, vendor_id=vendor, class_id=klass, state_dir=state_dir,
                        runtime_dir=runtime_dir, hardware_board=board, hardware_revision=revision,
                        attributes=dict(attributes))


def _identity(table: _Table, id_key: str, name_key: str, vendor: uuid.UUID | None) -> uuid.UUID:
    given_id = table.get(id_key, str)
    given_name = table.get(name_key, str)
    if (given_id is None) == (given_name is None):
        raise ConfigError(f"[device] needs exactly one of {id_key} and {name_key}")
    if given_id is not None:
        return parse_uuid(given_id, f"[device].{id_key}")
    return vendor_from_domain(given_name) if vendor is None else class_from_name(vendor, given_name)


def _trust(table: _Table) -> TrustConfig:
    keys = _paths(table, "keys", required=True)
    hmac_keys = _paths(table, "hmac_keys", required=False)
    if not keys and not hmac_keys:
        raise ConfigError("[trust].keys must name at least one public key")
    table.done()
    return TrustConfig(keys=keys, hmac_keys=hmac_keys)


def _paths(table: _Table, key: str, required: bool) -> tuple[Path, ...]:
    values = table.get(key, list, [], required=required)
    if not all(isinstance(v, str) and v for v in values):
        raise ConfigError(f"[{table.name}].{key} must be a list of file paths")
    return tuple(table.base / v for v in values)


def _bootloader(table: _Table) -> BootloaderConfig:
    """The general keys (type, cmdline, reboot), then the options the backend declares; a key
    the backend declares as well as the general ones (the file backend's cmdline) is read once."""
    kind = table.get("type", str, required=True)
    if kind not in registry.BUILTIN and kind not in registry.names():
        raise ConfigError(f"[bootloader].type {kind!r} is not one of {', '.join(registry.names())}")
    backend = registry.backend_class(kind)
    defaults = BootloaderConfig(type=kind)
    reboot_value = table.get("reboot", (list, str), list(defaults.reboot or ()))
    if reboot_value == "simulate":
        if not callable(getattr(backend, "boot", None)):
            raise ConfigError('[bootloader].reboot = "simulate" needs type = "file" (a backend that plays '
                              f"the power-on, boot()), not {kind!r}")
        reboot: tuple[str, ...] | None = None
    elif isinstance(reboot_value, list) and reboot_value and all(isinstance(a, str) for a in reboot_value):
        reboot = tuple(reboot_value)
    else:
        raise ConfigError('[bootloader].reboot must be a command (list of strings) or "simulate"')
    values = {"cmdline": table.path("cmdline", defaults.cmdline)}
    options = _options(table, declared(backend), f"type {kind}", values)
    _foreign(table, kind, lambda: {name: declared(registry.backend_class(name)) for name in registry.BUILTIN},
             "type")
    table.done()
    return BootloaderConfig(type=kind, cmdline=values["cmdline"], reboot=reboot, options=options)


def _options(table: _Table, options: tuple[Option, ...], owner: str, values: dict[str, Any]) -> dict[str, Any]:
    """A plug-in's declared options as its keyword arguments; ``values`` holds the keys read
    already, by key, and gains the others."""
    for option in options:
        if option.key not in values:
            values[option.key] = table.option(option, owner)
    return {option.keyword: values[option.key] for option in options}


def _foreign(table: _Table, chosen: str, others: Callable[[], dict[str, tuple[Option, ...]]], what: str) -> None:
    """A key the chosen backend or protocol does not have, but a built-in other does, is named with
    that one (the others are imported only then)."""
    unknown = sorted(set(table.data) - table.taken)
    declarations = others() if unknown else {}
    for key in unknown:
        owners = [name for name, options in declarations.items()
                  if name != chosen and key in {o.key for o in options}]
        if owners:
            raise ConfigError(f"[{table.name}].{key} {table.data[key]!r}: for {what} {' or '.join(owners)}, "
                              f"not {chosen}")


def _slots(data: dict[str, Any], base: Path) -> tuple[dict[str, dict[str, Path]], dict[str, int]]:
    """Each class's A and B devices, and the least bytes an image of the class may have."""
    if not data:
        raise ConfigError("[slots] must define at least one slot class, e.g. [slots.rootfs.A]")
    slots: dict[str, dict[str, Path]] = {}
    min_sizes: dict[str, int] = {}
    for slot_class, section in data.items():
        if not isinstance(section, dict):
            raise ConfigError(f"[slots.{slot_class}] must be a table with A and B")
        names = sorted(key for key, value in section.items() if key in SLOTS or isinstance(value, dict))
        if names != list(SLOTS):
            raise ConfigError(f"[slots.{slot_class}] must have exactly the slots A and B, has "
                              f"{', '.join(names) or 'none'}")
        pair = _Table({k: v for k, v in section.items() if k not in names}, f"slots.{slot_class}", base)
        min_sizes[slot_class] = pair.get("min_size", int, 1)
        if min_sizes[slot_class] < 1:
            raise ConfigError(f"[slots.{slot_class}].min_size must be a positive number of bytes")
        pair.done()
        slots[slot_class] = {}
        for name in SLOTS:
            table = _Table(section[name], f"slots.{slot_class}.{name}", base)
            slots[slot_class][name] = table.path("device", required=True)
            table.done()
    return slots, min_sizes


def _health(table: _Table) -> HealthConfig:
    commands = table.get("commands", list, [])
    if not all(isinstance(c, list) and c and all(isinstance(a, str) for a in c) for c in commands):
        raise ConfigError("[health].commands must be a list of commands (each a list of strings)")
    timeout = table.number("timeout", 120, SHORTEST, DAY)
    table.done()
    return HealthConfig(commands=tuple(tuple(c) for c in commands), timeout=timeout)


def parse_download(table: _Table) -> DownloadConfig:
    d = DownloadConfig()
    numbers = {key: table.number(key, getattr(d, key), SHORTEST, high)
               for key, high in (("connect_timeout", HOUR), ("stall_timeout", DAY), ("max_time", 7 * DAY))}
    integers = {key: table.get(key, int, getattr(d, key)) for key in ("stall_bytes", "max_attempts", "rate_limit")}
    if integers["stall_bytes"] < 1 or integers["max_attempts"] < 1 or integers["rate_limit"] < 0:
        raise ConfigError("[download].stall_bytes and max_attempts must be at least 1, rate_limit not negative")
    paths = {key: (table.path(key) if table.get(key, str) is not None else None)
             for key in ("ca_file", "client_cert", "client_key")}
    if (paths["client_cert"] is None) != (paths["client_key"] is None):
        raise ConfigError("[download].client_cert and client_key go together")
    proxy = table.get("proxy", str)
    hosts = table.get("hosts", list, [])
    for host in hosts:
        if not isinstance(host, str) or not HOST.fullmatch(host):
            raise ConfigError(f"[download].hosts: {host!r} is not a host name or host:port")
    table.done()
    return DownloadConfig(**numbers, **integers, **paths, proxy=proxy,
                          hosts=tuple(h.lower() for h in hosts))


def _policy(table: _Table) -> PolicyConfig:
    approve = table.get("approve", (list, str), [])
    if isinstance(approve, str):
        if approve != "manual":
            raise ConfigError(f"[policy].approve must be \"manual\" or a list of commands, got {approve!r}")
    elif not all(isinstance(c, list) and c and all(isinstance(a, str) and a for a in c) for c in approve):
        raise ConfigError("[policy].approve must be a list of commands (each a list of strings), or \"manual\"")
    windows = parse_windows(table.get("install_windows", list, []))
    when = table.get("when", str, "now")
    if when not in ("now", "online"):
        raise ConfigError(f"[policy].when must be \"now\" or \"online\", got {when!r}")
    reboot = table.get("reboot", str, "immediate")
    if reboot not in ("immediate", "window", "approve"):
        raise ConfigError(f"[policy].reboot must be \"immediate\", \"window\" or \"approve\", got {reboot!r}")
    if reboot == "window" and not windows:
        raise ConfigError("[policy].reboot = \"window\" needs [policy].install_windows")
    if reboot == "approve" and not approve:
        raise ConfigError("[policy].reboot = \"approve\" needs [policy].approve (commands, or \"manual\")")
    retries = table.get("retries", int, 1)
    if not 1 <= retries <= 5:
        raise ConfigError(f"[policy].retries must be from 1 to 5 (1: no retry), got {retries}")
    delay = table.number("retry_delay", 30, 1, HOUR)
    table.done()
    return PolicyConfig(approve=approve if isinstance(approve, str) else tuple(tuple(c) for c in approve),
                        install_windows=windows, when=when, reboot=reboot, retries=retries, retry_delay=delay)


def _server(table: _Table, device_id: str) -> ServerConfig:
    url = table.get("url", str, required=True)
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"[server].url {url!r} must be an http:// or https:// URL")
    d = ServerConfig(url=url)
    numbers = {key: table.number(key, getattr(d, key), low, high)
               for key, low, high in (("poll_min", SHORTEST, 30 * DAY), ("poll_max", SHORTEST, 30 * DAY),
                                      ("poll_default", SHORTEST, 30 * DAY), ("timeout", SHORTEST, HOUR),
                                      ("progress_interval", 0, DAY))}
    # A fleet powered up together polls spread over one interval, as it does from then on.
    numbers["startup_spread"] = table.number("startup_spread", numbers["poll_default"], 0, 30 * DAY)
    if not numbers["poll_min"] <= numbers["poll_default"] <= numbers["poll_max"]:
        raise ConfigError("[server] needs poll_min <= poll_default <= poll_max")
    target, gateway = table.get("target_token", str), table.get("gateway_token", str)
    if target and gateway:
        raise ConfigError("[server] takes target_token or gateway_token, not both")
    paths = {key: (table.path(key) if table.get(key, str) is not None else None)
             for key in ("ca_file", "client_cert", "client_key")}
    if (paths["client_cert"] is None) != (paths["client_key"] is None):
        raise ConfigError("[server].client_cert and client_key go together")
    max_answer = table.get("max_answer", int, d.max_answer)
    if not 4096 <= max_answer <= 64 << 20:
        raise ConfigError("[server].max_answer must be between 4096 and 67108864 bytes")
    controller = table.get("controller_id", str, device_id)
    if not controller or "/" in controller:
        raise ConfigError("[server].controller_id must be a name without '/'")
    config = ServerConfig(url=url, tenant=table.get("tenant", str, d.tenant), controller_id=controller,
                          target_token=target, gateway_token=gateway, **paths, **numbers, max_answer=max_answer)
    table.done()
    return config


def _mqtt(table: _Table, device_id: str) -> MqttConfig:
    url = table.get("url", str, required=True)
    if not url.startswith(("mqtt://", "mqtts://")):
        raise ConfigError(f"[mqtt].url {url!r} must be an mqtt:// or mqtts:// URL")
    d = MqttConfig(url=url, device_id=device_id)
    spread = table.number("spread", d.spread, 0, DAY)
    interval = table.number("progress_interval", d.progress_interval, 0, DAY)
    keepalive = table.get("keepalive", int, d.keepalive)
    if not 5 <= keepalive <= 65535:
        raise ConfigError("[mqtt].keepalive must be from 5 to 65535 seconds")
    password = table.get("password", str)
    password_file = table.path("password_file") if table.get("password_file", str) is not None else None
    if password is not None and password_file is not None:
        raise ConfigError("[mqtt] takes password or password_file, not both")
    if password_file is not None:
        try:
            password = password_file.read_bytes().decode("utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"[mqtt].password_file {password_file}: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"[mqtt].password_file {password_file}: not UTF-8 text (byte {exc.start})") from None
    ca = table.path("ca_file") if table.get("ca_file", str) is not None else None
    config = MqttConfig(url=url, device_id=device_id, wakeup_topic=table.get("wakeup_topic", str),
                        broadcast_topic=table.get("broadcast_topic", str), spread=spread,
                        username=table.get("username", str), password=password,
                        ca_file=str(ca) if ca else None, keepalive=keepalive, progress_interval=interval)
    table.done()
    return config


def _things(data: dict[str, Any], base: Path) -> dict[str, ThingConfig]:
    """Each Thing: the keys every protocol has, then its protocol's own (bootloader_bridge/things/)."""
    if not data:
        return {}
    from bootloader_bridge.things import registry as thing_protocols   # only here: most devices have no Things

    things = {}
    for name, section in data.items():
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name):
            raise ConfigError(f"[things.{name}]: a Thing's name is letters, digits, '.', '_' or '-'")
        table = _Table(section, f"things.{name}", base)
        kind = table.get("protocol", str, required=True)
        if kind not in thing_protocols.BUILTIN:
            raise ConfigError(f"[things.{name}].protocol {kind!r} is not one of {', '.join(thing_protocols.BUILTIN)}")
        protocol = thing_protocols.protocol(kind)
        port = table.get("port", str, required=True)
        if not port:
            raise ConfigError(f"[things.{name}].port must not be empty")
        parity = table.get("parity", str, protocol.parity)
        if parity not in THING_PARITY:
            raise ConfigError(f"[things.{name}].parity {parity!r} is not one of {', '.join(THING_PARITY)}")
        baud = table.get("baud", int, 115200)
        if not 1200 <= baud <= 4_000_000:
            raise ConfigError(f"[things.{name}].baud {baud} is out of range")
        reset = table.get("reset", (str, list), "none")
        if isinstance(reset, list):
            if not reset or not all(isinstance(a, str) for a in reset):
                raise ConfigError(f"[things.{name}].reset as a command must be a list of strings")
            reset = tuple(reset)
        elif reset.startswith("gpio:"):
            from agent.errors import ThingError
            from bootloader_bridge.things.reset import parse_reset   # only here: most commands have no Things

            try:
                parse_reset(reset, name)
            except ThingError as err:      # "<name>: reset ..." becomes "[things.<name>].reset ..."
                raise ConfigError(f"[things.{name}].{err.detail.removeprefix(f'{name}: ')}") from None
        elif reset not in ("none", "dtr-rts"):
            raise ConfigError(f"[things.{name}].reset {reset!r}: none, dtr-rts, gpio:<chip>:<reset>[,<boot>] "
                              "or a command (a list of strings)")
        version = table.get("version_command", list)
        if version is not None and (not version or not all(isinstance(a, str) for a in version)):
            raise ConfigError(f"[things.{name}].version_command must be a command (a list of strings)")
        rollback = table.get("rollback", bool)
        if rollback and protocol.no_rollback:
            raise ConfigError(f"[things.{name}].rollback: {protocol.no_rollback}")
        options = _options(table, protocol.options, f"protocol {kind}", {})
        _foreign(table, kind, lambda: {other: thing_protocols.protocol(other).options
                                       for other in thing_protocols.BUILTIN}, "protocol")
        things[name] = ThingConfig(name=name, port=port, protocol=kind, baud=baud, parity=parity, reset=reset,
                                   version_command=tuple(version) if version else None, rollback=rollback,
                                   options=options)
        table.done()
    return things
