"""``fwagent demo``, the README's first command, runs the whole loop: server, broker, daemon, slots."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import missing, require_tool

from agent.cli import main

ROOT = Path(__file__).resolve().parent.parent


def recorded_statuses(out: str, action: int) -> list[str]:
    """The executions the summary lists for an action, in order."""
    summary = out.split("== what the server recorded", 1)[1]
    block = summary.split(f"action {action} (", 1)[1]
    match = re.search(r"(\d+) statuses: (.*?)\n  last:", block, re.DOTALL)
    assert match, block
    executions = [e.strip() for e in match[2].replace("\n", " ").split(",")]
    assert len(executions) == int(match[1])
    return executions


def in_order(out: str, *lines: str) -> bool:
    positions = [out.find(line) for line in lines]
    return -1 not in positions and positions == sorted(positions)


def processes_mentioning(text: str) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(cmdline)
    return found


def test_the_demo_runs_server_broker_and_device_and_cleans_up() -> None:
    require_tool("mosquitto")
    run = subprocess.run([sys.executable, "-m", "agent", "demo"], check=False, cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    out = run.stdout
    assert run.returncode == 0, out + run.stderr
    work = re.match(r"fwagent demo: .*; files in (\S+)\n", out)[1]
    assert f"removed {work}\n" in out and not Path(work).exists()
    assert not processes_mentioning(work), "a process of the demo outlived it"
    assert "MQTT broker  mqtt://127.0.0.1:" in out
    assert out.count("operator -> mqtt fwagent/demo-gw-0001/wakeup") == 2 and "daemon.wakeup()" not in out
    # Live, as the server received them: the 2.0.0 action from download to commit.
    assert in_order(out, "server <- proceeding 0%: checking the signed manifest of demo-2.0.0.fwb",
                    "server <- downloaded 100%: the signed manifest verified, version 2.0.0; the bundle streams",
                    "server <- proceeding 0%: installing into slot B", "server <- proceeding 100%: rebooting into slot B",
                    "server <- proceeding 100%: running the health checks",
                    "server <- closed success: update committed, version 2.0.0", "server: action 1 closed, success")
    assert re.search(r"server <- proceeding \d+%: Downloaded \d+% of demo-2.0.0.fwb into rootfs.B", out)   # 1 MiB/s
    # The summary of what the server recorded.
    assert "action 1 (demo-gateway 2.0.0, demo-2.0.0.fwb): closed, result success" in out
    first = recorded_statuses(out, 1)
    assert first[0] == "retrieved" and first[-1] == "closed" and first.count("closed") == 1
    assert first.index("downloaded") < len(first) - 1 and set(first) == {"retrieved", "proceeding", "downloaded",
                                                                          "closed"}
    assert "action 2 (demo-gateway 2.0.1, demo-2.0.1.fwb): closed, result failure" in out
    second = recorded_statuses(out, 2)
    assert second[0] == "retrieved" and second[-1] == "closed"
    assert "server <- closed failure: update failed, version 2.0.1; bundle-digest-mismatch: payload" in out
    config = re.search(r"\nconfigData: (.*)\n", out)[1]
    assert "booted_slot=B" in config and "sw_version=2.0.0" in config and "hw_boardname=demo-gateway" in config
    assert "device: booted slot B, version 2.0.0; slot A marked bad" in out
    assert len(out.splitlines()) < 70


def test_without_mosquitto_the_daemon_is_woken_directly(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("agent.demo.broker.find_mosquitto", lambda: None)
    assert main(["demo", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "mosquitto is not installed: running without MQTT" in out and "MQTT broker" not in out
    assert out.count("operator -> daemon.wakeup(): poll now") == 2 and "-> mqtt" not in out
    assert "action 1 (demo-gateway 2.0.0, demo-2.0.0.fwb): closed, result success" in out
    assert "action 2 (demo-gateway 2.0.1, demo-2.0.1.fwb): closed, result failure" in out
    assert "device: booted slot B, version 2.0.0" in out and f"files kept in {tmp_path}" in out
    image = (tmp_path / "rootfs-2.0.0.img").read_bytes()
    assert (tmp_path / "device/rootfs-b.img").read_bytes()[:len(image)] == image
    journal = json.loads((tmp_path / "device/state/journal.json").read_text())
    assert journal["installed"]["version"] == "2.0.0" and journal["outbox"] == []
    assert "level=info event=install-ended result=success" in (tmp_path / "daemon.log").read_text()


def test_ctrl_c_stops_everything_and_removes_the_files() -> None:
    require_tool("mosquitto")
    process = subprocess.Popen([sys.executable, "-m", "agent", "demo"], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    # (SIGINT back to its default in the child: a shell's background job may have it ignored, and
    # an ignored SIGINT is inherited.)
    assert process.stdout is not None
    lines = []
    for line in process.stdout:                 # interrupted in the middle of the first stream
        lines.append(line)
        if line.startswith("server <- proceeding 0%: installing into slot B"):
            process.send_signal(signal.SIGINT)
            break
    out = "".join(lines) + process.communicate(timeout=60)[0]
    assert process.returncode == 130 and out.endswith("error: interrupted\n"), out
    work = re.match(r"fwagent demo: .*; files in (\S+)\n", out)[1]
    assert not Path(work).exists() and not processes_mentioning(work)


@pytest.mark.slow
def test_the_demo_runs_from_the_wheel_in_a_fresh_environment(tmp_path: Path) -> None:
    """``pip install fwagent`` then ``fwagent demo``: everything the demo needs is in the wheel.
    Run outside the checkout, so nothing of the source tree can be imported by accident."""
    uv = shutil.which("uv")
    if uv is None:
        missing("uv is not installed (README.md: python3 -m pip install --user uv)")
    subprocess.run([uv, "build", "--wheel", "--out-dir", str(tmp_path / "dist"), str(ROOT)], check=True,
                   capture_output=True, timeout=300)
    [wheel] = (tmp_path / "dist").glob("fwagent-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "--python", sys.executable, str(venv)], check=True, capture_output=True, timeout=120)
    subprocess.run([uv, "pip", "install", "--python", str(venv / "bin" / "python"), str(wheel)], check=True,
                   capture_output=True, timeout=300)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    run = subprocess.run([str(venv / "bin" / "fwagent"), "demo", "--no-mqtt"], cwd=outside, capture_output=True,
                         text=True, timeout=180, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "action 1 (demo-gateway 2.0.0, demo-2.0.0.fwb): closed, result success" in run.stdout
    assert "device: booted slot B, version 2.0.0" in run.stdout
    installed = subprocess.run([str(venv / "bin" / "python"), "-c", "import agent.demo.ddi_server as m; print(m.__file__)"],
                               cwd=outside, capture_output=True, text=True, timeout=60, env=env)  # noqa: E501
    assert str(venv) in installed.stdout, installed.stdout + installed.stderr
