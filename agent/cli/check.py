"""``fwagent check``: the effective configuration, then one line per check (agent/check.py)."""

from __future__ import annotations

import argparse
from dataclasses import asdict

from agent.check import effective, render_effective, run_checks
from agent.cli.output import EXIT_FAILED, EXIT_OK, emit_json
from agent.config import config_path, load_config


def check(args: argparse.Namespace) -> int:
    path = config_path(args.config)
    config = load_config(path)
    checks = run_checks(config, bundle=args.bundle)
    failed = sum(not c.ok for c in checks)
    if args.json:
        emit_json({"config_file": str(path), "config": effective(config), "checks": [asdict(c) for c in checks],
                   "ok": not failed})
    else:
        print(f"# {path}, as fwagent reads it (defaults filled in, paths resolved)")
        print("\n".join(render_effective(effective(config))))
        print()
        for item in checks:
            print(f"{'ok  ' if item.ok else 'FAIL'}  {item.name}: {item.detail}")
        print(f"\n{len(checks) - failed} of {len(checks)} checks passed" + (f", {failed} failed" if failed else ""))
    return EXIT_FAILED if failed else EXIT_OK
