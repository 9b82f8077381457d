"""The examples each ``fwagent`` command's ``--help`` ends with, as git's and systemctl's do:
real invocations, each one a command line the parser accepts (tests/test_cli_examples.py)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

EXAMPLES: dict[str, tuple[str, ...]] = {
    "": ("fwagent demo", "fwagent check", "fwagent status"),
    "demo": ("fwagent demo", "fwagent demo --dir /tmp/fwagent-demo --no-mqtt"),
    "check": ("fwagent check", "fwagent check --bundle gateway-2.0.0.fwb --json"),
    "manifest": ("fwagent manifest create SPEC.toml --out m.suit", "fwagent manifest sign m.suit --key release.pem "
                 "--out m.signed.suit"),
    "manifest keygen": ("fwagent manifest keygen --out release.pem",
                        "fwagent manifest keygen --alg ed25519 --out release-2027.pem"),
    "manifest create": ("fwagent manifest create SPEC.toml --out m.suit",),
    "manifest sign": ("fwagent manifest sign m.suit --key release.pem --out m.signed.suit",
                      "fwagent manifest sign m.signed.suit --key release-2027.pem --out m.rotated.suit"),
    "manifest show": ("fwagent manifest show m.signed.suit", "fwagent manifest show m.signed.suit --json"),
    "manifest verify": ("fwagent manifest verify m.signed.suit --trust release.pub.pem",
                        "fwagent manifest verify m.signed.suit --trust release.pub.pem --sequence 6 --json"),
    "install": ("fwagent install gateway-2.0.0.fwb",
                "fwagent install https://updates.example.com/gateway-2.0.0.fwb --no-reboot"),
    "status": ("fwagent status", "fwagent status --json"),
    "commit": ("fwagent commit",),
    "rollback": ("fwagent rollback",),
    "approve": ("fwagent approve", "fwagent approve 12"),
    "defer": ("fwagent defer --for 2h", "fwagent defer 12 --for 1h30m --json"),
    "run": ("fwagent run", "fwagent run --once --config /data/fwagent/agent.toml"),
    "things": ("fwagent things list", "fwagent things flash mcu1 app-1.2.3.bin"),
    "things list": ("fwagent things list", "fwagent things list --json"),
    "things info": ("fwagent things info mcu1",),
    "things flash": ("fwagent things flash mcu1 app-1.2.3.bin", "fwagent things flash mcu1 app-1.2.3.bin --json"),
    "bundle": ("fwagent bundle create --manifest m.signed.suit rootfs.img --out gateway-2.0.0.fwb",),
    "bundle create": ("fwagent bundle create --manifest m.signed.suit rootfs.img --out gateway-2.0.0.fwb",
                      "fwagent bundle create --manifest m.signed.suit rootfs=build/rootfs.ext4 "
                      "--hardware gw-board:rev1 --out gateway-2.0.0.fwb"),
    "bundle show": ("fwagent bundle show gateway-2.0.0.fwb",),
    "bundle verify": ("fwagent bundle verify gateway-2.0.0.fwb --trust release.pub.pem",),
}


def commands(parser: argparse.ArgumentParser, path: str = "") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every command's parser by its words ("" for fwagent itself, "manifest sign", ...)."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, f"{path} {name}".strip())


def add_examples(parser: argparse.ArgumentParser) -> None:
    """Each command's help ends with its examples."""
    for path, command in commands(parser):
        lines = EXAMPLES.get(path)
        if lines:
            command.epilog = "examples:\n" + "\n".join(f"  {line}" for line in lines)
            command.formatter_class = argparse.RawDescriptionHelpFormatter
