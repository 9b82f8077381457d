"""``fwagent demo``: the main job end to end, on generated data, on one machine.

1. the device maker makes a signing key, a root file system image and a
   SPEC.toml, builds and signs the manifest and packs the bundle;
2. the device verifies the bundle (manifest, then every payload);
3. a tampered copy is refused;
4. the device installs the bundle into its inactive slot, with the file
   bootloader playing the reboot, checks health and commits.
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
from pathlib import Path

from agent.bundle.reader import verify_bundle
from agent.bundle.writer import create_bundle
from agent.cli import EXIT_OK
from agent.config import load_config
from agent.errors import FwagentError
from agent.files import write_output
from agent.install.compose import build_installer
from agent.manifest import cose
from agent.manifest.describe import manifest_view, render_actions, render_manifest
from agent.manifest.processor import DeviceIdentity
from agent.manifest.sign import add_signature
from agent.manifest.spec import build_manifest, load_spec, unsigned_envelope
from agent.manifest.verify import Trust

IMAGE_SIZE = 4 << 20
SLOT_SIZE = 8 << 20
VERSION = "1.1.0"

SPEC = f"""\
sequence = 2
vendor_domain = "example.com"
class_name = "demo-gateway-rev1"
description = "Demo gateway release {VERSION}"

[[component]]
id = ["rootfs"]
file = "rootfs.img"
uri = "#rootfs.img"
version = "{VERSION}"
"""

AGENT_TOML = """\
[device]
id = "demo-gw-0001"
vendor_domain = "example.com"
class_name = "demo-gateway-rev1"
state_dir = "device/state"

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
"""


def run(args: argparse.Namespace) -> int:
    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
        code = _demo(args.dir.resolve())
        print(f"\nfiles kept in {args.dir}")
        return code
    with tempfile.TemporaryDirectory(prefix="fwagent-demo-") as tmp:
        return _demo(Path(tmp))


def _step(text: str) -> None:
    print(f"\n== {text}")


def _demo(work: Path) -> int:
    print(f"working in {work}")
    _step("device maker: signing key")
    (work / "keys").mkdir(exist_ok=True)
    key = cose.generate_private_key("es256")
    write_output(work / "keys/release.pem", cose.private_key_pem(key), mode=0o600)
    write_output(work / "keys/release.pub.pem", cose.public_key_pem(key.public_key()))
    print(f"keys/release.pem (P-256), key id {cose.key_id(key.public_key()).hex()}")

    _step("device maker: image, SPEC.toml, signed manifest, bundle")
    image = work / "rootfs.img"
    image.write_bytes(random.Random(1).randbytes(IMAGE_SIZE))
    (work / "spec.toml").write_text(SPEC)
    signed = add_signature(unsigned_envelope(build_manifest(load_spec(work / "spec.toml"))), key)
    write_output(work / "update.suit", signed)
    bundle = work / f"update-{VERSION}.fwb"
    info = create_bundle(bundle, signed, [("rootfs.img", image)], VERSION, [("demo-gateway", "rev1")])
    print(f"rootfs.img {IMAGE_SIZE >> 20} MiB; update.suit {len(signed)} bytes; "
          f"{bundle.name} {info.size} bytes ({info.format} cpio: "
          + ", ".join(m.name for m in info.members) + ")")

    _step("device: verify the bundle")
    config_path = work / "agent.toml"
    config_path.write_text(AGENT_TOML)
    config = load_config(config_path)
    trust = Trust((cose.load_trust_anchor(work / "keys/release.pub.pem"),))
    device = DeviceIdentity((config.device.vendor_id.bytes,), (config.device.class_id.bytes,))
    report = verify_bundle(bundle, trust, device=device)
    print("\n".join(render_manifest(manifest_view(report.result.manifest))))
    print("\n".join(render_actions(report.result)))
    print(f"payload rootfs.img: {report.payloads[0].size} bytes, SHA-256 matches the manifest")

    _step("device: a tampered copy is refused")
    tampered = work / "tampered.fwb"
    shutil.copyfile(bundle, tampered)
    with open(tampered, "r+b") as stream:
        stream.seek(-4096, 2)
        byte = stream.read(1)
        stream.seek(-4096, 2)
        stream.write(bytes([byte[0] ^ 0x01]))
    try:
        verify_bundle(tampered, trust, device=device)
        print("accepted (unexpected)")
    except FwagentError as err:
        print(f"rejected: {err.one_line()}")

    _step("device: install into the inactive slot (the file bootloader plays the reboot)")
    _fresh_device(work / "device")
    installer = build_installer(config, log=lambda message: print(f"  {message}"))
    print(f"booted slot before: {installer.status()['booted']}")
    outcome = installer.install(str(bundle))
    status = installer.status()
    print(f"outcome: {outcome.result} ({outcome.state}); booted slot now: {status['booted']}, "
          f"version {status['slots'][status['booted']]['version']}")
    return EXIT_OK if outcome.result == "success" else 1


def _fresh_device(directory: Path) -> None:
    """Two empty slots, slot A booted: a device fresh from the factory."""
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    for name in ("rootfs-a.img", "rootfs-b.img"):
        with open(directory / name, "wb") as stream:
            stream.truncate(SLOT_SIZE)
    (directory / "cmdline").write_text("root=PARTLABEL=rootfs_A ro rootwait fwagent.slot=A\n")
