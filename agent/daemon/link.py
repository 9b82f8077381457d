"""The daemon's link to its server as a person checking the device wants to see it.

* What to say about polling, and when (pure): the first poll's delay when it is more than a few
  seconds away, a server's interval that the local bounds override, and each change of the
  link's state (connected, failing with a new code, back): once each, not at every poll.
* ``LinkStatus``: the link now (server, last and next poll, last error, the action in hand, MQTT,
  reports waiting), which the daemon writes to ``[device].runtime_dir/link.json`` (a tmpfs: it
  changes at every poll, and matters only while the service runs) and ``fwagent status`` reads.
  ``LinkStatusFile`` is its one reader and writer.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from agent.files import private_dir

WORTH_SAYING = 5.0        # seconds: a first poll sooner than this needs no log line
FORMAT = 1


def duration(seconds: float) -> str:
    """``4m12s``, ``2s``, ``1h05m``: a wait as a person reads it (pure)."""
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def first_poll_note(delay: float, spread: float, action_in_hand: bool) -> str | None:
    """Why the first poll waits, when it waits long enough for someone to wonder."""
    if action_in_hand or delay < WORTH_SAYING:
        return None
    return f"first poll in {duration(delay)}: startup spread (up to {duration(spread)}, [server].startup_spread)"


def interval_note(suggested: float | None, minimum: float, maximum: float, default: float) -> str | None:
    """What the local bounds make of the server's polling interval, when they change it."""
    asked = default if suggested is None else suggested
    if asked < minimum:
        return f"the server asks {duration(asked)}, polling every {duration(minimum)} ([server].poll_min)"
    if asked > maximum:
        return f"the server asks {duration(asked)}, polling every {duration(maximum)} ([server].poll_max)"
    return None


def link_change(state: str, ok: bool, code: str | None, last_code: str | None) -> str | None:
    """The link's new state after a poll, when it changed: ``connected`` (the first answer),
    ``failing`` (the first failure, or another code than the last), ``back``; else None."""
    if ok:
        return {"starting": "connected", "failing": "back"}.get(state)
    if state != "failing" or code != last_code:
        return "failing"
    return None


@dataclass
class LinkStatus:
    server: str | None = None
    controller_id: str | None = None
    state: str = "starting"                 # starting | connected | failing
    last_poll: float | None = None          # wall-clock time (seconds since the epoch)
    last_result: str | None = None          # "no action", "an action", "a cancel", or the error's code
    next_poll: float | None = None
    last_error: dict[str, Any] | None = None   # code, detail, at
    phase: str = "idle"
    action: str | None = None
    waiting: str | None = None              # why a local gate ([policy]) holds the action
    mqtt: str | None = None                 # connected | disconnected; None: not configured
    reports_waiting: int = 0                # step reports not sent yet
    pid: int = 0
    format: int = FORMAT


class LinkStatusFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def save(self, status: LinkStatus) -> None:
        """Atomically (a reader never sees half a file); not synced: it lives on a tmpfs."""
        private_dir(self.path.parent)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            json.dump(asdict(status), stream)
        os.replace(temporary, self.path)

    def load(self) -> LinkStatus | None:
        """The status the service wrote last; None when there is none or it is not one."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        known = {field.name for field in fields(LinkStatus)}
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            return None
        return LinkStatus(**{key: value for key, value in data.items() if key in known})
