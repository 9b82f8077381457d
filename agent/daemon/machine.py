"""The daemon's decisions about the action in hand, as one pure function:
``advance(record, event, facts) -> Step(record, effects)``.

No I/O, no threads, no clock: the runner (agent/daemon/orchestrator.py) feeds it the events
its workers post, with ``facts`` (what the runner alone knows: the results waiting in the
outbox, whether an install or a download runs), and carries out the effects it returns, in
order. The phase is the record's; every change of phase goes through actions.step (the
table of agent/daemon/actions.py), persisted before anything acts on it.

    event             phase                what the machine decides
    ---------------   ------------------   ------------------------------------------------------
    Started           approval, download,  its result already in the outbox -> idle (failed)
                        wait
                      download, cancel     too many starts without progress -> idle (too-many-starts)
                      download             resume the download
                      cancel               remove the files, confirm the cancel again
                      approval, wait       look at the gate again (Recheck)
                        held, wait-reboot
    Polled + cancel   any                  result already queued: refused; install: ask the
                                           installer; wait-reboot: -> install, the staged update
                                           ended (cancelled); download, wait: -> cancel; cancel: again;
                                           else: nothing runs here, confirmed
    Polled, refused   idle                 the action its link names -> download -> idle (failed)
    Polled + deploy.  idle                 -> download, or with [policy].approve -> approval (plan
                                           refused: -> idle, failed); not when its result is queued,
                                           download is skip, or the start-up install still runs
                      approval (same)      the gate: approved -> download; else held, with its reason
                      download (same)      the window opened or closed: remembered
                      wait (same)          the server allows it and no local gate holds it -> install
                      approval, download,  another action: this one -> idle (withdrawn), then as idle
                        wait
    Polled, no deployment  approval,       -> idle (withdrawn); cancel: -> idle (cleaned)
                      download, wait
    Checkpoint, Fetched  download          remembered (resumed from after a restart)
    Downloaded        download             -> wait; may install and no local gate holds it: -> install
                      cancel               remove the files, confirm the cancel
    DownloadFailed    download             -> idle (failed); attempts left ([policy].retries): retried
                                           after a back-off (Recheck); cancel: confirm the cancel
    CancelConfirmed   cancel               -> idle (cleaned)
    Installed         install              -> idle (installed); failed with nothing activated and
                                           attempts left ([policy].retries): -> wait (retry), its
                                           result taken back from the outbox (Unqueue);
                                           pending (a reboot comes): nothing;
                                           pending, staged -> wait-reboot, its gate looked at
                      wait-reboot          (the start-up resume found it staged) its gate looked at
    InstallError      install              -> idle (failed)
    GateCheck         approval, wait,      the gate looked at again (a window opened, a decision came);
                        wait-reboot        wait-reboot, the gate open: -> install (Activate)
                      download             a retry's back-off over: the download again
    Approval          approval, wait,      go: the gate opens (if nothing else holds it); wait: held
                        wait-reboot        until the time asked; refuse: -> idle (failed, rejected),
                                           wait-reboot: -> install, the staged update ended (rejected)

A local gate ([policy], agent/policy/gates.py) that holds the action persists the reason
(``waiting``), announces it (Waiting), reports it (``scheduled``) once per change, starts the
approval commands when they are to decide (RunApproval), and asks to be looked at again
(Recheck): the machine keeps no clock, the runner hands in the time (``facts.moment``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agent.daemon import status
from agent.daemon.actions import MAX_STARTS, Event, Phase, forced, progress_mark, starts_after, step
from agent.daemon.effects import (
    AbortStaged,
    Activate,
    Announce,
    CancelInstall,
    ConfirmCancel,
    Deliver,
    Effect,
    Feedback,
    Log,
    Persist,
    QueueResult,
    Ready,
    Recheck,
    RemoveDownloads,
    RunApproval,
    SendConfig,
    Show,
    StartDownload,
    StartInstall,
    StopDownload,
    Unqueue,
    Waiting,
)
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
from agent.daemon.record import IDLE, ActionRecord
from agent.ddi.codec import Cancel, DdiFormatError, Deployment, action_id_of
from agent.errors import FwagentError, code_and_detail
from agent.policy.approval import GO, REFUSE, WAIT
from agent.policy.gates import DOWNLOAD, INSTALL, REBOOT, RECHECK_MAX, Choice, Moment, PolicyConfig, hold, retry_delay

if TYPE_CHECKING:
    from agent.install.installer import Outcome

IN_HAND = (Phase.APPROVAL, Phase.DOWNLOAD, Phase.WAIT)     # an action taken, its install not begun
GATES = {Phase.APPROVAL: DOWNLOAD, Phase.WAIT: INSTALL, Phase.REBOOT_WAIT: REBOOT}   # the local gate of each wait


@dataclass(frozen=True)
class Facts:
    """What the runner knows that the record does not, as the event is handled."""

    reported: Mapping[str, str] = field(default_factory=dict)   # actions whose result waits in the outbox -> code
    installing: bool = False        # an install (or the start's resume) runs
    downloading: bool = False       # the download worker runs
    starting: bool = False          # the start-up work has not ended
    stopping: bool = False
    install_ids: Mapping[str, str] = field(default_factory=dict)   # how the log names the install that ran
    policy: PolicyConfig = PolicyConfig()       # [policy]: the local gates
    moment: Moment | None = None    # now, for the gates (epoch seconds and local wall time)
    online: bool = False            # a poll has been answered since the start
    choice: Choice | None = None    # the operator's decision on the action in hand (fwagent approve/defer)
    approving: bool = False         # the approval commands run


@dataclass(frozen=True)
class Step:
    record: ActionRecord
    effects: tuple[Effect, ...]


class Decision:
    """One event's decision as it is built: the record so far and the effects so far."""

    def __init__(self, record: ActionRecord, facts: Facts) -> None:
        self.record, self.facts, self.effects = record, facts, list[Effect]()

    @property
    def phase(self) -> Phase:
        return self.record.phase

    def do(self, *effects: Effect) -> None:
        self.effects.extend(effects)

    def move(self, event: Event, **fields: Any) -> None:
        """Step the phase (the table of actions.py); persisted before anything acts on it."""
        self.record = self.record.moved(step(self.phase, event), **fields)
        self.do(Persist(self.record), Announce(event))

    def keep(self, **fields: Any) -> None:
        """Persist more about the action in hand, in the same phase."""
        self.record = self.record.with_fields(**fields)
        self.do(Persist(self.record))

    def end_action(self, event: Event) -> None:
        action = self.record.action
        self.do(StopDownload())
        self.record = self.record.with_fields(href=None)
        self.move(event)
        if action:
            self.do(RemoveDownloads(action))
        self.record = IDLE
        self.do(Persist(IDLE))

    def fail_action(self, error: BaseException, event: Event = Event.FAILED) -> None:
        """The action failed before the install: its result joins the outbox, as an install's would."""
        code, detail = code_and_detail(error)
        action = self.record.action
        assert action is not None
        self.do(Log("error", "action-failed", {"action": action, "code": code, "msg": detail}),
                QueueResult(action, code, detail, self.record.version or None))
        self.end_action(event)
        self.do(Deliver())

    def finish_cancel(self) -> None:
        action = self.record.action
        assert action is not None
        self.do(RemoveDownloads(action), ConfirmCancel(self.record.cancel or action))

    def start_download(self) -> None:
        plan = self.record.action_plan()
        first = plan.fetch_first(bool(self.record.may_install))
        self.do(Feedback("proceeding", f"downloading {', '.join(a.filename for a in first)}" if first else
                         f"checking the signed manifest of {plan.main.filename}; it streams into the slots",
                         progress=(0, 100)),
                StartDownload())

    def open_gate(self, approved: bool = False) -> None:
        """Past the local gate of the phase ([policy]) when nothing holds the action there; the
        reason persisted, shown and reported when it holds it (agent/policy/gates.py)."""
        gate = GATES[self.phase]
        if gate == INSTALL and not self.record.may_install:
            return                             # the server's window first
        if gate == REBOOT and self.facts.installing:
            return                             # the start-up resume still holds the journal
        now = self.facts.moment.now if self.facts.moment else 0.0
        if gate == INSTALL and self.record.attempts and self.record.retry_at and now < self.record.retry_at:
            self.do(Recheck(min(self.record.retry_at, now + RECHECK_MAX)))
            return                             # a failed install's back-off
        if self.held(gate, approved):
            return
        if gate == DOWNLOAD:
            self.move(Event.APPROVED)
            self.start_download()
        elif gate == INSTALL:
            self.move(Event.WINDOW_OPEN)
            self.do(StartInstall(stage=self.facts.policy.reboot != "immediate"))
        else:
            self.move(Event.ACTIVATE)
            self.do(Activate())

    def held(self, gate: str, approved: bool) -> bool:
        f = self.facts
        if f.moment is None:                   # no time given: only a device without [policy] gates
            assert f.policy == PolicyConfig() and f.choice is None, "the runner gives the time for a gate"
            return False
        choice = f.choice if f.choice is not None and f.choice.action == self.record.action else None
        why = hold(f.policy, gate, f.moment, online=f.online, choice=choice, retry_at=self.record.retry_at,
                   approved=approved)
        if why is None:
            return False
        if why.reason != self.record.waiting:
            self.keep(waiting=why.reason)
            self.do(Log("info", "waiting", {"action": self.record.action, "gate": gate, "msg": why.reason}),
                    Waiting(), Feedback("scheduled", why.reason))
        if why.ask and not f.approving:
            self.do(RunApproval(gate))
        if why.recheck is not None:
            self.do(Recheck(min(why.recheck, f.moment.now + RECHECK_MAX)))
        return True


