"""The server action in hand, typed: what ``state_dir/ddi-action.json`` holds (pure: no I/O).

One reader (``from_dict``) and one writer (``as_dict``) for the record; agent/daemon/store.py
keeps it on disk. The JSON field names are those devices in the field have written since the
first daemon: never rename one. A field an older record lacks takes its default, so every
record ever written still loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from agent.daemon.actions import Phase
from agent.daemon.plan import ActionPlan

SCHEMA = 1


@dataclass(frozen=True)
class ActionRecord:
    phase: Phase = Phase.IDLE
    action: str | None = None                   # the DDI action id
    plan: dict[str, Any] | None = None          # ActionPlan.as_dict() of its deployment; None: no usable plan
    may_install: bool | None = None             # the server allows the install now (update, window)
    window: str | None = None                   # the deployment's maintenanceWindow
    fetched: dict[str, str] | None = None       # artifact name -> its file, checked
    resume: dict[str, Any] | None = None        # artifact name -> its download's checkpoint
    version: str | None = None                  # the version the action installs, once known
    cancel: str | None = None                   # the cancel action's id, in phase cancel
    starts: int = 0                             # starts in a row in this phase with nothing more done
    done: str | None = None                     # progress_mark at the last start
    waiting: str | None = None                  # why a local gate holds it ([policy]): shown and reported
    retry_at: float | None = None               # an approval command asked to wait, or a download's retry
                                                # waits, until then (epoch seconds)
    attempts: int = 0                           # failed attempts of the download, then of the install ([policy].retries)
    # Not persisted: the deployment link last fetched for this action. After a restart the
    # deployment is fetched again (it may have changed while the device was off).
    href: str | None = field(default=None, compare=False)

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> ActionRecord:
        """A record as ``problem`` accepts it (agent/daemon/store.py checks first)."""
        return cls(phase=Phase(record["phase"]), action=record.get("action"), plan=record.get("plan"),
                   may_install=record.get("may_install"), window=record.get("window"),
                   fetched=record.get("fetched"), resume=record.get("resume"), version=record.get("version"),
                   cancel=record.get("cancel"), starts=record.get("starts", 0), done=record.get("done"),
                   waiting=record.get("waiting"), retry_at=record.get("retry_at"),
                   attempts=record.get("attempts", 0))

    def as_dict(self) -> dict[str, Any]:
        """The JSON form: schema, phase and action always, the rest when set."""
        optional = {"plan": self.plan, "may_install": self.may_install, "window": self.window,
                    "fetched": self.fetched, "resume": self.resume, "version": self.version,
                    "cancel": self.cancel, "done": self.done, "waiting": self.waiting, "retry_at": self.retry_at,
                    "attempts": self.attempts or None}
        return {"schema": SCHEMA, "phase": self.phase.value, "action": self.action, "starts": self.starts,
                **{key: value for key, value in optional.items() if value is not None}}

    def moved(self, phase: Phase, **fields: Any) -> ActionRecord:
        """In a new phase: its start count begins again, and what held it is over."""
        return replace(self, phase=phase, **{"starts": 0, "waiting": None, "retry_at": None, **fields})

    def with_fields(self, **fields: Any) -> ActionRecord:
        return replace(self, **fields)

    def action_plan(self) -> ActionPlan:
        assert self.plan is not None, "an action in download, wait or install has a plan"
        return ActionPlan.from_dict(self.plan)

    def streamed_bundle(self) -> str | None:
        """The file name of the action's bundle when it streams into the slots (not fetched first)."""
        if not self.plan:
            return None
        plan = ActionPlan.from_dict(self.plan)
        return plan.main.filename if plan.kind == "bundle" and plan.main.filename not in (self.fetched or {}) else None


IDLE = ActionRecord()
