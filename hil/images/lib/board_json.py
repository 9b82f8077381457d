"""Writes a board's board.json: its static template plus what this build made.

usage: board_json.py TEMPLATE DIR --kernel PKG VERSION KVER --image-mib N --stamp S
                     --wheelhouse-hash H --key KEY PUB --update NAME VERSION SEQUENCE FLAVOUR THING|- ...

The template (hil/images/<board>/board.json.in) holds what does not change
from build to build: the QEMU command line pieces, the console markers, the
device's identity. This adds the files under DIR (disk, update bundles, keys,
wheelhouse), the disk's partitions as sfdisk reads them from disk.img, the
versions, sizes and build inputs, and writes DIR/board.json. "{dir}" in the
template's strings becomes DIR. The template's "_build" object (the
bootloader's name, the boot partition's files, the mtools command that reads
its environment) is used here and not written out.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

MIB = 1 << 20
# What each flavour of update image does once installed (lib/updates.sh makes them).
BEHAVIOUR = {
    "normal": "boots, healthy: fwagent commits it",
    "no-init": "no /sbin/init: the initramfs cannot hand over, the kernel panics and resets after panic=5 s; "
               "{bootloader} falls back to the old slot, which rolls the update back",
    "unhealthy": "boots, fwagent runs, its health command exits 1: fwagent rolls back and reboots into the old slot",
    "silent": "boots, but fwagent.service is masked: nothing confirms it; a reset (the bench's watchdog) "
              "falls back to the old slot",
}


def with_dir(value: object, directory: str) -> object:
    """The template's value with "{dir}" in its strings replaced by the board's directory."""
    if isinstance(value, str):
        return value.replace("{dir}", directory)
    if isinstance(value, list):
        return [with_dir(item, directory) for item in value]
    if isinstance(value, dict):
        return {key: with_dir(item, directory) for key, item in value.items()}
    return value


def partitions(disk: Path, build: dict[str, object]) -> dict[str, dict[str, object]]:
    table = json.loads(subprocess.run(["sfdisk", "--json", str(disk)], check=True, capture_output=True,
                                      text=True).stdout)["partitiontable"]
    sector = table.get("sectorsize", 512)
    names = {1: ("boot", "vfat"), 2: ("A", "ext4"), 3: ("B", "ext4"), 4: ("data", "ext4")}
    found = {}
    for number, part in enumerate(table["partitions"], 1):
        name, fs = names[number]
        found[name] = {"number": number, "device": f"/dev/vda{number}", "filesystem": fs,
                       "offset": part["start"] * sector, "size": part["size"] * sector,
                       "offset_mib": part["start"] * sector // MIB, "size_mib": part["size"] * sector // MIB}
    found["boot"].update({"mount": "/boot/loader", "files": build["boot_files"],
                          "mtools": str(build["boot_mtools"]).replace("{offset}", str(found["boot"]["offset"]))})
    found["A"]["content"] = "factory root file system, version 1.0.0"
    found["B"]["content"] = "empty (zeros)"
    found["data"].update({"mount": "/data", "files": ["fwagent/agent.toml"], "state_dir": "fwagent/state"})
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("template", type=Path)
    parser.add_argument("dir", type=Path)
    parser.add_argument("--kernel", nargs=3, metavar=("PACKAGE", "VERSION", "KVER"), required=True)
    parser.add_argument("--image-mib", type=int, required=True)
    parser.add_argument("--stamp", required=True)
    parser.add_argument("--wheelhouse-hash", required=True)
    parser.add_argument("--key", nargs=2, metavar=("PRIVATE", "PUBLIC"), required=True)
    parser.add_argument("--update", nargs=5, action="append", default=[],
                        metavar=("NAME", "VERSION", "SEQUENCE", "FLAVOUR", "THING"))
    args = parser.parse_args()

    out = args.dir.resolve()
    board = with_dir(json.loads(args.template.read_text()), str(out))
    build = board.pop("_build")
    disk = out / "disk.img"
    board["dir"] = str(out)
    board["disk"] = {"path": str(disk), "format": "raw", "size": disk.stat().st_size,
                     "allocated": disk.stat().st_blocks * 512, "label": "dos",
                     "partitions": partitions(disk, build)}
    board["rootfs_image_size"] = args.image_mib * MIB
    board["versions"] = {"factory": "1.0.0", **{name: version for name, version, *_ in args.update}}
    board["updates"] = {
        name: {"path": str(out / "updates" / f"{name}.fwb"), "version": version, "sequence": int(sequence),
               "flavour": kind, "behaviour": BEHAVIOUR[kind].format(bootloader=build["bootloader"]), "size": (out / "updates" / f"{name}.fwb").stat().st_size,
               "payloads": {"rootfs.img": ["rootfs"],
                            **({f"{thing}.bin": ["thing", thing]} if thing != "-" else {})}}
        for name, version, sequence, kind, thing in args.update}
    board["keys"] = {"private": args.key[0], "public": args.key[1], "algorithm": "es256",
                     "in_image": "/etc/fwagent/keys/release.pub.pem"}
    board["wheelhouse"] = {"path": str(out / "wheelhouse"), "hash": args.wheelhouse_hash}
    board["kernel"] = {"package": args.kernel[0], "version": args.kernel[1], "release": args.kernel[2]}
    board["build"] = {"stamp": args.stamp, "log": str(out / "build.log")}
    (out / "board.json.tmp").write_text(json.dumps(board, indent=2) + "\n")
    (out / "board.json.tmp").rename(out / "board.json")


if __name__ == "__main__":
    main()
