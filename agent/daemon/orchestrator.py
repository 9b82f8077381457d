"""The daemon's one orchestrator thread: the runner of its machine.

Everything that waits runs elsewhere and posts a typed event (agent/daemon/events.py) to
``events``: the job worker (every request to the DDI server), the download worker, the
install worker, the MQTT network thread (wake-ups) and the signal handler (stop). The
runner pops them one at a time. What concerns the action in hand it hands to the machine
(agent/daemon/machine.py), which alone decides its phase, and carries out the effects the
machine returns (agent/daemon/effects.py), in order: the record persisted before anything
acts on it. Its own bookkeeping is the rest: when to poll, the link's status, report
retries, wake-ups, progress and the status line.

Reports: progress goes out as ``proceeding`` feedback, best effort (a newer
one replaces an unsent older one). Final results are durable: the install
records them in the journal's outbox, and so does the daemon for an action
that fails before the install; the outbox is delivered until the server
has them (agent/ddi/outbox.py).
"""

from __future__ import annotations

import os
import queue
import random
import shutil
import threading
import time
import uuid
from datetime import datetime
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from agent import __version__
from agent.config import Config
from agent.daemon import status
from agent.daemon import effects as fx
from agent.daemon.actions import RESUME, Phase
from agent.daemon.events import (
    Approval,
    CancelConfirmed,
    Checkpoint,
    DaemonEvent,
    Downloaded,
    DownloadFailed,
    DownloadProgress,
    Fetched,
    GateCheck,
    Installed,
    InstallError,
    InstallProgress,
    InstallStep,
    JobFailed,
    Polled,
    PollFailed,
    ReportsSent,
    ReportsStalled,
    Started,
    Stop,
    Timer,
    Wakeup,
)
from agent.daemon.downloads import download_action
from agent.daemon.jobs import JobWorker
from agent.daemon.link import LinkStatus, LinkStatusFile, duration, first_poll_note, interval_note, link_change
from agent.daemon.machine import GATES, Facts, advance, reads_outbox
from agent.daemon.notify import Notifier
from agent.daemon.plan import PlanError, download_dir, plan_action
from agent.daemon.record import ActionRecord
from agent.daemon.reports import Report, ReportQueue
from agent.daemon.store import ActionStore, ActionStoreError
from agent.ddi.client import DdiClient, DdiError, PollPolicy, first_poll, next_poll, poll_after_error
from agent.ddi.codec import DdiFormatError, config_data, feedback
from agent.ddi.outbox import GONE, deliver, enqueue, withdraw
from agent.download.downloader import Downloader
from agent.errors import code_and_detail
from agent.install.installer import Installer, Outcome
from agent.log import Log, Throttle
from agent.policy.approval import GO, Verdict, run_approval
from agent.policy.decisions import DecisionFile, DecisionFileError
from agent.policy.gates import Choice, Moment

STOP_TIMEOUT = 20.0          # seconds for workers to wind down on stop
FLUSH_TIMEOUT = 5.0          # seconds to send what is queued for the server on stop
REBOOT_FEEDBACK_WAIT = 5.0   # seconds the install waits for "rebooting" to reach the server
WAKEUP_LOG_INTERVAL = 10.0   # seconds: a flood of wake-ups is one log line per interval
WAKEUP_SPACING = 1.0         # seconds at least between the starts of two polls that wake-ups ask for
REPORT_RETRY = (1.0, 60.0)   # seconds before reports that met a passing failure go again: first, at most
IGNORED_ENVIRONMENT = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
LONGEST_WAIT = 3600.0       # seconds the loop sleeps at most with nothing due
STREAMING_STEPS = ("write", "stash")     # install steps that read a streamed bundle


