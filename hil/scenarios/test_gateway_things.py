"""A gateway and the microcontroller on its serial line, updated by one campaign: one signed
manifest carries the gateway's root file system and the MCU's application (``["thing", "mcu"]``).
The gateway installs, reboots and commits, then flashes the MCU through its bootloader's flow
(MCUboot in a swap mode: test, reset, see it run, confirm) and sends the server one result with
a line per Thing. A board without an MCU skips these."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from updates import UPDATE_TIMEOUT, deploy, details, finals, follow

from hil.gateway.device import Gateway
from hil.mcu.board import Mcu
from agent.demo.ddi_server import DdiServer

THING_WRITING = re.compile(r"Installing thing\.mcu \(writing\): (\d+)%")     # its image sent to the MCU


def closed(ddi: DdiServer, action) -> Callable[[], bool]:  # noqa: ANN001
    return lambda: ddi.actions[action.id].state == "closed"


def running(gateway: Gateway) -> dict:
    """The image the MCU runs, as its application reports it through the gateway."""
    [active] = [image for image in gateway.thing_info("mcu")["images"] if image["active"]]
    return active


def test_a_gateway_and_things_update_commits_the_gateway_then_flashes_the_mcu(
        gateway: Gateway, mcu: Mcu, ddi: DdiServer, bundle, version, thing_versions,  # noqa: ANN001
        device_id: str, capsys) -> None:  # noqa: ANN001
    mcu.fresh()
    assert gateway.fresh_boot() == "A"
    factory = running(gateway)
    action = deploy(ddi, device_id, "things", bundle("things"), version("things"))
    assert gateway.await_bootloader(timeout=UPDATE_TIMEOUT) == "B"
    gateway.login()
    assert follow(gateway, closed(ddi, action), "the result") == []
    assert ddi.actions[action.id].result == "success", details(ddi, action)
    [final] = finals(ddi, action)
    assert "Thing mcu: success" in final["details"], final
    steps = " ".join(details(ddi, action))
    order = ["installing into slot B", "rebooting into slot B", "committing slot B", "flashing the Things"]
    at = [steps.find(text) for text in order]
    assert min(at) >= 0 and at == sorted(at), steps
    assert THING_WRITING.search(steps), steps
    status = gateway.agent_status()
    assert (status["booted"], status["primary"], status["update"]) == ("B", "B", None)
    assert status["installed"]["version"] == version("things")
    now = running(gateway)
    assert (factory["version"], now["version"]) == ("0.0.0", thing_versions("things")["mcu"])
    assert now["confirmed"] and now["slot"] == 0
    flashing, writing, activating = (_reported(ddi, text) for text in (
        "flashing the Things", "Installing thing.mcu (writing): 0%", "Installing thing.mcu (activating)"))
    with capsys.disabled():
        print(f"\nthe MCU flashed in {activating - flashing:.1f} s, as the server saw it (from its first "
              f"upload report to the image seen running: {activating - writing:.1f} s)")


def test_a_power_cut_while_the_mcu_is_flashed_resumes_and_ends_with_both_updated(
        gateway: Gateway, mcu: Mcu, ddi: DdiServer, bundle, version, thing_versions,  # noqa: ANN001
        device_id: str, capsys) -> None:  # noqa: ANN001
    """The gateway and its MCU lose power together while the MCU's image is half sent. The
    gateway comes back on its new slot, committed; the agent flashes the MCU again (its old image
    still boots: MCUboot never saw a whole new one) and reports once."""
    mcu.fresh()
    assert gateway.fresh_boot() == "A"
    action = deploy(ddi, device_id, "things", bundle("things"), version("things"))
    assert gateway.await_bootloader(timeout=UPDATE_TIMEOUT) == "B"
    percent = _mid_upload(gateway, ddi, action)        # no login: systemd is ready once fwagent is
    gateway.power_cut()
    mcu.power_cut()
    with capsys.disabled():
        print(f"\npower cut with the MCU's image {percent}% sent")
    assert ddi.actions[action.id].state != "closed"
    mcu.power_on()
    assert gateway.power_on() == "B"
    assert follow(gateway, closed(ddi, action), "the result") == []
    assert ddi.actions[action.id].result == "success", details(ddi, action)
    [final] = finals(ddi, action)
    assert "Thing mcu: success" in final["details"], final
    status = gateway.agent_status()
    assert (status["booted"], status["primary"], status["update"]) == ("B", "B", None)
    now = running(gateway)
    assert now["version"] == thing_versions("things")["mcu"] and now["confirmed"]


def _mid_upload(gateway: Gateway, ddi: DdiServer, action, timeout: float = UPDATE_TIMEOUT) -> int:  # noqa: ANN001
    """Wait until the agent reports part of the MCU's image sent (reading the console meanwhile);
    the percentage it reported. The reports come a second apart and the upload takes about ten at
    115200 baud: the cut comes within a fifth of a second of the first past zero."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sent = [int(match.group(1)) for text in details(ddi, action) if (match := THING_WRITING.search(text))]
        if sent and 0 < sent[-1] < 80:
            return sent[-1]
        if sent and sent[-1] >= 80 or ddi.actions[action.id].state == "closed":
            raise AssertionError(f"the MCU's upload got too far before the cut: {sent}")
        gateway.listen(0.2)
    raise AssertionError("the agent reported no upload to the MCU")


def _reported(ddi: DdiServer, text: str) -> float:
    """When the server got the first feedback whose details contain ``text``."""
    return next(e.at for e in ddi.exchanges if e.method == "POST" and text.encode() in e.request_body)
