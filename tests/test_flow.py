"""The update flow table, tested directly: no threads, no I/O."""

from __future__ import annotations

import pytest

from agent.update.flow import (FINAL, MAX_RESTARTS, RESUME, TRANSITIONS, Event, FlowError, State,
                               resume, step)

# These names are written into journals in the field. Changing one breaks
# every device that updates across the change: this list must only grow.
PERSISTED_NAMES = ["verify", "mark-bad", "write", "switch", "reboot", "check-boot", "health", "commit",
                   "rollback", "failed", "committed", "rolled-back", "stash", "things", "already-installed",
                   "staged"]


def test_persisted_names_are_stable() -> None:
    assert [s.value for s in State] == PERSISTED_NAMES


def test_every_state_that_can_be_persisted_has_a_resume_point() -> None:
    assert set(RESUME) == set(State) - FINAL
    assert all(target not in FINAL for target in RESUME.values())


def test_final_states_have_no_way_out() -> None:
    assert not [key for key in TRANSITIONS if key[0] in FINAL]


def test_every_running_state_reaches_a_final_state_on_success_and_on_failure() -> None:
    for start in set(State) - FINAL:
        for failing in (False, True):
            state, seen = start, set()
            while state not in FINAL:
                assert state not in seen, f"loop from {start}"
                seen.add(state)
                event = Event.FAILED if failing and (state, Event.FAILED) in TRANSITIONS else Event.OK
                state = step(state, event)


def test_happy_path() -> None:
    state, path = State.VERIFY, []
    while state not in FINAL:
        path.append(state.value)
        state = step(state, Event.OK)
    assert path == ["verify", "mark-bad", "write", "switch", "reboot", "check-boot", "health", "commit"]
    assert state is State.COMMITTED


@pytest.mark.parametrize("state, expected", [
    (State.VERIFY, State.FAILED), (State.MARK_BAD, State.FAILED), (State.WRITE, State.FAILED),
    (State.SWITCH, State.ROLLBACK), (State.REBOOT, State.ROLLBACK), (State.CHECK_BOOT, State.ROLLBACK),
    (State.HEALTH, State.ROLLBACK),
])
def test_nothing_activated_before_switch_fails_without_rollback(state: State, expected: State) -> None:
    assert step(state, Event.FAILED) is expected


def test_a_bootloader_failure_in_commit_or_rollback_still_ends() -> None:
    assert step(State.COMMIT, Event.FAILED) is State.ROLLBACK
    assert step(State.ROLLBACK, Event.FAILED) is State.FAILED


def test_check_boot_outcomes() -> None:
    assert step(State.CHECK_BOOT, Event.SAME_BOOT) is State.REBOOT
    assert step(State.CHECK_BOOT, Event.FELL_BACK) is State.ROLLBACK
    assert step(State.ROLLBACK, Event.OK) is State.ROLLED_BACK


def test_a_persisted_reboot_resumes_by_checking_the_boot() -> None:
    assert resume(State.REBOOT, 1) == (State.CHECK_BOOT, False)
    assert resume(State.WRITE, 1) == (State.WRITE, False)


@pytest.mark.parametrize("state", [State.HEALTH, State.COMMIT])
def test_health_and_commit_check_the_boot_again_after_a_restart(state: State) -> None:
    """A power cut may have spent the new slot's try: never commit without checking what booted."""
    assert resume(state, 1) == (State.CHECK_BOOT, False)


def test_a_crash_loop_is_forced_down_the_failure_path() -> None:
    assert resume(State.WRITE, MAX_RESTARTS + 1) == (State.FAILED, True)
    assert resume(State.HEALTH, MAX_RESTARTS + 1) == (State.ROLLBACK, True)
    assert resume(State.COMMIT, MAX_RESTARTS + 1) == (State.ROLLBACK, True)
    assert resume(State.ROLLBACK, MAX_RESTARTS + 10) == (State.ROLLBACK, False)


def test_an_event_outside_the_table_is_a_bug() -> None:
    with pytest.raises(FlowError, match="no transition from commit on fell-back"):
        step(State.COMMIT, Event.FELL_BACK)


def test_things_come_after_the_gateways_commit_and_never_roll_it_back() -> None:
    assert step(State.COMMIT, Event.THINGS) is State.THINGS
    assert step(State.THINGS, Event.OK) is step(State.THINGS, Event.FAILED) is State.COMMITTED
    assert resume(State.THINGS, MAX_RESTARTS + 1) == (State.COMMITTED, True)


def test_an_update_of_things_only_never_touches_the_gateways_slots() -> None:
    state, path = State.VERIFY, []
    event = Event.NO_SLOTS
    while state not in FINAL:
        path.append(state.value)
        state = step(state, event)
        event = Event.OK
    assert path == ["verify", "stash", "things"] and state is State.COMMITTED
    assert step(State.STASH, Event.FAILED) is State.FAILED


def test_the_committed_manifest_ends_at_verify_with_nothing_written() -> None:
    assert step(State.VERIFY, Event.CURRENT) is State.ALREADY_INSTALLED
    assert State.ALREADY_INSTALLED in FINAL


def test_a_staged_update_switches_only_when_released() -> None:
    assert step(State.WRITE, Event.STAGE) is State.STAGED
    assert step(State.STAGED, Event.OK) is State.SWITCH
    assert step(State.STAGED, Event.FAILED) is State.FAILED        # nothing was activated
    assert resume(State.STAGED, 1) == (State.STAGED, False)       # a restart keeps it staged
    assert resume(State.STAGED, MAX_RESTARTS + 1) == (State.FAILED, True)
