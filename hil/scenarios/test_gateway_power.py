"""Power cuts during updates: the QEMU process killed (a real board: its power switched off),
never shut down. After each cut the board is powered on again. A run passes only when the
device always boots, ends on one committed slot, and the server holds exactly one final
result for the action."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import pytest
from updates import UPDATE_TIMEOUT, deploy, details, finals, follow, settle

from hil.gateway.device import Gateway
from agent.demo.ddi_server import Action, DdiServer


def reported(ddi: DdiServer, action: Action, text: str) -> Callable[[], bool]:
    return lambda: any(text in d for d in details(ddi, action))


def wait(gateway: Gateway, condition: Callable[[], bool], what: str, timeout: float = UPDATE_TIMEOUT) -> None:
    """Until the server's record says so, with the console read meanwhile."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        gateway.listen(0.2)


def check_the_end(gateway: Gateway, ddi: DdiServer, action: Action, good_version: str) -> str:
    """One final result; the device on one committed slot, the one the result says. Returns it."""
    follow(gateway, lambda: ddi.actions[action.id].state == "closed", "the action's result")
    settle(gateway)
    [final] = finals(ddi, action)
    status = gateway.agent_status()
    assert status["update"] is None, status
    assert status["booted"] == status["primary"] and status["slots"][status["booted"]]["good"], status
    if final["result"]["finished"] == "success":
        assert status["booted"] == "B" and status["installed"]["version"] == good_version, status
    else:
        assert status["booted"] == "A" and final.get("code") in (1, 2), final
    return final["result"]["finished"]


CUTS = {
    # where: what to wait for (the server's record, or the console), and how long after it to cut
    "download": ("Downloaded", 0.5),
    "write": ("installing into slot B", 2.0),
    "after-switch": ("rebooting into slot B", 0.0),
    "first-boot-of-B": (None, 3.0),
    "commit": ("committing slot B", 0.0),
}


@pytest.mark.parametrize("where", list(CUTS))
def test_a_power_cut_at_a_chosen_moment(where: str, gateway: Gateway, ddi: DdiServer, bundle, version,  # noqa: ANN001
                                        device_id: str) -> None:
    assert gateway.fresh_boot() == "A"
    action = deploy(ddi, device_id, "good", bundle("good"), version("good"))
    text, delay = CUTS[where]
    if text is None:
        assert gateway.await_bootloader(timeout=UPDATE_TIMEOUT) == "B"
    else:
        wait(gateway, reported(ddi, action, text), f"'{text}'")
    gateway.listen(delay)
    gateway.power_cut()
    gateway.power_on()
    outcome = check_the_end(gateway, ddi, action, version("good"))
    if where in ("download", "write"):
        assert outcome == "success"         # nothing had been switched: the update resumed


def test_power_cuts_at_random_times(request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str],
                                    gateway: Gateway, ddi: DdiServer, bundle, version,  # noqa: ANN001
                                    device_id: str) -> None:
    """``--cuts`` cuts (20 by default) spread over updates, each from the factory disk, 3 to 6 cuts
    an update: between 0 and 30 s after the action is assigned or the power comes back, whatever
    the device does then (its bootloader writing its environment, booting, downloading, writing,
    rebooting, checking its health, committing)."""
    wanted = request.config.getoption("--cuts")
    seed = request.config.getoption("--cuts-seed")
    seed = seed if seed is not None else random.SystemRandom().randrange(1 << 32)
    rng = random.Random(seed)
    with capsys.disabled():                  # shown whatever the outcome: the seed repeats the run
        print(f"\nrandom power cuts: seed {seed} (--cuts-seed {seed} repeats them)")
    cuts, updates, outcomes = 0, 0, []
    while cuts < wanted:
        assert gateway.fresh_boot() == "A"
        action = deploy(ddi, device_id, "good", bundle("good"), version("good"))
        updates += 1
        for _ in range(min(rng.randint(3, 6), wanted - cuts)):
            if ddi.actions[action.id].state == "closed":
                break
            gateway.listen(rng.uniform(0.0, 30.0))
            gateway.power_cut()
            cuts += 1
            gateway.switch_on()
        gateway.power_on()
        outcomes.append(check_the_end(gateway, ddi, action, version("good")))
    with capsys.disabled():
        print(f"{cuts} power cuts over {updates} updates: {outcomes.count('success')} committed, "
              f"{outcomes.count('failure')} rolled back or failed, every one reported once")
