"""Idle cost of the daemon: CPU and memory of ``fwagent run`` with nothing to do.

Not a timed test. Target: over 10 minutes (``--duration``), CPU <= 0.1 % and
RSS <= 30 MiB.

Set-up: the reference DDI server (agent/demo/ddi_server.py, sleep 00:05:00, no
deployment), a mosquitto broker on loopback, and ``fwagent run`` as a real
child process (the interpreter itself, ``-m agent``, no wrapper) on a simulated
gateway with ``[server]`` (the defaults: the first poll, with configData, at a
random point of one poll interval after the start, then every 5 minutes as the
server says, with jitter) and ``[mqtt]`` (keepalive 60 s): it publishes its
state, polls now and then and otherwise waits.

Side by side, started at the same moment and sampled at the same moments:

* python sleeping: the same interpreter running ``time.sleep``, the floor any
  Python daemon starts from;
* python + fwagent's imports: the same, after importing what ``fwagent run``
  imports (command line, configuration, daemon, DDI client, downloader,
  installer, paho, requests), so that the RSS splits into imports and running.

After ``--settle`` seconds, and again ``--duration`` seconds later, each
process's CPU time (utime + stime of /proc/PID/stat, all threads), RSS
(VmRSS; RssAnon and RssFile, the part in shared libraries and mapped files),
peak RSS since its start (VmHWM), threads and context switches (the sum over
/proc/PID/task: how often its threads woke up). CPU % is the CPU time in the
window over the window's wall time. The code is byte-compiled first, as it is
on a device.

Run: uv run python bench/bench_idle.py [--duration 600] [--settle 5]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_install import byte_compile  # noqa: E402
from bench_wakeup import DEVICE, Watcher, connect_gateway, daemon_process, require_mosquitto  # noqa: E402
from agent.demo.ddi_server import DdiServer  # noqa: E402
from agent.demo.broker import run_mosquitto  # noqa: E402
from install_bench import make_gateway  # noqa: E402

CPU_TARGET = 0.1          # percent
RSS_TARGET = 30.0         # MiB
TICK = os.sysconf("SC_CLK_TCK")

SLEEPER = "import time\nwhile True: time.sleep(3600)"
IMPORTS = ("import signal, agent.cli, agent.cli.install, agent.config, agent.log, agent.daemon.compose, agent.mqtt, "
           "paho.mqtt.client, requests\n" + SLEEPER)      # requests: the daemon imports it when it builds its session


@dataclass(frozen=True)
class Sample:
    at: float             # monotonic seconds
    cpu: float            # user + system seconds, all threads
    rss: float            # MiB
    anon: float
    file: float
    peak: float
    threads: int
    switches: int         # voluntary + involuntary context switches, all live threads


def sample(pid: int) -> Sample:
    at = time.monotonic()
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()          # from field 3 (state) on
    cpu = (int(fields[11]) + int(fields[12])) / TICK     # utime, stime
    status = _status(Path(f"/proc/{pid}/status"))
    switches = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            values = _status(task / "status")
        except FileNotFoundError:                        # a thread that just ended
            continue
        switches += int(values["voluntary_ctxt_switches"]) + int(values["nonvoluntary_ctxt_switches"])
    mib = {key: int(status[key].split()[0]) / 1024 for key in ("VmRSS", "RssAnon", "RssFile", "VmHWM")}
    return Sample(at, cpu, mib["VmRSS"], mib["RssAnon"], mib["RssFile"], mib["VmHWM"], int(status["Threads"]),
                  switches)


def _status(path: Path) -> dict[str, str]:
    return dict(line.split(":", 1) for line in path.read_text().splitlines() if ":" in line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of the measured window")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds after the start before the window")
    args = parser.parse_args()
    require_mosquitto()
    byte_compile()
    with tempfile.TemporaryDirectory(dir=ROOT / "bench") as tmp, DdiServer(sleep="00:05:00") as server:
        root = Path(tmp)
        gateway = make_gateway(root / "gw")
        with run_mosquitto(root) as broker:
            connect_gateway(gateway, server.url, broker)
            watcher = Watcher(broker)
            log_path = root / "daemon.log"
            others = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT) for code in (SLEEPER, IMPORTS)]
            try:
                with open(log_path, "w") as log, daemon_process(gateway, log) as daemon:
                    processes = [*others, daemon]
                    started = time.monotonic()
                    watcher.wait_state(DEVICE, "online")
                    time.sleep(max(0.0, started + args.settle - time.monotonic()))
                    polls_before = _polls(server)
                    first = [sample(p.pid) for p in processes]
                    end = first[0].at + args.duration
                    while time.monotonic() < end:
                        if any(p.poll() is not None for p in processes):
                            raise RuntimeError("a process exited:\n" + log_path.read_text())
                        time.sleep(min(1.0, max(0.0, end - time.monotonic())))
                    last = [sample(p.pid) for p in processes]
                    polls = _polls(server) - polls_before
            finally:
                for process in others:
                    process.kill()
                    process.wait()
                watcher.stop()
            problems = [line for line in log_path.read_text().splitlines() if "level=warning" in line
                        or "level=error" in line]
    report(first, last, args.duration, polls, problems)


def _polls(server: DdiServer) -> int:
    return sum(1 for method, path in list(server.requests) if method == "GET" and path.split("?")[0]
               == f"/DEFAULT/controller/v1/{DEVICE}")


def report(first: list[Sample], last: list[Sample], duration: float, polls: int, problems: list[str]) -> None:
    wall = [b.at - a.at for a, b in zip(first, last)]
    cpu = [b.cpu - a.cpu for a, b in zip(first, last)]
    percent = [c / w * 100 for c, w in zip(cpu, wall)]
    wakeups = [(b.switches - a.switches) / w for a, b, w in zip(first, last, wall)]

    def row(name: str, values: list[float], fmt: str, target: str = "", ratio: bool = True) -> None:
        cells = " | ".join(format(v, fmt) for v in values)
        times = f"{values[2] / values[0]:.1f}x" if ratio and values[0] else ""
        print(f"| {name} | {cells} | {times} | {target} |")

    cpu_ok = "met" if percent[2] <= CPU_TARGET else "MISSED"
    rss_ok = "met" if last[2].rss <= RSS_TARGET else "MISSED"
    print(f"| idle, {duration:.0f} s window | python sleeping | python + fwagent's imports | fwagent run | "
          "fwagent / python | target |")
    print("|---|---|---|---|---|---|")
    row("CPU %", percent, ".4f", f"<= {CPU_TARGET} ({cpu_ok})")
    row("CPU s in the window", cpu, ".2f", ratio=False)
    row("wake-ups/s (context switches)", wakeups, ".2f")
    row("RSS MiB, end", [s.rss for s in last], ".1f", f"<= {RSS_TARGET:.0f} ({rss_ok})")
    row("RSS MiB, start of the window", [s.rss for s in first], ".1f")
    row("of which anonymous, end", [s.anon for s in last], ".1f")
    row("of which files (libraries), end", [s.file for s in last], ".1f")
    row("peak RSS MiB (VmHWM)", [s.peak for s in last], ".1f")
    row("threads", [float(s.threads) for s in last], ".0f", ratio=False)
    print(f"\nfwagent polled the server {polls} times in the window; "
          f"{len(problems)} warnings or errors in its log" + (":" if problems else "."))
    for line in problems[:10]:
        print(f"    {line}")


if __name__ == "__main__":
    main()
