"""The server link as ``fwagent status`` shows it: what the running service last wrote
(agent/daemon/link.py), and whether that service still runs."""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from typing import Any

from agent.config import Config
from agent.daemon.link import LinkStatusFile, duration
from agent.daemon.store import ActionStore, ActionStoreError


def link_view(config: Config) -> dict[str, Any] | None:
    """link.json with ``service_running``; None when no service wrote one (it is not running)."""
    status = LinkStatusFile(config.device.runtime_dir / "link.json").load()
    if status is None:
        return None
    return {**asdict(status), "service_running": _alive(status.pid)}


def action_view(config: Config) -> dict[str, Any] | None:
    """The server action in hand as persisted (what it waits for, if a [policy] gate holds it),
    whether or not the service runs; None when the record cannot be read."""
    try:
        record = ActionStore(config.device.state_dir).load()
    except ActionStoreError:
        return None
    return {"action": record.action, "phase": record.phase.value, "waiting": record.waiting}


def link_lines(view: dict[str, Any] | None, config: Config, now: float | None = None, *,
               action: dict[str, Any] | None = None) -> list[str]:
    """Readable lines of ``link_view`` (pure, given ``now``); with the service down, the persisted
    server ``action`` (``action_view``) instead of its link's."""
    now = time.time() if now is None else now
    where = config.device.runtime_dir / "link.json"
    if view is None:
        lines = [f"server link:  unknown: the service is not running (no {where})"]
        if action is not None and action["action"]:
            lines.append(f"  action:     {action['action']}, {action['phase']} (as the service left it)")
            if action["waiting"]:
                lines.append(f"  waiting:    {action['waiting']}")
        return lines
    if not view["server"]:
        lines = ["server link:  none configured (no [server] section)"]
    else:
        state = {"starting": "not polled yet", "connected": "connected", "failing": "failing"}[view["state"]]
        lines = [f"server link:  {state}: {view['server']} as {view['controller_id']!r}"]
        if view["last_poll"] is not None:
            lines.append(f"  last poll:  {_when(view['last_poll'], now)}: {view['last_result']}")
        if view["next_poll"] is not None:
            wait = view["next_poll"] - now
            lines.append(f"  next poll:  {'in ' + duration(wait) if wait > 0 else 'due now'}")
        if view["last_error"]:
            error = view["last_error"]
            lines.append(f"  last error: {error['code']}: {error['detail']} ({_when(error['at'], now)})")
    lines.append(f"  action:     {view['action'] + ', ' if view['action'] else ''}{view['phase']}")
    if view.get("waiting"):
        lines.append(f"  waiting:    {view['waiting']}")
    if view["mqtt"] is not None:
        lines.append(f"  MQTT:       {view['mqtt']}")
    lines.append(f"  step reports waiting: {view['reports_waiting']}")
    if not view["service_running"]:
        lines.append(f"  (the service that wrote this, pid {view['pid']}, is not running)")
    return lines


def _when(at: float, now: float) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))
    return f"{stamp} ({duration(max(0.0, now - at))} ago)"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid > 0
