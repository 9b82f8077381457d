"""``fwagent bundle ...``: pack, show and verify update bundles."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agent.bundle.reader import bundle_info, verify_bundle
from agent.bundle.writer import bundle_version, create_bundle
from agent.delta.param import delta_references
from agent.cli.output import EXIT_OK, emit_json
from agent.errors import UsageError
from agent.files import read_input
from agent.manifest.cbor import DEFAULT_MAX_SIZE
from agent.manifest.describe import check_view, render_actions, render_manifest, manifest_view
from agent.cli.manifest import device_from_args, rollback_from_args, trust_from_args


def create(args: argparse.Namespace) -> int:
    manifest = read_input(args.manifest, "manifest", DEFAULT_MAX_SIZE)
    version, warning = bundle_version(manifest, args.version)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    info = create_bundle(args.out, manifest, [_payload(p) for p in args.payloads], version,
                         [_hardware(h) for h in args.hardware], args.description)
    print(f"{args.out}: {info.size} bytes, {len(info.members)} members ({info.format} cpio), version {version}")
    for ref in info.remote:
        print(f"not carried, fetched by the device: {ref.uri}")
    for delta in delta_references(manifest).values():
        print(f"not carried, fetched by a device that installs by delta: {delta.frames.uri}, {delta.index.uri}")
    return EXIT_OK


def show(args: argparse.Namespace) -> int:
    info = bundle_info(args.file)
    if args.json:
        emit_json(info)
        return EXIT_OK
    print(f"format: {info['format']} cpio, software version (servers' view): {info['sw_description_version']}")
    for member in info["members"]:
        print(f"  {member['name']:<24} {member['size']:>12} bytes at offset {member['data_offset']}")
    print(f"manifest sequence {info['manifest_sequence']} (signature not verified: "
          "use 'fwagent bundle verify --trust KEY')")
    for payload in info["payloads"]:
        where = "carried" if payload["carried"] else "not carried"
        print(f"  {payload['component']} <- {payload['uri']} ({payload['size']} bytes, {where})")
        if payload["delta"]:
            print("    " + delta_line(payload["delta"], payload["size"]))
    return EXIT_OK


def verify(args: argparse.Namespace) -> int:
    report = verify_bundle(args.file, trust_from_args(args), device=device_from_args(args),
                           rollback=rollback_from_args(args), slot=args.slot)
    if args.json:
        emit_json({**check_view(report.result), "format": report.format,
                   "payloads_checked": [m.name for m in report.payloads]})
        return EXIT_OK
    print("\n".join(render_manifest(manifest_view(report.result.manifest))))
    print("\n".join(render_actions(report.result)))
    for member in report.payloads:
        print(f"payload {member.name}: {member.size} bytes, SHA-256 matches the manifest")
    print("accepted")
    return EXIT_OK


def delta_line(delta: dict, size: int | None) -> str:
    frames, index = delta["frames"], delta["index"]
    share = f" ({frames['size'] / size:.0%} and {index['size'] / size:.2%} of the image)" if size else ""
    return (f"delta: frames {frames['uri']} ({frames['size']} bytes), index {index['uri']} "
            f"({index['size']} bytes){share}; not carried, fetched by the device")


def _payload(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if sep and name and path:
        return name, Path(path)
    return Path(text).name, Path(text)


def _hardware(text: str) -> tuple[str, str]:
    board, sep, revision = text.partition(":")
    if not (sep and board and revision):
        raise UsageError(f"--hardware {text!r}: expected BOARD:REV")
    return board, revision
