"""``fwagent demo``: the whole over-the-air loop on one machine, on embedded defaults, with no setup.

1. the device maker makes a signing key and a root file system image, writes a
   SPEC.toml, builds and signs the manifest and packs the bundle (2.0.0), and a
   later one (2.0.1) that gets tampered with on its way;
2. the reference DDI server (``agent/demo/ddi_server.py``) starts on loopback, and a
   mosquitto broker when one is installed;
3. the agent's daemon starts against a simulated gateway: file-backed A/B
   slots, the file bootloader playing the reboot; its structured log goes to
   ``daemon.log``; it polls once and reports its attributes (configData);
4. the operator deploys 2.0.0 and wakes the device over MQTT (without a broker:
   the daemon's ``wakeup()``): it checks the signed manifest, streams the
   bundle into the inactive slot, reboots, checks health, commits and reports;
   every status the server receives is shown as it arrives;
5. the operator deploys the tampered 2.0.1: the device refuses it and stays on
   2.0.0;
6. what the server recorded is printed.

Everything lives in a temporary directory, removed at the end, also on an error
or Ctrl-C (``--dir DIR`` keeps the files instead).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

from agent.bundle.writer import create_bundle
from agent.cli.output import EXIT_FAILED, EXIT_OK
from agent.config import Config, load_config
from agent.files import write_output
from agent.install.compose import build_installer
from agent.install.slots import OTHER
from agent.log import Log
from agent.manifest import cose
from agent.manifest.sign import add_signature
from agent.manifest.spec import build_manifest, load_spec, unsigned_envelope

DEVICE_ID = "demo-gw-0001"
IMAGE_SIZE = 2 << 20
SLOT_SIZE = 4 << 20
RATE_LIMIT = 1 << 20         # bytes per second: the bundle streams in for seconds, so its progress can be seen
PROGRESS_EVERY = 1.0         # seconds between two progress feedbacks (the daemon's default: 5)
ACTION_TIMEOUT = 60.0        # seconds for one deployment to close
WAKEUP_GRACE = 5.0           # seconds for the MQTT wake-up to bring a poll before the demo calls wakeup()

SPEC = """\
sequence = {sequence}
vendor_domain = "example.com"
class_name = "demo-gateway-rev1"
description = "Demo gateway release {version}"

[[component]]
id = ["rootfs"]
file = "rootfs-{version}.img"
uri = "#rootfs-{version}.img"
version = "{version}"
"""

AGENT_TOML = f"""\
[device]
id = "{DEVICE_ID}"
vendor_domain = "example.com"
class_name = "demo-gateway-rev1"
state_dir = "device/state"
runtime_dir = "device/run"
hardware_board = "demo-gateway"
hardware_revision = "rev1"

[trust]
keys = ["keys/release.pub.pem"]

[bootloader]
type = "file"
env_file = "device/bootenv.json"
cmdline = "device/cmdline"
reboot = "simulate"

[slots.rootfs.A]
device = "device/rootfs-a.img"
[slots.rootfs.B]
device = "device/rootfs-b.img"

[health]
commands = [["true"]]
timeout = 10

[download]
rate_limit = {RATE_LIMIT}

