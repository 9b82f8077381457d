"""The ``fwagent`` command.

Exit codes: 0 success (for ``verify``: accepted), 1 failure (for ``verify``:
rejected, last line ``rejected: <reason-code>: <detail>``), 2 usage. Errors
are one line, ``error: <code>: <detail>``, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

from agent import __version__
from agent.errors import FwagentError, ManifestError, UsageError, code_and_detail

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()            # imports the commands' modules: Ctrl-C may come here too
        args = parser.parse_args(argv)
        if not hasattr(args, "run"):
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        return _run(args)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    try:
        return args.run(args)
    except ManifestError as err:
        if getattr(args, "rejects", False):
            _emit_rejection(args, err)
            return EXIT_FAILED
        print(f"error: {err.one_line()}", file=sys.stderr)
        return EXIT_FAILED
    except UsageError as err:
        print(f"error: {err.one_line()}", file=sys.stderr)
        return EXIT_USAGE
    except FwagentError as err:
        print(f"error: {err.one_line()}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as err:  # what no module turned into an FwagentError: still one line
        print("error: {}: {}".format(*code_and_detail(err)), file=sys.stderr)
        return EXIT_FAILED


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fwagent", description="Over-the-air firmware updates for "
                                     "Linux gateways and the microcontrollers attached to them.")
    parser.add_argument("--version", action="version", version=f"fwagent {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    demo = commands.add_parser("demo", help="run the whole update loop (server, broker, device) on generated data")
    demo.add_argument("--dir", type=Path, help="keep the files here (default: a temporary directory)")
    demo.add_argument("--no-mqtt", action="store_true", help="no broker even if mosquitto is installed")
    demo.set_defaults(run=_lazy("agent.demo.run", "run"))

    check = commands.add_parser("check", help="show the configuration as fwagent reads it and check what an "
                                "update needs: keys, slots, bootloader, server, broker, Things")
    check.add_argument("--config", type=Path, help="agent.toml (default: $FWAGENT_CONFIG or /etc/fwagent/agent.toml)")
    check.add_argument("--bundle", type=Path, metavar="U.fwb", help="also check that this bundle's images fit")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.set_defaults(run=_lazy("agent.check_cli", "check"))

    manifest = commands.add_parser("manifest", help="make, sign, show and verify SUIT manifests")
    msub = manifest.add_subparsers(title="manifest commands", metavar="COMMAND", required=True)

    keygen = msub.add_parser("keygen", help="make a signing key (KEY.pem and KEY.pub.pem)")
    keygen.add_argument("--alg", choices=("es256", "ed25519"), default="es256")
    keygen.add_argument("--out", type=Path, required=True, help="private key file (KEY.pem)")
    keygen.add_argument("--force", action="store_true", help="overwrite existing files")
    keygen.set_defaults(run=_lazy("agent.manifest_cli", "keygen"))

    create = msub.add_parser("create", help="build an unsigned manifest from SPEC.toml")
    create.add_argument("spec", type=Path, metavar="SPEC.toml")
    create.add_argument("--out", type=Path, required=True)
    create.set_defaults(run=_lazy("agent.manifest_cli", "create"))

    sign = msub.add_parser("sign", help="add a signature (signing again adds a second one)")
    sign.add_argument("file", type=Path, metavar="M.suit")
    sign.add_argument("--key", type=Path, required=True, help="private key (PEM or DER)")
    sign.add_argument("--kid", help="key id to put in the signature (default: derived from the key)")
    sign.add_argument("--out", type=Path, required=True)
    sign.set_defaults(run=_lazy("agent.manifest_cli", "sign"))

    show = msub.add_parser("show", help="show a manifest (without verifying its signature)")
    show.add_argument("file", type=Path)
    show.add_argument("--json", action="store_true")
    show.set_defaults(run=_lazy("agent.manifest_cli", "show"))

    verify = msub.add_parser("verify", help="verify a manifest as a device would, and say what it would do")
    verify.add_argument("file", type=Path)
    _add_trust_options(verify)
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(run=_lazy("agent.manifest_cli", "verify"), rejects=True)

    from agent.install_cli import add_commands
    add_commands(commands)
    from agent.things_cli import add_commands as add_thing_commands
    add_thing_commands(commands)

    bundle = commands.add_parser("bundle", help="pack and inspect update bundles")
    bsub = bundle.add_subparsers(title="bundle commands", metavar="COMMAND", required=True)
    bcreate = bsub.add_parser("create", help="pack a signed manifest and its payloads into one file")
    bcreate.add_argument("--manifest", type=Path, required=True, metavar="S.suit")
    bcreate.add_argument("--version", help="software version shown by servers: the manifest's (the default), "
                                           "which the device reports once it runs the update")
    bcreate.add_argument("--hardware", action="append", default=[], metavar="BOARD:REV",
                         help="compatible board and revision (repeatable)")
    bcreate.add_argument("--description", default="")
    bcreate.add_argument("payloads", nargs="+", metavar="PAYLOAD",
                         help="payload file, or NAME=FILE when its name in the manifest (#NAME) differs")
    bcreate.add_argument("--out", type=Path, required=True)
    bcreate.set_defaults(run=_lazy("agent.bundle_cli", "create"))
    bshow = bsub.add_parser("show", help="list a bundle's members and manifest (without verifying)")
    bshow.add_argument("file", type=Path)
    bshow.add_argument("--json", action="store_true")
    bshow.set_defaults(run=_lazy("agent.bundle_cli", "show"))
    bverify = bsub.add_parser("verify", help="verify a bundle's manifest and every payload")
    bverify.add_argument("file", type=Path)
    _add_trust_options(bverify)
    bverify.add_argument("--json", action="store_true")
    bverify.set_defaults(run=_lazy("agent.bundle_cli", "verify"), rejects=True)

    from agent.cli_examples import add_examples
    add_examples(parser)
    return parser


def _add_trust_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trust", type=Path, action="append", default=[], metavar="PUB.pem",
                        help="a trusted public key (repeatable; one valid signature is enough)")
    parser.add_argument("--hmac-key", type=Path, action="append", default=[], metavar="FILE",
                        help="a symmetric key for COSE_Mac0 (raw bytes in the file)")
    parser.add_argument("--vendor-id", metavar="UUID", help="the device's vendor id")
    parser.add_argument("--class-id", metavar="UUID", help="the device's class id")
    parser.add_argument("--sequence", type=int, metavar="N",
                        help="the device's installed sequence number (lower is refused)")
    parser.add_argument("--slot", type=int, metavar="N",
                        help="the component slot the device would write (for A/B manifests)")


def _lazy(module: str, name: str) -> Callable[[argparse.Namespace], int]:
    """Import a command's module only when it runs, so `fwagent --help` stays fast."""
    def run(args: argparse.Namespace) -> int:
        import importlib
        return getattr(importlib.import_module(module), name)(args)
    return run


def _emit_rejection(args: argparse.Namespace, err: ManifestError) -> None:
    if getattr(args, "json", False):
        emit_json({"accepted": False, "reason": err.code, "detail": err.detail})
        print(f"rejected: {err.one_line()}", file=sys.stderr)
    else:
        print(f"rejected: {err.one_line()}")


def emit_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")