def reads_outbox(record: ActionRecord, event: DaemonEvent) -> bool:
    """Whether ``facts.reported`` matters for ``event``: the runner reads the journal's outbox only
    then. At a start the journal may be damaged, left for the install worker to recover; with
    nothing in hand the start must not touch it. Nor is it read for each download checkpoint."""
    if isinstance(event, Started):
        return record.phase in IN_HAND
    if isinstance(event, Polled):
        return event.cancel is not None or event.refused is not None or event.deployment is not None
    return False


def advance(record: ActionRecord, event: DaemonEvent, facts: Facts) -> Step:
    """The record after ``event``, and what to do, in order."""
    decision = Decision(record, facts)
    HANDLERS[type(event)](decision, event)
    return Step(decision.record, tuple(decision.effects))


# --- the start -----------------------------------------------------------------------------


def started(d: Decision, _event: Started) -> None:
    if d.phase in IN_HAND and d.record.action in d.facts.reported:
        d.end_action(Event.FAILED)            # its failure was queued just before a restart
    count_start(d)
    if d.phase is Phase.DOWNLOAD and d.record.retry_at is not None:
        d.keep(retry_at=None)                  # the start is the next attempt
    if d.phase is Phase.DOWNLOAD:
        d.do(StartDownload())
    elif d.phase is Phase.CANCEL:
        d.finish_cancel()
    elif d.phase in (Phase.APPROVAL, Phase.REBOOT_WAIT) or (d.phase is Phase.WAIT and d.record.waiting):
        d.do(Recheck(0.0))                     # its gate looked at again, at once