class Daemon:
    def __init__(self, config: Config, installer: Installer, *, client: DdiClient | None,
                 downloader: Downloader, log: Log, mqtt_factory: Callable[..., Any] | None = None,
                 rng: random.Random | None = None, clock: Callable[[], float] = time.monotonic,
                 notifier: Notifier | None = None) -> None:
        self.config = config
        self.installer = installer
        self.client = client
        self.downloader = downloader
        self.log = log
        self.rng = rng or random.Random()
        self.clock = clock
        self.notifier = notifier or Notifier()     # systemd's notifications; none outside systemd
        self.starting = True                       # the start-up work (the update in flight) runs
        self.install_ids: dict[str, str] = {}      # the install in flight: its update id and action
        self.events: queue.SimpleQueue[DaemonEvent] = queue.SimpleQueue()   # put() is signal-safe
        self.store = ActionStore(config.device.state_dir)
        self.decisions = DecisionFile(config.device.state_dir)
        self.decisions_damaged: str | None = None   # said once per problem: the file is read every couple of seconds
        self.gate_at = float("inf")                # when the machine asked to look at its gate again
        self.online = False                        # a poll has been answered since the start
        self.incoming = config.device.state_dir / "incoming"
        server = config.server
        self.policy = PollPolicy(minimum=server.poll_min, maximum=server.poll_max, default=server.poll_default,
                                 startup_spread=server.startup_spread) if server else PollPolicy()
        self.jobs = JobWorker("fwagent-link", lambda key, exc: self.events.put(JobFailed(key, exc)))
        self.mqtt = mqtt_factory(config.mqtt, self.wakeup, log=log) if (mqtt_factory and config.mqtt) else None
        self.wake_posted = threading.Event()        # a wake-up is in the queue: more are folded into it
        self.wakeups = 0                            # wake-ups received (any thread) since the last log line
        self.wakeup_log = Throttle(WAKEUP_LOG_INTERVAL, clock)
        self.reports = ReportQueue()
        self.reports_retry_at = float("inf")
        self.report_failures = 0
        self.record = self._load_record()
        self.record = replace(self.record, phase=RESUME[self.record.phase])
        self.next_poll_at = float("inf")
        self.poll_in_flight = False
        self.poll_failures = 0
        self.wake_pending = False
        self.last_poll_at = float("-inf")
        self.config_due = False
        self.stopping = False
        self.download_cancel = threading.Event()
        self.workers: list[threading.Thread] = []
        self.install_running = False
        self.last_progress: dict[str, float] = {}
        self.progress_interval = server.progress_interval if server else 5.0
        self.reboot_reported = threading.Event()
        self.install_step = ""                      # the install's step, as it last reported it
        self.link = LinkStatusFile(config.device.runtime_dir / "link.json")
        self.link_status = LinkStatus(server=server.url if server else None,
                                      controller_id=server.controller_id if server else None, pid=os.getpid())
        self.interval_said: str | None = None       # the last word on the polling interval the log has
        self.link_unwritable = False
        installer.on_step = self._install_step
        installer.progress = self._install_progress
        installer.log = lambda message: log.info("install", msg=message, **self.install_ids)

    @property
    def phase(self) -> Phase:
        return self.record.phase

    def _load_record(self) -> ActionRecord:
        """The action in hand; a damaged record starts idle: the server offers the action again,
        and every result already reached is safe in the journal's outbox."""
        try:
            return self.store.load()
        except ActionStoreError as err:
            self.log.error("action-record-damaged", code=err.code, msg=err.detail)
            return self.store.reset()

    # --- outside world -> events --------------------------------------------------------

    def wakeup(self, reason: str = "wakeup") -> None:
        """Ask for a poll now (called from the MQTT network thread: only posts, and only when no
        wake-up waits in the queue already: a flood is one event)."""
        self.wakeups += 1
        if not self.wake_posted.is_set():
            self.wake_posted.set()
            self.events.put(Wakeup(reason))

    def stop(self) -> None:
        """Stop soon (signal-safe: only posts)."""
        self.events.put(Stop())

    # --- the loop -------------------------------------------------------------------------

    def run(self) -> None:
        with self.store.owned():
            self._loop()

    def _loop(self) -> None:
        self._start()
        while not self.stopping:
            # The watchdog's pings go from here: a loop that hangs stops them, and systemd restarts
            # the service. The wait below ends in time for the next one.
            self.notifier.tick()
            now = self.clock()
            wait = max(0.0, min(self.next_poll_at - now, self.reports_retry_at - now, self.gate_at - now,
                                self.notifier.wait(), LONGEST_WAIT))
            try:
                event = self.events.get(timeout=wait)
            except queue.Empty:
                event = Timer()
            self._handle(event)
            if self.clock() >= self.reports_retry_at:
                self.reports_retry_at = float("inf")
                self.jobs.submit("reports", self._send_reports_job)
            if self.clock() >= self.next_poll_at:
                self._poll()
            if self.clock() >= self.gate_at:
                self.gate_at = float("inf")
                self._handle(GateCheck())
        self._shutdown()

    def _handle(self, event: DaemonEvent) -> None:
        """One event. A handler's error is logged and the daemon goes on: what was persisted
        before the error is where a restart (or the next poll) takes over. That holds for an
        error no check foresaw too: the service stays up and keeps polling."""
        try:
            match event:
                case Polled():
                    self._on_polled(event)
                case Installed() | InstallError():
                    self._on_install_ended(event)
                case (CancelConfirmed() | Checkpoint() | Fetched() | Downloaded() | DownloadFailed() | GateCheck()
                      | Approval()):
                    self._advance(event)
                case PollFailed():
                    self._on_poll_failed(event.error)
                case JobFailed():
                    self._on_job_failed(event)
                case DownloadProgress():
                    self._on_download_progress(event)
                case InstallStep():
                    self._on_install_step(event)
                case InstallProgress():
                    self._on_install_progress(event)
                case Wakeup():
                    self._on_wakeup(event)
                case ReportsSent():
                    self.report_failures, self.reports_retry_at = 0, float("inf")
                case ReportsStalled():
                    self._on_reports_stalled()
                case Stop():
                    self.stopping = True
                case Timer():
                    pass                           # the loop polls, or sends reports again, when due
        except Exception as err:   # noqa: BLE001 - a defect must not end the service
            code, detail = code_and_detail(err)
            self.log.error("event-failed", event=event.kind, code=code, msg=detail[:500])

    # --- the machine ----------------------------------------------------------------------

    def _advance(self, event: DaemonEvent, install_ids: dict[str, str] | None = None) -> None:
        """The machine's decision on ``event``, carried out effect by effect."""
        reported = self._reported_actions() if reads_outbox(self.record, event) else {}
        facts = Facts(reported=reported, installing=self.install_running,
                      downloading=self._running("fwagent-download"), starting=self.starting,
                      stopping=self.stopping, install_ids=install_ids or {}, policy=self.config.policy,
                      moment=Moment(time.time(), datetime.now()), online=self.online, choice=self._choice(),
                      approving=self._running("fwagent-approve"))
        step = advance(self.record, event, facts)
        for effect in step.effects:
            self._carry_out(effect)
        self.record = step.record

    def _carry_out(self, effect: fx.Effect) -> None:
        match effect:
            case fx.Persist(record):
                self.record = record
                self.store.save(record)
            case fx.Announce(on):
                self.log.info("phase", phase=self.phase.value, on=on.value, action=self.record.action)
                self._write_link()
                self._publish_state()
                idle = self.phase is Phase.IDLE
                self._show(status.phase_text(self.phase.value, self.record.window, self.record.waiting),
                           action=None if idle else self.record.action)
            case fx.Log(level, name, fields):
                self.log.write(level, name, **fields)
            case fx.Feedback():
                self._feedback(effect.execution, effect.text, finished=effect.finished, kind=effect.kind,
                               action=effect.action, progress=effect.progress)
            case fx.Show(activity, action, update):
                self._show(activity, action=action, update=update)
            case fx.Waiting():
                self._write_link()
                self._publish_state()
                self._show(status.phase_text(self.phase.value, self.record.window, self.record.waiting),
                           action=self.record.action)
            case fx.RunApproval(gate):
                self._run_approval(gate)
            case fx.Recheck(at):
                self.gate_at = min(self.gate_at, self.clock() + max(0.0, at - time.time()))
            case fx.StartDownload():
                self._start_download()
            case fx.StopDownload():
                self.download_cancel.set()
            case fx.RemoveDownloads(action):
                shutil.rmtree(download_dir(self.incoming, action), ignore_errors=True)
            case fx.ConfirmCancel(cancel):
                if self.client:
                    self.jobs.submit("cancel", lambda: self._confirm_cancel_job(cancel))
            case fx.CancelInstall(refused):
                if not self.installer.request_cancel():
                    self._carry_out(refused)
            case fx.StartInstall(stage):
                self._install(stage)
            case fx.Activate():
                self._spawn_install(self.installer.release)
            case fx.AbortStaged(code, reason):
                self._spawn_install(lambda: self.installer.abort(reason, code))
            case fx.QueueResult(action, code, reason, version):
                enqueue(self.installer.journal, {
                    "id": uuid.uuid4().hex, "result": "failure", "state": "failed", "code": code, "reason": reason,
                    "version": version, "origin": {"ddi_action": action}})
            case fx.Unqueue(outcome):
                if not withdraw(self.installer.journal, outcome):
                    self.log.warning("retry-after-report", action=self.record.action,
                                     msg="the failure reached the server before the retry was decided")
            case fx.Deliver():
                if self.client:
                    self.jobs.submit("deliver", self._deliver_job)
            case fx.SendConfig():
                if self.client:
                    self.jobs.submit("config", self._send_config_job)
            case fx.Ready():
                self._started()

    def _start(self) -> None:
        self.log.info("start", version=__version__, device=self.config.device.id, phase=self.phase.value,
                      action=self.record.action, server=self.config.server.url if self.config.server else None,
                      mqtt=self.config.mqtt.url if self.config.mqtt else None)
        for variable in IGNORED_ENVIRONMENT:
            if os.environ.get(variable):
                self.log.warning("environment-ignored", variable=variable,
                                 msg="TLS trusts the CAs the configuration names, else the system's")
        trust = self.config.trust
        for path in (*trust.keys, *trust.hmac_keys):
            if not path.is_file():      # loaded at the first update; said at once
                self.log.error("trust-key-missing", path=str(path))
        self._show("starting: finishing the update in flight, or confirming the booted slot")
        self._sweep_incoming()
        self.jobs.start()
        if self.mqtt:
            self.mqtt.start()
        self._publish_state()
        # Finish an update in flight (or confirm the booted slot) before anything else touches the journal.
        self._spawn("fwagent-install", self._resume_worker)
        self.install_running = True
        self._advance(Started())
        if self.client:
            self.config_due = True             # with the first poll: spread like the polls themselves
            in_hand = self.phase in (Phase.APPROVAL, Phase.DOWNLOAD, Phase.WAIT, Phase.REBOOT_WAIT, Phase.CANCEL)
            # With an action in hand, ask at once: it may have been cancelled while the device was off.
            delay = 0.0 if in_hand else first_poll(self.policy, self.rng)
            self.next_poll_at = self.clock() + delay
            note = first_poll_note(delay, self.policy.startup_spread, in_hand)
            if note:
                self.log.info("first-poll", wait=duration(delay), msg=note)
        self._write_link()

    def _shutdown(self) -> None:
        self.log.info("stopping", phase=self.phase.value, action=self.record.action)
        self.link.path.unlink(missing_ok=True)          # no service: nothing to show of its link
        self.notifier.stopping("stopping: leaving the update where it is, sending what is queued")
        self.download_cancel.set()
        self.installer.stop()
        for worker in self.workers:
            worker.join(STOP_TIMEOUT)
        if self.client:
            self.jobs.submit("reports", self._send_reports_job)      # in memory: now or never
        if self.phase is not Phase.INSTALL and self.client:
            self.jobs.submit("deliver", self._deliver_job)
        self.jobs.close(FLUSH_TIMEOUT)
        if self.mqtt:
            self.mqtt.publish_state("stopped")
            self.mqtt.stop()
        self.log.info("stopped")
        self.notifier.close()

    # --- polls and wake-ups (the runner's own) ---------------------------------------------

    def _on_wakeup(self, event: Wakeup) -> None:
        self.wake_posted.clear()
        if self.wakeup_log.due():
            received, self.wakeups = self.wakeups, 0
            self.log.info("wakeup", reason=event.reason, received=received if received > 1 else None)
        if self.client:
            self.next_poll_at = min(self.next_poll_at, self._wakeup_poll_at())
            self.wake_pending = self.poll_in_flight     # a poll on its way may have missed the news

    def _wakeup_poll_at(self) -> float:
        """When a wake-up polls: at once, but never sooner than WAKEUP_SPACING after the last poll
        began, so that a flood of wake-ups (anyone who may publish on the topic) is no flood of polls."""
        return max(self.clock(), self.last_poll_at + WAKEUP_SPACING)

    def _poll(self) -> None:
        if self.client is None or self.poll_in_flight or self.stopping:
            return
        self.poll_in_flight = True
        self.last_poll_at = self.clock()
        self.next_poll_at = float("inf")
        known = self.record.href if self.phase is not Phase.IDLE else None
        self.jobs.submit("poll", lambda: self._poll_job(known))
        if self.phase is Phase.IDLE and not self.install_running:
            self._show("idle; polling the server")

    def _on_polled(self, event: Polled) -> None:
        """The poll's bookkeeping here; what the answer means for the action, the machine's."""
        root = event.root
        self.poll_in_flight = False
        self.poll_failures = 0
        self.online = True
        if self.phase is Phase.IDLE and not self.install_running:
            self._show("idle")
        self.next_poll_at = self.clock() + next_poll(root.sleep, self.policy, self.rng)
        if self.wake_pending:
            self.wake_pending, self.next_poll_at = False, self._wakeup_poll_at()
        self._link_polled("a cancel" if root.cancel else "an action" if root.deployment else "no action", root.sleep)
        if root.config_data or self.config_due:
            self.config_due = False
            self.jobs.submit("config", self._send_config_job)
        if len(self.reports):
            self.jobs.submit("reports", self._send_reports_job)   # the server answers again: what waits goes
        self._advance(event)

    def _on_poll_failed(self, error: DdiError | DdiFormatError) -> None:
        self.poll_in_flight = False
        self.poll_failures += 1
        delay = poll_after_error(error if isinstance(error, DdiError) else None, self.poll_failures, self.policy,
                                 self.rng)
        self.next_poll_at = self.clock() + delay
        self.log.warning("poll-failed", code=error.code, msg=error.detail, retry_in=f"{delay:.0f}s")
        self._link_failed(error.code, error.detail)
        if self.phase is Phase.IDLE and not self.install_running:
            self._show(f"idle; the last poll failed ({error.code}), the next in {delay:.0f} s")

    # --- the link's status: said once per change in the log, all of it in link.json -----------

    def _link_polled(self, result: str, suggested: float | None) -> None:
        change = link_change(self.link_status.state, True, None, None)
        if change:
            self.log.info("link", state=change, server=self.link_status.server)
        note = interval_note(suggested, self.policy.minimum, self.policy.maximum, self.policy.default)
        if note != self.interval_said:
            self.interval_said = note
            if note:
                self.log.info("poll-interval", msg=note)
        link = self.link_status
        link.state, link.last_poll, link.last_result = "connected", time.time(), result
        self._write_link()

    def _link_failed(self, code: str, detail: str) -> None:
        last = self.link_status.last_error
        change = link_change(self.link_status.state, False, code, last["code"] if last else None)
        if change:
            self.log.warning("link", state=change, code=code, server=self.link_status.server)
        now, link = time.time(), self.link_status
        link.state, link.last_poll, link.last_result = "failing", now, code
        link.last_error = {"code": code, "detail": detail, "at": now}
        self._write_link()

    def _write_link(self) -> None:
        """link.json for ``fwagent status``; a runtime directory that cannot be written is said once."""
        status = self.link_status
        status.phase, status.action, status.waiting = self.phase.value, self.record.action, self.record.waiting
        status.next_poll = time.time() + (self.next_poll_at - self.clock()) if self.next_poll_at != float("inf") \
            else None
        status.mqtt = None if self.mqtt is None else ("connected" if self.mqtt.connected.is_set() else "disconnected")
        status.reports_waiting = len(self.reports)
        try:
            self.link.save(status)
        except OSError as err:
            if not self.link_unwritable:
                self.link_unwritable = True
                self.log.warning("link-status-unwritable", path=str(self.link.path), msg=err.strerror or str(err))

    def _on_job_failed(self, event: JobFailed) -> None:
        """A job's error that no check foresaw: logged with its code; a poll's counts as a failed
        poll (the back-off grows)."""
        key = event.key
        code, detail = code_and_detail(event.error)
        if key == "poll":
            self._on_poll_failed(DdiError(detail, code=code, transient=True))
        else:
            self.log.warning("request-failed", job=key, code=code, msg=detail)

    def _on_reports_stalled(self) -> None:
        """Reports met a passing failure: they go again soon, sooner than the next poll."""
        first, most = REPORT_RETRY
        self.report_failures += 1
        self.reports_retry_at = self.clock() + min(first * 2 ** (self.report_failures - 1), most)

    # --- downloads -------------------------------------------------------------------------

    def _start_download(self) -> None:
        record = self.record
        plan = record.action_plan()
        fetched = record.fetched or {}
        artifacts = [a for a in plan.fetch_first(bool(record.may_install)) if a.filename not in fetched]
        self.download_cancel = cancel = threading.Event()
        action, resumes = record.action, dict(record.resume or {})    # the worker's own copies
        assert action is not None
        self._spawn("fwagent-download", lambda: download_action(self.events.put, self.downloader, self.installer,
                                                                self.incoming, action, plan, artifacts, resumes, cancel))

    def _on_download_progress(self, event: DownloadProgress) -> None:
        action, name, done, total = event.action, event.name, event.done, event.total
        if action != self.record.action:
            return                             # a worker of an action that has ended
        percent = int(done * 100 / total) if total else 0
        self._feedback("proceeding", f"Downloaded {percent}% of {name}", progress=(percent, 100), throttle="download")
        if self.phase is Phase.DOWNLOAD:
            self._show(status.downloading(name, done, total), action=action)
        if self.mqtt:
            self.mqtt.publish_progress(action=self.record.action, stage="download", file=name, done=done,
                                       total=total)

    # --- local gates ([policy]) -------------------------------------------------------------

    def _choice(self) -> Choice | None:
        """The operator's decision on the action waiting at a gate (fwagent approve/defer); a
        decision file this agent cannot read is logged and counts as no decision."""
        if self.phase not in GATES or self.record.action is None:
            return None
        try:
            return self.decisions.choice(self.record.action)
        except DecisionFileError as err:
            if err.detail != self.decisions_damaged:
                self.decisions_damaged = err.detail
                self.log.warning("decision-file-unreadable", code=err.code, msg=err.detail)
            return None

    def _run_approval(self, gate: str) -> None:
        """The approval commands, one after the other until one does not say go, on a worker that
        posts the verdict (each command has its timeout: agent/policy/approval.py)."""
        action, version, commands = self.record.action, self.record.version, self.config.policy.commands
        assert action is not None

        def run() -> None:
            verdict = Verdict(GO)
            for argv in commands:
                verdict = run_approval(argv, gate, action, version)
                if verdict.decision != GO:
                    break
            self.events.put(Approval(action, gate, verdict))

        self.log.info("approval", action=action, gate=gate, commands=len(commands))
        self._spawn("fwagent-approve", run)

    # --- install ----------------------------------------------------------------------------

    def _install(self, stage: bool) -> None:
        plan, fetched = self.record.action_plan(), self.record.fetched or {}
        source = fetched.get(plan.main.filename) or plan.main.url    # a bundle URL streams
        links = plan.links(fetched)
        origin = {"ddi_action": self.record.action}
        self._spawn_install(lambda: self.installer.install(source, origin=origin, links=links, stage=stage))

    def _spawn_install(self, run: Callable[[], Outcome | None]) -> None:
        self.install_running = True
        self.reboot_reported.clear()
        self._spawn("fwagent-install", lambda: self._install_worker(run))

    def _resume_worker(self) -> None:
        self._install_worker(self.installer.resume)

    def _install_worker(self, run: Callable[[], Outcome | None]) -> None:
        try:
            self.events.put(Installed(run()))
        except Exception as err:   # noqa: BLE001 - whatever it was, the orchestrator must hear of it
            self.events.put(InstallError(err))

    def _install_step(self, state: str, update: dict[str, Any]) -> None:
        """From the install worker: report the step; wait (bounded) for "rebooting" to be sent.
        The installer's own log lines from now on name the update and its action."""
        self.install_ids = status.ids(update)
        self.events.put(InstallStep(state, dict(update)))
        if state == "reboot" and self.client:
            self.reboot_reported.wait(REBOOT_FEEDBACK_WAIT)

    def _install_progress(self, slot: str, done: int, total: int | None, *, full: int | None = None) -> None:
        self.events.put(InstallProgress(slot, done, total, full))

    def _on_install_step(self, event: InstallStep) -> None:
        state, update = event.state, event.update
        self.install_step = state
        ids = status.ids(update)
        self.log.info("install-step", step=state, target=update.get("target"), **ids)
        self._publish_state(step=state)
        text = status.step_text(state, update)
        action = ids.get("action")
        self._show(text or state, **ids)
        if text and action:
            done = self.reboot_reported.set if state == "reboot" else None
            self._feedback("proceeding", text, action=action, progress=(100, 100) if state != "write" else (0, 100),
                           done=done)
        elif state == "reboot":
            self.reboot_reported.set()

    def _on_install_progress(self, event: InstallProgress) -> None:
        slot, done, total = event.slot, event.done, event.total
        percent = int(done * 100 / total) if total else 0
        if self.phase is Phase.INSTALL:
            # While a streamed bundle is written its download is the install: said in SWUpdate's
            # words. Flashing the Things afterwards downloads nothing.
            streamed = self.record.streamed_bundle() if self.install_step in STREAMING_STEPS else None
            text = (f"Installing {slot} by delta: {done} of {total} bytes fetched ({percent}%); the full image "
                    f"is {event.full} bytes" if event.full is not None
                    else f"Downloaded {percent}% of {streamed} into {slot}" if streamed
                    else f"Installing {slot}: {percent}%")
            self._feedback("proceeding", text, progress=(percent, 100), throttle="install")
        self._show(status.installing(slot, done, total), **self.install_ids)
        if self.mqtt:
            self.mqtt.publish_progress(action=self.record.action, stage="install", slot=slot, done=done,
                                       total=total)

    def _on_install_ended(self, event: Installed | InstallError) -> None:
        """The install worker is done: the runner's install state is cleared, the machine decides."""
        self.install_running = False
        if isinstance(event, Installed):
            self.installer.cancel.clear()      # a cancel that came after the end is moot
        ids, self.install_ids = self.install_ids, {}
        self._advance(event, install_ids=ids)

    def _started(self) -> None:
        """The start-up work has ended (the update in flight finished, or the booted slot
        confirmed): systemd hears READY=1, and units ordered after fwagent.service start."""
        if self.starting:
            self.starting = False
            self.notifier.ready()
            self.log.info("ready", phase=self.phase.value, action=self.record.action)

    # --- the cancel's confirmation, the state directory, the outbox --------------------------------

    def _confirm_cancel_job(self, cancel: str) -> None:
        assert self.client is not None
        try:
            self.client.send_feedback("cancelAction", cancel, feedback(
                "closed", "success", details=["fwagent: cancelled; downloads removed, nothing was installed"]))
        except DdiError as err:        # closed there already (a confirmation sent before a restart)
            if err.code not in GONE and err.status != 405:
                raise
        self.events.put(CancelConfirmed(cancel))

    def _sweep_incoming(self) -> None:
        """At a start: remove the download directories of actions that are no longer in hand
        (ended while the daemon was down, or left by an earlier version). Names come from
        listing the directory, never from the server."""
        keep = {download_dir(self.incoming, self.record.action)} if self.record.action else set()
        keep |= {Path(path).parent for path in (self.record.fetched or {}).values()}
        if self.incoming.is_dir():
            for entry in self.incoming.iterdir():
                if entry.is_dir() and not entry.is_symlink() and entry not in keep:
                    shutil.rmtree(entry, ignore_errors=True)

    def _reported_actions(self) -> dict[str, str]:
        """Actions whose final result waits in the outbox (action -> its code): never started again."""
        return {str((o.get("origin") or {}).get("ddi_action")): o.get("code") or ""
                for o in self.installer.journal.load()["outbox"] if (o.get("origin") or {}).get("ddi_action")}

    # --- reports ---------------------------------------------------------------------------------

    def _feedback(self, execution: str, text: str, *, finished: str = "none", kind: str = "deploymentBase",
                  action: str | None = None, progress: tuple[int, int] | None = None, throttle: str = "",
                  done: Callable[[], None] | None = None) -> None:
        """``throttle`` names a stream of progress (download, install): its first report, then one per
        interval, and always its last; a newer one replaces an unsent older one of the same stream."""
        action = action or self.record.action
        if self.client is None or action is None:
            if done:
                done()
            return
        if throttle:
            now = self.clock()
            complete = progress is not None and progress[0] >= progress[1]
            if now - self.last_progress.get(throttle, float("-inf")) < self.progress_interval and not complete:
                return
            self.last_progress[throttle] = now
        body = feedback(execution, finished, details=[f"fwagent: {text}"], progress=progress)
        dropped = self.reports.add(Report(kind, str(action), body, stream=throttle, done=done))
        if dropped is not None:
            self.log.warning("report-dropped", action=dropped.action, msg="too many reports wait for the server")
            if dropped.done:
                dropped.done()
        self.jobs.submit("reports", self._send_reports_job)

    def _show(self, activity: str, *, action: str | None = None, update: str | None = None) -> None:
        """The status line systemd shows: what the daemon does now, and for which action."""
        self.notifier.status(status.line(activity, action=action, update=update))

    def _publish_state(self, **details: Any) -> None:
        if self.mqtt:
            waiting = {"waiting": self.record.waiting} if self.record.waiting else {}
            self.mqtt.publish_state(self.phase.value, action=self.record.action, **waiting, **details)

    def attributes(self) -> dict[str, str]:
        """What configData reports: hardware, installed version, booted slot, agent, custom attributes."""
        device = self.config.device
        installed = self.installer.journal.load()["installed"] or {}
        values = {"hw_boardname": device.hardware_board, "hw_revision": device.hardware_revision,
                  "sw_version": installed.get("version"), "booted_slot": self.installer.boot.booted_slot(),
                  "fwagent_version": __version__}
        return {**{k: v for k, v in values.items() if v}, **device.attributes}

    # --- jobs (on the job worker) ----------------------------------------------------------------

    def _poll_job(self, known: str | None) -> None:
        """Poll; fetch a cancel, or a deployment unless its link is ``known`` (hawkBit records a
        RETRIEVED status at each fetch after another status, and its link's ``c=`` changes when
        the action does)."""
        assert self.client is not None
        refused = plan = plan_error = None
        try:
            root = self.client.poll()
            cancel = self.client.cancel_action(root.cancel) if root.cancel else None
            fetch = root.deployment and not cancel and root.deployment != known
            try:
                deployment = self.client.deployment(root.deployment) if fetch else None
            except DdiFormatError as err:       # the server answered, with something not to act on
                deployment, refused = None, err
        except (DdiError, DdiFormatError) as err:
            self.events.put(PollFailed(err))
            return
        if deployment is not None:
            try:
                plan = plan_action(deployment, self.downloader.link.policy)
            except PlanError as err:
                plan_error = err
        self.events.put(Polled(root, deployment, cancel, refused, plan, plan_error))

    def _send_reports_job(self) -> None:
        assert self.client is not None
        sent = self.reports.send(self.client, lambda report, err: self.log.warning(
            "report-refused", action=report.action, code=err.code, msg=err.detail))
        self.events.put(ReportsSent() if sent else ReportsStalled())

    def _send_config_job(self) -> None:
        assert self.client is not None
        self.client.send_config_data(config_data(self.attributes()))

    def _deliver_job(self) -> None:
        """The final results, each after the step reports of its action (sent first). The result
        of the action still in hand waits until the machine has let it go: an install that failed
        may yet be retried, its result taken back (Unqueue)."""
        assert self.client is not None
        self._send_reports_job()

        def hold(action: str) -> bool:
            record = self.record          # replaced whole by the orchestrator thread: read once
            return self.reports.holds(action) or (record.phase is not Phase.IDLE and record.action == action)

        deliver(self.installer.journal, self.client, lambda outcome, err: self.log.error(
            "report-refused", code=err.code, msg=err.detail, **status.ids(outcome)),
            hold=hold, on_delivered=lambda outcome: self.log.info(
                "reported", result=outcome.get("result"), **status.ids(outcome)))

    # --- threads -----------------------------------------------------------------------------------

    def _running(self, name: str) -> bool:
        return any(w.name == name and w.is_alive() for w in self.workers)

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        self.workers = [w for w in self.workers if w.is_alive()] + [thread]
        thread.start()

