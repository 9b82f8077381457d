"""What the daemon's workers tell its orchestrator thread: one frozen dataclass per kind of
event (pure: no I/O). ``kind`` is the event's name in the log (``event-failed event=polled``).

Posted on the orchestrator's queue from the job worker, the download and install workers, the
MQTT network thread and the signal handler (docs/daemon.md, "Threads and events"). The ones
that concern the action in hand go through the machine (agent/daemon/machine.py); the rest
(timers, wake-ups, report retries, progress) are the runner's own bookkeeping.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from agent.daemon.plan import ActionPlan, PlanError
from agent.ddi.codec import Cancel, DdiFormatError, Deployment, RootPoll
from agent.policy.approval import Verdict

if TYPE_CHECKING:
    from agent.install.installer import Outcome


@dataclass(frozen=True)
class DaemonEvent:
    kind: ClassVar[str]


@dataclass(frozen=True)
class Started(DaemonEvent):
    """The daemon starts with the action record as it was left (any phase)."""

    kind = "start"


@dataclass(frozen=True)
class Polled(DaemonEvent):
    """The server answered a poll. ``deployment``: fetched (its link changed), with ``plan``, what
    it asks to fetch, or ``plan_error``; ``refused``: fetched, but not a deployment to act on."""

    kind = "polled"
    root: RootPoll
    deployment: Deployment | None = None
    cancel: Cancel | None = None
    refused: DdiFormatError | None = None
    plan: ActionPlan | None = None
    plan_error: PlanError | None = None


@dataclass(frozen=True)
class PollFailed(DaemonEvent):
    kind = "poll-failed"
    error: Exception


@dataclass(frozen=True)
class JobFailed(DaemonEvent):
    """A job on the job worker raised an error no check foresaw."""

    kind = "job-failed"
    key: str
    error: BaseException


@dataclass(frozen=True)
class ReportsSent(DaemonEvent):
    kind = "reports-sent"


@dataclass(frozen=True)
class ReportsStalled(DaemonEvent):
    kind = "reports-stalled"


@dataclass(frozen=True)
class CancelConfirmed(DaemonEvent):
    """The server has the confirmation of cancel action ``cancel`` (or had it already)."""

    kind = "cancel-confirmed"
    cancel: str


@dataclass(frozen=True)
class Checkpoint(DaemonEvent):
    kind = "checkpoint"
    action: str
    name: str
    resume: dict[str, Any]


@dataclass(frozen=True)
class Fetched(DaemonEvent):
    kind = "fetched"
    action: str
    name: str
    path: str


@dataclass(frozen=True)
class DownloadProgress(DaemonEvent):
    kind = "download-progress"
    action: str
    name: str
    done: int
    total: int | None


@dataclass(frozen=True)
class Downloaded(DaemonEvent):
    """Everything the install needs first is in hand and checked; ``version``: the manifest's."""

    kind = "downloaded"
    action: str
    version: str | None


@dataclass(frozen=True)
class DownloadFailed(DaemonEvent):
    kind = "download-failed"
    action: str
    error: BaseException


@dataclass(frozen=True)
class InstallStep(DaemonEvent):
    kind = "install-step"
    state: str
    update: dict[str, Any]


@dataclass(frozen=True)
class InstallProgress(DaemonEvent):
    kind = "install-progress"
    slot: str
    done: int
    total: int | None
    full: int | None = None       # by delta: the image's size (total: the bytes the delta fetches)


@dataclass(frozen=True)
class Installed(DaemonEvent):
    """The install (or the start's resume) ended; None: there was nothing to resume."""

    kind = "installed"
    outcome: Outcome | None


@dataclass(frozen=True)
class InstallError(DaemonEvent):
    """The install was refused before it began, or broke off with an error of its own."""

    kind = "install-error"
    error: BaseException


@dataclass(frozen=True)
class GateCheck(DaemonEvent):
    """Time to look again at the local gate that holds the action (the machine asked: Recheck)."""

    kind = "gate-check"


@dataclass(frozen=True)
class Approval(DaemonEvent):
    """The approval commands of ``[policy]`` gave their verdict on ``action`` at ``gate``."""

    kind = "approval"
    action: str
    gate: str
    verdict: Verdict


@dataclass(frozen=True)
class Wakeup(DaemonEvent):
    kind = "wakeup"
    reason: str


@dataclass(frozen=True)
class Timer(DaemonEvent):
    """The queue's wait ended with nothing in it: a poll or a report retry may be due."""

    kind = "timer"


@dataclass(frozen=True)
class Stop(DaemonEvent):
    kind = "stop"
