"""The daemon's machine (agent/daemon/machine.py), table-driven: a record and an event in, the
record and every effect out, compared whole. No threads, no sleeps, no files."""

from __future__ import annotations

import ast
from datetime import datetime
import inspect
from dataclasses import replace
from typing import Any

import pytest

from agent.daemon import effects as fx
from agent.daemon import machine
from agent.daemon.actions import MAX_STARTS, TRANSITIONS, Event, Phase, progress_mark, step
from agent.daemon.events import (
    Approval,
    CancelConfirmed,
    Checkpoint,
    DaemonEvent,
    Downloaded,
    DownloadFailed,
    Fetched,
    GateCheck,
    Installed,
    InstallError,
    Polled,
    Started,
)
from agent.daemon.machine import Facts, advance
from agent.daemon.plan import PlanError, plan_action
from agent.daemon.record import IDLE, ActionRecord
from agent.ddi.codec import Artifact, Cancel, Chunk, DdiFormatError, Deployment, RootPoll
from agent.errors import FwagentError
from agent.install.installer import Outcome
from agent.net.policy import LinkPolicy
from agent.policy.approval import GO, REFUSE, WAIT, Verdict
from agent.policy.gates import Choice, Moment, PolicyConfig
from agent.policy.windows import parse_windows

HREF = "https://s/DEFAULT/controller/v1/gw/deploymentBase/7?c=1"
OTHER_HREF = "https://s/DEFAULT/controller/v1/gw/deploymentBase/8?c=1"
BUNDLE = Artifact("u.fwb", 10, {"sha256": "ab" * 32}, "https://s/u.fwb")


def deployment(action: str = "7", *, update: str = "forced", download: str = "forced",
               window: str | None = None) -> Deployment:
    return Deployment(action, download, update, window, (Chunk("os", "gw", "2.0", (BUNDLE,)),))


PLAN = plan_action(deployment(), LinkPolicy.for_server("https://s"))
DOWNLOADING = ActionRecord(Phase.DOWNLOAD, "7", PLAN.as_dict(), may_install=True, window=None, fetched={},
                           resume={}, version="2.0")
CLOSED = replace(DOWNLOADING, may_install=False, window="unavailable")          # fetches everything first
WAITING = replace(CLOSED, phase=Phase.WAIT, fetched={"u.fwb": "/s/incoming/a/artifact-0"})
INSTALLING = replace(WAITING, phase=Phase.INSTALL, may_install=True, window="available")
CANCELLING = replace(DOWNLOADING, phase=Phase.CANCEL, cancel="9")
MARK = progress_mark({}, {})
HOLDS_IT = Facts(reported={"7": "bundle"})
RUNNING = Facts(installing=True)


def polled(deployment_: Deployment | None = None, *, href: str | None = HREF, **fields: Any) -> Polled:
    plan = plan_action(deployment_, LinkPolicy.for_server("https://s")) if deployment_ else None
    return Polled(RootPoll(sleep=None, deployment=href), deployment_, plan=plan, **fields)


def ended(record: ActionRecord, on: Event, **fields: Any) -> list[fx.Effect]:
    """What ending an action always does, in this order."""
    moved = replace(record, phase=step(record.phase, on), starts=0, **fields)
    return [fx.StopDownload(), fx.Persist(moved), fx.Announce(on), fx.RemoveDownloads(record.action), fx.Persist(IDLE)]


def failed(record: ActionRecord, code: str, reason: str, on: Event = Event.FAILED) -> list[fx.Effect]:
    return [fx.Log("error", "action-failed", {"action": record.action, "code": code, "msg": reason}),
            fx.QueueResult(record.action, code, reason, record.version), *ended(record, on), fx.Deliver()]


def accepted(action: str = "7", *, window: str | None = None, may_install: bool = True,
             text: str = "checking the signed manifest of u.fwb; it streams into the slots") -> list[fx.Effect]:
    record = ActionRecord(Phase.DOWNLOAD, action, PLAN.as_dict(), may_install, window, {}, {}, "2.0")
    return [fx.Log("info", "deployment", {"action": action, "download": "forced",
                                          "update": "skip" if not may_install and window is None else "forced",
                                          "window": window}),
            fx.Persist(record), fx.Announce(Event.DEPLOYMENT),
            fx.Feedback("proceeding", text, progress=(0, 100)), fx.StartDownload()]


def confirm(record: ActionRecord) -> list[fx.Effect]:
    return [fx.RemoveDownloads(record.action), fx.ConfirmCancel(record.cancel or record.action)]


def cancel_seen(stop: str = "7", phase: Phase = Phase.DOWNLOAD) -> fx.Log:
    return fx.Log("info", "cancel", {"action": stop, "phase": phase.value})


CANCEL = Cancel("9", "7")
NOT_AN_ACTION = DdiFormatError("the deployment's id is not an action id", code="ddi-action-id")
PLAN_REFUSED = PlanError("1 artifact of a host not listed", code="foreign-link")
DOWNLOAD_BROKE = FwagentError("connection reset", code="download-io")
COMMITTED = Outcome("d4b33c09aa", "success", "committed", version="2.0", origin={"ddi_action": "7"})
PENDING = Outcome("d4b33c09aa", "pending", "reboot", origin={"ddi_action": "7"})
IDS = {"action": "7", "update": "d4b33c09"}
LIMIT = FwagentError(f"started {MAX_STARTS + 1} times in phase download without getting further "
                     f"(more than {MAX_STARTS}): given up", code="restart-limit")
CANCEL_LIMIT = FwagentError(f"started {MAX_STARTS + 1} times in phase cancel without getting further "
                            f"(more than {MAX_STARTS}): given up", code="restart-limit")

# --- [policy]: local gates ---------------------------------------------------------------------

