"""fwagent as the gateway's systemd service (systemd/fwagent.service as shipped): sandboxed, ready
only once its start-up work is done, telling ``systemctl status`` what it does, and watched by
systemd's watchdog, which restarts a hung agent; the update it was running still ends committed,
reported once."""

from __future__ import annotations

import time

from updates import UPDATE_TIMEOUT, deploy, finals, follow

from hil.gateway.device import Gateway
from agent.demo.ddi_server import DdiServer


def show(gateway: Gateway, *properties: str) -> dict[str, str]:
    """``systemctl show`` of fwagent.service: each property's value."""
    lines = gateway.run("systemctl show fwagent " + " ".join(f"-p {p}" for p in properties))
    return dict(line.split("=", 1) for line in lines if "=" in line)


def test_a_hung_agent_is_restarted_by_the_watchdog_and_its_update_still_commits(
        gateway: Gateway, ddi: DdiServer, bundle, version, device_id: str) -> None:  # noqa: ANN001
    assert gateway.fresh_boot() == "A"
    unit = show(gateway, "Type", "ProtectSystem", "NoNewPrivileges", "WatchdogUSec", "ActiveState")
    assert unit == {"Type": "notify", "ProtectSystem": "strict", "NoNewPrivileges": "yes",
                    "WatchdogUSec": "1min", "ActiveState": "active"}, unit
    gateway.wait_until(lambda: show(gateway, "StatusText")["StatusText"] != "", "a status line", timeout=60)

    action = deploy(ddi, device_id, "good", bundle("good"), version("good"))
    seen: list[str] = []

    def busy() -> bool:
        text = show(gateway, "StatusText")["StatusText"]
        seen.append(text)
        return text.startswith(("downloading", "installing"))

    gateway.wait_until(busy, "the status line to show the update", timeout=300)
    assert f"(action {action.id}" in seen[-1], seen

    # The hang: the whole agent frozen (SIGSTOP). No ping reaches systemd; after WatchdogSec it
    # aborts the agent (SIGKILL once the abort times out) and restarts it, which resumes the update
    # from its journal.
    pid = show(gateway, "MainPID")["MainPID"]
    gateway.run(f"kill -STOP {pid}")
    hung = time.monotonic()
    gateway.wait_until(lambda: int(show(gateway, "NRestarts")["NRestarts"]) >= 1,
                       "systemd to restart the hung agent", timeout=400)
    assert time.monotonic() - hung >= 55                                # not before WatchdogSec
    assert "Watchdog timeout" in gateway.journal()
    assert show(gateway, "MainPID")["MainPID"] != pid

    assert gateway.await_reboot(timeout=UPDATE_TIMEOUT) == "B"
    assert follow(gateway, lambda: ddi.actions[action.id].state == "closed", "the result") == []
    [final] = finals(ddi, action)
    assert final["result"]["finished"] == "success", final
    status = gateway.agent_status()
    assert (status["booted"], status["primary"], status["update"]) == ("B", "B", None)
    assert show(gateway, "ActiveState", "NRestarts") == {"ActiveState": "active", "NRestarts": "0"}
    gateway.wait_until(lambda: show(gateway, "StatusText")["StatusText"].startswith(
        ("idle", "the update ended: committed")), "the status line after the commit", timeout=120)
