"""The A/B update flow as data: (state, event) -> state, and where a restart resumes.

Pure: no I/O. The installer persists each state under its stable name before
it performs that state's side effect, then feeds the outcome (an event) to
``step``. The names below are written into journals in the field: never
rename one; add new ones.

    verify -> mark-bad -> write -> switch -> reboot -> check-boot -> health -> commit -> (committed)
       |          |          |                           |              |
       +----------+----------+--> failed                 +--------------+--> rollback -> (rolled back)
       |
       +--> already-installed     the manifest committed on the booted slot: nothing is written

An update staged (``[policy].reboot`` = ``window`` or ``approve``, docs/daemon.md) stops
after ``write``, in ``staged``: the slot written and checked, still marked bad, nothing the
bootloader boots changed. It goes on to ``switch`` only when released (the daemon's reboot
gate opens); a power cut while it waits leaves it staged, and a cancel or a refusal there
ends it in ``failed``:

    write -> staged -> switch -> ...        (released)
               +-----> failed               (cancelled, refused)

Before ``switch`` nothing the bootloader boots has changed, so a failure ends
in ``failed`` (the written slot stays marked bad). From ``switch`` on, the
device may boot the new slot, so a failure ends in ``rollback``.

Things (microcontrollers on serial lines) are flashed once the gateway is
committed, from images kept in the state directory since ``write``:

    commit -> things -> (committed)               gateway and Things
    verify -> stash -> things -> (committed)      Things only: the gateway's slots stay as they are

A Thing that fails does not roll the gateway back: ``things`` always ends in
``committed``, with each Thing's result in the outcome.
"""

from __future__ import annotations

from enum import Enum


class State(str, Enum):
    VERIFY = "verify"          # check the manifest and the target slots
    MARK_BAD = "mark-bad"      # mark the target slot bad before writing it
    WRITE = "write"            # stream the payloads into the target slot, check them
    SWITCH = "switch"          # make the target primary with one boot try
    REBOOT = "reboot"          # reboot into the target
    CHECK_BOOT = "check-boot"  # after the reboot: did the target boot?
    HEALTH = "health"          # run the health checks on the new slot
    COMMIT = "commit"          # mark good, store the new sequence number
    ROLLBACK = "rollback"      # mark the target bad, old slot primary again
    FAILED = "failed"          # final: nothing was activated
    COMMITTED = "committed"    # final: the update is in place
    ROLLED_BACK = "rolled-back"  # final: back on the old slot
    STASH = "stash"            # Things only: keep their images, checked, in the state directory
    THINGS = "things"          # flash the Things, one after the other
    ALREADY_INSTALLED = "already-installed"   # final: the manifest is the one committed on the booted slot
    STAGED = "staged"          # written and checked; waits to be released to switch (a reboot gate)


class Event(str, Enum):
    OK = "ok"
    FAILED = "failed"
    SAME_BOOT = "same-boot"      # check-boot: the reboot has not happened yet
    FELL_BACK = "fell-back"      # check-boot: the bootloader booted the old slot
    TOO_MANY_RESTARTS = "too-many-restarts"
    NO_SLOTS = "no-slots"        # verify: the manifest updates Things only
    THINGS = "things"            # commit: Things are waiting to be flashed
    CURRENT = "current"          # verify: the manifest is the one committed on the booted slot
    STAGE = "stage"              # write: done, and the update is to wait before the switch


FINAL = frozenset({State.FAILED, State.COMMITTED, State.ROLLED_BACK, State.ALREADY_INSTALLED})