NOON = Moment(1_000_000.0, datetime(2026, 12, 7, 12, 0))        # a Monday
NIGHT = Moment(1_000_000.0, datetime(2026, 12, 8, 2, 30))       # Tuesday, in the window
COMMANDS = PolicyConfig(approve=(("/usr/lib/app/may-update",),))
MANUAL = PolicyConfig(approve="manual")
WINDOWED = PolicyConfig(install_windows=parse_windows(["Mon-Fri 02:00-04:00"]))
ASKING = Facts(policy=COMMANDS, moment=NOON)
HELD = replace(DOWNLOADING, phase=Phase.APPROVAL)
APPROVING = replace(HELD, waiting="waiting for approval")
IN_WAIT = replace(WAITING, may_install=True, window=None)


def waits(record: ActionRecord, gate: str, reason: str, *more: fx.Effect) -> list[fx.Effect]:
    """What a gate that starts to hold the action does."""
    return [fx.Persist(replace(record, waiting=reason)),
            fx.Log("info", "waiting", {"action": record.action, "gate": gate, "msg": reason}),
            fx.Waiting(), fx.Feedback("scheduled", reason), *more]


def downloads(record: ActionRecord) -> list[fx.Effect]:
    moved = replace(record, phase=Phase.DOWNLOAD, waiting=None, retry_at=None)
    return [fx.Persist(moved), fx.Announce(Event.APPROVED),
            fx.Feedback("proceeding", "checking the signed manifest of u.fwb; it streams into the slots",
                        progress=(0, 100)), fx.StartDownload()]


def installs(record: ActionRecord) -> list[fx.Effect]:
    return [fx.Persist(replace(record, phase=Phase.INSTALL, waiting=None, retry_at=None)),
            fx.Announce(Event.WINDOW_OPEN), fx.StartInstall()]


GONE_AT_DOWNLOAD = replace(DOWNLOADING, waiting=None)
POLICY_CASES: list[tuple[str, ActionRecord, DaemonEvent, Facts, ActionRecord, list[fx.Effect]]] = [
    ("approval commands: a deployment is held before its download", IDLE, polled(deployment()), ASKING, APPROVING,
     [fx.Log("info", "deployment", {"action": "7", "download": "forced", "update": "forced", "window": None}),
      fx.Persist(HELD), fx.Announce(Event.HELD),
      *waits(HELD, "download", "waiting for approval", fx.RunApproval("download"), fx.Recheck(1_000_060.0)),
      fx.Deliver()]),
    ("the approval says go: the download starts", APPROVING, Approval("7", "download", Verdict(GO)), ASKING,
     GONE_AT_DOWNLOAD, downloads(APPROVING)),
    ("the approval asks to wait: held until then", APPROVING,
     Approval("7", "download", Verdict(WAIT, "may-update asks to wait", 30)), ASKING,
     replace(APPROVING, retry_at=1_000_030.0, waiting="the approval command asked to wait until 12:00:30"),
     [fx.Persist(replace(APPROVING, retry_at=1_000_030.0)),
      *waits(replace(APPROVING, retry_at=1_000_030.0), "download",
             "the approval command asked to wait until 12:00:30", fx.Recheck(1_000_030.0))]),
    ("a look while the approval waits: nothing new", replace(APPROVING, retry_at=1_000_030.0,
                                                            waiting="the approval command asked to wait until 12:00:30"),
     GateCheck(), ASKING, replace(APPROVING, retry_at=1_000_030.0,
                                  waiting="the approval command asked to wait until 12:00:30"),
     [fx.Recheck(1_000_030.0)]),
    ("the wait asked for is over: the commands asked again", replace(APPROVING, retry_at=999_000.0),
     GateCheck(), ASKING, replace(APPROVING, retry_at=999_000.0),
     [fx.RunApproval("download"), fx.Recheck(1_000_060.0)]),
    ("a look while the commands run: they are not started twice", APPROVING, GateCheck(),
     replace(ASKING, approving=True), APPROVING, [fx.Recheck(1_000_060.0)]),
    ("the approval refuses: closed as rejected with its reason", APPROVING,
     Approval("7", "download", Verdict(REFUSE, "battery low")), ASKING, IDLE,
     failed(HELD, "rejected", "battery low")),
    ("a verdict on another action is moot", APPROVING, Approval("8", "download", Verdict(GO)), ASKING, APPROVING, []),
    ("a verdict for another gate is moot", APPROVING, Approval("7", "install", Verdict(GO)), ASKING, APPROVING, []),
    ("manual: waiting for fwagent approve, looked at again soon", HELD, GateCheck(),
     Facts(policy=MANUAL, moment=NOON), replace(HELD, waiting="waiting for approval (fwagent approve)"),
     waits(HELD, "download", "waiting for approval (fwagent approve)", fx.Recheck(1_000_002.0))),
    ("manual: fwagent approve opens the gate", replace(HELD, waiting="waiting for approval (fwagent approve)"),
     GateCheck(), Facts(policy=MANUAL, moment=NOON, choice=Choice("7", "approve")), GONE_AT_DOWNLOAD,
     downloads(HELD)),
    ("an approval of another action opens nothing", replace(HELD, waiting="waiting for approval (fwagent approve)"),
     GateCheck(), Facts(policy=MANUAL, moment=NOON, choice=Choice("8", "approve")),
     replace(HELD, waiting="waiting for approval (fwagent approve)"), [fx.Recheck(1_000_002.0)]),
    ("fwagent defer holds it until then, looked at again within a minute", HELD, GateCheck(),
     Facts(policy=MANUAL, moment=NOON, choice=Choice("7", "defer", 1_003_600.0)),
     replace(HELD, waiting="deferred until 13:00:00"),
     waits(HELD, "download", "deferred until 13:00:00", fx.Recheck(1_000_060.0))),
    ("a start waiting for approval: the gate looked at again", APPROVING, Started(), ASKING,
     replace(APPROVING, starts=1, done=MARK),
     [fx.Persist(replace(APPROVING, starts=1, done=MARK)), fx.Recheck(0.0)]),
    ("a cancel while waiting for approval", APPROVING, polled(cancel=CANCEL), ASKING,
     replace(APPROVING, phase=Phase.CANCEL, cancel="9", waiting=None),
     [cancel_seen(phase=Phase.APPROVAL), fx.Persist(replace(APPROVING, phase=Phase.CANCEL, cancel="9", waiting=None)),
      fx.Announce(Event.CANCEL), fx.StopDownload(), *confirm(replace(APPROVING, cancel="9")), fx.Deliver()]),
    ("the server drops an action waiting for approval", APPROVING, polled(href=None), ASKING, IDLE,
     [fx.Log("info", "action-withdrawn", {"action": "7"}), *ended(replace(APPROVING, waiting=None), Event.WITHDRAWN),
      fx.Deliver()]),
    ("outside the install window: held, with the next opening", IN_WAIT, polled(deployment()),
     Facts(policy=WINDOWED, moment=NOON), replace(IN_WAIT, waiting="outside the install window until 02:00"),
     [*waits(IN_WAIT, "install", "outside the install window until 02:00", fx.Recheck(1_000_060.0)), fx.Deliver()]),
    ("downloaded outside the install window", replace(DOWNLOADING, fetched={"u.fwb": "/f"}), Downloaded("7", None),
     Facts(policy=WINDOWED, moment=NOON),
     replace(DOWNLOADING, phase=Phase.WAIT, fetched={"u.fwb": "/f"}, waiting="outside the install window until 02:00"),
     [fx.Persist(replace(DOWNLOADING, phase=Phase.WAIT, fetched={"u.fwb": "/f"})), fx.Announce(Event.DOWNLOADED),
      fx.Feedback("downloaded", "downloaded and verified, version 2.0", progress=(100, 100)),
      *waits(replace(DOWNLOADING, phase=Phase.WAIT, fetched={"u.fwb": "/f"}), "install",
             "outside the install window until 02:00", fx.Recheck(1_000_060.0))]),
    ("the install window opens", replace(IN_WAIT, waiting="outside the install window until 02:00"), GateCheck(),
     Facts(policy=WINDOWED, moment=NIGHT), replace(IN_WAIT, phase=Phase.INSTALL),
     installs(replace(IN_WAIT, waiting="outside the install window until 02:00"))),
    ("the install window is open but the server's is not", replace(IN_WAIT, may_install=False), GateCheck(),
     Facts(policy=WINDOWED, moment=NIGHT), replace(IN_WAIT, may_install=False), []),
    ("approval commands at the install gate", IN_WAIT, GateCheck(), ASKING,
     replace(IN_WAIT, waiting="waiting for approval"),
     waits(IN_WAIT, "install", "waiting for approval", fx.RunApproval("install"), fx.Recheck(1_000_060.0))),
    ("the approval at the install gate says go", replace(IN_WAIT, waiting="waiting for approval"),
     Approval("7", "install", Verdict(GO)), ASKING, replace(IN_WAIT, phase=Phase.INSTALL),
     installs(replace(IN_WAIT, waiting="waiting for approval"))),
    ("when = online: no gate opens before a poll is answered", IN_WAIT, GateCheck(),
     Facts(policy=PolicyConfig(when="online"), moment=NIGHT),
     replace(IN_WAIT, waiting="waiting to be online: no poll answered since the start"),
     waits(IN_WAIT, "install", "waiting to be online: no poll answered since the start")),
    ("when = online, once online", replace(IN_WAIT, waiting="waiting to be online: no poll answered since the start"),
     polled(deployment()), Facts(policy=PolicyConfig(when="online"), moment=NIGHT, online=True),
     replace(IN_WAIT, phase=Phase.INSTALL),
     installs(replace(IN_WAIT, waiting="waiting to be online: no poll answered since the start"))),
]

