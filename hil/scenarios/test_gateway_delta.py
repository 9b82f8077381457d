"""An update by delta (docs/delta.md): the bundle carries the signed manifest only, which names the
image by its http URI on the update server, with the image's frames and index beside it. The
gateway copies from its booted slot what it holds and fetches the rest by range."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pexpect
import pytest
from updates import UPDATE_TIMEOUT, deploy, details, finals, follow

from hil.gateway.device import Gateway
from hil.server.files import FilesDdiServer

DELTA_LINE = re.compile(r"delta: fetched (?P<fetched>\d+) of (?P<full>\d+) bytes .* in (?P<requests>\d+) requests")


def test_an_update_by_delta_fetches_a_small_part_of_the_image(
        env: Any, gateway: Gateway, ddi: FilesDdiServer, bundle, version, device_id: str) -> None:  # noqa: ANN001
    files = _delta_files(env)
    if files is None:
        pytest.skip("the board has no update by delta (no images 'delta' and 'delta-files' in its YAML)")
    image = (files / "rootfs.img").stat().st_size
    ddi.files = files
    assert gateway.fresh_boot() == "A"
    started = time.monotonic()
    action = deploy(ddi, device_id, "delta", bundle("delta"), version("delta"))
    assert _reboot(gateway, ddi, action) == "B"
    gateway.login()
    assert follow(gateway, lambda: ddi.actions[action.id].state == "closed", "the result") == []
    took = time.monotonic() - started
    assert ddi.actions[action.id].result == "success", details(ddi, action)
    [final] = finals(ddi, action)
    assert final["result"]["finished"] == "success"
    lines = [text for text in final["details"] if "delta: fetched" in text]
    assert len(lines) == 1, final["details"]                            # by delta, not the full image
    found = DELTA_LINE.search(lines[0])
    assert found, lines[0]
    fetched, full = int(found["fetched"]), int(found["full"])
    assert full == image and fetched < image / 2, lines[0]
    served = ddi.served()                                               # what the server counted
    assert not any(e.path.endswith("/rootfs.img") for e in served), "the solid image was fetched"
    on_wire = sum(e.response_length for e in served)
    assert on_wire < image / 2, (on_wire, image)
    print(f"\n{lines[0]}\nthe server: {on_wire} bytes in {len(served)} answers; the image: {image} bytes; "
          f"from the deployment to the result: {took:.0f} s")
    status = gateway.agent_status()
    assert (status["booted"], status["primary"], status["update"]) == ("B", "B", None)
    assert status["slots"]["B"]["good"] and status["installed"]["version"] == version("delta")
    assert gateway.run("cat /etc/fwagent-bench-version") == [version("delta")]


def _reboot(gateway: Gateway, ddi: FilesDdiServer, action) -> str:  # noqa: ANN001
    """The slot the board reboots into; fails at once when the action closes before."""
    deadline = time.monotonic() + UPDATE_TIMEOUT
    while True:
        try:
            return gateway.await_bootloader(timeout=5)
        except pexpect.TIMEOUT:
            if ddi.actions[action.id].state == "closed":
                pytest.fail(f"the action closed before a reboot: {details(ddi, action)}")
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for the reboot") from None


def _delta_files(env: Any) -> Path | None:
    """Where the board's YAML says the delta update's image, frames and index are; None: nowhere."""
    try:
        return Path(env.config.get_image_path("delta-files"))
    except KeyError:
        return None
