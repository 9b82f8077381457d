"""The life of a server action on the device, as data (pure: no I/O, no threads).

A DDI action (a deployment the server assigned) goes through phases. The
daemon persists the phase under its stable name before it acts on it, and a
restart continues where ``RESUME`` says. The names are written to devices in
the field: never rename one; add new ones.

    idle -> [wait-approval ->] download -> wait-window <-> install -> idle
                   |                |             |           ^  |
                   |                |             |           |  v
                   +----------------+-------------+--> cancel  wait-reboot
                                                       -> idle

  (wait-window <- install: a failed install retried; install <-> wait-reboot: a staged
  install's switch held, then released, or ended)

* wait-approval: a deployment taken, nothing fetched yet: a local gate of ``[policy]``
  (approval commands, or ``fwagent approve``) holds the download (agent/policy/gates.py).
* download: the artifacts the install needs first (a bundle, or the signed
  manifest; with a closed maintenance window, every artifact) are fetched
  into the state directory, their DDI hashes and the manifest's signature
  checked.
* wait-window: everything is in hand; installing waits until the server
  allows it (update not ``skip``, maintenance window not ``unavailable``) and so does
  ``[policy]`` (install windows, approval); the record says why it waits.
* install: the A/B install runs (its own table: agent/update/flow.py); it
  ends with its outcome in the journal's outbox, which reports it (with
  ``[policy].retries``, one that failed with nothing activated goes back to
  wait-window and runs again).
* wait-reboot: with ``[policy].reboot`` = ``window`` or ``approve`` the install stops after
  writing and checking the slot (the install flow's ``staged``: nothing the bootloader boots
  has changed); the switch and the reboot wait for the reboot gate, then the install goes on
  (or, cancelled or refused, ends as failed).
* cancel: the server cancelled before the install began: clean up, then
  confirm the cancel.

A cancel during ``install`` is the installer's to decide (up to the switch it
is honoured; after it, rejected): see Installer.request_cancel.
"""

from __future__ import annotations

import hashlib
import json
from enum import Enum


class Phase(str, Enum):
    IDLE = "idle"
    APPROVAL = "wait-approval"
    DOWNLOAD = "download"
    WAIT = "wait-window"
    INSTALL = "install"
    REBOOT_WAIT = "wait-reboot"
    CANCEL = "cancel"


class Event(str, Enum):
    DEPLOYMENT = "deployment"      # the server assigns an action
    DOWNLOADED = "downloaded"      # the artifacts are in hand and checked
    HELD = "held"                  # a deployment taken, its download held by a local gate
    APPROVED = "approved"          # the local gate before the download opened
    WINDOW_OPEN = "window-open"    # the server allows the install now
    CANCEL = "cancel"              # the server cancels the action
    CLEANED = "cleaned"            # the cancelled action's files are gone and the cancel confirmed
    INSTALLED = "installed"        # the install ended; its outcome is in the outbox
    FAILED = "failed"              # the action failed before the install; its outcome is in the outbox
    WITHDRAWN = "withdrawn"        # the server no longer offers the action (closed there, or download-only)
    TOO_MANY_STARTS = "too-many-starts"   # started again and again in a phase without getting further
    STAGED = "staged"              # the install wrote and checked the slot; its switch waits
    ACTIVATE = "activate"          # the reboot gate opened: the staged install goes on
    ABANDON = "abandon"            # the reboot gate refused: the staged install ends as failed
    RETRY = "retry"                # the install failed with nothing activated; it runs again ([policy].retries)