# --- [policy].reboot: the staged install's switch waits at its own gate ----------------------------

STAGED = Outcome("d4b33c09aa", "pending", "staged", origin={"ddi_action": "7"})
REBOOTING = replace(INSTALLING, phase=Phase.REBOOT_WAIT)
MANUAL_REBOOT = PolicyConfig(approve="manual", reboot="approve")
REBOOT_WINDOW = PolicyConfig(install_windows=parse_windows(["Mon-Fri 02:00-04:00"]), reboot="window")
FOR_REBOOT = "staged; the switch and reboot wait: waiting for approval (fwagent approve)"
STAGED_FACTS = Facts(policy=MANUAL_REBOOT, moment=NOON)

REBOOT_CASES: list[tuple[str, ActionRecord, DaemonEvent, Facts, ActionRecord, list[fx.Effect]]] = [
    ("reboot = window: the install runs outside the window, staged", IN_WAIT, GateCheck(),
     Facts(policy=REBOOT_WINDOW, moment=NOON), replace(IN_WAIT, phase=Phase.INSTALL),
     [fx.Persist(replace(IN_WAIT, phase=Phase.INSTALL)), fx.Announce(Event.WINDOW_OPEN), fx.StartInstall(stage=True)]),
    ("the install is staged: the switch waits for approval", INSTALLING, Installed(STAGED), STAGED_FACTS,
     replace(REBOOTING, waiting=FOR_REBOOT),
     [fx.Log("info", "install-ended", {"result": "pending", "state": "staged", "code": None, "msg": None,
                                       "version": None, **IDS}),
      fx.Show("staged: written and checked; the switch and reboot wait for [policy].reboot", **IDS), fx.Ready(),
      fx.Persist(REBOOTING), fx.Announce(Event.STAGED), *waits(REBOOTING, "reboot", FOR_REBOOT, fx.Recheck(1_000_002.0))]),
    ("an approval of the download is none of the reboot", replace(REBOOTING, waiting=FOR_REBOOT), GateCheck(),
     replace(STAGED_FACTS, choice=Choice("7", "approve")), replace(REBOOTING, waiting=FOR_REBOOT),
     [fx.Recheck(1_000_002.0)]),
    ("fwagent approve on the staged action: it switches", replace(REBOOTING, waiting=FOR_REBOOT), GateCheck(),
     replace(STAGED_FACTS, choice=Choice("7", "approve-reboot")), INSTALLING,
     [fx.Persist(INSTALLING), fx.Announce(Event.ACTIVATE), fx.Activate()]),
    ("staged, found by the start-up resume: the gate waits for it to end", REBOOTING, GateCheck(),
     replace(STAGED_FACTS, installing=True, choice=Choice("7", "approve-reboot")), REBOOTING, []),
    ("staged, the start-up resume ended: the gate looked at", replace(REBOOTING, waiting=FOR_REBOOT),
     Installed(STAGED), replace(STAGED_FACTS, choice=Choice("7", "approve-reboot")), INSTALLING,
     [fx.Log("info", "install-ended", {"result": "pending", "state": "staged", "code": None, "msg": None,
                                       "version": None, **IDS}),
      fx.Show("staged: written and checked; the switch and reboot wait for [policy].reboot", **IDS), fx.Ready(),
      fx.Persist(INSTALLING), fx.Announce(Event.ACTIVATE), fx.Activate()]),
    ("reboot = window: the switch waits for the window", REBOOTING, GateCheck(), Facts(policy=REBOOT_WINDOW, moment=NOON),
     replace(REBOOTING, waiting="staged; the switch and reboot wait: outside the install window until 02:00"),
     waits(REBOOTING, "reboot", "staged; the switch and reboot wait: outside the install window until 02:00",
           fx.Recheck(1_000_060.0))),
    ("the approval refuses the reboot: the staged update ends as rejected", replace(REBOOTING, waiting=FOR_REBOOT),
     Approval("7", "reboot", Verdict(REFUSE, "line busy")), Facts(policy=replace(COMMANDS, reboot="approve"),
                                                                  moment=NOON), INSTALLING,
     [fx.Log("error", "action-failed", {"action": "7", "code": "rejected", "msg": "line busy"}),
      fx.Persist(INSTALLING), fx.Announce(Event.ABANDON), fx.AbortStaged("rejected", "line busy")]),
    ("a cancel of a staged update: the installer ends it", REBOOTING, polled(cancel=CANCEL), STAGED_FACTS, INSTALLING,
     [cancel_seen(phase=Phase.REBOOT_WAIT), fx.Persist(INSTALLING), fx.Announce(Event.CANCEL),
      fx.AbortStaged("cancelled", "cancelled by the server")]),
]

