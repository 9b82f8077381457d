"""The gateway bench's two numbers, on a board (QEMU x86 or aarch64, or a real one): power-on
to agent ready, and a whole update cycle. Not a timed test.

Run: hil/run's environment, e.g.
    uv run --project hil/bench python bench/bench_hil.py --board hil/boards/qemu-gateway-x86.yaml

Each round starts from the factory disk (where the board can be given it). Side by side, in
the same run, each with its baseline:

* boot: power-on -> the boot script's choice -> a root shell with systemd's start-up done
  (the baseline) -> the agent ready (the server has its first poll). fwagent.service is
  Type=notify, ready once its start-up work is done, so the shell already includes that work;
  the ratio is what the first poll adds.
* update: an action assigned -> the result (closed, success) at the server, through download,
  write, reboot into the new slot, health check and commit. Baseline: the same bytes fetched
  by the device with busybox wget into the inactive slot, then a reboot back to a shell: the
  floor of moving that image and rebooting on this board. The ratio is what fwagent's checks,
  reports and commit add.

The median of ``--rounds`` rounds is printed as a table, with the ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "hil" / "scenarios"))

os.environ.setdefault("LG_HIL_IMAGES", os.environ.get("FWAGENT_HIL_CACHE")
                      or str(Path.home() / ".cache" / "fwagent" / "hil"))
os.environ.setdefault("LG_HIL_RUN", tempfile.mkdtemp(prefix="fwagent-hil-bench-",
                                                     dir="/dev/shm" if os.path.isdir("/dev/shm") else None))

from labgrid import Environment  # noqa: E402

import hil.gateway.qemu  # noqa: E402,F401 - registers GatewayQEMUDriver
from hil.gateway.device import Gateway  # noqa: E402
from hil.gateway.reach import ServerDoor  # noqa: E402
from hil.gateway.strategy import Status  # noqa: E402
from agent.demo.ddi_server import DdiServer  # noqa: E402
from updates import UPDATE_TIMEOUT, deploy, follow  # noqa: E402


def polled(server: DdiServer, device: str, since: int) -> bool:
    return any(path.endswith(f"/{device}") for _m, path in server.requests[since:])


def boot_round(gateway: Gateway, server: DdiServer, device: str) -> tuple[float, float, float]:
    """(power-on -> boot script, -> shell, -> first poll), in seconds."""
    strategy = gateway.strategy
    strategy.fresh()
    since = len(server.requests)
    start = time.monotonic()
    strategy.power.on()
    strategy.await_bootloader()
    chosen = time.monotonic() - start
    strategy.login()
    shell = time.monotonic() - start
    while not polled(server, device, since):
        gateway.listen(0.05)                     # the console read meanwhile (hil/README.md)
    return chosen, shell, time.monotonic() - start


def update_round(gateway: Gateway, server: DdiServer, device: str, data: bytes, version: str) -> float:
    gateway.fresh_boot()
    start = time.monotonic()
    action = deploy(server, device, "good", data, version)
    follow(gateway, lambda: server.actions[action.id].state == "closed", "the result", UPDATE_TIMEOUT)
    if server.actions[action.id].result != "success":
        raise SystemExit(f"the update did not succeed: {server.statuses(action.id)}")
    return time.monotonic() - start


def baseline_round(gateway: Gateway, server: DdiServer, device: str, data: bytes) -> float:
    """The same bytes into the inactive slot with busybox wget, then a reboot to a shell."""
    gateway.fresh_boot()
    gateway.run("systemctl stop fwagent")        # the bytes only; the agent is not asked
    action = deploy(server, device, "raw", data, "raw")
    action.state = "closed"                       # nor offered the action after the reboot
    url = f"{server.controller_url(device)}/softwaremodules/{action.id * 100 + 1}/artifacts/raw.fwb"
    start = time.monotonic()
    gateway.run(f"busybox wget -q -O /dev/vda3 {url} && sync", timeout=UPDATE_TIMEOUT)
    gateway.strategy.shell.console.sendline("reboot")
    gateway.await_reboot()
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--board", default=str(ROOT / "hil/boards/qemu-gateway-x86.yaml"))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    env = Environment(config_file=args.board)
    target = env.get_target()
    gateway = Gateway(target.get_driver("GatewayStrategy"))
    device = env.config.get_option("device_id")
    data = Path(env.config.get_image_path("good")).read_bytes()
    version = env.config.get_option("versions")["good"]
    door = ServerDoor(Path(os.environ["LG_HIL_RUN"]))
    rows: dict[str, list[float]] = {"boot script": [], "shell": [], "agent ready": [], "update": [],
                                    "wget + reboot": []}
    try:
        with DdiServer(sleep="00:00:02", public_url=env.config.get_option("server_url")) as server:
            door.open_to(int(server.url.rsplit(":", 1)[1]))
            for _ in range(args.rounds):
                for name, seconds in zip(("boot script", "shell", "agent ready"),
                                         boot_round(gateway, server, device)):
                    rows[name].append(seconds)
                rows["update"].append(update_round(gateway, server, device, data, version))
                rows["wget + reboot"].append(baseline_round(gateway, server, device, data))
    finally:
        gateway.strategy.transition(Status.off)
        env.cleanup()
    median = {name: statistics.median(values) for name, values in rows.items()}
    print(f"board {args.board}, {args.rounds} rounds, {len(data) >> 20} MiB update, medians:")
    print("| measure | seconds | vs baseline |")
    print("|---|---:|---:|")
    print(f"| power-on -> boot script's choice | {median['boot script']:.1f} | |")
    print(f"| power-on -> root shell (baseline) | {median['shell']:.1f} | 1.00x |")
    print(f"| power-on -> agent ready (first poll) | {median['agent ready']:.1f} | "
          f"{median['agent ready'] / median['shell']:.2f}x |")
    print(f"| wget into the slot + reboot (baseline) | {median['wget + reboot']:.1f} | 1.00x |")
    print(f"| fwagent update cycle (assigned -> committed, reported) | {median['update']:.1f} | "
          f"{median['update'] / median['wget + reboot']:.2f}x |")


if __name__ == "__main__":
    main()
