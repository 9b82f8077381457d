"""``fwagent install | status | commit | rollback | run``: the A/B transaction by hand."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from agent.cli.output import EXIT_FAILED, EXIT_OK, emit_json
from agent.delta.report import summary
from agent.config import Config, config_path, load_config
from agent.errors import UsageError

if TYPE_CHECKING:
    from agent.install.installer import Installer, Outcome
    from agent.install.update_record import UpdateRecord

PROGRESS_INTERVAL = 0.25
DOWNLOAD_PREFIX = "install-"        # state_dir/incoming/install-<ns>.fwb: a bundle earlier versions fetched


class ProgressPrinter:
    """A bar on a terminal, JSON lines with --json, at most a few updates a second."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.last = 0.0

    def __call__(self, slot: str, done: int, total: int | None, *, full: int | None = None) -> None:
        now = time.monotonic()
        if now - self.last < PROGRESS_INTERVAL and done != total:
            return
        self.last = now
        if self.as_json:
            print(json.dumps({"event": "progress", "slot": slot, "done": done, "total": total,
                              **({"full": full} if full is not None else {})}), flush=True)
        elif sys.stderr.isatty():
            share = done / total if total else 0.0
            bar = "#" * int(share * 30)
            sys.stderr.write(f"\r{slot}: [{bar:<30}] {share:4.0%} {done >> 20} MiB")
            if done == total:
                sys.stderr.write("\n")
            sys.stderr.flush()

    def log(self, message: str) -> None:
        if self.as_json:
            print(json.dumps({"event": "log", "message": message}), flush=True)
        else:
            print(message, file=sys.stderr)


def _installer(args: argparse.Namespace, printer: ProgressPrinter | None = None) -> tuple[Config, Installer]:
    from agent.install.compose import build_installer
    config = load_config(config_path(args.config))
    printer = printer or ProgressPrinter(getattr(args, "json", False))
    return config, build_installer(config, progress=printer, log=printer.log)


def _report(outcome: Outcome | None, as_json: bool) -> int:
    if outcome is None:
        if as_json:
            emit_json({"event": "outcome", "result": "none"})
        else:
            print("no update in progress")
        return EXIT_OK
    if as_json:
        print(json.dumps({"event": "outcome", **outcome.as_dict()}))
    elif outcome.result == "pending":
        print(f"update {outcome.id[:8]}: waiting at step {outcome.state} (reboot to continue)")
    elif outcome.result == "success":
        done = "already installed" if outcome.state == "already-installed" else "committed"
        print(f"update {outcome.id[:8]}: {done}" + (f", version {outcome.version}" if outcome.version else ""))
    else:
        print(f"update {outcome.id[:8]}: {outcome.state}: {outcome.code}: {outcome.reason}")
    if not as_json:
        for label, stats in (outcome.delta or {}).items():
            print(f"{label}: {summary(stats)}")
    return EXIT_FAILED if outcome.result == "failure" else EXIT_OK


def install(args: argparse.Namespace) -> int:
    config, installer = _installer(args)
    if args.source.startswith(("http://", "https://")):
        # A bundle URL streams into the slots; earlier versions downloaded it here first.
        incoming = config.device.state_dir / "incoming"
        if incoming.is_dir():
            from agent.install.update_record import UpdateRecord
            _remove_unused_downloads(incoming, UpdateRecord.of(installer.journal.load()))
    return _report(installer.install(args.source, no_reboot=args.no_reboot), args.json)


