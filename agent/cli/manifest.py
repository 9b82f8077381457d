"""``fwagent manifest ...``: the device maker's manifest tools."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agent.cli.output import EXIT_OK, emit_json
from agent.files import read_input, write_output
from agent.errors import ConfigError, UsageError
from agent.manifest import cose
from agent.manifest.cbor import DEFAULT_MAX_SIZE
from agent.manifest.check import CheckResult, check
from agent.manifest.describe import (check_view, manifest_view, render_actions, render_manifest,
                                     unversioned_slot_components)
from agent.manifest.ids import parse_uuid
from agent.manifest.processor import DeviceIdentity
from agent.manifest.sign import add_signature
from agent.manifest.spec import build_manifest, load_spec, unsigned_envelope
from agent.manifest.verify import RollbackState, Trust, inspect_envelope


def keygen(args: argparse.Namespace) -> int:
    out: Path = args.out
    public = out.with_name(out.name.removesuffix(".pem") + ".pub.pem")
    key = cose.generate_private_key(args.alg)
    write_output(out, cose.private_key_pem(key), mode=0o600, force=args.force)
    write_output(public, cose.public_key_pem(key.public_key()), force=args.force)
    print(f"private key: {out}\npublic key:  {public}\nkey id:      {cose.key_id(key.public_key()).hex()}")
    return EXIT_OK


def create(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    envelope = unsigned_envelope(build_manifest(spec))
    write_output(args.out, envelope)
    print(f"{args.out}: unsigned manifest, sequence {spec.sequence}, {len(spec.components)} component(s), "
          f"{len(envelope)} bytes")
    for component in spec.components:
        if component.delta_frame_size is not None:
            print(f"{component.file}.frames, {component.file}.index: the image's delta frames and index; "
                  f"serve them beside {component.uri}")
    for component in unversioned_slot_components(inspect_envelope(envelope)):
        print(f"warning: component {component} goes to a slot and has no version: after the update the device "
              "reports none, and a bundle of it cannot be labelled with the device's version", file=sys.stderr)
    return EXIT_OK


def sign(args: argparse.Namespace) -> int:
    key = cose.load_private_key(args.key)
    kid = _kid(args.kid) if args.kid is not None else None
    signed = add_signature(read_input(args.file, "manifest", DEFAULT_MAX_SIZE), key, kid)
    write_output(args.out, signed)
    print(f"{args.out}: signed with {args.key} "
          f"(key id {(kid or cose.key_id(key.public_key())).hex()})")
    return EXIT_OK


def show(args: argparse.Namespace) -> int:
    view = manifest_view(inspect_envelope(read_input(args.file, "manifest", DEFAULT_MAX_SIZE)))
    if args.json:
        emit_json({"verified": False, **view})
    else:
        print("\n".join(render_manifest(view)))
        print("(signatures not verified: use 'fwagent manifest verify --trust KEY')")
    return EXIT_OK


def verify(args: argparse.Namespace) -> int:
    result = check_from_args(read_input(args.file, "manifest", DEFAULT_MAX_SIZE), args)
    if args.json:
        emit_json(check_view(result))
    else:
        print_check(result)
    return EXIT_OK


def check_from_args(data: bytes, args: argparse.Namespace) -> CheckResult:
    """Verify as a device configured by the --trust/--vendor-id/... options would."""
    return check(data, trust_from_args(args), rollback=rollback_from_args(args),
                 device=device_from_args(args), slot=args.slot)


def trust_from_args(args: argparse.Namespace) -> Trust:
    anchors = tuple(cose.load_trust_anchor(p) for p in args.trust)
    mac_keys = tuple(cose.load_mac_key(p) for p in args.hmac_key)
    if not anchors and not mac_keys:
        raise UsageError("give at least one --trust PUB.pem (or --hmac-key FILE)")
    return Trust(anchors, mac_keys)


def device_from_args(args: argparse.Namespace) -> DeviceIdentity:
    try:
        return DeviceIdentity(
            vendor_ids=(parse_uuid(args.vendor_id, "--vendor-id").bytes,) if args.vendor_id else (),
            class_ids=(parse_uuid(args.class_id, "--class-id").bytes,) if args.class_id else ())
    except ConfigError as err:
        raise UsageError(err.detail) from None


def rollback_from_args(args: argparse.Namespace) -> RollbackState | None:
    return RollbackState(args.sequence) if args.sequence is not None else None


def print_check(result: CheckResult) -> None:
    print("\n".join(render_manifest(manifest_view(result.manifest))))
    print("\n".join(render_actions(result)))
    print("accepted")


def _kid(text: str) -> bytes:
    """--kid: hex if it looks like hex, else the UTF-8 text."""
    try:
        return bytes.fromhex(text) if len(text) % 2 == 0 and text else text.encode()
    except ValueError:
        return text.encode()
