"""The ``fwagent`` command line's arguments: every command's parser, and nothing else.

Building it imports no command: each runs through ``_lazy``, which imports its module only
when it runs, so ``fwagent --help`` and a mistyped option cost nothing of the agent.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Callable

from agent import __version__
from agent.cli.examples import add_examples


class Parser(argparse.ArgumentParser):
    """argparse's parser, whose formatters (made for every argument added, to check its metavar)
    measure the terminal without shutil: shutil would bring bz2 and lzma, 1 MiB of an install."""

    def _get_formatter(self) -> argparse.HelpFormatter:
        return self.formatter_class(prog=self.prog, width=_columns() - 2)


def _columns() -> int:
    """As shutil.get_terminal_size: $COLUMNS, else the terminal's width, else 80."""
    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80
    except (AttributeError, ValueError, OSError):
        return 80


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="fwagent", description="Over-the-air firmware updates for "
                                     "Linux gateways and the microcontrollers attached to them.")
    parser.add_argument("--version", action="version", version=f"fwagent {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    demo = commands.add_parser("demo", help="run the whole update loop (server, broker, device) on generated data")
    demo.add_argument("--dir", type=Path, help="keep the files here (default: a temporary directory)")
    demo.add_argument("--no-mqtt", action="store_true", help="no broker even if mosquitto is installed")
    demo.set_defaults(run=_lazy("agent.demo.run", "run"))

    check = commands.add_parser("check", help="show the configuration as fwagent reads it and check what an "
                                "update needs: keys, slots, bootloader, server, broker, Things")
    _with_config(check).add_argument("--bundle", type=Path, metavar="U.fwb",
                                     help="also check that this bundle's images fit")
    check.set_defaults(run=_lazy("agent.cli.check", "check"))

    manifest = commands.add_parser("manifest", help="make, sign, show and verify SUIT manifests")
    msub = manifest.add_subparsers(title="manifest commands", metavar="COMMAND", required=True)

    keygen = msub.add_parser("keygen", help="make a signing key (KEY.pem and KEY.pub.pem)")
    keygen.add_argument("--alg", choices=("es256", "ed25519"), default="es256")
    keygen.add_argument("--out", type=Path, required=True, help="private key file (KEY.pem)")
    keygen.add_argument("--force", action="store_true", help="overwrite existing files")
    keygen.set_defaults(run=_lazy("agent.cli.manifest", "keygen"))

    create = msub.add_parser("create", help="build an unsigned manifest from SPEC.toml")
    create.add_argument("spec", type=Path, metavar="SPEC.toml")
    create.add_argument("--out", type=Path, required=True)
    create.set_defaults(run=_lazy("agent.cli.manifest", "create"))

    sign = msub.add_parser("sign", help="add a signature (signing again adds a second one)")
    sign.add_argument("file", type=Path, metavar="M.suit")
    sign.add_argument("--key", type=Path, required=True, help="private key (PEM or DER)")
    sign.add_argument("--kid", help="key id to put in the signature (default: derived from the key)")
    sign.add_argument("--out", type=Path, required=True)
    sign.set_defaults(run=_lazy("agent.cli.manifest", "sign"))

    show = msub.add_parser("show", help="show a manifest (without verifying its signature)")
    show.add_argument("file", type=Path)
    show.add_argument("--json", action="store_true")
    show.set_defaults(run=_lazy("agent.cli.manifest", "show"))

    verify = msub.add_parser("verify", help="verify a manifest as a device would, and say what it would do")
    verify.add_argument("file", type=Path)
    _add_trust_options(verify)
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(run=_lazy("agent.cli.manifest", "verify"), rejects=True)

    _add_install_commands(commands)
    _add_thing_commands(commands)

    bundle = commands.add_parser("bundle", help="pack and inspect update bundles")
    bsub = bundle.add_subparsers(title="bundle commands", metavar="COMMAND", required=True)
    bcreate = bsub.add_parser("create", help="pack a signed manifest and its payloads into one file")
    bcreate.add_argument("--manifest", type=Path, required=True, metavar="S.suit")
    bcreate.add_argument("--version", help="software version shown by servers: the manifest's (the default), "
                                           "which the device reports once it runs the update")
    bcreate.add_argument("--hardware", action="append", default=[], metavar="BOARD:REV",
                         help="compatible board and revision (repeatable)")
    bcreate.add_argument("--description", default="")
    bcreate.add_argument("payloads", nargs="*", metavar="PAYLOAD",
                         help="payload file, or NAME=FILE when its name in the manifest (#NAME) differs; none "
                              "when the manifest names every payload by its http(s) URI")
    bcreate.add_argument("--out", type=Path, required=True)
    bcreate.set_defaults(run=_lazy("agent.cli.bundle", "create"))
    bshow = bsub.add_parser("show", help="list a bundle's members and manifest (without verifying)")
    bshow.add_argument("file", type=Path)
    bshow.add_argument("--json", action="store_true")
    bshow.set_defaults(run=_lazy("agent.cli.bundle", "show"))
    bverify = bsub.add_parser("verify", help="verify a bundle's manifest and every payload")
    bverify.add_argument("file", type=Path)
    _add_trust_options(bverify)
    bverify.add_argument("--json", action="store_true")
    bverify.set_defaults(run=_lazy("agent.cli.bundle", "verify"), rejects=True)

    add_examples(parser)
    return parser


def _with_config(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of every command that works on this device: its agent.toml, and JSON output."""
    parser.add_argument("--config", type=Path, help="agent.toml (default: $FWAGENT_CONFIG or "
                        "/etc/fwagent/agent.toml)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
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


def _add_install_commands(commands: Any) -> None:
    inst = _with_config(commands.add_parser("install", help="install a bundle or a signed manifest into "
                                           "the inactive slots"))
    inst.add_argument("source", metavar="SOURCE", help="bundle file or URL, or a signed manifest file")
    inst.add_argument("--no-reboot", action="store_true", help="stop after the switch; reboot by hand")
    inst.set_defaults(run=_lazy("agent.cli.install", "install"))
    _with_config(commands.add_parser("status", help="slots, bootloader and the update in progress")
                ).set_defaults(run=_lazy("agent.cli.install", "status"))
    _with_config(commands.add_parser("commit", help="after the reboot: check health and commit by hand")
                ).set_defaults(run=_lazy("agent.cli.install", "commit"))
    _with_config(commands.add_parser("rollback", help="abandon the update in progress, back to the old slot")
                ).set_defaults(run=_lazy("agent.cli.install", "rollback"))
    daemon = _with_config(commands.add_parser(
        "run", help="the service: finish the update in progress (or confirm the booted slot), then, with a "
        "[server] or [mqtt] section, stay in touch with the server until stopped"))
    daemon.add_argument("--once", action="store_true", help="only finish the update in progress, then exit")
    daemon.set_defaults(run=_lazy("agent.cli.install", "run"))
    approve = _with_config(commands.add_parser(
        "approve", help="let a server action that waits for approval go ([policy].approve)"))
    approve.add_argument("action", nargs="?", metavar="ACTION", help="the action id (default: the one in hand)")
    approve.set_defaults(run=_lazy("agent.cli.policy", "approve"))
    defer = _with_config(commands.add_parser("defer", help="hold a server action at its gates for a while"))
    defer.add_argument("action", nargs="?", metavar="ACTION", help="the action id (default: the one in hand)")
    defer.add_argument("--for", dest="duration", required=True, metavar="DURATION",
                       help="how long: 2h, 90m, 1h30m, 45s, 1d (up to 30 days)")
    defer.set_defaults(run=_lazy("agent.cli.policy", "defer"))


def _add_thing_commands(commands: Any) -> None:
    things = commands.add_parser("things", help="the microcontrollers attached to this gateway")
    sub = things.add_subparsers(dest="things_command", required=True, metavar="COMMAND")

    _with_config(sub.add_parser("list", help="the configured Things and their running versions")
                ).set_defaults(run=_lazy("agent.cli.things", "list_things"))
    show = _with_config(sub.add_parser("info", help="ask a Thing's bootloader what it is and holds"))
    show.add_argument("name", metavar="NAME")
    show.set_defaults(run=_lazy("agent.cli.things", "info"))
    write = _with_config(sub.add_parser("flash", help="write an image to a Thing, verify it, start it"))
    write.add_argument("name", metavar="NAME")
    write.add_argument("image", type=Path, metavar="IMAGE")
    write.set_defaults(run=_lazy("agent.cli.things", "flash"))


def _lazy(module: str, name: str) -> Callable[[argparse.Namespace], int]:
    """Import a command's module only when it runs, so `fwagent --help` stays fast. (``__import__``,
    as an import statement does: audit hooks see it, as tests/test_cli.py's does.)"""
    def run(args: argparse.Namespace) -> int:
        return getattr(__import__(module, fromlist=[name]), name)(args)
    return run


