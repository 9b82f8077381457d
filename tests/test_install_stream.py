"""`fwagent install URL`: a bundle streamed from a real nginx straight into its slot.

Through a proxy that breaks connections to plan: a cut is resumed in place with
Range/If-Range; a process killed mid-write (a power cut) continues with `fwagent run`
from the position synced in the journal, fetching only the rest; a bundle changed on
the server meanwhile is read again from zero; a tampered one never reaches the switch.
Nothing of the bundle is kept in the state directory.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import main
from httpfaults import Cut, FaultProxy, Status, nginx_etag, nginx_server, require_nginx, swap_file
from install_bench import Gateway, make_gateway

RUNNER = Path(__file__).with_name("crash_runner.py")
SIZE = 24 << 20
MiB = 1 << 20


@pytest.fixture
def site(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A gateway with 32 MiB slots, and nginx serving its 24 MiB bundle."""
    require_nginx()
    gateway = make_gateway(tmp_path / "gw")
    for name in ("rootfs-a.img", "rootfs-b.img"):
        with open(gateway.root / name, "r+b") as stream:
            stream.truncate(32 << 20)
    www = tmp_path / "www"
    www.mkdir()
    bundle = gateway.bundle("u2", sequence=2, size=SIZE, seed=5)
    (www / "u2.fwb").write_bytes(bundle.read_bytes())
    with nginx_server(www, tmp_path / "nginx") as server:
        yield gateway, www, server


def install(gateway: Gateway, url: str, *options: str) -> int:
    return main(["install", url, "--config", str(gateway.config_path), *options])


def journal(gateway: Gateway) -> dict:
    return json.loads((gateway.root / "state/journal.json").read_text())


def state_files(gateway: Gateway) -> int:
    return sum(p.stat().st_size for p in (gateway.root / "state").rglob("*") if p.is_file())


def test_a_cut_is_resumed_at_the_byte_it_reached(site) -> None:  # type: ignore[no-untyped-def]
    gateway, www, server = site
    size = (www / "u2.fwb").stat().st_size
    with FaultProxy(server.port, [Cut(size // 4)]) as proxy:
        assert install(gateway, f"{proxy.url}/u2.fwb") == 0
    first, resumed = proxy.requests
    assert "Range" not in first.headers
    assert resumed.headers["Range"] == f"bytes={size // 4}-"
    assert resumed.headers["If-Range"] == nginx_etag(www / "u2.fwb")
    assert proxy.bytes_served - size <= MiB                     # what a cut costs
    assert gateway.booted() == "B"
    assert (gateway.root / "rootfs-b.img").read_bytes()[:SIZE] == (gateway.root / "u2.img").read_bytes()
    assert state_files(gateway) < MiB and not (gateway.root / "state/incoming").exists()


def killed_at(gateway: Gateway, url: str, written: int) -> dict:
    """Install ``url`` in a process that dies once ``written`` payload bytes reached the slot.
    The link is held to 6 MB/s: a position is synced every 8 MiB once a second has passed."""
    gateway.config_path.write_text(gateway.config_path.read_text() + "\n[download]\nrate_limit = 6000000\n")
    killed = subprocess.run([sys.executable, str(RUNNER), "bytes", str(written), "--", "install", url,
                             "--config", str(gateway.config_path)], capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9, killed.stderr
    update = journal(gateway)["update"]
    assert update["state"] == "write"
    return update


def test_a_power_cut_during_the_write_resumes_from_the_synced_position(site) -> None:  # type: ignore[no-untyped-def]
    gateway, www, server = site
    size = (www / "u2.fwb").stat().st_size
    with FaultProxy(server.port) as proxy:
        update = killed_at(gateway, f"{proxy.url}/u2.fwb", 20 << 20)
        synced = update["stream"]["written"]["rootfs.B"]
        assert 8 << 20 <= synced < 20 << 20 and update["stream"]["validator"] == nginx_etag(www / "u2.fwb")
        gateway.power_cycle()
        before, served = len(proxy.requests), proxy.bytes_served
        assert main(["run", "--config", str(gateway.config_path)]) == 0
        head, rest = proxy.requests[before:]
        assert "Range" not in head.headers                       # the manifest, checked again
        start = int(rest.headers["Range"].removeprefix("bytes=").removesuffix("-"))
        assert rest.headers["If-Range"] == update["stream"]["validator"]
        assert size - start - SIZE + synced < 4096               # from the payload's synced end
        assert proxy.bytes_served - served < size - synced + 8 * MiB   # the head's answer is cut short
    assert gateway.booted() == "B"
    assert (gateway.root / "rootfs-b.img").read_bytes()[:SIZE] == (gateway.root / "u2.img").read_bytes()
    assert [o["result"] for o in journal(gateway)["outbox"]] == ["success"]


def test_a_bundle_changed_on_the_server_is_written_again_from_zero(site) -> None:  # type: ignore[no-untyped-def]
    gateway, www, server = site
    with FaultProxy(server.port) as proxy:
        killed_at(gateway, f"{proxy.url}/u2.fwb", 20 << 20)
        swap_file(www / "u2.fwb", (www / "u2.fwb").read_bytes())     # same bytes, another ETag
        gateway.power_cycle()
        before = len(proxy.requests)
        assert main(["run", "--config", str(gateway.config_path)]) == 0
        assert [r.headers.get("Range") for r in proxy.requests[before:]] == [None]
    assert (gateway.root / "rootfs-b.img").read_bytes()[:SIZE] == (gateway.root / "u2.img").read_bytes()
    assert gateway.booted() == "B"


def test_a_tampered_streamed_payload_never_reaches_the_switch(site, capsys) -> None:  # type: ignore[no-untyped-def]
    gateway, www, server = site
    data = bytearray((www / "u2.fwb").read_bytes())
    data[len(data) // 2] ^= 1
    (www / "bad.fwb").write_bytes(data)
    steps: list[str] = []
    installer = gateway.installer()
    installer.on_step = lambda state, _update: steps.append(state)
    outcome = installer.install(f"{server.url}/bad.fwb")
    assert (outcome.result, outcome.code) == ("failure", "bundle-digest-mismatch")
    assert "switch" not in steps and gateway.bootloader().get_primary() == "A"
    assert not gateway.bootloader().get_state("B")


def test_a_bundle_urls_password_is_not_shown(site, capsys) -> None:  # type: ignore[no-untyped-def]
    gateway, www, server = site
    url = server.url.replace("http://", "http://operator:s3cret@") + "/u2.fwb"
    assert install(gateway, url, "--no-reboot") == 0
    capsys.readouterr()
    assert main(["status", "--json", "--config", str(gateway.config_path)]) == 0
    shown = capsys.readouterr().out
    assert "operator:***@" in shown and "s3cret" not in shown


def test_a_bundle_that_changes_in_mid_stream_is_refused_not_spliced(site) -> None:  # type: ignore[no-untyped-def]
    """After a cut, the server answers the ranged GET with a whole (other) file: 200, not 206."""
    gateway, www, server = site
    size = (www / "u2.fwb").stat().st_size
    with FaultProxy(server.port, [Cut(size // 2), Status(200, {"Content-Length": "4"}, b"new!")]) as proxy:
        outcome = gateway.installer().install(f"{proxy.url}/u2.fwb")
    assert (outcome.result, outcome.state, outcome.code) == ("failure", "failed", "remote-changed")
    assert proxy.requests[1].headers["Range"] == f"bytes={size // 2}-"
    assert gateway.bootloader().get_primary() == "A" and not gateway.bootloader().get_state("B")
