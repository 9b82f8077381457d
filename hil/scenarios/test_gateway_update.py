"""Whole updates on a gateway that boots through its bootloader, with fwagent as its systemd
service, driven by the update server as in the field: each scenario from the factory disk."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from updates import UPDATE_TIMEOUT, deploy, details, finals, follow, settle

from hil.gateway.device import Gateway
from agent.demo.ddi_server import DdiServer


def closed(ddi: DdiServer, action) -> Callable[[], bool]:  # noqa: ANN001
    return lambda: ddi.actions[action.id].state == "closed"


def test_an_update_boots_the_new_slot_and_is_reported_once_after_the_reboot(
        gateway: Gateway, ddi: DdiServer, bundle, version, device_id: str) -> None:  # noqa: ANN001
    assert gateway.fresh_boot() == "A"
    action = deploy(ddi, device_id, "good", bundle("good"), version("good"))
    assert gateway.await_bootloader(timeout=UPDATE_TIMEOUT) == "B"
    rebooted = time.monotonic()
    gateway.login()             # systemd up: fwagent is ready once it has committed
    assert follow(gateway, closed(ddi, action), "the result") == []
    assert ddi.actions[action.id].result == "success", details(ddi, action)
    [final] = finals(ddi, action)
    assert final["result"]["finished"] == "success"
    sent = [e.at for e in ddi.exchanges if e.method == "POST" and b'"closed"' in e.request_body]
    assert len(sent) == 1 and sent[0] > rebooted              # from the new slot, after the reboot
    steps = " ".join(details(ddi, action))
    for text in ("checking the signed manifest of good.fwb", "installing into slot B", "rebooting into slot B",
                 "running the health checks", "committing slot B"):
        assert text in steps, (text, steps)
    gateway.wait_until(lambda: ddi.attributes.get(device_id, {}).get("sw_version") == version("good"),
                       "configData with the new version", timeout=120)
    assert ddi.attributes[device_id]["booted_slot"] == "B"
    status = gateway.agent_status()
    assert (status["booted"], status["primary"], status["update"]) == ("B", "B", None)
    assert status["slots"]["B"]["good"] and status["installed"]["version"] == version("good")


@pytest.mark.parametrize(("name", "code"), [
    ("panic", "fell-back"),           # the kernel panics: the bootloader's one try is spent, A boots
    ("unhealthy", "unhealthy"),       # it boots, its health check fails: the agent rolls back
])
def test_an_update_that_does_not_work_rolls_back_and_is_reported(
        name: str, code: str, gateway: Gateway, ddi: DdiServer, bundle, version, device_id: str) -> None:  # noqa: ANN001
    assert gateway.fresh_boot() == "A"
    action = deploy(ddi, device_id, name, bundle(name), version(name))
    assert gateway.await_bootloader(timeout=UPDATE_TIMEOUT) == "B"      # its try
    assert gateway.await_bootloader(timeout=600) == "A"                 # back
    gateway.login()
    assert follow(gateway, closed(ddi, action), "the result") == []
    assert ddi.actions[action.id].result == "failure"
    [final] = finals(ddi, action)
    assert final.get("code") == 2 and any(code in text for text in final["details"]), final
    assert settle(gateway) == []
    status = gateway.agent_status()
    assert (status["booted"], status["primary"], status["update"]) == ("A", "A", None)
    assert status["slots"]["A"]["good"] and not status["slots"]["B"]["good"]


def test_an_update_that_never_confirms_falls_back_when_its_try_is_spent(
        gateway: Gateway, ddi: DdiServer, bundle, version, device_id: str) -> None:  # noqa: ANN001
    """The new system runs, but its update service never starts: nothing marks the slot good. A
    watchdog (here the bench) resets the board; the bootloader does not try B again."""
    assert gateway.fresh_boot() == "A"
    action = deploy(ddi, device_id, "silent", bundle("silent"), version("silent"))
    assert gateway.await_reboot(timeout=UPDATE_TIMEOUT) == "B"
    assert gateway.run("systemctl is-active fwagent || true") == ["inactive"]
    assert ddi.actions[action.id].state != "closed"
    gateway.power_cut()                                                 # the watchdog bites
    assert gateway.power_on() == "A"
    assert follow(gateway, closed(ddi, action), "the result") == []
    [final] = finals(ddi, action)
    assert final["result"]["finished"] == "failure" and final.get("code") == 2, final
    assert any("fell-back" in text for text in final["details"]), final
    status = gateway.agent_status()
    assert (status["booted"], status["primary"], status["update"]) == ("A", "A", None)


def test_an_update_from_goosebit(gateway: Gateway, door, bundle, version, device_id: str,  # noqa: ANN001
                                 tmp_path) -> None:  # noqa: ANN001
    """goosebit, a DDI server no one here wrote, assigns the update; the device ends on it."""
    from hil.server.goosebit import GoosebitServer, available

    if available():
        pytest.fail(f"goosebit is needed: {available()} (see README.md)")
    path = tmp_path / "good.swu"
    path.write_bytes(bundle("good"))
    with GoosebitServer(tmp_path / "goosebit", poll_time="00:00:02") as goosebit:
        door.open_to(goosebit.port)
        assert gateway.fresh_boot() == "A"
        gateway.wait_until(lambda: _registered(goosebit, device_id), "registration with goosebit", timeout=120)
        goosebit.assign(device_id, goosebit.upload(path), wait=120)
        assert gateway.await_reboot(timeout=UPDATE_TIMEOUT) == "B"
        gateway.wait_until(lambda: goosebit.device(device_id).get("last_state") == "Finished",
                           "goosebit to show the update finished", timeout=300)
        assert goosebit.device(device_id).get("sw_version") == version("good")
    status = gateway.agent_status()
    assert (status["booted"], status["primary"], status["update"]) == ("B", "B", None)


def _registered(goosebit, device_id: str) -> bool:  # noqa: ANN001
    try:
        goosebit.device(device_id)
    except Exception:  # noqa: BLE001 - not there yet
        return False
    return True
