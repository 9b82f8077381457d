"""Wake-up latency: an MQTT wake-up to the first byte of the artifact, with a 5-minute poll interval.

Not a timed test. Target: with the server's sleep at 00:05:00 (polling alone
would take minutes), the time from publishing the wake-up to the server sending
the first byte of the artifact is at most 1 s (median of 20).

Set-up: the reference DDI server (agent/demo/ddi_server.py, sleep 00:05:00), a
mosquitto broker on loopback, and ``fwagent run`` as a real child process (the
same interpreter, ``-m agent``) on a simulated gateway (file-backed A/B slots,
file bootloader with a simulated reboot, health ``true``) with ``[server]`` and
``[mqtt]`` sections. Each round creates a deployment of a new small bundle
(``--size`` KiB, sequence 2, 3, ...: the daemon installs and commits every one,
so the next needs a higher sequence), publishes an empty message on
``fwagent/<device>/wakeup`` (QoS 1) and waits until the action is closed and
configData reported, so that each round starts from an idle daemon.

The time is taken on the server side, in this process, on one monotonic clock:
from just before the publish to the server having read the artifact's GET (its
answer's first bytes go out in the same handler call, right after), as the
server's ``exchanges`` recorder stamps it. The split into wake-up -> root poll
-> deploymentBase -> artifact GET says where the time goes.

Baseline, side by side in the same run (alternating rounds, same broker and
server): a bare client, a child process that is already running, subscribed to
its own wake-up topic with paho, and on each message does only the three GETs
(root poll, deploymentBase, artifact) on one keep-alive requests session, then
closes the action with its feedback. It is the floor of the protocol on this
machine, MQTT delivery and three loopback HTTP requests with nothing else to do;
the ratio is what fwagent's structure (events, job worker, persisted phases,
progress feedback, a download thread) adds. A timer-driven poll is no baseline
at 5 minutes, and a fresh process per wake-up would charge the baseline with an
interpreter start the daemon never pays.

Run: uv run python bench/bench_wakeup.py [--rounds 20] [--size 64]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import queue
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402

from agent.demo.local import stop_process  # noqa: E402
from agent.demo.ddi_server import DdiServer  # noqa: E402
from agent.demo.broker import find_mosquitto, run_mosquitto  # noqa: E402
from install_bench import Gateway, make_gateway  # noqa: E402

DEVICE = "gw-test"        # the device id of install_bench's gateway
BARE = "gw-bare"
TARGET = 1.0              # seconds, median

# The baseline: already running, subscribed; per wake-up the three GETs and the closing feedback.
BARE_CLIENT = """
import queue, sys, paho.mqtt.client as mqtt, requests
url, device, host, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
base = f"{url}/DEFAULT/controller/v1/{device}"
session = requests.Session()
wakeups = queue.SimpleQueue()
client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bare-{device}")
client.on_connect = lambda c, *_: c.subscribe(f"fwagent/{device}/wakeup", qos=1)
client.on_subscribe = lambda *_: print("ready", flush=True)
client.on_message = lambda *_: wakeups.put(1)
client.connect(host, port)
client.loop_start()
while True:
    wakeups.get()
    root = session.get(base, timeout=10).json()
    href = root["_links"]["deploymentBase"]["href"]
    action = session.get(href, timeout=10).json()
    artifact = action["deployment"]["chunks"][0]["artifacts"][0]["_links"]["download-http"]["href"]
    with session.get(artifact, stream=True, timeout=10) as response:
        response.raw.read(1)
        response.content
    session.post(f"{base}/deploymentBase/{action['id']}/feedback", timeout=10,
                 json={"status": {"execution": "closed", "result": {"finished": "success"}}})
    print("done", flush=True)
"""


# --- parts the idle bench shares ----------------------------------------------------------------

def require_mosquitto() -> None:
    if find_mosquitto() is None:
        sys.exit("mosquitto is not installed (apt-get install mosquitto, see README.md)")


def broker_address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("mqtt://").split(":")
    return host, int(port)


def connect_gateway(gateway: Gateway, server_url: str, broker: str, server_extra: str = "") -> None:
    """Add [server] and [mqtt] to the simulated gateway's agent.toml."""
    gateway.config_path.write_text(gateway.config_path.read_text()
                                   + f'\n[server]\nurl = "{server_url}"\n{server_extra}'
                                   + f'\n[mqtt]\nurl = "{broker}"\n')


