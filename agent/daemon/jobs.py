"""A worker thread that runs the daemon's server requests one at a time.

The orchestrator never waits on the network: it submits jobs (a poll, a
feedback, a delivery of the outbox), and each job posts what it learnt back
as an event. A job submitted with a key replaces a pending job with the same
key, in its place in the queue (a newer progress report makes the older one
pointless, and must not overtake the reports after it); jobs without a key
all run, in order. Every request inside a job has its own timeout.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

Job = Callable[[], None]


class JobWorker:
    def __init__(self, name: str, on_error: Callable[[str, BaseException], None]) -> None:
        self.on_error = on_error
        self.pending: list[tuple[str | None, Job]] = []
        self.condition = threading.Condition()
        self.closing = False
        self.deadline = float("inf")
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def submit(self, key: str | None, job: Job) -> None:
        with self.condition:
            at = next((i for i, (k, _) in enumerate(self.pending) if key is not None and k == key), None)
            if at is None:
                self.pending.append((key, job))
            else:
                self.pending[at] = (key, job)      # in its predecessor's place: reports stay in order
            self.condition.notify()

    def busy(self, key: str) -> bool:
        with self.condition:
            return any(k == key for k, _ in self.pending)

    def close(self, timeout: float) -> None:
        """Run what is pending for up to ``timeout`` seconds (reports worth flushing), then stop."""
        with self.condition:
            self.closing = True
            self.deadline = time.monotonic() + timeout
            self.condition.notify()
        self.thread.join(timeout + 1.0)

    def _run(self) -> None:
        while True:
            with self.condition:
                while not self.pending and not self.closing:
                    self.condition.wait()
                if not self.pending or time.monotonic() > self.deadline:
                    return
                key, job = self.pending.pop(0)
            try:
                job()
            except Exception as exc:    # a job's failure is reported, never the worker's end
                self.on_error(key or "job", exc)