def count_start(d: Decision) -> None:
    """One more start with the action in its phase; a crash loop (MAX_STARTS starts without
    progress) ends the action down its failure path, reported."""
    if d.phase is Phase.IDLE:
        return
    done = progress_mark(d.record.fetched, d.record.resume)
    starts = starts_after(d.phase, d.record.starts, done, d.record.done)
    d.keep(starts=starts, done=done)
    if not forced(d.phase, starts):
        return
    error = FwagentError(f"started {starts} times in phase {d.phase.value} without getting further "
                         f"(more than {MAX_STARTS}): given up", code="restart-limit")
    if d.phase is Phase.DOWNLOAD:
        d.fail_action(error, Event.TOO_MANY_STARTS)
    else:
        d.do(Log("error", "action-failed", {"action": d.record.action, "code": error.code, "msg": error.detail}))
        d.end_action(Event.TOO_MANY_STARTS)


# --- polls -----------------------------------------------------------------------------------


def polled(d: Decision, event: Polled) -> None:
    root, deployment = event.root, event.deployment
    if event.cancel is not None:
        cancel(d, event.cancel)
    elif event.refused is not None and root.deployment is not None:
        refuse_deployment(d, root.deployment, event.refused)
    elif deployment is not None and not (d.facts.installing and d.phase is Phase.IDLE):
        deployment_seen(d, deployment, event)  # (not while the start-up work still holds the journal)
        if d.phase is not Phase.IDLE and d.record.action == deployment.action_id:
            d.record = d.record.with_fields(href=root.deployment)
    elif root.deployment is not None and root.deployment == d.record.href:
        pass                                   # the action in hand, unchanged: not fetched again
    elif d.phase in IN_HAND:
        d.do(Log("info", "action-withdrawn", {"action": d.record.action}))
        d.end_action(Event.WITHDRAWN)
    elif d.phase is Phase.CANCEL:              # the server holds no cancel any more: it took ours
        d.end_action(Event.CLEANED)
    if d.phase is not Phase.INSTALL and not d.facts.installing:
        d.do(Deliver())


