"""Delta end to end through goosebit: the daemon, a real process, installs a bundle by delta.

goosebit serves one artifact per software, a bundle. Here the bundle carries
the signed manifest only: the manifest names the image by an http URI on a web
server the device's ``[download].hosts`` lists, with the image's frames and
index beside it (as ``fwagent manifest create`` writes them). The device takes
from its booted slot what it has and fetches the rest by range; a web server
without Range support still updates it, with the whole image.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from daemon_process import DaemonProcess
from goosebit_fixture import GoosebitDevice, new_goosebit_device, serve_goosebit  # noqa: F401
from httpfaults import FaultProxy, nginx_server, require_nginx
from install_bench import SLOT_SIZE, Gateway, delta_manifest, make_gateway
from test_install_delta import _new_image, _plain_server

from agent.bundle.reader import bundle_info
from agent.bundle.writer import create_bundle
from hil.server.goosebit import GoosebitError, GoosebitServer

VERSION = "2.0.0"


@contextmanager
def _web(kind: str, www: Path, tmp: Path) -> Iterator[tuple[str, FaultProxy | None]]:
    """nginx behind a counting proxy, or a server that answers every GET with the whole file."""
    if kind == "nginx":
        with nginx_server(www, tmp / "nginx") as server, FaultProxy(server.port) as proxy:
            yield proxy.url, proxy
    else:
        with _plain_server(www) as url:
            yield url, None


def _connect(gateway: Gateway, goosebit: GoosebitServer, device: GoosebitDevice, web: str) -> None:
    text = gateway.config_path.read_text().replace(
        'state_dir = "state"', f'state_dir = "state"\nhardware_board = "{device.board}"\n'
        f'hardware_revision = "{device.revision}"')
    gateway.config_path.write_text(
        text + f'\n[server]\nurl = "{goosebit.url}"\ntenant = "{goosebit.tenant}"\ncontroller_id = "{device.id}"\n'
        f'startup_spread = 0\npoll_min = 1\n\n[download]\nhosts = ["{urlsplit(web).netloc}"]\n')


def _bundle(gateway: Gateway, www: Path, web: str, image: bytes, device: GoosebitDevice) -> Path:
    """The image, its frames and index in ``www``; the bundle of the signed manifest that names them."""
    signed = delta_manifest(gateway, www, "image.img", f"{web}/image.img", image, VERSION)
    out = gateway.root / "update.fwb"
    info = create_bundle(out, signed, [], VERSION, device.hardware)
    assert [ref.uri for ref in info.remote] == [f"{web}/image.img"]
    return out


@pytest.mark.parametrize("web_server", ["nginx", "no-range"])
def test_a_bundle_of_the_manifest_only_installs_by_delta_from_a_web_server(
        goosebit: GoosebitServer, goosebit_device: GoosebitDevice, tmp_path: Path, web_server: str) -> None:
    require_nginx()
    gateway = make_gateway(tmp_path / "gw")
    (gateway.root / "rootfs-b.img").write_bytes(bytes(SLOT_SIZE))       # B holds nothing of use
    image = _new_image((gateway.root / "rootfs-a.img").read_bytes())
    www = tmp_path / "www"
    www.mkdir()
    with _web(web_server, www, tmp_path) as (web, proxy):
        _connect(gateway, goosebit, goosebit_device, web)
        bundle = _bundle(gateway, www, web, image, goosebit_device)
        assert [m["name"] for m in bundle_info(bundle)["members"]] == ["sw-description", "manifest.suit"]
        software = goosebit.upload(bundle)
        with DaemonProcess(gateway.config_path, tmp_path / "daemon.log") as daemon:
            daemon.wait_for(lambda: _state(goosebit, goosebit_device.id),
                            "registration")
            goosebit.assign(goosebit_device.id, software, wait=30)
            daemon.wait_for(lambda: _state(goosebit, goosebit_device.id).get("last_state") in ("Finished", "Error"),
                            "the deployment closed", timeout=90)
            log = daemon.log()
        paths = [r.path for r in proxy.requests] if proxy else []
        served = proxy.bytes_served if proxy else 0
    device, details = goosebit.device(goosebit_device.id), goosebit.log(goosebit_device.id)
    assert device["last_state"] == "Finished" and device["sw_version"] == VERSION, (device, details, log)
    assert gateway.booted() == "B"
    assert (gateway.root / "rootfs-b.img").read_bytes()[:len(image)] == image
    if web_server == "nginx":
        fetched, full = map(int, re.search(r"delta: fetched (\d+) of (\d+) bytes", details).groups())
        assert full == len(image) and fetched == served and fetched < len(image) // 10, details
        assert "/image.img" not in paths and set(paths) == {"/image.img.index", "/image.img.frames"}
    else:
        assert re.search(rf"full image \({len(image)} bytes\): .*does not honour Range", details), details
    assert "level=error" not in log, log


def _state(goosebit: GoosebitServer, device: str) -> dict:
    try:
        return goosebit.device(device)
    except GoosebitError:               # not registered yet
        return {}
