"""systemd's service notifications (sd_notify(3)) with the standard library.

Under ``Type=notify`` systemd passes ``$NOTIFY_SOCKET``, an AF_UNIX datagram
socket (a path, or ``@name`` for an abstract one), and with ``WatchdogSec=``
also ``$WATCHDOG_USEC`` and ``$WATCHDOG_PID``. Each notification is one
datagram of ``KEY=value`` lines: ``READY=1``, ``STATUS=<text>``,
``STOPPING=1``, ``WATCHDOG=1``, ``EXTEND_TIMEOUT_USEC=<n>``.

The core is pure: the datagram's text, the socket's address and the watchdog
interval from the environment. ``Notifier`` is the thin shell around one
datagram socket. It never raises and never holds its caller for longer than
``SEND_TIMEOUT``: a notification that cannot be sent is logged, at most once
a minute. Outside systemd (no ``$NOTIFY_SOCKET``) it does nothing.

``Notifier.tick`` does what is due and ``Notifier.wait`` says when the next
thing is due; the daemon's loop calls both, so that ``WATCHDOG=1`` is sent by
the loop itself: a loop that hangs stops pinging, and systemd restarts the
service. While the start-up work runs (before ``READY=1``) ``tick`` extends
systemd's start timeout, one interval at a time, as long as the loop runs.
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time
from collections.abc import Callable, MutableMapping
from typing import Any, TypeVar

from agent.errors import code_and_detail

VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
SEND_TIMEOUT = 1.0          # seconds one datagram may wait for room in systemd's queue
STATUS_INTERVAL = 1.0       # seconds at least between two STATUS= lines; the newest waiting one follows
STATUS_MAX = 200            # characters of one STATUS= line
START_EXTEND_EVERY = 15.0   # seconds between two extensions of the start timeout while the start-up work runs
START_EXTEND_BY = 60.0      # seconds each extension gives, counted from when it is sent
FAILURE_LOG_INTERVAL = 60.0

T = TypeVar("T")


# --- pure ------------------------------------------------------------------------------------


def message(**fields: Any) -> bytes:
    """One notification: ``KEY=value`` lines. A value is one line of printable text."""
    lines = []
    for key, value in fields.items():
        text = " ".join(str(value).split())           # newlines and control whitespace become spaces
        text = "".join(c if c.isprintable() else "?" for c in text)
        lines.append(f"{key}={text}")
    return "\n".join(lines).encode("utf-8", "replace")


def status_text(text: str) -> str:
    """A STATUS= line as shown: one line, at most STATUS_MAX characters."""
    line = " ".join(text.split())
    return line if len(line) <= STATUS_MAX else line[:STATUS_MAX - 3] + "..."


def socket_address(value: str | None) -> str | None:
    """``$NOTIFY_SOCKET`` as a socket address: an absolute path as it is, ``@name`` as the abstract
    address ``\\0name``; anything else (unset, empty, relative) is none."""
    if not value:
        return None
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    return value if value.startswith("/") else None


def watchdog_interval(usec: str | None, pid: str | None, own_pid: int) -> float | None:
    """Seconds between two ``WATCHDOG=1``: half of ``$WATCHDOG_USEC``, if it is a positive whole
    number and ``$WATCHDOG_PID`` is unset or this process; else none (no watchdog for us)."""
    if not usec or not usec.isdigit() or int(usec) == 0:
        return None
    if pid and (not pid.isdigit() or int(pid) != own_pid):
        return None
    return int(usec) / 2e6


# --- the shell ---------------------------------------------------------------------------------


class Notifier:
    """Notifications to systemd, when it asked for them (``address`` set)."""

    def __init__(self, address: str | None = None, *, watchdog: float | None = None,
                 clock: Callable[[], float] = time.monotonic, status_interval: float = STATUS_INTERVAL,
                 log: Callable[..., None] | None = None) -> None:
        self.address = address
        self.watchdog = watchdog if address else None
        self.clock = clock
        self.status_interval = status_interval
        self.log = log
        self.lock = threading.Lock()
        self.socket: socket.socket | None = None
        self.ready_sent = False
        self.stopping_sent = False
        now = clock()
        self.ping_at = now                  # the first ping goes with the first tick
        self.extend_at = now                # so does the first extension of the start timeout
        self.status_at = -math.inf          # when the last STATUS= went
        self.status_shown: str | None = None
        self.status_waiting: str | None = None
        self.failure_logged_at = -math.inf

    @classmethod
    def from_environment(cls, environ: MutableMapping[str, str] | None = None, pid: int | None = None,
                         **options: Any) -> "Notifier":
        """A notifier for what systemd passed. The variables are removed from ``environ`` (the
        process's environment by default), so that no child (a health command, the reboot
        command) takes the service's notifications for its own."""
        environ = os.environ if environ is None else environ
        values = {name: environ.pop(name, None) for name in VARIABLES}
        own = os.getpid() if pid is None else pid
        return cls(socket_address(values["NOTIFY_SOCKET"]),
                   watchdog=watchdog_interval(values["WATCHDOG_USEC"], values["WATCHDOG_PID"], own), **options)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    # --- what the daemon tells --------------------------------------------------------------

    def ready(self, status: str | None = None) -> None:
        """The start-up work is done: ``READY=1`` (with the status, when given)."""
        fields: dict[str, Any] = {"READY": 1}
        if status is not None:
            fields["STATUS"] = self._shown(status)
        self.ready_sent = True
        self._send(message(**fields))

    def stopping(self, status: str = "stopping") -> None:
        self.stopping_sent = True
        self._send(message(STOPPING=1, STATUS=self._shown(status)))

    def status(self, text: str) -> None:
        """A status line for ``systemctl status``: sent now, or once STATUS_INTERVAL has passed
        since the last one (the newest line waiting then goes; ``tick`` sends it)."""
        line = status_text(text)
        if line == self.status_shown and self.status_waiting is None:
            return
        self.status_waiting = line
        if self.clock() >= self.status_at + self.status_interval:
            self._send_status()

    # --- the loop's part ----------------------------------------------------------------------

    def tick(self) -> None:
        """What is due now: a watchdog ping, an extension of the start timeout, a waiting status."""
        if not self.enabled:
            return
        now = self.clock()
        if self.watchdog is not None and now >= self.ping_at:
            self.ping_at = now + self.watchdog
            self._send(b"WATCHDOG=1")
        if self._starting() and now >= self.extend_at:
            self.extend_at = now + START_EXTEND_EVERY
            self._send(message(EXTEND_TIMEOUT_USEC=int(START_EXTEND_BY * 1e6)))
        if self.status_waiting is not None and now >= self.status_at + self.status_interval:
            self._send_status()

    def wait(self) -> float:
        """Seconds until ``tick`` has something to do (infinite: nothing will be)."""
        if not self.enabled:
            return math.inf
        due = [self.ping_at] if self.watchdog is not None else []
        if self._starting():
            due.append(self.extend_at)
        if self.status_waiting is not None:
            due.append(self.status_at + self.status_interval)
        return max(0.0, min(due) - self.clock()) if due else math.inf

    def close(self) -> None:
        with self.lock:
            if self.socket is not None:
                self.socket.close()
                self.socket = None

    # --- sending ------------------------------------------------------------------------------

    def _starting(self) -> bool:
        return not self.ready_sent and not self.stopping_sent

    def _shown(self, text: str) -> str:
        line = status_text(text)
        self.status_shown, self.status_waiting, self.status_at = line, None, self.clock()
        return line

    def _send_status(self) -> None:
        assert self.status_waiting is not None
        self._send(message(STATUS=self._shown(self.status_waiting)))

    def _send(self, data: bytes) -> None:
        if self.address is None:
            return
        with self.lock:
            try:
                if self.socket is None:
                    self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                    self.socket.settimeout(SEND_TIMEOUT)
                self.socket.sendto(data, self.address)
            except OSError as err:
                self._failed(err)

    def _failed(self, err: OSError) -> None:
        now = self.clock()
        if self.log is not None and now >= self.failure_logged_at + FAILURE_LOG_INTERVAL:
            self.failure_logged_at = now
            shown = (self.address or "").replace("\0", "@", 1)
            code, detail = code_and_detail(err)
            self.log("notify-failed", code=code, socket=shown, msg=detail)


def run_starting(work: Callable[[], T], notifier: Notifier) -> T:
    """``work()`` (the start-up work of ``fwagent run --once``) in a thread, while this thread
    keeps systemd's start timeout extended, one interval at a time, until it ends. Outside
    systemd it simply runs here."""
    if not notifier.enabled:
        return work()
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = work()
        except BaseException as err:   # noqa: BLE001 - handed to the caller as it is
            result["error"] = err

    thread = threading.Thread(target=target, name="fwagent-startup", daemon=True)
    thread.start()
    while thread.is_alive():
        notifier.tick()
        # At least once a second: a status line the work set meanwhile may be waiting.
        thread.join(max(0.05, min(notifier.wait(), 1.0)))
    if "error" in result:
        raise result["error"]
    return result.get("value")   # type: ignore[return-value]