@contextmanager
def daemon_process(gateway: Gateway, log: IO[str]) -> Iterator[subprocess.Popen[bytes]]:
    """``fwagent run`` as a child process (the interpreter itself, no wrapper): SIGTERM at the end."""
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    process = subprocess.Popen([sys.executable, "-m", "agent", "run", "--config", str(gateway.config_path)],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log, env=env)
    try:
        yield process
    finally:
        stop_process(process, 30)


class Watcher:
    """An MQTT client in this process: publishes wake-ups, sees the devices' retained state."""

    def __init__(self, broker: str) -> None:
        self.states: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-{os.getpid()}")
        self.client.on_message = lambda _c, _u, m: self.states.put((m.topic.split("/")[1],
                                                                     json.loads(m.payload).get("state")))
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect(*broker_address(broker))
        # Else Nagle holds a wake-up behind an unacknowledged PUBACK of a state message for up to 40 ms.
        self.client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.client.subscribe("fwagent/+/state", qos=1)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise RuntimeError("the bench's MQTT client did not subscribe")

    def wait_state(self, device: str, state: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                got = self.states.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if got == (device, state):
                return
        raise RuntimeError(f"{device} never published state {state!r}")

    def wakeup(self, device: str) -> float:
        """Publishes the wake-up; returns the monotonic time just before."""
        start = time.monotonic()
        self.client.publish(f"fwagent/{device}/wakeup", b"", qos=1)
        return start

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def wait_for(condition: Any, what: str, timeout: float = 60.0, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            tail = "\n--- daemon log ---\n" + "\n".join(log.read_text().splitlines()[-30:]) if log else ""
            raise RuntimeError(f"timed out waiting for {what}{tail}")
        time.sleep(0.02)


# --- server-side stamps ---------------------------------------------------------------------------

def stamps(server: DdiServer) -> list[tuple[float, str, str]]:
    """(monotonic time the request had been read, method, path) from the server's recorder, in time order."""
    with server.lock:
        return sorted((e.at, e.method, e.path) for e in server.exchanges)


def split(server: DdiServer, device: str, action: int, since: float) -> tuple[float, float, float]:
    """Seconds from ``since`` to the root poll, the deploymentBase GET and the artifact GET of ``action``."""
    base = f"/DEFAULT/controller/v1/{device}"
    seen = [(at, path) for at, method, path in stamps(server) if method == "GET" and at >= since]
    root = next(at for at, path in seen if path.split("?")[0] == base)
    deployment = next(at for at, path in seen if path.startswith(f"{base}/deploymentBase/{action}"))
    artifact = next(at for at, path in seen if path.startswith(f"{base}/softwaremodules/{action * 100 + 1}/"))
    if not since <= root <= deployment <= artifact:
        raise RuntimeError(f"requests out of order for action {action}")
    return root - since, deployment - since, artifact - since


def p90(values: list[float]) -> float:
    """Nearest rank: the value at or below which 90 % of the rounds are."""
    ordered = sorted(values)
    return ordered[math.ceil(0.9 * len(ordered)) - 1]


# --- the bench ------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--size", type=int, default=64, help="KiB of the image in each bundle")
    args = parser.parse_args()
    require_mosquitto()
    with tempfile.TemporaryDirectory(dir=ROOT / "bench") as tmp, DdiServer(sleep="00:05:00", record=True) as server:
        root = Path(tmp)
        gateway = make_gateway(root / "gw")
        # The bundles, made by the device maker's tools (not measured): sequence 2, 3, ...
        bundles = [gateway.bundle(f"u{n}", sequence=n, size=args.size << 10, seed=n, version=f"{n}.0.0").read_bytes()
                   for n in range(2, args.rounds + 2)]
        with run_mosquitto(root) as broker:
            # startup_spread 0: the first poll at once, so that the bench need not wait for it.
            connect_gateway(gateway, server.url, broker, "startup_spread = 0\n")
            log_path = root / "daemon.log"
            watcher = Watcher(broker)
            bare = subprocess.Popen([sys.executable, "-c", BARE_CLIENT, server.url, BARE,
                                     *map(str, broker_address(broker))],
                                    cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
            try:
                assert bare.stdout is not None
                if bare.stdout.readline().strip() != "ready":
                    raise RuntimeError("the bare client did not start")
                with open(log_path, "w") as log, daemon_process(gateway, log) as daemon:
                    watcher.wait_state(DEVICE, "online")
                    wait_for(lambda: ("PUT", f"/DEFAULT/controller/v1/{DEVICE}/configData") in server.requests,
                             "the daemon's first poll and configData", log=log_path)
                    time.sleep(1.0)      # the start-up's confirmation of the booted slot is over
                    ours, base = [], []
                    for n, bundle in enumerate(bundles, 2):
                        chunk = [{"part": "os", "name": "gateway", "version": f"{n}.0.0",
                                  "artifacts": {f"u{n}.fwb": bundle}}]
                        # fwagent: wake up, fetch, install, commit, report.
                        action = server.create_deployment(DEVICE, chunk)
                        time.sleep(0.2)              # both sides start from a quiet link
                        sent = watcher.wakeup(DEVICE)
                        wait_for(lambda: server.actions[action.id].state == "closed"
                                 and server.attributes.get(DEVICE, {}).get("sw_version") == f"{n}.0.0",
                                 f"action {action.id} to be installed and reported", log=log_path)
                        if server.actions[action.id].result != "success":
                            raise RuntimeError(f"action {action.id}: {server.statuses(action.id)}")
                        ours.append(split(server, DEVICE, action.id, sent))
                        # the bare client: wake up, three GETs, close.
                        action = server.create_deployment(BARE, chunk)
                        time.sleep(0.2)
                        sent = watcher.wakeup(BARE)
                        if bare.stdout.readline().strip() != "done":
                            raise RuntimeError("the bare client failed")
                        base.append(split(server, BARE, action.id, sent))
                    if daemon.poll() is not None:
                        raise RuntimeError(f"the daemon exited ({daemon.returncode})")
            finally:
                bare.kill()
                bare.wait()
                watcher.stop()
    report(base, ours, args.rounds)


def report(base: list[tuple[float, float, float]], ours: list[tuple[float, float, float]], rounds: int) -> None:
    first_base, first_ours = [r[2] for r in base], [r[2] for r in ours]
    med_b, med_o = statistics.median(first_base), statistics.median(first_ours)
    verdict = "met" if med_o <= TARGET else "MISSED"
    print(f"| wake-up -> first artifact byte, {rounds} rounds, server sleep 00:05:00 | bare client | fwagent | "
          "ratio | target |")
    print("|---|---|---|---|---|")
    print(f"| median ms | {med_b * 1e3:.1f} | {med_o * 1e3:.1f} | {med_o / med_b:.1f}x | <= {TARGET * 1e3:.0f} "
          f"({verdict}) |")
    print(f"| p90 ms | {p90(first_base) * 1e3:.1f} | {p90(first_ours) * 1e3:.1f} | "
          f"{p90(first_ours) / p90(first_base):.1f}x | |")
    print(f"| max ms | {max(first_base) * 1e3:.1f} | {max(first_ours) * 1e3:.1f} | "
          f"{max(first_ours) / max(first_base):.1f}x | |")
    print()
    print("| where the time goes (medians, ms) | bare client | fwagent |")
    print("|---|---|---|")
    steps = [("publish -> root poll", 0, None), ("root poll -> deploymentBase GET", 1, 0),
             ("deploymentBase GET -> artifact GET", 2, 1)]
    for name, end, begin in steps:
        cells = [statistics.median(r[end] - (r[begin] if begin is not None else 0.0) for r in side) * 1e3
                 for side in (base, ours)]
        print(f"| {name} | {cells[0]:.1f} | {cells[1]:.1f} |")
    print("\nfwagent, each round in order (ms): " + ", ".join(f"{v * 1e3:.0f}" for v in first_ours))
    print("bare client, each round in order (ms): " + ", ".join(f"{v * 1e3:.0f}" for v in first_base))


if __name__ == "__main__":
    main()
