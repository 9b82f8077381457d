"""Structured log lines on stderr: ``level=info event=poll action=12 msg="..."``.

One line per event, key=value pairs (logfmt), fit for journald and for grep.
Under systemd (``JOURNAL_STREAM`` set) each line starts with the syslog
priority prefix (``<6>``), which journald turns into the entry's priority.
A password or token in a URL (``https://user:secret@host``) never reaches a
line: every value is redacted on its way out.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

PRIORITY = {"error": 3, "warning": 4, "info": 6, "debug": 7}
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#\s]*)@")


def format_line(level: str, event: str, fields: dict[str, Any], *, prefix: bool = False) -> str:
    parts = [f"level={level}", f"event={_value(event)}"]
    parts += [f"{key}={_value(value)}" for key, value in fields.items() if value is not None]
    line = " ".join(parts)
    return f"<{PRIORITY[level]}>{line}" if prefix else line


def redact(text: str) -> str:
    """Every ``scheme://user:secret@`` in ``text`` as ``scheme://user:***@`` (a lone token: ``***@``).
    The user information runs to the last ``@`` of the authority: a password may hold one."""
    def hide(match: re.Match[str]) -> str:
        user, colon, _ = match["userinfo"].partition(":")
        return f"{match['scheme']}{user + ':***' if colon else '***'}@"
    return _USERINFO.sub(hide, text)


def _value(value: Any) -> str:
    text = redact(str(value))
    if text and not any(c in text for c in ' "=\\') and text.isprintable():
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


class Log:
    """Thread-safe: whole lines, never interleaved."""

    def __init__(self, stream: TextIO | None = None, *, debug: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.prefix = "JOURNAL_STREAM" in os.environ
        self.show_debug = debug
        self.lock = threading.Lock()

    def write(self, level: str, event: str, **fields: Any) -> None:
        if level == "debug" and not self.show_debug:
            return
        line = format_line(level, event, fields, prefix=self.prefix)
        with self.lock:
            self.stream.write(line + "\n")
            self.stream.flush()

    def info(self, event: str, **fields: Any) -> None:
        self.write("info", event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self.write("warning", event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self.write("error", event, **fields)

    def debug(self, event: str, **fields: Any) -> None:
        self.write("debug", event, **fields)


class Throttle:
    """At most one log line per ``interval`` seconds for an event that can come in floods."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval, self.clock = interval, clock
        self.last = float("-inf")

    def due(self) -> bool:
        now = self.clock()
        if now - self.last < self.interval:
            return False
        self.last = now
        return True
