"""Real MCUboot and Zephyr SMP firmware: the prebuilt ``smp_server`` images that smpclient's
source distribution carries (``tests/fixtures/smp-server/``, Zephyr 4.4 with MCUboot), fetched
once into ``.cache/smp-server/`` with the ``manifest.json`` that says how each one runs (QEMU's
command line, or a native_sim executable).

Nothing of it is committed: the sdist is downloaded with pip when first needed, only the
fixture directory is extracted, and every artifact used is checked against the sdist's
SHA256SUMS. The tests (tests/smp_servers.py) and the bench's MCU board (hil/images) use it.

    python -m hil.mcu.firmware export serial@qemu_cortex_m0 1.2.3 DIR

writes DIR/firmware.hex (what the board is flashed with at the factory) and DIR/update.bin (its
application signed again, as the fixture is, with version 1.2.3).
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bootloader_bridge.things.mcuboot_image import parse  # noqa: E402
from hil.sim.smp_device import sign_image  # noqa: E402

CACHE = REPO / ".cache" / "smp-server"
SDIST = "smpclient==7.3.0"
PREFIX = "smpclient-7.3.0/tests/fixtures/smp-server/"
DOWNLOAD_TIMEOUT = 600.0
FLAG_RAM_LOAD = 0x20        # MCUboot image header flag: loaded into RAM at the load address


class Unavailable(Exception):
    """The firmware or what runs it is not here; the message says what is missing."""


@dataclass(frozen=True)
class Server:
    config: str
    target: str
    artifact: str
    qemu_cmd: str | None
    run: str | None
    buf_size: int
    recovery_buf_size: int | None
    groups: tuple[str, ...]

    @property
    def signed_image(self) -> Path:
        """The signed application image that pairs with a QEMU artifact."""
        return fixtures() / re.sub(r"\.(merged\.)?hex$", ".signed.bin", self.artifact)


def fixtures() -> Path:
    """The fixture directory, downloaded and checked on first use (by one process at a time: the
    test suite and the bench's image build may both want it at once)."""
    target = CACHE / "fixtures"
    if not (target / "manifest.json").exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        with open(CACHE / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (target / "manifest.json").exists():
                _fetch(target)
    return target


def servers() -> dict[str, Server]:
    """The manifest's servers by ``<config>@<target>``."""
    entries = json.loads((fixtures() / "manifest.json").read_text())
    return {f"{e['config']}@{e['target']}": Server(e["config"], e["target"], e["artifact"], e["qemu_cmd"], e["run"],
                                                   e["buf_size"], e.get("recovery_buf_size"), tuple(e["groups"]))
            for e in entries}


def server(key: str) -> Server:
    found = servers().get(key)
    if found is None or not (fixtures() / found.artifact).exists():
        raise Unavailable(f"smp_server {key} is not in {SDIST}")
    check(fixtures() / found.artifact)
    if found.qemu_cmd is not None:
        check(found.signed_image)
    return found


def check(path: Path) -> None:
    """``path`` as the sdist's SHA256SUMS lists it."""
    sums = dict(reversed(line.split()) for line in (fixtures() / "SHA256SUMS").read_text().splitlines()
                if line.strip())
    if hashlib.sha256(path.read_bytes()).hexdigest() != sums.get(path.name):
        raise AssertionError(f"{path} does not match the SHA256SUMS of {SDIST}")


def resign(entry: Server, version: str, directory: Path) -> bytes:
    """The fixture's application signed again with imgtool as it was (header size, load address,
    flags; hash only), with another version."""
    original = entry.signed_image.read_bytes()
    old = parse(original)
    payload = original[old.header_size:old.header_size + old.image_size]
    extra = ("--load-addr", hex(old.load_address)) if old.flags & FLAG_RAM_LOAD else ()
    image = sign_image(payload, directory, version=version, slot_size=0x80000, header_size=old.header_size,
                       extra=extra)
    new = parse(image)
    if (new.header_size, new.load_address, new.flags, new.image_size) != (
            old.header_size, old.load_address, old.flags, old.image_size) or new.version_text != version:
        raise AssertionError(f"imgtool signed {entry.signed_image.name} differently from the fixture")
    return image


def _fetch(target: Path) -> None:
    download = CACHE / "sdist"
    download.mkdir(parents=True, exist_ok=True)
    archives = list(download.glob("smpclient-7.3.0.tar.gz"))
    if not archives:
        pip = _pip()
        try:
            subprocess.run([*pip, "download", "--no-binary", ":all:", "--no-deps", SDIST, "-d", str(download)],
                           check=True, capture_output=True, timeout=DOWNLOAD_TIMEOUT)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            output = getattr(exc, "stderr", b"") or b""
            raise Unavailable(f"pip download {SDIST} failed: {output.decode(errors='replace')[-300:]}") from None
        archives = list(download.glob("smpclient-7.3.0.tar.gz"))
    partial = target.with_name("fixtures.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    with tarfile.open(archives[0]) as archive:
        for member in archive.getmembers():
            name = member.name.removeprefix(PREFIX)
            if member.name.startswith(PREFIX) and member.isfile() and "/" not in name and name:
                source = archive.extractfile(member)
                assert source is not None
                (partial / name).write_bytes(source.read())
    if not (partial / "manifest.json").exists():
        raise Unavailable(f"{archives[0].name} has no {PREFIX}manifest.json")
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)


def _pip() -> list[str]:
    """pip from this interpreter, else uv's (``uvx --from pip pip``)."""
    if subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True, timeout=60).returncode == 0:
        return [sys.executable, "-m", "pip"]
    uvx = shutil.which("uvx")
    if uvx is None:
        raise Unavailable("neither pip nor uvx is installed to download the firmware")
    return [uvx, "--from", "pip", "pip"]


def export(key: str, version: str, directory: Path) -> None:
    """``directory``/firmware.hex (the QEMU board's factory flash) and update.bin (``version``)."""
    entry = server(key)
    if entry.qemu_cmd is None or not entry.artifact.endswith(".hex"):
        raise Unavailable(f"smp_server {key} is not a QEMU board flashed from a hex file")
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(fixtures() / entry.artifact, directory / "firmware.hex")
    with tempfile.TemporaryDirectory() as scratch:
        (directory / "update.bin").write_bytes(resign(entry, version, Path(scratch)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hil.mcu.firmware")
    commands = parser.add_subparsers(dest="command", required=True)
    out = commands.add_parser("export", help="a QEMU board's factory firmware and an update of it")
    out.add_argument("key", help="<config>@<target> of the fixtures' manifest.json")
    out.add_argument("version", help="the update's version")
    out.add_argument("directory", type=Path)
    args = parser.parse_args(argv)
    try:
        export(args.key, args.version, args.directory)
    except (Unavailable, FileNotFoundError, AssertionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
