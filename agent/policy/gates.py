"""Whether a local gate holds an action, and why (pure: the caller hands in the time).

The daemon's machine (agent/daemon/machine.py) asks at up to three gates: ``download`` (a
deployment taken, nothing fetched yet: only approval holds it), ``install`` (everything in hand
and the server allows the install: the install windows and approval hold it) and, with
``reboot`` = ``window`` or ``approve``, ``reboot`` (the update staged: the switch and the reboot
wait for the install windows, or for an approval of their own, instead of the install). ``when = "online"`` holds
both until a poll has been answered since the start; an operator's ``fwagent defer`` holds both
until its time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from agent.policy.windows import Window, next_opening, opening_text

DOWNLOAD, INSTALL, REBOOT = "download", "install", "reboot"
MANUAL_RECHECK = 2.0       # seconds between two looks at the decision file while it waits for one
RETRY_MAX = 3600.0         # seconds a retry's back-off grows to at most
RECHECK_MAX = 60.0         # seconds a gate waits at most before it looks again (clock changes, DST)


@dataclass(frozen=True)
class PolicyConfig:
    """``[policy]`` (docs/daemon.md, "Local control")."""

    approve: tuple[tuple[str, ...], ...] | str = ()   # commands (each must say go), or "manual"
    install_windows: tuple[Window, ...] = ()        # local time; none: any time
    when: str = "now"                               # now | online: a gate opens only after a poll answered
    reboot: str = "immediate"                       # immediate | window | approve: the switch's own gate
    retries: int = 1                                # attempts of a download (1: no retry)
    retry_delay: float = 30.0                       # seconds before the first retry; doubling

    @property
    def manual(self) -> bool:
        return self.approve == "manual"

    @property
    def commands(self) -> tuple[tuple[str, ...], ...]:
        return () if isinstance(self.approve, str) else self.approve


@dataclass(frozen=True)
class Choice:
    """An operator's decision on an action (``fwagent approve`` / ``fwagent defer``)."""

    action: str
    decision: str                # approve | approve-reboot (the download, the install and the reboot) | defer
    until: float | None = None   # defer: until then (epoch seconds)


@dataclass(frozen=True)
class Hold:
    reason: str                  # what the action waits for, as status, MQTT and the server show it
    recheck: float | None        # epoch seconds to look again; None: an event will come
    ask: bool = False            # the approval commands are to run


@dataclass(frozen=True)
class Moment:
    now: float                   # epoch seconds
    local: datetime              # the same moment in the device's local wall time

    def at(self, epoch: float) -> datetime:
        return self.local + timedelta(seconds=epoch - self.now)


def hold(policy: PolicyConfig, gate: str, moment: Moment, *, online: bool, choice: Choice | None,
         retry_at: float | None, approved: bool) -> Hold | None:
    """What holds the action at ``gate`` now, or None when it may go. ``approved``: the approval
    commands have just said go; ``retry_at``: one of them asked to wait until then."""
    why = _hold(policy, gate, moment, online, choice, retry_at, approved)
    if why is not None and gate == REBOOT:
        return Hold(f"staged; the switch and reboot wait: {why.reason}", why.recheck, why.ask)
    return why


def _hold(policy: PolicyConfig, gate: str, moment: Moment, online: bool, choice: Choice | None,
          retry_at: float | None, approved: bool) -> Hold | None:
    now = moment.now
    if policy.when == "online" and not online:
        return Hold("waiting to be online: no poll answered since the start", None)
    if choice is not None and choice.decision == "defer" and choice.until is not None and now < choice.until:
        return Hold(f"deferred until {_clock(moment, choice.until)}", choice.until)
    if gate == (REBOOT if policy.reboot == "window" else INSTALL):
        opening = next_opening(policy.install_windows, moment.local)
        if opening is not None:
            return Hold(f"outside the install window until {opening_text(opening, moment.local)}",
                        now + (opening - moment.local).total_seconds())
    if gate == REBOOT and policy.reboot != "approve":
        return None
    wanted = ("approve-reboot",) if gate == REBOOT else ("approve", "approve-reboot")
    if policy.manual and not (choice is not None and choice.decision in wanted):
        return Hold("waiting for approval (fwagent approve)", now + MANUAL_RECHECK)
    if policy.commands and not approved:
        if retry_at is not None and now < retry_at:
            return Hold(f"the approval command asked to wait until {_clock(moment, retry_at)}", retry_at)
        return Hold("waiting for approval", now + RECHECK_MAX, ask=True)     # (again, should the worker die)
    return None


def retry_delay(policy: PolicyConfig, attempt: int) -> float:
    """Seconds before the attempt after failed attempt ``attempt`` (1, 2, ...): doubling, at most an hour."""
    return min(policy.retry_delay * 2 ** (attempt - 1), RETRY_MAX)


def _clock(moment: Moment, epoch: float) -> str:
    when = moment.at(epoch)
    return when.strftime("%H:%M:%S") if when - moment.local < timedelta(hours=24) else when.strftime("%a %H:%M")