def deployment_seen(d: Decision, deployment: Deployment, event: Polled) -> None:
    action = deployment.action_id
    if d.phase in (Phase.APPROVAL, Phase.DOWNLOAD, Phase.WAIT, Phase.REBOOT_WAIT) and action == d.record.action:
        if deployment.may_install != d.record.may_install:      # the window opened or closed
            d.keep(may_install=deployment.may_install)
        if d.phase in GATES:
            d.open_gate()
        return
    if d.phase in IN_HAND and action != d.record.action:
        # A new assignment without a cancel of the old one (goosebit does this): the old is gone.
        d.do(Log("info", "action-replaced", {"action": d.record.action, "by": action}))
        d.end_action(Event.WITHDRAWN)
    if d.phase is not Phase.IDLE:
        return                                 # one action at a time, as the server assigns them
    if action in d.facts.reported or deployment.download == "skip":
        return                                 # its result is on its way; or not to be fetched yet
    d.do(Log("info", "deployment", {"action": action, "download": deployment.download,
                                    "update": deployment.update, "window": deployment.maintenance_window}))
    plan = event.plan
    if plan is None:
        d.move(Event.DEPLOYMENT, action=action, plan=None)
        d.fail_action(event.plan_error or FwagentError("no plan for the deployment", code="internal"))
        return
    gated = bool(d.facts.policy.approve)      # approval comes before anything is fetched
    d.move(Event.HELD if gated else Event.DEPLOYMENT, action=action, plan=plan.as_dict(),
           may_install=deployment.may_install, window=deployment.maintenance_window, fetched={}, resume={},
           version=plan.version)
    if gated:
        d.open_gate()
    else:
        d.start_download()


def refuse_deployment(d: Decision, href: str, error: DdiFormatError) -> None:
    """A deployment this device cannot read (an id that is no action id, a field out of shape):
    nothing of it is acted on. The action its link names is closed as failed, with the reason."""
    action = action_id_of(href)
    d.do(Log("error", "deployment-refused", {"action": action, "code": error.code, "msg": error.detail}))
    if action is None or d.phase is not Phase.IDLE or d.facts.installing or action in d.facts.reported:
        return
    d.move(Event.DEPLOYMENT, action=action, plan=None)
    d.fail_action(error)


# --- cancels -------------------------------------------------------------------------------------


def cancel(d: Decision, cancel: Cancel) -> None:
    current = d.record.action
    d.do(Log("info", "cancel", {"action": cancel.stop_id, "phase": d.phase.value}))
    reported = d.facts.reported
    if cancel.stop_id in reported and reported[cancel.stop_id] != "cancelled":
        # The update ended on the device and its result waits in the outbox: the cancel comes
        # too late. Refused, so that the server keeps the action for the result that follows.
        d.do(Feedback("rejected", "the update has ended on the device; its result follows",
                      kind="cancelAction", action=cancel.action_id),
             Deliver())
        return
    if d.phase is Phase.INSTALL and cancel.stop_id == current:
        # Accepted: the outcome (cancelled) is reported from the outbox.
        d.do(CancelInstall(Feedback("rejected", "the update is past the switch to the new slot; it cannot be "
                                    "cancelled", kind="cancelAction", action=cancel.action_id)))
        return
    if d.phase is Phase.REBOOT_WAIT and cancel.stop_id == current:
        d.move(Event.CANCEL)                   # staged, nothing activated: the installer ends it
        d.do(AbortStaged("cancelled", "cancelled by the server"))
        return
    if d.phase in IN_HAND and cancel.stop_id == current:
        d.move(Event.CANCEL, cancel=cancel.action_id)
        d.do(StopDownload())
        if not d.facts.downloading:
            d.finish_cancel()                  # else once the download worker has stopped
        return
    if d.phase is Phase.CANCEL:
        d.finish_cancel()
        return
    # Nothing of that action runs here (never started, or already over): the cancel holds.
    d.do(Feedback("closed", "nothing of this action is in progress on the device", finished="success",
                  kind="cancelAction", action=cancel.action_id))


