"""Power cuts at every journal step and inside slot writes: the device always recovers.

Each case runs an install in a subprocess that SIGKILLs itself at one point,
then plays a power cycle (the file bootloader chooses a slot, a new boot
begins) and lets the agent finish with ``fwagent run``, as after a real start.
Invariants after every cut:
* the booted slot was never written;
* the bootloader always has a good slot it would boot;
* the update ends committed or rolled back (or failed before the switch), never stuck;
* exactly one final outcome is recorded.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from install_bench import Gateway, make_gateway

RUNNER = Path(__file__).with_name("crash_runner.py")
KILLED = -9
IMAGE = 1 << 20
CHUNK = 1 << 20


def killed_install(gateway: Gateway, bundle: Path, kind: str, at: int) -> int:
    result = subprocess.run([sys.executable, str(RUNNER), kind, str(at), "--", "install", str(bundle),
                             "--config", str(gateway.config_path)], capture_output=True, text=True, timeout=120)
    assert result.returncode in (KILLED, 0, 1), result.stderr
    return result.returncode


def has_good_slot(gateway: Gateway) -> bool:
    boot = gateway.bootloader()
    variables = boot.variables()
    return any(boot.get_state(s) and variables.get(f"{s}_pending") == "0" for s in ("A", "B"))


def finish(gateway: Gateway, killed: bool) -> dict:
    """The cut was a power cut: power on, then start the agent until the update is over."""
    if killed:
        gateway.power_cycle()
        assert has_good_slot(gateway)
    for _ in range(10):
        record = json.loads((gateway.root / "state/journal.json").read_text())
        if record["update"] is None:
            return record
        outcome = gateway.installer().resume()
        if outcome is not None and outcome.result == "pending":
            gateway.power_cycle()
    raise AssertionError(f"update stuck at {record['update']['state']}")


def run_case(root: Path, kind: str, at: int, healthy: bool) -> tuple[str, bool]:
    gateway = make_gateway(root, health='[["true"]]' if healthy else '[["false"]]')
    factory_a = gateway.slot_digest("A")
    bundle = gateway.bundle("u2", sequence=2, size=IMAGE)
    factory_b = gateway.slot_digest("B")
    code = killed_install(gateway, bundle, kind, at)
    assert has_good_slot(gateway), f"no good slot after the cut ({kind} {at})"
    if not (gateway.root / "state/journal.json").exists():
        # Cut before the update was first recorded: it never started, and nothing changed.
        assert (gateway.slot_digest("A"), gateway.slot_digest("B")) == (factory_a, factory_b)
        assert gateway.bootloader().get_primary() == "A"
        return "not-started", code == KILLED
    if code == KILLED and gateway.booted() == "A":
        assert gateway.slot_digest("A") == factory_a
    record = finish(gateway, code == KILLED)
    assert gateway.slot_digest("A") == factory_a or record["installed"], "slot A written while booted"
    assert len(record["outbox"]) == 1, record["outbox"]
    outcome = record["outbox"][0]
    booted = gateway.booted()
    if outcome["result"] == "success":
        assert healthy and booted == "B" and record["installed"]["sequence"] == 2
        image = (gateway.root / "u2.img").read_bytes()
        assert (gateway.root / "rootfs-b.img").read_bytes()[:IMAGE] == image
    else:
        assert outcome["state"] in ("rolled-back", "failed") and booted == "A"
        assert gateway.slot_digest("A") == factory_a
    assert has_good_slot(gateway)
    return outcome["state"], code == KILLED


# Every journal write of a full update (healthy: 10, unhealthy: 10), before and after it,
# every bootloader state write, and cuts inside the image write.
JOURNAL_CUTS = [(kind, n, healthy) for kind in ("journal-before", "journal-after") for n in range(1, 11)
                for healthy in (True, False)]
BOOTENV_CUTS = [("bootenv", n, healthy) for n in range(1, 6) for healthy in (True, False)]
BYTE_CUTS = [("bytes", n, True) for n in (1, 4096, CHUNK // 2, IMAGE - 1)]


@pytest.mark.parametrize("kind, at, healthy", JOURNAL_CUTS + BOOTENV_CUTS + BYTE_CUTS)
def test_cut_recovers(tmp_path: Path, kind: str, at: int, healthy: bool) -> None:
    run_case(tmp_path, kind, at, healthy)


@pytest.mark.slow
def test_two_hundred_random_cuts(tmp_path: Path) -> None:
    rng = random.Random(20261123)
    cases = [(kind, at, healthy) for kind, at, healthy in JOURNAL_CUTS + BOOTENV_CUTS]
    cases += [("bytes", rng.randrange(1, IMAGE), rng.random() < 0.8) for _ in range(200 - len(cases))]
    outcomes: dict[str, int] = {}
    killed = 0
    for number, (kind, at, healthy) in enumerate(cases):
        state, was_killed = run_case(tmp_path / str(number), kind, at, healthy)
        outcomes[state] = outcomes.get(state, 0) + 1
        killed += was_killed
    assert len(cases) >= 200 and killed >= 150, (killed, outcomes)
    assert outcomes.get("committed") and outcomes.get("rolled-back")