TRANSITIONS: dict[tuple[State, Event], State] = {
    (State.VERIFY, Event.OK): State.MARK_BAD,
    (State.VERIFY, Event.FAILED): State.FAILED,
    (State.VERIFY, Event.CURRENT): State.ALREADY_INSTALLED,   # installing it again would overwrite the fallback
    (State.MARK_BAD, Event.OK): State.WRITE,
    (State.MARK_BAD, Event.FAILED): State.FAILED,
    (State.WRITE, Event.OK): State.SWITCH,
    (State.WRITE, Event.FAILED): State.FAILED,
    (State.WRITE, Event.STAGE): State.STAGED,
    (State.STAGED, Event.OK): State.SWITCH,         # released
    (State.STAGED, Event.FAILED): State.FAILED,     # cancelled or refused while it waited
    (State.SWITCH, Event.OK): State.REBOOT,
    (State.SWITCH, Event.FAILED): State.ROLLBACK,
    (State.REBOOT, Event.OK): State.CHECK_BOOT,
    (State.REBOOT, Event.FAILED): State.ROLLBACK,
    (State.CHECK_BOOT, Event.OK): State.HEALTH,
    (State.CHECK_BOOT, Event.SAME_BOOT): State.REBOOT,
    (State.CHECK_BOOT, Event.FELL_BACK): State.ROLLBACK,
    (State.CHECK_BOOT, Event.FAILED): State.ROLLBACK,
    (State.HEALTH, Event.OK): State.COMMIT,
    (State.HEALTH, Event.FAILED): State.ROLLBACK,
    (State.COMMIT, Event.OK): State.COMMITTED,
    (State.COMMIT, Event.FAILED): State.ROLLBACK,    # the bootloader refused the good mark
    (State.ROLLBACK, Event.OK): State.ROLLED_BACK,
    (State.ROLLBACK, Event.FAILED): State.FAILED,    # recorded with the reason; nothing more to try
    (State.VERIFY, Event.NO_SLOTS): State.STASH,
    (State.STASH, Event.OK): State.THINGS,
    (State.STASH, Event.FAILED): State.FAILED,
    (State.COMMIT, Event.THINGS): State.THINGS,
    (State.THINGS, Event.OK): State.COMMITTED,
    (State.THINGS, Event.FAILED): State.COMMITTED,   # the gateway stays committed; the outcome says what failed
}
# Too many restarts within one update (a crash loop): take the failure path of
# wherever the update is. ROLLBACK keeps trying: it is short, idempotent, and
# what gives the device back a good slot.
TRANSITIONS.update({(state, Event.TOO_MANY_RESTARTS): TRANSITIONS[(state, Event.FAILED)]
                    for state in State if (state, Event.FAILED) in TRANSITIONS and state is not State.ROLLBACK})

# Where a restart continues from each persisted state. Every action is
# idempotent, so most states simply run again. A persisted REBOOT means the
# reboot may or may not have happened: check-boot compares boot ids to tell.
# HEALTH and COMMIT also go back to check-boot: a power cut there may have
# spent the new slot's only try, and the bootloader may now run the old slot;
# committing then would mark good a slot that never proved itself.
RESUME: dict[State, State] = {
    State.VERIFY: State.VERIFY,
    State.MARK_BAD: State.MARK_BAD,
    State.WRITE: State.WRITE,          # rewrite (a bundle URL: from what is synced): the slot is marked bad
    State.SWITCH: State.SWITCH,
    State.REBOOT: State.CHECK_BOOT,
    State.CHECK_BOOT: State.CHECK_BOOT,
    State.HEALTH: State.CHECK_BOOT,
    State.COMMIT: State.CHECK_BOOT,
    State.ROLLBACK: State.ROLLBACK,
    State.STASH: State.STASH,          # keep the images again from the start
    State.THINGS: State.THINGS,        # the Things not flashed yet; one cut short is flashed again
    State.STAGED: State.STAGED,        # waits again to be released: never switched by a restart alone
}

# How many times an update may be resumed before it is forced down its failure path.
MAX_RESTARTS = 5


class FlowError(RuntimeError):
    """An event that the table does not allow in a state: a bug, never a user error."""


def step(state: State, event: Event) -> State:
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise FlowError(f"no transition from {state.value} on {event.value}") from None


def resume(state: State, restarts: int) -> tuple[State, bool]:
    """The state to continue with after a restart, and whether the failure path is forced."""
    target = RESUME[state]
    if restarts > MAX_RESTARTS and (target, Event.TOO_MANY_RESTARTS) in TRANSITIONS:
        return step(target, Event.TOO_MANY_RESTARTS), True
    return target, False