def cancel_confirmed(d: Decision, event: CancelConfirmed) -> None:
    if d.phase is Phase.CANCEL and (d.record.cancel or d.record.action) == event.cancel:
        d.end_action(Event.CLEANED)


# --- downloads ---------------------------------------------------------------------------------


def checkpoint(d: Decision, event: Checkpoint) -> None:
    if d.phase is Phase.DOWNLOAD and d.record.action == event.action:
        d.keep(resume={**(d.record.resume or {}), event.name: event.resume})


def fetched(d: Decision, event: Fetched) -> None:
    if d.phase is Phase.DOWNLOAD and d.record.action == event.action:
        resume = {name: r for name, r in (d.record.resume or {}).items() if name != event.name}
        d.keep(fetched={**(d.record.fetched or {}), event.name: event.path}, resume=resume)


def downloaded(d: Decision, event: Downloaded) -> None:
    if d.phase is Phase.CANCEL and d.record.action == event.action:
        d.finish_cancel()                      # the cancel came while the files were being checked
    if d.phase is not Phase.DOWNLOAD or d.record.action != event.action:
        return
    d.move(Event.DOWNLOADED, version=event.version or d.record.version, attempts=0)   # the install's own count
    version = d.record.version
    d.do(Feedback("downloaded", f"the signed manifest verified, version {version}; the bundle streams into "
                  "the slots" if d.record.streamed_bundle() is not None else
                  f"downloaded and verified, version {version}", progress=(100, 100)))
    if d.record.may_install:
        d.open_gate()
    elif d.record.window == "unavailable":
        d.do(Feedback("scheduled", "waiting for the maintenance window", progress=(100, 100)))


def download_failed(d: Decision, event: DownloadFailed) -> None:
    if d.facts.stopping or d.record.action != event.action:
        return
    if d.phase is Phase.CANCEL:
        d.finish_cancel()
    elif d.phase is Phase.DOWNLOAD and d.record.attempts + 1 < d.facts.policy.retries and d.facts.moment:
        retry_download(d, event.error, d.facts.moment.now)
    elif d.phase is Phase.DOWNLOAD:
        d.fail_action(event.error)


def retry_download(d: Decision, error: BaseException, now: float) -> None:
    """[policy].retries: a failed download goes again after a back-off, its failure reported
    only when the last attempt fails."""
    code, detail = code_and_detail(error)
    policy, attempt = d.facts.policy, d.record.attempts + 1
    delay = retry_delay(policy, attempt)
    d.keep(attempts=attempt, retry_at=now + delay)
    d.do(Log("warning", "download-retry", {"action": d.record.action, "code": code, "msg": detail,
                                           "attempt": attempt + 1, "of": policy.retries, "wait": f"{delay:.0f}s"}),
         Feedback("proceeding", f"the download failed ({code}: {detail}); attempt {attempt + 1} of "
                  f"{policy.retries} in {delay:.0f} s"),
         Recheck(now + delay))


# --- installs ----------------------------------------------------------------------------------


def installed(d: Decision, event: Installed) -> None:
    outcome = event.outcome
    ids: dict[str, str] = {}
    if outcome is not None:
        ids = status.ids(outcome.as_dict())
        d.do(Log("info", "install-ended", {"result": outcome.result, "state": outcome.state,
                                           "code": outcome.code or None, "msg": outcome.reason or None,
                                           "version": outcome.version, **ids}))
    if outcome is not None and outcome.result == "pending":
        d.do(Show(status.outcome(outcome.result, outcome.state), **ids), Ready())
        if outcome.state == "staged" and d.phase is Phase.INSTALL:
            d.move(Event.STAGED)               # written and checked: the switch waits for its gate
        if d.phase is Phase.REBOOT_WAIT:
            d.open_gate()
        return                                 # else a reboot is on its way; the next start goes on
    if d.phase is Phase.INSTALL and outcome is not None and install_retried(d, outcome):
        return
    if d.phase is Phase.INSTALL:
        d.end_action(Event.INSTALLED)
    if d.phase is Phase.IDLE and outcome is None:
        d.do(Show("idle"))
    elif d.phase is Phase.IDLE:
        d.do(Show("idle; " + status.outcome(outcome.result, outcome.state, outcome.code, outcome.version), **ids))
    d.do(Ready(), Deliver(), SendConfig())