# --- [policy].retries: a failed download goes again after a back-off ---------------------------

RETRYING = Facts(policy=PolicyConfig(retries=3), moment=NOON)
INSTALL_FAILED = Outcome("d4b33c09aa", "failure", "failed", code="slot-io", reason="EIO", origin={"ddi_action": "7"})
RETRY_REASON = "the install failed (slot-io); attempt 2 of 3 at 12:00:30"
RETRY_WAIT = replace(INSTALLING, phase=Phase.WAIT, attempts=1, retry_at=1_000_030.0, waiting=RETRY_REASON)
BROKE = "connection reset"

RETRY_CASES: list[tuple[str, ActionRecord, DaemonEvent, Facts, ActionRecord, list[fx.Effect]]] = [
    ("retries left: the failed download goes again after its back-off", DOWNLOADING,
     DownloadFailed("7", DOWNLOAD_BROKE), RETRYING, replace(DOWNLOADING, attempts=1, retry_at=1_000_030.0),
     [fx.Persist(replace(DOWNLOADING, attempts=1, retry_at=1_000_030.0)),
      fx.Log("warning", "download-retry", {"action": "7", "code": "download-io", "msg": BROKE, "attempt": 2,
                                           "of": 3, "wait": "30s"}),
      fx.Feedback("proceeding", f"the download failed (download-io: {BROKE}); attempt 2 of 3 in 30 s"),
      fx.Recheck(1_000_030.0)]),
    ("the second failure waits twice as long", replace(DOWNLOADING, attempts=1), DownloadFailed("7", DOWNLOAD_BROKE),
     RETRYING, replace(DOWNLOADING, attempts=2, retry_at=1_000_060.0),
     [fx.Persist(replace(DOWNLOADING, attempts=2, retry_at=1_000_060.0)),
      fx.Log("warning", "download-retry", {"action": "7", "code": "download-io", "msg": BROKE, "attempt": 3,
                                           "of": 3, "wait": "60s"}),
      fx.Feedback("proceeding", f"the download failed (download-io: {BROKE}); attempt 3 of 3 in 60 s"),
      fx.Recheck(1_000_060.0)]),
    ("the last attempt fails: the failure is reported", replace(DOWNLOADING, attempts=2),
     DownloadFailed("7", DOWNLOAD_BROKE), RETRYING, IDLE,
     failed(replace(DOWNLOADING, attempts=2), "download-io", BROKE)),
    ("the back-off is not over", replace(DOWNLOADING, attempts=1, retry_at=1_000_030.0), GateCheck(), RETRYING,
     replace(DOWNLOADING, attempts=1, retry_at=1_000_030.0), [fx.Recheck(1_000_030.0)]),
    ("the back-off is over: the download again", replace(DOWNLOADING, attempts=1, retry_at=999_999.0), GateCheck(),
     RETRYING, replace(DOWNLOADING, attempts=1),
     [fx.Persist(replace(DOWNLOADING, attempts=1)), fx.StartDownload()]),
    ("an install failed with nothing activated: back to wait-window, run again after its back-off", INSTALLING,
     Installed(INSTALL_FAILED), RETRYING, RETRY_WAIT,
     [fx.Log("info", "install-ended", {"result": "failure", "state": "failed", "code": "slot-io", "msg": "EIO",
                                       "version": None, **IDS}),
      fx.Log("warning", "install-retry", {"action": "7", "code": "slot-io", "msg": "EIO", "attempt": 2, "of": 3,
                                          "wait": "30s"}),
      fx.Persist(RETRY_WAIT), fx.Announce(Event.RETRY), fx.Unqueue("d4b33c09aa"), fx.Waiting(),
      fx.Feedback("proceeding", RETRY_REASON), fx.Recheck(1_000_030.0), fx.Ready()]),
    ("a failed install's back-off is not over", RETRY_WAIT, GateCheck(), RETRYING, RETRY_WAIT,
     [fx.Recheck(1_000_030.0)]),
    ("a failed install's back-off is over: it runs again", replace(RETRY_WAIT, retry_at=999_000.0), GateCheck(),
     RETRYING, replace(INSTALLING, attempts=1),
     [fx.Persist(replace(INSTALLING, attempts=1)), fx.Announce(Event.WINDOW_OPEN), fx.StartInstall()]),
    ("the last install attempt fails: its result stays in the outbox", replace(INSTALLING, attempts=2),
     Installed(INSTALL_FAILED), RETRYING, IDLE,
     [fx.Log("info", "install-ended", {"result": "failure", "state": "failed", "code": "slot-io", "msg": "EIO",
                                       "version": None, **IDS}),
      *ended(replace(INSTALLING, attempts=2), Event.INSTALLED),
      fx.Show("idle; the update ended: failed (slot-io)", **IDS), fx.Ready(), fx.Deliver(), fx.SendConfig()]),
    ("a cancelled install is not retried", INSTALLING, Installed(replace(INSTALL_FAILED, code="cancelled")),
     RETRYING, IDLE,
     [fx.Log("info", "install-ended", {"result": "failure", "state": "failed", "code": "cancelled", "msg": "EIO",
                                       "version": None, **IDS}),
      *ended(INSTALLING, Event.INSTALLED),
      fx.Show("idle; the update ended: failed (cancelled)", **IDS), fx.Ready(), fx.Deliver(), fx.SendConfig()]),
    ("a start during the back-off is the next attempt", replace(DOWNLOADING, attempts=1, retry_at=1_000_030.0),
     Started(), RETRYING, replace(DOWNLOADING, attempts=1, starts=1, done=MARK),
     [fx.Persist(replace(DOWNLOADING, attempts=1, retry_at=1_000_030.0, starts=1, done=MARK)),
      fx.Persist(replace(DOWNLOADING, attempts=1, starts=1, done=MARK)), fx.StartDownload()]),
]

