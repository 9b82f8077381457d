"""``fwagent things list | info NAME | flash NAME IMAGE``: the gateway's Things by hand."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict

from agent.cli.output import EXIT_OK, emit_json
from agent.config import Config, ThingConfig, config_path, load_config
from agent.errors import UsageError
from agent.files import read_input

PROGRESS_INTERVAL = 0.25


def _config(args: argparse.Namespace) -> Config:
    return load_config(config_path(args.config))


def _thing(config: Config, name: str) -> ThingConfig:
    if name not in config.things:
        known = ", ".join(config.things) or "none configured"
        raise UsageError(f"no Thing named {name!r} ([things.{name}]); known: {known}")
    return config.things[name]


def list_things(args: argparse.Namespace) -> int:
    from agent.things import running_version

    rows = []
    for thing in _config(args).things.values():
        try:
            version = running_version(thing)
        except Exception as err:  # noqa: BLE001 - one Thing's failing command does not hide the others
            version = f"unknown ({err})"
        rows.append({"name": thing.name, "protocol": thing.protocol, "port": thing.port, "baud": thing.baud,
                     "reset": thing.reset if isinstance(thing.reset, str) else "command", "version": version})
    if args.json:
        emit_json(rows)
    elif not rows:
        print("no Things configured ([things.<name>] in the configuration)")
    for row in rows if not args.json else ():
        print(f"{row['name']:<16} {row['protocol']:<12} {row['port']} @ {row['baud']}, reset {row['reset']}"
              + (f", version {row['version']}" if row["version"] else ""))
    return EXIT_OK


def info(args: argparse.Namespace) -> int:
    from agent.things import info as thing_info

    details = thing_info(_thing(_config(args), args.name))
    if args.json:
        emit_json(asdict(details))
        return EXIT_OK
    bootloader = f"bootloader {details.bootloader}" if details.bootloader else ""
    print(f"{args.name}: " + ", ".join(part for part in (details.protocol, details.device, bootloader) if part))
    for image in details.images:
        print("  " + ", ".join(f"{k} {v}" for k, v in image.items()))
    for key, value in details.details.items():
        print(f"  {key}: {value}")
    return EXIT_OK


class _Progress:
    def __init__(self, name: str, as_json: bool) -> None:
        self.name, self.as_json, self.last, self.phase = name, as_json, 0.0, ""

    def __call__(self, phase: str, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.last < PROGRESS_INTERVAL and done != total and phase == self.phase:
            return
        self.last, self.phase = now, phase
        if self.as_json:
            print(json.dumps({"event": "progress", "thing": self.name, "phase": phase, "done": done,
                              "total": total}), flush=True)
        elif sys.stderr.isatty():
            share = done / total if total else 0.0
            sys.stderr.write(f"\r{self.name} {phase:<10} [{'#' * int(share * 30):<30}] {share:4.0%}")
            if done == total:
                sys.stderr.write("\n")
            sys.stderr.flush()


def flash(args: argparse.Namespace) -> int:
    from agent.things import flash as flash_thing

    thing = _thing(_config(args), args.name)
    from agent.install.installer import MAX_THING_IMAGE
    image = read_input(args.image, "image", MAX_THING_IMAGE)
    result = flash_thing(thing, image, _Progress(thing.name, args.json))
    if args.json:
        print(json.dumps({"event": "result", "thing": thing.name, **asdict(result)}))
    else:
        print(f"{thing.name}: {result.written} bytes written and verified ({result.verified}) in "
              f"{result.seconds:.1f} s" + (f", {result.retries} retries" if result.retries else ""))
    return EXIT_OK