[server]
url = "{{server}}"
startup_spread = 0
poll_min = 1
progress_interval = {PROGRESS_EVERY}
"""

MQTT_TOML = """
[mqtt]
url = "{broker}"
"""


def run(args: argparse.Namespace) -> int:
    use_mqtt = not getattr(args, "no_mqtt", False)
    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
        code = _demo(args.dir.resolve(), use_mqtt)
        print(f"files kept in {args.dir}")
        return code
    with tempfile.TemporaryDirectory(prefix="fwagent-demo-") as tmp:
        code = _demo(Path(tmp), use_mqtt)
    print(f"removed {tmp}")
    return code


def _step(text: str) -> None:
    print(f"\n== {text}")


def _demo(work: Path, use_mqtt: bool) -> int:
    from agent.demo.ddi_server import DdiServer

    started = time.monotonic()
    print(f"fwagent demo: server, broker and device on this machine; files in {work}")

    _step("device maker: signing key, image, signed bundles")
    (work / "keys").mkdir(exist_ok=True)
    key = cose.generate_private_key("es256")
    write_output(work / "keys/release.pem", cose.private_key_pem(key), mode=0o600)
    write_output(work / "keys/release.pub.pem", cose.public_key_pem(key.public_key()))
    print(f"keys/release.pem (P-256, key id {cose.key_id(key.public_key()).hex()[:16]}...)")
    good = _bundle(work, key, version="2.0.0", sequence=2, seed=1)
    bad = _bundle(work, key, version="2.0.1", sequence=3, seed=2)
    _tamper(bad)
    print(f"{good.name}: signed manifest (sequence 2) + rootfs-2.0.0.img ({IMAGE_SIZE >> 20} MiB)")
    print(f"{bad.name}: signed manifest (sequence 3) + rootfs-2.0.1.img, one payload bit flipped after signing")

    with contextlib.ExitStack() as stack:
        _step("server, broker, device")
        server = stack.enter_context(DdiServer(sleep="00:05:00"))
        print(f"DDI server   {server.url} (tenant {server.tenant}; polls every 5 min unless woken)")
        broker = _start_broker(work, stack) if use_mqtt else None
        if not use_mqtt:
            print("MQTT         off (--no-mqtt): wake-ups call the daemon's wakeup()")
        text = AGENT_TOML.format(server=server.url)
        if broker is not None:
            text += MQTT_TOML.format(broker=broker)
        (work / "agent.toml").write_text(text)
        _fresh_device(work / "device")
        config = load_config(work / "agent.toml")
        device = _Device(config, work / "daemon.log")
        stack.callback(device.stop)
        print(f"device       {DEVICE_ID}: slots A/B in files, slot A booted; its log: daemon.log")
        operator = stack.enter_context(_Operator(broker)) if broker is not None else None
        device.start()
        if not _wait(lambda: server.attributes.get(DEVICE_ID), 10):
            return _gave_up("the device's first poll", work)
        print("server <- first poll and configData: " + _attributes(server.attributes[DEVICE_ID]))
        if operator is not None and not operator.online.wait(10):
            print("the device did not come online on MQTT; wake-ups call the daemon's wakeup()")
            operator = None

        def wake() -> None:
            if operator is not None:
                operator.wakeup(DEVICE_ID)
                print(f"operator -> mqtt fwagent/{DEVICE_ID}/wakeup")
            else:
                device.daemon.wakeup("demo")
                print("operator -> daemon.wakeup(): poll now")

        results = []
        for title, bundle, version in (("deploy 2.0.0", good, "2.0.0"),
                                       ("deploy 2.0.1, tampered with on its way", bad, "2.0.1")):
            _step(f"operator: {title}")
            action = server.create_deployment(DEVICE_ID, [{"part": "os", "name": "demo-gateway", "version": version,
                                                           "artifacts": {bundle.name: bundle.read_bytes()}}])
            print(f"server: action {action.id} created for {DEVICE_ID}")
            wake()
            if not _follow(server, action.id, device):
                return _gave_up(f"action {action.id} to close", work)
            results.append((action.id, version, bundle.name))
        _wait(lambda: server.attributes[DEVICE_ID].get("sw_version") == "2.0.0", 10)
        device.stop()

        _step("what the server recorded")
        for action_id, version, name in results:
            action = server.actions[action_id]
            statuses = server.statuses(action_id)
            print(f"action {action_id} (demo-gateway {version}, {name}): {action.state}, result {action.result}")
            print(textwrap.fill(", ".join(s["execution"] for s in statuses), width=100,
                                initial_indent=f"  {len(statuses)} statuses: ", subsequent_indent="    "))
            print("  last: " + _details(statuses[-1]))
        print("configData: " + _attributes(server.attributes[DEVICE_ID]))
        status = build_installer(config).status()
        booted = status["booted"]
        other = OTHER[booted]
        print(f"device: booted slot {booted}, version {status['slots'][booted]['version']}; "
              f"slot {other} {'bootable' if status['slots'][other]['good'] else 'marked bad'}")
        ok = ([server.actions[a].result for a, _, _ in results] == ["success", "failure"]
              and booted == "B" and status["slots"]["B"]["version"] == "2.0.0")
    print(f"\n{'done' if ok else 'FAILED'} in {time.monotonic() - started:.1f} s")
    return EXIT_OK if ok else EXIT_FAILED


# --- the device maker ---------------------------------------------------------------------


def _bundle(work: Path, key: Any, *, version: str, sequence: int, seed: int) -> Path:
    image = work / f"rootfs-{version}.img"
    image.write_bytes(random.Random(seed).randbytes(IMAGE_SIZE))
    spec = work / f"spec-{version}.toml"
    spec.write_text(SPEC.format(version=version, sequence=sequence))
    signed = add_signature(unsigned_envelope(build_manifest(load_spec(spec))), key)
    bundle = work / f"demo-{version}.fwb"
    create_bundle(bundle, signed, [(image.name, image)], version, [("demo-gateway", "rev1")])
    return bundle


def _tamper(bundle: Path) -> None:
    """Flip one bit near the end of the payload: the signed manifest's digest no longer matches."""
    with open(bundle, "r+b") as stream:
        stream.seek(-4096, 2)
        byte = stream.read(1)
        stream.seek(-4096, 2)
        stream.write(bytes([byte[0] ^ 0x01]))


