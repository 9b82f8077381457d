"""A simulated gateway for install tests: slot files, the file bootloader, keys, bundles.

Used by the install and crash tests (and runnable from a subprocess), so it
holds no pytest code.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

from agent.bundle.writer import create_bundle
from agent.config import Config, load_config
from agent.install.compose import build_installer, make_bootloader
from agent.install.installer import Installer
from agent.manifest import cose
from agent.manifest.sign import add_signature
from agent.manifest.spec import build_manifest, parse_spec, unsigned_envelope

SLOT_SIZE = 4 << 20

CONFIG = """\
[device]
id = "gw-test"
vendor_domain = "example.com"
class_name = "gw-test"
runtime_dir = "run"
state_dir = "state"

[trust]
keys = ["release.pub.pem"]

[bootloader]
type = "file"
env_file = "bootenv.json"
cmdline = "cmdline"
reboot = "simulate"

[slots.rootfs.A]
device = "rootfs-a.img"
[slots.rootfs.B]
device = "{slot_b}"

[health]
commands = {health}
timeout = 10
"""


@dataclass
class Gateway:
    root: Path

    @property
    def config_path(self) -> Path:
        return self.root / "agent.toml"

    def config(self) -> Config:
        return load_config(self.config_path)

    def installer(self) -> Installer:
        return build_installer(self.config())

    def bootloader(self):  # type: ignore[no-untyped-def]
        return make_bootloader(self.config())

    def booted(self) -> str:
        return self.installer().boot.booted_slot()

    def slot_digest(self, name: str) -> str:
        return hashlib.sha256((self.root / f"rootfs-{name.lower()}.img").read_bytes()).hexdigest()

    def power_cycle(self) -> None:
        """A power cut and power-on: the bootloader chooses a slot, a new boot begins."""
        self.installer().boot.reboot()

    def bundle(self, name: str, *, sequence: int, size: int = 1 << 20, seed: int = 1,
               component: str = "rootfs", key: str = "release.pem", version: str = "2.0.0") -> Path:
        image = self.root / f"{name}.img"
        image.write_bytes(random.Random(seed).randbytes(size))
        spec = parse_spec({"sequence": sequence, "vendor_domain": "example.com", "class_name": "gw-test",
                           "component": [{"id": [component], "file": image.name, "uri": f"#{image.name}",
                                          "version": version}]}, self.root)
        signed = add_signature(unsigned_envelope(build_manifest(spec)), cose.load_private_key(self.root / key))
        out = self.root / f"{name}.fwb"
        create_bundle(out, signed, [(image.name, image)], version)
        return out


def delta_manifest(gateway: Gateway, www: Path, name: str, uri: str, image: bytes, version: str) -> bytes:
    """``image`` as ``www/name`` with its delta frames and index beside it, and the manifest, signed
    with the gateway's release key, that names it by ``uri`` with them."""
    (www / name).write_bytes(image)
    spec = parse_spec({"sequence": 2, "vendor_domain": "example.com", "class_name": "gw-test",
                       "component": [{"id": ["rootfs"], "file": name, "uri": uri, "version": version,
                                      "delta": True}]}, www)
    return add_signature(unsigned_envelope(build_manifest(spec)), cose.load_private_key(gateway.root / "release.pem"))


def make_gateway(root: Path, *, health: str = '[["true"]]', slot_b: str = "rootfs-b.img") -> Gateway:
    root.mkdir(parents=True, exist_ok=True)
    for name, key in (("release", "es256"), ("other", "es256")):
        private = cose.generate_private_key(key)
        (root / f"{name}.pem").write_bytes(cose.private_key_pem(private))
        (root / f"{name}.pub.pem").write_bytes(cose.public_key_pem(private.public_key()))
    factory = random.Random(0).randbytes(SLOT_SIZE)   # the image slot A shipped with
    for name in ("rootfs-a.img", "rootfs-b.img"):
        (root / name).write_bytes(factory)
    (root / "cmdline").write_text("root=PARTLABEL=rootfs_A ro fwagent.slot=A\n")
    (root / "agent.toml").write_text(CONFIG.format(health=health, slot_b=slot_b))
    return Gateway(root)