# (name, record before, event, facts, record after, effects)
CASES: list[tuple[str, ActionRecord, DaemonEvent, Facts, ActionRecord, list[fx.Effect]]] = [
    # --- the start
    ("start idle", IDLE, Started(), Facts(), IDLE, []),
    ("start in a download: counted, resumed", DOWNLOADING, Started(), Facts(),
     replace(DOWNLOADING, starts=1, done=MARK),
     [fx.Persist(replace(DOWNLOADING, starts=1, done=MARK)), fx.StartDownload()]),
    ("start in a wait: counted, nothing more", WAITING, Started(), Facts(),
     replace(WAITING, starts=1, done=progress_mark(WAITING.fetched, {})),
     [fx.Persist(replace(WAITING, starts=1, done=progress_mark(WAITING.fetched, {})))]),
    ("start in a cancel: confirmed again", CANCELLING, Started(), Facts(),
     replace(CANCELLING, starts=1, done=MARK),
     [fx.Persist(replace(CANCELLING, starts=1, done=MARK)), *confirm(CANCELLING)]),
    ("start with the download's result already queued", DOWNLOADING, Started(), HOLDS_IT, IDLE,
     ended(DOWNLOADING, Event.FAILED)),
    ("start with the wait's result already queued", WAITING, Started(), HOLDS_IT, IDLE, ended(WAITING, Event.FAILED)),
    ("start in an install: the installer resumes it", INSTALLING, Started(), Facts(),
     replace(INSTALLING, starts=1, done=progress_mark(INSTALLING.fetched, {})),
     [fx.Persist(replace(INSTALLING, starts=1, done=progress_mark(INSTALLING.fetched, {})))]),
    ("a crash loop in a download", replace(DOWNLOADING, starts=MAX_STARTS, done=MARK), Started(), Facts(), IDLE,
     [fx.Persist(replace(DOWNLOADING, starts=MAX_STARTS + 1, done=MARK)),
      *failed(replace(DOWNLOADING, starts=MAX_STARTS + 1, done=MARK), "restart-limit", LIMIT.detail,
              Event.TOO_MANY_STARTS)]),
    ("a crash loop in a cancel", replace(CANCELLING, starts=MAX_STARTS, done=MARK), Started(), Facts(), IDLE,
     [fx.Persist(replace(CANCELLING, starts=MAX_STARTS + 1, done=MARK)),
      fx.Log("error", "action-failed", {"action": "7", "code": "restart-limit", "msg": CANCEL_LIMIT.detail}),
      *ended(replace(CANCELLING, starts=MAX_STARTS + 1, done=MARK), Event.TOO_MANY_STARTS)]),
    ("no crash loop while waiting for a window", replace(WAITING, starts=1000, done=progress_mark(WAITING.fetched, {})),
     Started(), Facts(), replace(WAITING, starts=1001, done=progress_mark(WAITING.fetched, {})),
     [fx.Persist(replace(WAITING, starts=1001, done=progress_mark(WAITING.fetched, {})))]),
    # --- polls: deployments
    ("idle, a deployment to install at once", IDLE, polled(deployment()), Facts(), DOWNLOADING,
     [*accepted(), fx.Deliver()]),
    ("idle, a deployment for a closed window: everything fetched first", IDLE,
     polled(deployment(window="unavailable")), Facts(), CLOSED,
     [*accepted(window="unavailable", may_install=False, text="downloading u.fwb"), fx.Deliver()]),
    ("idle, a deployment to skip (update) is fetched, not installed", IDLE, polled(deployment(update="skip")),
     Facts(), replace(DOWNLOADING, may_install=False),
     [*accepted(may_install=False, text="downloading u.fwb"), fx.Deliver()]),
    ("idle, a deployment not to download yet", IDLE, polled(deployment(download="skip")), Facts(), IDLE,
     [fx.Deliver()]),
    ("idle, a deployment whose result is queued", IDLE, polled(deployment()), HOLDS_IT, IDLE, [fx.Deliver()]),
    ("idle, a deployment while the start-up install runs", IDLE, polled(deployment()), RUNNING, IDLE, []),
    ("idle, a deployment whose plan is refused", IDLE,
     Polled(RootPoll(None, HREF), deployment(), plan_error=PLAN_REFUSED), Facts(), IDLE,
     [fx.Log("info", "deployment", {"action": "7", "download": "forced", "update": "forced", "window": None}),
      fx.Persist(ActionRecord(Phase.DOWNLOAD, "7")), fx.Announce(Event.DEPLOYMENT),
      *failed(ActionRecord(Phase.DOWNLOAD, "7"), "foreign-link", PLAN_REFUSED.detail), fx.Deliver()]),
    ("idle, a deployment the device cannot read", IDLE, polled(refused=NOT_AN_ACTION), Facts(), IDLE,
     [fx.Log("error", "deployment-refused", {"action": "7", "code": "ddi-action-id", "msg": NOT_AN_ACTION.detail}),
      fx.Persist(ActionRecord(Phase.DOWNLOAD, "7")), fx.Announce(Event.DEPLOYMENT),
      *failed(ActionRecord(Phase.DOWNLOAD, "7"), "ddi-action-id", NOT_AN_ACTION.detail), fx.Deliver()]),
    ("a deployment the device cannot read, with no action id in its link", IDLE,
     polled(href="https://s/x/deploymentBase/7%3B7?c=1", refused=NOT_AN_ACTION), Facts(), IDLE,
     [fx.Log("error", "deployment-refused", {"action": None, "code": "ddi-action-id", "msg": NOT_AN_ACTION.detail}),
      fx.Deliver()]),
    ("a deployment the device cannot read, while another is in hand", DOWNLOADING, polled(refused=NOT_AN_ACTION),
     Facts(), DOWNLOADING,
     [fx.Log("error", "deployment-refused", {"action": "7", "code": "ddi-action-id", "msg": NOT_AN_ACTION.detail}),
      fx.Deliver()]),
    ("downloading, the window closes", DOWNLOADING, polled(deployment(window="unavailable")), Facts(),
     replace(DOWNLOADING, may_install=False), [fx.Persist(replace(DOWNLOADING, may_install=False)), fx.Deliver()]),
    ("downloading, nothing changed", DOWNLOADING, polled(deployment()), Facts(), DOWNLOADING, [fx.Deliver()]),
    ("downloading, the known link: not fetched again", replace(DOWNLOADING, href=HREF), polled(), Facts(),
     DOWNLOADING, [fx.Deliver()]),
    ("waiting, the window opens", WAITING, polled(deployment(window="available")), Facts(),
     replace(WAITING, phase=Phase.INSTALL, may_install=True),
     [fx.Persist(replace(WAITING, may_install=True)), fx.Persist(replace(WAITING, phase=Phase.INSTALL, may_install=True)),
      fx.Announce(Event.WINDOW_OPEN), fx.StartInstall()]),
    ("waiting, the window stays closed", WAITING, polled(deployment(window="unavailable")), Facts(), WAITING,
     [fx.Deliver()]),
    ("waiting, the server drops the action", WAITING, polled(href=None), Facts(), IDLE,
     [fx.Log("info", "action-withdrawn", {"action": "7"}), *ended(WAITING, Event.WITHDRAWN), fx.Deliver()]),
    ("downloading, the server drops the action", DOWNLOADING, polled(href=None), Facts(), IDLE,
     [fx.Log("info", "action-withdrawn", {"action": "7"}), *ended(DOWNLOADING, Event.WITHDRAWN), fx.Deliver()]),
    ("downloading, another action replaces it", DOWNLOADING, polled(deployment("8"), href=OTHER_HREF), Facts(),
     replace(DOWNLOADING, action="8"),
     [fx.Log("info", "action-replaced", {"action": "7", "by": "8"}), *ended(DOWNLOADING, Event.WITHDRAWN),
      *accepted("8"), fx.Deliver()]),
    ("installing, polls change nothing", INSTALLING, polled(deployment()), RUNNING, INSTALLING, []),
    ("cancelling, the server holds no cancel any more", CANCELLING, polled(href=None), Facts(), IDLE,
     [*ended(CANCELLING, Event.CLEANED), fx.Deliver()]),
    # --- polls: cancels
    ("a cancel of an action whose result is queued", IDLE, polled(cancel=CANCEL, href=None), HOLDS_IT, IDLE,
     [cancel_seen(phase=Phase.IDLE),
      fx.Feedback("rejected", "the update has ended on the device; its result follows", kind="cancelAction",
                  action="9"), fx.Deliver(), fx.Deliver()]),
    ("a cancel of an action cancelled on the device", IDLE, polled(cancel=CANCEL, href=None),
     Facts(reported={"7": "cancelled"}), IDLE,
     [cancel_seen(phase=Phase.IDLE),
      fx.Feedback("closed", "nothing of this action is in progress on the device", finished="success",
                  kind="cancelAction", action="9"), fx.Deliver()]),
    ("a cancel during the install: the installer's to decide", INSTALLING, polled(cancel=CANCEL), RUNNING,
     INSTALLING,
     [cancel_seen(phase=Phase.INSTALL),
      fx.CancelInstall(fx.Feedback("rejected", "the update is past the switch to the new slot; it cannot be "
                                   "cancelled", kind="cancelAction", action="9"))]),
    ("a cancel during a download: it stops first", DOWNLOADING, polled(cancel=CANCEL), Facts(downloading=True),
     CANCELLING, [cancel_seen(), fx.Persist(CANCELLING), fx.Announce(Event.CANCEL), fx.StopDownload(),
                  fx.Deliver()]),
    ("a cancel during a wait", WAITING, polled(cancel=CANCEL), Facts(),
     replace(WAITING, phase=Phase.CANCEL, cancel="9"),
     [cancel_seen(phase=Phase.WAIT), fx.Persist(replace(WAITING, phase=Phase.CANCEL, cancel="9")),
      fx.Announce(Event.CANCEL), fx.StopDownload(), *confirm(replace(WAITING, cancel="9")), fx.Deliver()]),
    ("a cancel again while cancelling", CANCELLING, polled(cancel=CANCEL), Facts(), CANCELLING,
     [cancel_seen(phase=Phase.CANCEL), *confirm(CANCELLING), fx.Deliver()]),
    ("a cancel of another action", DOWNLOADING, polled(cancel=Cancel("9", "5")), Facts(), DOWNLOADING,
     [cancel_seen("5"), fx.Feedback("closed", "nothing of this action is in progress on the device",
                                    finished="success", kind="cancelAction", action="9"), fx.Deliver()]),
    ("the cancel confirmed", CANCELLING, CancelConfirmed("9"), Facts(), IDLE, ended(CANCELLING, Event.CLEANED)),
    ("another cancel confirmed", CANCELLING, CancelConfirmed("5"), Facts(), CANCELLING, []),
    ("a cancel confirmed, not cancelling", DOWNLOADING, CancelConfirmed("7"), Facts(), DOWNLOADING, []),
    # --- downloads
    ("a checkpoint", DOWNLOADING, Checkpoint("7", "u.fwb", {"at": 5}), Facts(),
     replace(DOWNLOADING, resume={"u.fwb": {"at": 5}}),
     [fx.Persist(replace(DOWNLOADING, resume={"u.fwb": {"at": 5}}))]),
    ("a checkpoint of an ended action", DOWNLOADING, Checkpoint("5", "u.fwb", {"at": 5}), Facts(), DOWNLOADING, []),
    ("a file fetched", replace(CLOSED, resume={"u.fwb": {"at": 5}}), Fetched("7", "u.fwb", "/s/a/artifact-0"),
     Facts(), replace(CLOSED, fetched={"u.fwb": "/s/a/artifact-0"}),
     [fx.Persist(replace(CLOSED, fetched={"u.fwb": "/s/a/artifact-0"}))]),
    ("a file fetched while cancelling", CANCELLING, Fetched("7", "u.fwb", "/s/a/artifact-0"), Facts(), CANCELLING, []),
    ("downloaded, to install at once (streamed)", DOWNLOADING, Downloaded("7", "2.0.1"), Facts(),
     replace(DOWNLOADING, phase=Phase.INSTALL, version="2.0.1"),
     [fx.Persist(replace(DOWNLOADING, phase=Phase.WAIT, version="2.0.1")), fx.Announce(Event.DOWNLOADED),
      fx.Feedback("downloaded", "the signed manifest verified, version 2.0.1; the bundle streams into the slots",
                  progress=(100, 100)),
      fx.Persist(replace(DOWNLOADING, phase=Phase.INSTALL, version="2.0.1")), fx.Announce(Event.WINDOW_OPEN),
      fx.StartInstall()]),
    ("downloaded, for a closed window", replace(CLOSED, fetched={"u.fwb": "/f"}), Downloaded("7", None), Facts(),
     replace(CLOSED, phase=Phase.WAIT, fetched={"u.fwb": "/f"}),
     [fx.Persist(replace(CLOSED, phase=Phase.WAIT, fetched={"u.fwb": "/f"})), fx.Announce(Event.DOWNLOADED),
      fx.Feedback("downloaded", "downloaded and verified, version 2.0", progress=(100, 100)),
      fx.Feedback("scheduled", "waiting for the maintenance window", progress=(100, 100))]),
    ("downloaded, for an update to skip", replace(DOWNLOADING, may_install=False, fetched={"u.fwb": "/f"}),
     Downloaded("7", None), Facts(), replace(DOWNLOADING, phase=Phase.WAIT, may_install=False, fetched={"u.fwb": "/f"}),
     [fx.Persist(replace(DOWNLOADING, phase=Phase.WAIT, may_install=False, fetched={"u.fwb": "/f"})),
      fx.Announce(Event.DOWNLOADED),
      fx.Feedback("downloaded", "downloaded and verified, version 2.0", progress=(100, 100))]),
    ("downloaded, but cancelled meanwhile", CANCELLING, Downloaded("7", None), Facts(), CANCELLING,
     confirm(CANCELLING)),
    ("downloaded, an ended action", IDLE, Downloaded("7", None), Facts(), IDLE, []),
    ("the download failed", DOWNLOADING, DownloadFailed("7", DOWNLOAD_BROKE), Facts(), IDLE,
     failed(DOWNLOADING, "download-io", "connection reset")),
    ("the download failed while stopping", DOWNLOADING, DownloadFailed("7", DOWNLOAD_BROKE), Facts(stopping=True),
     DOWNLOADING, []),
    ("the download stopped for a cancel", CANCELLING, DownloadFailed("7", DOWNLOAD_BROKE), Facts(), CANCELLING,
     confirm(CANCELLING)),
    ("the download of an ended action failed", IDLE, DownloadFailed("7", DOWNLOAD_BROKE), Facts(), IDLE, []),
    # --- installs
    ("the install committed", INSTALLING, Installed(COMMITTED), Facts(), IDLE,
     [fx.Log("info", "install-ended", {"result": "success", "state": "committed", "code": None, "msg": None,
                                       "version": "2.0", **IDS}),
      *ended(INSTALLING, Event.INSTALLED),
      fx.Show("idle; the update ended: committed, version 2.0", **IDS), fx.Ready(), fx.Deliver(), fx.SendConfig()]),
    ("the install waits for its reboot", INSTALLING, Installed(PENDING), Facts(), INSTALLING,
     [fx.Log("info", "install-ended", {"result": "pending", "state": "reboot", "code": None, "msg": None,
                                       "version": None, **IDS}),
      fx.Show("waiting for the reboot into the new slot (step reboot)", **IDS), fx.Ready()]),
    ("nothing was in flight at the start", IDLE, Installed(None), Facts(starting=True), IDLE,
     [fx.Show("idle"), fx.Ready(), fx.Deliver(), fx.SendConfig()]),
    ("the start-up install ended with an action in hand", WAITING, Installed(None), Facts(), WAITING,
     [fx.Ready(), fx.Deliver(), fx.SendConfig()]),
    ("the install was refused", INSTALLING, InstallError(FwagentError("busy", code="busy")),
     Facts(install_ids=IDS), IDLE,
     [fx.Log("error", "install-refused", {"code": "busy", "msg": "busy", **IDS}),
      *failed(INSTALLING, "busy", "busy"), fx.Ready()]),
    ("the update in flight could not be finished at the start", IDLE, InstallError(OSError(5, "I/O error")),
     Facts(starting=True, install_ids=IDS), IDLE,
     [fx.Log("error", "install-refused", {"code": "io", "msg": "I/O error", **IDS}),
      fx.Show("started, but the update in flight could not be finished: io", **IDS), fx.Ready()]),
    ("an install error later, idle", IDLE, InstallError(OSError(5, "I/O error")), Facts(), IDLE,
     [fx.Log("error", "install-refused", {"code": "io", "msg": "I/O error"}), fx.Ready()]),
    *POLICY_CASES,
    *REBOOT_CASES,
    *RETRY_CASES,
]