def run(args: argparse.Namespace) -> int:
    from agent.daemon import status
    from agent.daemon.notify import Notifier, run_starting
    from agent.log import Log
    log = Log()
    # Under systemd (Type=notify): read, and taken out of the environment, before anything runs a
    # child (a health command, the reboot command), so that no child inherits them.
    notifier = Notifier.from_environment(log=log.warning)
    config = load_config(config_path(args.config))
    if args.once or (config.server is None and config.mqtt is None):
        _, installer = _installer(args)
        installer.on_step = lambda state, update: notifier.status(
            status.line(status.step_text(state, update) or state, **status.ids(update)))
        notifier.status("starting: finishing the update in flight, or confirming the booted slot")
        outcome = run_starting(installer.resume, notifier)
        notifier.ready("the booted slot is confirmed; no update in flight" if outcome is None else status.line(
            status.outcome(outcome.result, outcome.state, outcome.code, outcome.version),
            **status.ids(outcome.as_dict())))
        return _report(outcome, args.json)
    import faulthandler
    import signal

    from agent.daemon.compose import build_daemon
    # A watchdog timeout ends the service with SIGABRT: every thread's stack goes to the journal first.
    faulthandler.enable()
    daemon = build_daemon(config, log, notifier)
    signal.signal(signal.SIGTERM, lambda *_: daemon.stop())
    signal.signal(signal.SIGINT, lambda *_: daemon.stop())
    daemon.run()
    return EXIT_OK


def commit(args: argparse.Namespace) -> int:
    _, installer = _installer(args)
    outcome = installer.resume()
    if outcome is None:
        raise UsageError("no update is waiting to be committed")
    return _report(outcome, args.json)


def rollback(args: argparse.Namespace) -> int:
    _, installer = _installer(args)
    recovery = installer.recover_journal()
    if recovery is None:
        return _report(installer.abort("rolled back by hand"), args.json)
    if args.json:
        print(json.dumps({"event": "recovered", **recovery.as_dict()}))
        return EXIT_OK
    print(f"journal: damaged: {recovery.problem}")
    print(f"kept as {recovery.kept}; a new journal holds what still checks out")
    print(f"slot {recovery.slot} is primary and good")
    if recovery.salvaged.update_reported:
        print("the update in flight was abandoned; it is reported as failed (journal-damaged)")
    if recovery.salvaged.installed_lost:
        print("the anti-rollback record was lost: any signed update is accepted until the next one is committed")
    if recovery.salvaged.outbox_dropped:
        print(f"{recovery.salvaged.outbox_dropped} unreadable unsent report(s) dropped")
    return EXIT_OK


def status(args: argparse.Namespace) -> int:
    from agent.daemon.link_view import action_view, link_lines, link_view
    config, installer = _installer(args)
    view = {**installer.status(), "link": link_view(config), "server_action": action_view(config)}
    if args.json:
        emit_json(view)
        return EXIT_FAILED if view["journal_damaged"] else EXIT_OK
    print(f"booted slot:  {view['booted']}")
    print(f"primary slot: {view['primary']}")
    for name, slot in view["slots"].items():
        version = f", version {slot['version']}" if slot.get("version") else ""
        print(f"slot {name}:       {'good' if slot['good'] else 'bad'}{version}")
    update = view["update"]
    if view["journal_damaged"]:
        print(f"journal:      damaged: {view['journal_damaged']}")
    else:
        print("update:       " + (f"{update['id'][:8]} at step {update['state']}" if update else "none"))
        if view["installed"]:
            print(f"installed:    sequence {view['installed']['sequence']}, version "
                  f"{view['installed'].get('version')}")
        print(f"unsent reports: {view['outbox']}")
    print("bootloader:   " + " ".join(f"{k}={v}" for k, v in view["variables"].items()))
    print("\n".join(link_lines(view["link"], config, action=view["server_action"])))
    return EXIT_FAILED if view["journal_damaged"] else EXIT_OK


def _remove_unused_downloads(directory: Path, update: UpdateRecord | None) -> None:
    """Bundles that earlier versions of 'install URL' downloaded here ("install-*.fwb",
    "bundle-*.fwb"), except one the update in flight still reads."""
    keep = Path(update.source) if update is not None else None
    for pattern in (f"{DOWNLOAD_PREFIX}*.fwb", "bundle-*.fwb"):
        for path in directory.glob(pattern):
            if path != keep:
                path.unlink(missing_ok=True)
