"""``fwagent check``: the configuration as the agent reads it, and what a first update needs,
checked one by one on the device.

The checks: the trust keys load; the kernel command line names the booted slot; every slot
device is there and large enough (for the images of a bundle, when one is given), and the
slots an update writes are not mounted; the bootloader's environment reads as its backend
expects; the server answers a poll; the broker accepts a connection; each Thing's port opens.
Each is one line, ``ok`` or ``FAIL`` with the reason and its code. Nothing is written: the
poll registers the device with the server, as the service's first poll would, and a Thing is
only opened, never reset or talked to.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.config import Config, ThingConfig
from agent.errors import FwagentError

SECRETS = ("target_token", "gateway_token", "password")
BROKER_TIMEOUT = 10.0     # seconds for the broker to accept the connection
MOUNTINFO = Path("/proc/self/mountinfo")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


# --- the effective configuration (pure) ------------------------------------------------------


def effective(config: Config) -> dict[str, Any]:
    """The configuration as loaded: every default filled in, paths resolved, secrets hidden."""
    return {field.name: _plain(getattr(config, field.name), field.name)
            for field in dataclasses.fields(config) if field.name != "path"}


def _plain(value: Any, name: str = "") -> Any:
    if name in SECRETS and value is not None:
        return "(set)"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: _plain(getattr(value, field.name), field.name) for field in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(key): _plain(item, str(key)) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, (Path, uuid.UUID)):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    return value


def render_effective(view: dict[str, Any]) -> list[str]:
    """TOML-like lines of ``effective()``: one section per table, one key per line."""
    lines: list[str] = []

    def section(title: str, table: dict[str, Any]) -> None:
        lines.append(f"[{title}]")
        nested = []
        for key, value in table.items():
            if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
                nested.append((key, value))
            else:
                lines.append(f"{key} = {_literal(value)}")
        for key, value in nested:
            for sub, table_value in value.items():
                section(f"{title}.{key}.{sub}", table_value)

    for title, table in view.items():
        if table is None or table == {}:
            lines.append(f"[{title}]  # not configured")
        elif isinstance(table, dict) and all(isinstance(v, dict) for v in table.values()):
            for name, sub in table.items():
                section(f"{title}.{name}", sub)
        else:
            section(title, table)
    return lines


def _literal(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_literal(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key} = {_literal(item)}" for key, item in value.items()) + "}"
    return str(value)


def mounted(mountinfo: str) -> dict[int, str]:
    """Device number -> mount point, from the text of /proc/self/mountinfo (pure)."""
    found: dict[int, str] = {}
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) < 5 or ":" not in fields[2]:
            continue
        major, _, minor = fields[2].partition(":")
        if major.isdigit() and minor.isdigit():
            found.setdefault(os.makedev(int(major), int(minor)), fields[4].replace("\\040", " "))
    return found


# --- the checks ---------------------------------------------------------------------------------


def run_checks(config: Config, *, bundle: Path | None = None) -> list[Check]:
    booted: list[str | None] = []          # the command line's slot, once its check has read it
    checks = [_check("trust", lambda: _trust(config)),
              _check("kernel command line", lambda: _cmdline(config, booted))]
    checks += _slots(config, booted[0] if booted else None, bundle)
    checks.append(_check("bootloader", lambda: _bootloader(config)))
    if config.server is not None:
        checks.append(_check("server", lambda: _server(config)))
    if config.mqtt is not None:
        checks.append(_check("broker", lambda: _broker(config)))
    for thing in config.things.values():
        checks.append(_check(f"thing {thing.name}", lambda thing=thing: _thing_port(thing)))
    return checks


def _check(name: str, run: Callable[[], str]) -> Check:
    try:
        return Check(name, True, run())
    except FwagentError as err:
        return Check(name, False, f"{err.detail} ({err.code})")
    except OSError as err:
        where = f": {err.filename}" if err.filename else ""
        return Check(name, False, f"{err.strerror or err}{where}")


def _trust(config: Config) -> str:
    from agent.manifest import cose

    keys = [cose.load_trust_anchor(path) for path in config.trust.keys]
    macs = [cose.load_mac_key(path) for path in config.trust.hmac_keys]
    described = [f"{key.name} ({key.kind}, key id {key.kid.hex()[:16]})" for key in keys]
    described += [f"{mac.name} (HMAC)" for mac in macs]
    return f"{len(described)} key(s): {', '.join(described)}"


def _cmdline(config: Config, booted: list[str | None]) -> str:
    from bootloader_bridge.cmdline import PARAMETERS, read_booted_slot

    slot = read_booted_slot(config.bootloader.cmdline)
    booted.append(slot)
    if slot is None:
        raise _CheckFailed(f"{config.bootloader.cmdline} names no slot ({' or '.join(p + '=' for p in PARAMETERS)}): "
                           "the boot script must pass the booted slot", code="slot-unknown")
    return f"booted slot {slot} ({config.bootloader.cmdline})"


def _slots(config: Config, booted: str | None, bundle: Path | None) -> Iterator[Check]:
    from agent.install.slots import OTHER

    images = _bundle_images(bundle) if bundle is not None else None
    target = OTHER.get(booted) if booted else None
    devices = mounted(_read(MOUNTINFO))
    for slot_class, pair in config.slots.items():
        yield _check(f"slots.{slot_class}", lambda c=slot_class, p=pair: _slot_class(config, c, p, target, devices))
    if images is not None:
        yield _check(f"bundle {bundle}", lambda: _fits(config, images, target))


def _slot_class(config: Config, slot_class: str, pair: dict[str, Path], target: str | None,
                devices: dict[int, str]) -> str:
    from agent.install.slots import device_identity, size_text, slot_size

    parts = []
    least = config.min_image_sizes.get(slot_class, 1)
    for name, device in sorted(pair.items()):
        kind, number = device_identity(device)
        size = slot_size(device)
        if size < least:
            raise _CheckFailed(f"{name} {device} holds {size_text(size)}, less than the {size_text(least)} an "
                               f"image must have ([slots.{slot_class}].min_size)", code="slot-too-small")
        if name == target and kind == 0 and number in devices:
            raise _CheckFailed(f"{name} {device} is where the next update goes, but it is mounted at "
                               f"{devices[number]}", code="slot-booted")
        parts.append(f"{name} {device} ({size_text(size)})")
    where = f"; an update writes {target}" if target else ""
    return ", ".join(parts) + where


def _bundle_images(bundle: Path) -> list[tuple[str, int | None]]:
    from agent.bundle.reader import bundle_info

    return [(payload["component"], payload["size"]) for payload in bundle_info(bundle)["payloads"]]


def _fits(config: Config, images: list[tuple[str, int | None]], target: str | None) -> str:
    from agent.install.slots import size_text, slot_size

    told = []
    for component, size in images:
        name = component.strip("[]").replace("'", "").split(", ")
        if name[0] == "thing":
            if len(name) != 2 or name[1] not in config.things:
                raise _CheckFailed(f"the bundle updates Thing {component}, which [things] does not configure",
                                   code="unknown-thing")
            told.append(f"{component} {size_text(size or 0)}")
            continue
        pair = config.slots.get(name[0]) if len(name) == 1 else None
        if pair is None:
            raise _CheckFailed(f"the bundle writes {component}, which [slots] does not configure",
                               code="unknown-slot")
        capacity = min(slot_size(device) for slot, device in pair.items() if target in (None, slot))
        if size is not None and size > capacity:
            raise _CheckFailed(f"{component}: the image has {size_text(size)}, the slot holds {size_text(capacity)}",
                               code="slot-too-small")
        told.append(f"{component} {size_text(size or 0)} into {size_text(capacity)}")
    return "fits: " + ", ".join(told)


def _bootloader(config: Config) -> str:
    from agent.install.compose import make_bootloader

    bootloader = make_bootloader(config)
    # A backend may check its environment's own format beyond what reading it needs.
    environment = getattr(bootloader, "check_environment", None)
    where = f"; {environment()}" if environment is not None else ""
    primary = bootloader.get_primary()
    states = ", ".join(f"{slot} {'good' if bootloader.get_state(slot) else 'bad'}" for slot in ("A", "B"))
    return (f"{config.bootloader.type}: primary {primary or 'none'}, {states}, {len(bootloader.variables())} "
            f"variables{where}")


def _server(config: Config) -> str:
    from agent.daemon.compose import daemon_link
    from agent.ddi.client import DdiClient

    server = config.server
    assert server is not None
    client = DdiClient(server.url, server.tenant, server.controller_id, link=daemon_link(config),
                       timeout=(config.download.connect_timeout, server.timeout), max_answer=server.max_answer)
    root = client.poll()
    action = "an action waits" if root.deployment or root.cancel else "no action"
    sleep = f"{root.sleep:g} s" if root.sleep is not None else "not given"
    return f"{server.url} answers {server.controller_id!r}: {action}; the server's polling interval {sleep}"


def _broker(config: Config) -> str:
    import threading
    from urllib.parse import urlsplit

    import paho.mqtt.client as mqtt

    settings = config.mqtt
    assert settings is not None
    url = urlsplit(settings.url)
    host, port = url.hostname or "localhost", url.port or (8883 if url.scheme == "mqtts" else 1883)
    # Its own client id: the service's would push the running service off the broker.
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"fwagent-{settings.device_id}-check")
    if settings.username:
        client.username_pw_set(settings.username, settings.password)
    if url.scheme == "mqtts":
        client.tls_set(ca_certs=settings.ca_file)
    answered, reasons = threading.Event(), []
    client.on_connect = lambda _c, _u, _f, reason, _p: (reasons.append(reason), answered.set())
    client.connect(host, port, keepalive=30)
    client.loop_start()
    try:
        if not answered.wait(BROKER_TIMEOUT):
            raise _CheckFailed(f"{settings.url} did not answer the connection within {BROKER_TIMEOUT:g} s",
                               code="mqtt-timeout")
    finally:
        client.disconnect()
        client.loop_stop()
    if getattr(reasons[0], "is_failure", False):
        raise _CheckFailed(f"{settings.url} refused the connection: {reasons[0]}", code="mqtt-refused")
    return f"{settings.url} accepts the connection"


def _thing_port(thing: ThingConfig) -> str:
    from bootloader_bridge.things.link import SerialLink

    with SerialLink(thing.port, baud=thing.baud, parity=thing.parity, name=thing.name):
        pass
    return f"{thing.port} opens ({thing.protocol}, {thing.baud} baud, parity {thing.parity}); not talked to"


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


class _CheckFailed(FwagentError):
    """A check's own finding."""

    code = "check"
