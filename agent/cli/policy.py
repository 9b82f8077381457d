"""``fwagent approve`` and ``fwagent defer``: the operator's decision on a server action that a
local gate ([policy]) holds. Written to the decision file (agent/policy/decisions.py), which the
running service looks at every couple of seconds while an action waits for it."""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Callable

from agent.cli.output import EXIT_OK, emit_json
from agent.config import config_path, load_config
from agent.daemon.actions import Phase
from agent.daemon.store import ActionStore
from agent.errors import UsageError
from agent.policy.decisions import DecisionFile
from agent.policy.gates import Choice

DURATION = re.compile(r"(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?")
LONGEST_DEFER = 30 * 86400.0     # seconds


def parse_duration(text: str) -> float:
    """``2h``, ``90m``, ``1h30m``, ``45s``, ``1d``: seconds, from 1 s to 30 days."""
    match = DURATION.fullmatch(text.strip())
    if not text.strip() or not match:
        raise UsageError(f"--for {text!r}: expected a duration such as 2h, 90m, 1h30m or 45s")
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    total = float(((days * 24 + hours) * 60 + minutes) * 60 + seconds)
    if not 1 <= total <= LONGEST_DEFER:
        raise UsageError(f"--for {text!r}: must be from 1 s to 30 days")
    return total


def approve(args: argparse.Namespace) -> int:
    """Approved; an action staged (wait-reboot) is approved for its switch and reboot too."""
    return _decide(args, lambda staged: "approve-reboot" if staged else "approve", None)


def defer(args: argparse.Namespace) -> int:
    return _decide(args, lambda _staged: "defer", time.time() + parse_duration(args.duration))


def _decide(args: argparse.Namespace, decision_of: Callable[[bool], str], until: float | None) -> int:
    config = load_config(config_path(args.config))
    state_dir = config.device.state_dir
    record = ActionStore(state_dir).load()
    action = args.action or record.action
    if not action:
        raise UsageError("no server action is in hand: name the action (fwagent status shows it)")
    decision = decision_of(record.action == action and record.phase is Phase.REBOOT_WAIT)
    DecisionFile(state_dir).decide(Choice(action, decision, until))
    if args.json:
        emit_json({"action": action, "decision": decision, "until": until})
    elif until is None:
        print(f"action {action}: approved" + (" (the switch and reboot)" if decision == "approve-reboot" else ""))
    else:
        print(f"action {action}: deferred until {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(until))}")
    return EXIT_OK
