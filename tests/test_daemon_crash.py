"""Power cuts under the daemon: ``fwagent run`` killed (SIGKILL) at points spread over a whole
server action, the gateway power-cycled, the service started again, until the action closes.

Whatever the cut, the server must end with exactly one final result, the device must boot a
good slot, and a success must mean the new image is in the booted slot.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.demo.ddi_server import DdiServer
from install_bench import make_gateway
from test_daemon import DEVICE, connect, executions, slot_holds

ROOT = Path(__file__).resolve().parents[1]


def start(config: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "agent", "run", "--config", str(config)],
                            stderr=open(log, "a"), env=env)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(12))
def test_a_cut_anywhere_in_an_action_ends_with_one_result_and_a_bootable_device(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    gateway = make_gateway(tmp_path / "gw", health='[["sleep", "1"]]')   # an install phase worth cutting
    with DdiServer(sleep="00:00:01") as server:
        connect(gateway, server, "\n")
        gateway.config_path.write_text(gateway.config_path.read_text() + "\n[download]\nrate_limit = 2000000\n")
        bundle = gateway.bundle("u2", sequence=2, size=2 << 20)
        image = (gateway.root / "u2.img").read_bytes()
        action = server.create_deployment(DEVICE, [{"part": "os", "name": "gateway", "version": "2.0.0",
                                                    "artifacts": {"u2.fwb": bundle.read_bytes()}}])
        log = tmp_path / "daemon.log"
        for _cut in range(3):                         # up to three cuts, each at a random point
            process = start(gateway.config_path, log)
            time.sleep(rng.uniform(0.3, 3.5))
            process.send_signal(signal.SIGKILL)
            process.wait(10)
            gateway.power_cycle()
            if server.actions[action.id].state == "closed":
                break
        process = start(gateway.config_path, log)
        try:
            deadline = time.monotonic() + 60
            while server.actions[action.id].state != "closed" and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
        assert server.actions[action.id].state == "closed", log.read_text()[-3000:]
        steps = executions(server, action.id)
        assert steps.count("closed") == 1, steps
        booted = gateway.booted()
        assert gateway.bootloader().get_state(booted), "the booted slot must be a good one"
        if server.actions[action.id].result == "success":
            assert booted == "B" and slot_holds(gateway, "B", image)
        else:
            assert booted == "A", (steps, log.read_text()[-2000:])
