"""What the machine (agent/daemon/machine.py) asks the runner to do, in order: one frozen
dataclass per kind of effect (pure: no I/O). The runner (agent/daemon/orchestrator.py) carries
each out with its workers; none of them waits on the orchestrator thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.daemon.actions import Event
from agent.daemon.record import ActionRecord


@dataclass(frozen=True)
class Persist:
    """Write the record (atomically) and hold it as the action in hand: before anything acts on it."""

    record: ActionRecord


@dataclass(frozen=True)
class Announce:
    """The phase changed (on ``on``): the log's ``phase`` line, link.json, the MQTT state, the
    status line, all from the record just persisted."""

    on: Event


@dataclass(frozen=True)
class Log:
    level: str                 # info | warning | error
    event: str
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Feedback:
    """A DDI feedback, best effort (agent/daemon/reports.py): for the action in hand unless
    ``action`` names another."""

    execution: str
    text: str
    finished: str = "none"
    kind: str = "deploymentBase"
    action: str | None = None
    progress: tuple[int, int] | None = None


@dataclass(frozen=True)
class Show:
    """The status line systemd shows."""

    activity: str
    action: str | None = None
    update: str | None = None


@dataclass(frozen=True)
class Waiting:
    """Why a local gate holds the action changed (the record's ``waiting``): link.json, the MQTT
    state and the status line say it."""


@dataclass(frozen=True)
class RunApproval:
    """Run the approval commands of ``[policy]`` for the action in hand at ``gate`` (on a worker,
    which posts the verdict: Approval)."""

    gate: str


@dataclass(frozen=True)
class Recheck:
    """Post GateCheck at ``at`` (epoch seconds; one past: at once): a gate is to be looked at again."""

    at: float


@dataclass(frozen=True)
class StartDownload:
    """Fetch what the record's plan needs first and is not fetched yet, resuming from its checkpoints."""


@dataclass(frozen=True)
class StopDownload:
    """Tell the download worker, if one runs, to stop."""


@dataclass(frozen=True)
class RemoveDownloads:
    action: str


@dataclass(frozen=True)
class ConfirmCancel:
    """Tell the server that cancel action ``cancel`` is done (closed, success)."""

    cancel: str


@dataclass(frozen=True)
class CancelInstall:
    """Ask the running install to stop; when it can no longer (past the switch), send ``refused``."""

    refused: Feedback


@dataclass(frozen=True)
class StartInstall:
    """Install what the record's plan names, from the files fetched (a bundle URL streams);
    ``stage``: stop after the write, staged, until Activate."""

    stage: bool = False


@dataclass(frozen=True)
class Activate:
    """Release the staged install: it switches, reboots and goes on (Installer.release)."""


@dataclass(frozen=True)
class AbortStaged:
    """End the staged install as failed with ``code`` and ``reason`` (Installer.abort): nothing
    was activated; the outcome joins the outbox."""

    code: str
    reason: str


@dataclass(frozen=True)
class QueueResult:
    """A final result for the journal's outbox (delivered until the server has it): an action
    that failed before its install."""

    action: str
    code: str
    reason: str
    version: str | None


@dataclass(frozen=True)
class Unqueue:
    """Take outcome ``outcome`` back from the journal's outbox: its install runs again."""

    outcome: str


@dataclass(frozen=True)
class Deliver:
    """Send what waits for the server: step reports, then the outbox's final results."""


@dataclass(frozen=True)
class SendConfig:
    """Send the device's attributes (configData)."""


@dataclass(frozen=True)
class Ready:
    """The start-up work has ended (systemd's READY=1), if it had not yet."""


Effect = (Persist | Announce | Log | Feedback | Show | Waiting | RunApproval | Recheck | StartDownload | StopDownload
          | RemoveDownloads | ConfirmCancel | CancelInstall | StartInstall | Activate | AbortStaged | QueueResult
          | Unqueue | Deliver | SendConfig | Ready)