NOT_RETRIED = ("cancelled", "rejected", "aborted", "restart-loop")   # ends an install asked for, or a crash loop


def install_retried(d: Decision, outcome: Outcome) -> bool:
    """[policy].retries: an install that failed with nothing activated goes back to wait-window,
    its result taken back from the outbox (after the record that says so is persisted: a cut
    in between reports the failure), and runs again after a back-off."""
    policy, moment, attempt = d.facts.policy, d.facts.moment, d.record.attempts + 1
    if (outcome.result != "failure" or outcome.state != "failed" or outcome.code in NOT_RETRIED
            or attempt >= policy.retries or moment is None):
        return False
    delay = retry_delay(policy, attempt)
    reason = (f"the install failed ({outcome.code}); attempt {attempt + 1} of {policy.retries} at "
              f"{moment.at(moment.now + delay).strftime('%H:%M:%S')}")
    d.do(Log("warning", "install-retry", {"action": d.record.action, "code": outcome.code or None,
                                          "msg": outcome.reason or None, "attempt": attempt + 1,
                                          "of": policy.retries, "wait": f"{delay:.0f}s"}))
    d.move(Event.RETRY, attempts=attempt, retry_at=moment.now + delay, waiting=reason)
    d.do(Unqueue(outcome.id), Waiting(), Feedback("proceeding", reason), Recheck(moment.now + delay), Ready())
    return True


def install_error(d: Decision, event: InstallError) -> None:
    """The install was refused before it started (another update in progress, unreadable files),
    or broke off with an error of its own; the journal has what it reached."""
    ids = dict(d.facts.install_ids)
    code, detail = code_and_detail(event.error)
    d.do(Log("error", "install-refused", {"code": code, "msg": detail, **ids}))
    if d.phase is Phase.INSTALL:
        d.fail_action(event.error)
    elif d.facts.starting:
        d.do(Show(f"started, but the update in flight could not be finished: {code}", **ids))
    d.do(Ready())


# --- local gates ([policy]) ----------------------------------------------------------------------


def gate_check(d: Decision, _event: GateCheck) -> None:
    if d.phase in GATES:
        d.open_gate()
    elif d.phase is Phase.DOWNLOAD and d.record.retry_at is not None and d.facts.moment and not d.facts.downloading:
        if d.facts.moment.now < d.record.retry_at:
            d.do(Recheck(min(d.record.retry_at, d.facts.moment.now + RECHECK_MAX)))
        else:
            d.keep(retry_at=None)              # the download's next attempt
            d.do(StartDownload())


def approval(d: Decision, event: Approval) -> None:
    """The approval commands' verdict: go opens the gate (if nothing else holds it), wait holds
    it until the time they asked for, refuse closes the action as rejected with their reason."""
    if d.record.action != event.action or GATES.get(d.phase) != event.gate:
        return                                 # the action moved on (cancelled, withdrawn) meanwhile
    verdict = event.verdict
    if verdict.decision == REFUSE and d.phase is Phase.REBOOT_WAIT:
        d.do(Log("error", "action-failed", {"action": d.record.action, "code": "rejected", "msg": verdict.reason}))
        d.move(Event.ABANDON)                  # the installer ends the staged update, reported from the outbox
        d.do(AbortStaged("rejected", verdict.reason))
        return
    if verdict.decision == REFUSE:
        d.fail_action(FwagentError(verdict.reason, code="rejected"))
        return
    if verdict.decision == WAIT:
        assert d.facts.moment is not None
        d.keep(retry_at=d.facts.moment.now + verdict.wait)
    d.open_gate(approved=verdict.decision == GO)


HANDLERS: dict[type[DaemonEvent], Callable[[Decision, Any], None]] = {
    Started: started,
    Polled: polled,
    CancelConfirmed: cancel_confirmed,
    Checkpoint: checkpoint,
    Fetched: fetched,
    Downloaded: downloaded,
    DownloadFailed: download_failed,
    Installed: installed,
    InstallError: install_error,
    GateCheck: gate_check,
    Approval: approval,
}