def _fresh_device(directory: Path) -> None:
    """Two empty slots, slot A booted: a device fresh from the factory."""
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    for name in ("rootfs-a.img", "rootfs-b.img"):
        with open(directory / name, "wb") as stream:
            stream.truncate(SLOT_SIZE)
    (directory / "cmdline").write_text("root=PARTLABEL=rootfs_A ro rootwait fwagent.slot=A\n")


# --- the device -------------------------------------------------------------------------------


class _Device:
    """The daemon in a thread, its structured log in a file."""

    def __init__(self, config: Config, log_path: Path) -> None:
        from agent.daemon.compose import build_daemon

        self.stream = open(log_path, "w", encoding="utf-8")
        self.daemon = build_daemon(config, Log(self.stream))
        self.thread = threading.Thread(target=self.daemon.run, name="fwagent-daemon", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        if self.thread.is_alive():
            self.daemon.stop()
            self.thread.join(30)
        self.stream.close()


# --- the broker and the operator's MQTT client ------------------------------------------------


def _start_broker(work: Path, stack: contextlib.ExitStack) -> str | None:
    """mosquitto on a free loopback port, stopped by ``stack``; None (and why) when there is none."""
    from agent.demo.broker import BrokerError, find_mosquitto, run_mosquitto

    binary = find_mosquitto()
    if binary is None:
        print("MQTT         mosquitto is not installed: running without MQTT; wake-ups call the daemon's wakeup()")
        return None
    try:
        url = stack.enter_context(run_mosquitto(work, binary=binary, timeout=5))
    except BrokerError as err:
        print(f"MQTT         {err}: running without MQTT; wake-ups call the daemon's wakeup()")
        return None
    print(f"MQTT broker  {url} ({binary})")
    return url


class _Operator:
    """The operator's side of MQTT: sees the device come online, publishes wake-ups."""

    def __init__(self, url: str) -> None:
        import paho.mqtt.client as mqtt

        host, port = url.removeprefix("mqtt://").split(":")
        self.online = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"fwagent-demo-{os.getpid()}")
        self.client.on_message = self._on_message
        self.client.on_connect = lambda client, *_: client.subscribe(f"fwagent/{DEVICE_ID}/state", qos=1)
        self.client.connect(host, int(port))
        self.client.loop_start()

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        # The device subscribes to its wake-up topic before it announces "online".
        with contextlib.suppress(ValueError):
            if json.loads(message.payload).get("state") == "online":
                self.online.set()

    def wakeup(self, device: str) -> None:
        self.client.publish(f"fwagent/{device}/wakeup", b"{}", qos=1).wait_for_publish(5)

    def __enter__(self) -> _Operator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.loop_stop()
        self.client.disconnect()


# --- following the server -----------------------------------------------------------------------


def _follow(server: Any, action_id: int, device: _Device) -> bool:
    """Print each status the server records for the action until it closes; False on timeout."""
    start = time.monotonic()
    shown = 0
    nudged = False
    while time.monotonic() - start < ACTION_TIMEOUT:
        closed = server.actions[action_id].state == "closed"
        statuses = server.statuses(action_id)
        for status in statuses[shown:]:
            print(_status_line(status))
        shown = len(statuses)
        if closed:
            print(f"server: action {action_id} closed, {server.actions[action_id].result} "
                  f"({time.monotonic() - start:.1f} s)")
            return True
        if not statuses and not nudged and time.monotonic() - start > WAKEUP_GRACE:
            print("no poll yet: daemon.wakeup()")
            device.daemon.wakeup("demo")
            nudged = True
        time.sleep(0.05)
    return False


def _status_line(status: dict[str, Any]) -> str:
    execution = status["execution"]
    if execution == "retrieved":
        return "server <- retrieved: the device fetched the deployment"
    result = status.get("result", {})
    progress = result.get("progress") or {}
    if execution == "closed":
        label = f"closed {result.get('finished')}"
    elif progress.get("of"):
        label = f"{execution} {progress['cnt'] * 100 // progress['of']}%"
    else:
        label = execution
    return f"server <- {label}: {_details(status)}"


def _details(status: dict[str, Any]) -> str:
    text = "; ".join(d.removeprefix("fwagent: ") for d in status.get("details", [])) or status["execution"]
    return re.sub(r"\b([0-9a-f]{12})[0-9a-f]{52}\b", r"\1...", text)      # SHA-256s, shortened for the screen


def _attributes(attributes: dict[str, str]) -> str:
    return ", ".join(f"{key}={value}" for key, value in sorted(attributes.items()))


def _wait(condition: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


def _gave_up(what: str, work: Path) -> int:
    print(f"\ntimed out waiting for {what}; the end of daemon.log:")
    lines = (work / "daemon.log").read_text(encoding="utf-8", errors="replace").splitlines()
    print("\n".join("  " + line for line in lines[-15:]))
    return EXIT_FAILED