@pytest.mark.parametrize(("record", "event", "facts", "after", "effects"), [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_the_machine(record: ActionRecord, event: DaemonEvent, facts: Facts, after: ActionRecord,
                     effects: list[fx.Effect]) -> None:
    result = advance(record, event, facts)
    assert list(result.effects) == effects
    assert result.record == after and result.record.phase is after.phase


def test_every_transition_of_the_table_is_taken_by_a_case() -> None:
    """The cases walk every (phase, event) of actions.TRANSITIONS, and no other; each move is
    persisted before it is announced."""
    taken = set()
    for _name, record, event, facts, _after, _effects in CASES:
        phase = persisted = record.phase
        for effect in advance(record, event, facts).effects:
            if isinstance(effect, fx.Persist):
                persisted = effect.record.phase
            elif isinstance(effect, fx.Announce):       # announces the move just persisted
                taken.add((phase, effect.on))
                assert persisted is step(phase, effect.on)
                phase = persisted
    # A cancel during the install leaves the phase as it is: the installer accepts it (the outcome
    # follows) or it is refused (CancelInstall).
    assert taken == set(TRANSITIONS) - {(Phase.INSTALL, Event.CANCEL)}
    assert step(Phase.INSTALL, Event.CANCEL) is Phase.INSTALL


def test_every_event_the_machine_takes_has_cases_and_every_effect_is_used() -> None:
    assert {type(case[2]) for case in CASES} == set(machine.HANDLERS)
    used = {type(effect) for case in CASES for effect in advance(case[1], case[2], case[3]).effects}
    assert used == set(fx.Effect.__args__)


def test_the_outbox_is_read_only_for_the_events_that_look_at_it() -> None:
    """Every case whose outcome depends on what waits in the outbox is one the runner reads it for;
    a start with nothing in hand never reads it (the journal may be damaged, being recovered)."""
    for name, record, event, facts, _after, effects in CASES:
        if facts.reported and list(advance(record, event, replace(facts, reported={})).effects) != effects:
            assert machine.reads_outbox(record, event), name
    assert not machine.reads_outbox(IDLE, Started()) and not machine.reads_outbox(CANCELLING, Started())
    assert not machine.reads_outbox(DOWNLOADING, Checkpoint("7", "u.fwb", {}))
    assert not machine.reads_outbox(DOWNLOADING, polled())        # nothing fetched: nothing to look up


def test_the_deployment_link_in_hand_is_remembered_not_persisted() -> None:
    result = advance(IDLE, polled(deployment()), Facts())
    assert result.record.href == HREF and "href" not in result.record.as_dict()
    assert advance(result.record, DownloadFailed("7", DOWNLOAD_BROKE), Facts()).record.href is None


def test_the_machine_does_no_io() -> None:
    """Its imports: no threads, network, clock or files; decisions only."""
    forbidden = {"threading", "requests", "paho", "os", "time", "socket", "shutil", "queue", "subprocess"}
    for module in (machine, fx, __import__("agent.daemon.events", fromlist=["x"]),
                   __import__("agent.daemon.record", fromlist=["x"])):
        tree = ast.parse(inspect.getsource(module))
        names = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for alias in node.names}
        names |= {(node.module or "").split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert not names & forbidden, (module.__name__, names & forbidden)


def test_a_table_gap_is_a_bug_not_a_guess() -> None:
    """An event the table does not allow in a phase raises, never moves anywhere."""
    from agent.daemon.actions import ActionFlowError

    with pytest.raises(ActionFlowError):
        machine.Decision(INSTALLING, Facts()).move(Event.DOWNLOADED)


# --- the record on disk ----------------------------------------------------------------------------


def test_records_written_by_earlier_versions_load() -> None:
    idle = ActionRecord.from_dict({"schema": 1, "phase": "idle", "action": None})
    assert idle == IDLE
    failed_plan = ActionRecord.from_dict({"schema": 1, "phase": "download", "action": "3", "plan": None})
    assert failed_plan == ActionRecord(Phase.DOWNLOAD, "3")
    cancel = ActionRecord.from_dict({"schema": 1, "phase": "cancel", "action": "99", "cancel": "99"})
    assert (cancel.phase, cancel.action, cancel.cancel, cancel.starts) == (Phase.CANCEL, "99", "99", 0)


def test_the_record_round_trips_under_its_field_names() -> None:
    record = replace(WAITING, cancel="9", starts=3, done="abc")
    data = record.as_dict()
    assert set(data) == {"schema", "phase", "action", "plan", "may_install", "window", "fetched", "resume",
                         "version", "cancel", "starts", "done"}
    assert data["phase"] == "wait-window" and ActionRecord.from_dict(data) == record
    assert IDLE.as_dict() == {"schema": 1, "phase": "idle", "action": None, "starts": 0}


def test_an_install_counts_its_attempts_apart_from_the_downloads() -> None:
    """Two failed downloads before a good one leave the install all of its retries."""
    step_ = advance(replace(DOWNLOADING, attempts=2, retry_at=1_000_030.0), Downloaded("7", "2.0.1"), RETRYING)
    assert step_.record.phase is not Phase.DOWNLOAD and step_.record.attempts == 0