TRANSITIONS: dict[tuple[Phase, Event], Phase] = {
    (Phase.IDLE, Event.DEPLOYMENT): Phase.DOWNLOAD,
    (Phase.IDLE, Event.HELD): Phase.APPROVAL,
    (Phase.APPROVAL, Event.APPROVED): Phase.DOWNLOAD,
    (Phase.APPROVAL, Event.CANCEL): Phase.CANCEL,
    (Phase.APPROVAL, Event.FAILED): Phase.IDLE,       # refused by the approval, or its result already queued
    (Phase.APPROVAL, Event.WITHDRAWN): Phase.IDLE,
    (Phase.DOWNLOAD, Event.DOWNLOADED): Phase.WAIT,
    (Phase.DOWNLOAD, Event.CANCEL): Phase.CANCEL,
    (Phase.DOWNLOAD, Event.FAILED): Phase.IDLE,
    (Phase.DOWNLOAD, Event.WITHDRAWN): Phase.IDLE,
    (Phase.WAIT, Event.WINDOW_OPEN): Phase.INSTALL,
    (Phase.WAIT, Event.CANCEL): Phase.CANCEL,
    (Phase.WAIT, Event.FAILED): Phase.IDLE,           # refused by the approval, or its result already queued
    (Phase.WAIT, Event.WITHDRAWN): Phase.IDLE,
    (Phase.INSTALL, Event.INSTALLED): Phase.IDLE,
    (Phase.INSTALL, Event.CANCEL): Phase.INSTALL,     # the installer accepts or rejects it
    (Phase.INSTALL, Event.FAILED): Phase.IDLE,        # refused before it began (files unreadable, busy)
    (Phase.CANCEL, Event.CLEANED): Phase.IDLE,
    (Phase.INSTALL, Event.STAGED): Phase.REBOOT_WAIT,
    (Phase.INSTALL, Event.RETRY): Phase.WAIT,
    (Phase.REBOOT_WAIT, Event.ACTIVATE): Phase.INSTALL,
    (Phase.REBOOT_WAIT, Event.ABANDON): Phase.INSTALL,     # the installer ends it, reported from the outbox
    (Phase.REBOOT_WAIT, Event.CANCEL): Phase.INSTALL,      # likewise, as cancelled
}

# Started again and again in a phase without getting further (a crash loop): a download,
# or a cancel's clean-up, ends as a failure, reported; a crash in the download must not
# restart it forever. A wait for the window, or for approval, is no loop (power cuts while a device waits
# for days are not failures), and an install has its own bound (agent/update/flow.py).
TRANSITIONS.update({
    (Phase.DOWNLOAD, Event.TOO_MANY_STARTS): Phase.IDLE,
    (Phase.CANCEL, Event.TOO_MANY_STARTS): Phase.IDLE,
})

# After a restart: a download resumes from its checkpoint, a wait goes on (its gate looked at
# again with the reason it had), an
# install continues from the journal, a cancel is cleaned up and confirmed again.
RESUME: dict[Phase, Phase] = {phase: phase for phase in Phase}

# Starts without progress in one phase before its failure path is forced: with systemd's
# RestartSec=30s, about five minutes of a crash loop.
MAX_STARTS = 10


class ActionFlowError(RuntimeError):
    """An event the table does not allow in a phase: a bug, never a user error."""


def step(phase: Phase, event: Event) -> Phase:
    try:
        return TRANSITIONS[(phase, event)]
    except KeyError:
        raise ActionFlowError(f"no transition from {phase.value} on {event.value}") from None


def progress_mark(fetched: object, resume: object) -> str:
    """A digest of how far an action's download has got (files fetched, checkpoints): unchanged
    from one start to the next when nothing more was done."""
    return hashlib.sha256(json.dumps([fetched, resume], sort_keys=True).encode()).hexdigest()[:16]


def starts_after(phase: Phase, starts: int, mark: str, last_mark: str | None) -> int:
    """How many starts in a row found the action in ``phase`` with nothing more done (``mark``:
    a digest of what it has done so far, unchanged from ``last_mark`` when nothing was)."""
    return starts + 1 if mark == last_mark else 1


def forced(phase: Phase, starts: int) -> bool:
    """Whether this start takes the phase's failure path (a crash loop)."""
    return starts > MAX_STARTS and (phase, Event.TOO_MANY_STARTS) in TRANSITIONS
