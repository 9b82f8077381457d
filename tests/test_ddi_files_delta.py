"""The bench's update by delta (hil/scenarios/test_gateway_delta.py) without a board: the reference
DDI server serves the image, its frames and index at /files/ on its own origin
(hil/server/files.py); the deployment's bundle carries the signed manifest only."""

from __future__ import annotations

import re
from pathlib import Path

from daemon_process import DaemonProcess
from install_bench import Gateway, delta_manifest, make_gateway
from test_daemon import DEVICE, connect
from test_install_delta import _new_image

from agent.bundle.writer import create_bundle
from hil.server.files import FilesDdiServer


def _bundle(gateway: Gateway, www: Path, url: str, image: bytes) -> bytes:
    signed = delta_manifest(gateway, www, "rootfs.img", f"{url}/files/rootfs.img", image, "2.1.0")
    out = gateway.root / "delta.fwb"
    create_bundle(out, signed, [], "2.1.0", [])
    return out.read_bytes()


def test_the_reference_server_serves_an_update_by_delta_on_its_own_origin(tmp_path: Path) -> None:
    gateway = make_gateway(tmp_path / "gw")
    image = _new_image((gateway.root / "rootfs-a.img").read_bytes())
    www = tmp_path / "www"
    www.mkdir()
    with FilesDdiServer(sleep="00:00:01", record=True, files=www) as server:
        connect(gateway, server)
        data = _bundle(gateway, www, server.url, image)
        action = server.create_deployment(DEVICE, [{"part": "os", "name": "rootfs", "version": "2.1.0",
                                                    "artifacts": {"delta.fwb": data}}])
        with DaemonProcess(gateway.config_path, tmp_path / "daemon.log") as daemon:
            daemon.wait_for(lambda: server.actions[action.id].state == "closed", "the action closed", timeout=90)
            log = daemon.log()
        details = " ".join(d for s in server.statuses(action.id) for d in s.get("details", []))
        served = server.served()
    assert server.actions[action.id].result == "success", (details, log)
    fetched, full = map(int, re.search(r"delta: fetched (\d+) of (\d+) bytes", details).groups())
    assert full == len(image) and fetched < len(image) // 10, details
    # progress on the way: the bytes the delta fetches, against the full image's size
    progress = re.search(r"Installing rootfs\.B by delta: (\d+) of (\d+) bytes fetched \(\d+%\); the full image "
                         r"is (\d+) bytes", details)
    assert progress is not None and int(progress[3]) == len(image) and int(progress[2]) <= fetched, details
    assert {e.path for e in served} == {"/files/rootfs.img.index", "/files/rootfs.img.frames"}
    assert sum(e.response_length for e in served) == fetched
