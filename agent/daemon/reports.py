"""Reports on their way to the server, in the order they were made.

The orchestrator adds a report; the job worker sends what is queued, oldest
first. A report leaves the queue once the server has it, or once the server
refuses it for good (the action is closed or gone, a 4xx that no retry can
change). Any other failure (unreachable, TLS, 5xx, 429, refused credentials)
stops the sending with that report still first; the daemon tries again soon
after (and after the next report, or the next poll that reached the server),
starting with it. An action's final result (the journal's outbox) waits
while reports of that action do. So a step report (verifying, installing
into B, rebooting...) or a cancel's answer is not lost to a passing failure,
and the server never sees the steps out of order.

Progress reports name their stream (download, install): a newer one replaces
the older unsent one in its place. The queue lives in memory: after a
restart the server hears the next step, and every final result comes from
the journal's outbox (agent/ddi/outbox.py), which is on disk.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.ddi.client import DdiClient, DdiError
from agent.ddi.outbox import GONE, refused_for_good

MAX_QUEUED = 200      # reports; past it the oldest is dropped (a server away for days)


@dataclass(eq=False)
class Report:
    kind: str                                    # deploymentBase | cancelAction
    action: str
    body: dict[str, Any]
    stream: str = ""                             # a progress stream: a newer report replaces this one
    done: Callable[[], None] | None = None       # told once it was sent, or dropped


class ReportQueue:
    """Thread-safe: added to by the orchestrator, sent from by the job worker."""

    def __init__(self, limit: int = MAX_QUEUED) -> None:
        self.limit = limit
        self.items: list[Report] = []
        self.lock = threading.Lock()

    def __len__(self) -> int:
        with self.lock:
            return len(self.items)

    def add(self, report: Report) -> Report | None:
        """Queue ``report``; returns a report dropped to keep within the limit, if any."""
        with self.lock:
            if report.stream:
                for index, queued in enumerate(self.items):
                    if queued.stream == report.stream and queued.action == report.action:
                        self.items[index] = report
                        return None
            self.items.append(report)
            return self.items.pop(0) if len(self.items) > self.limit else None

    def holds(self, action: str) -> bool:
        """Whether reports of ``action`` wait: its final result must wait for them."""
        with self.lock:
            return any(report.action == action for report in self.items)

    def send(self, client: DdiClient, on_dropped: Callable[[Report, DdiError], None]) -> bool:
        """Send what is queued, oldest first; False when a passing failure stopped it."""
        while True:
            with self.lock:
                if not self.items:
                    return True
                report = self.items[0]
            try:
                client.send_feedback(report.kind, report.action, report.body)
            except DdiError as err:
                if err.code not in GONE and not refused_for_good(err):
                    return False       # kept, first in line, for the next try
                on_dropped(report, err)
            with self.lock:
                if report in self.items:    # (replaced meanwhile by a newer one of its stream: that one stays)
                    self.items.remove(report)
            if report.done:
                report.done()
