"""Installs by delta through a real nginx: only the frames the device lacks are fetched.

Slot A holds the factory image; the release changes a few places of it and
inserts a block (shifting what follows by 4 KiB). The manifest names the solid
image, its frames and its index; the device copies what it has from slot A and
fetches the rest with single-range GETs. A server without Range support, and a
delta that would cost too much, end in a full download; connections cut at
random frames are resumed; a crash in the middle ends like a full install's.
"""

from __future__ import annotations

import functools
import http.server
import json
import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from agent.cli import main
from httpfaults import Cut, FaultProxy, Pass, nginx_server, require_nginx
from install_bench import SLOT_SIZE, Gateway, delta_manifest, make_gateway

BLOCK = 4096


def _new_image(old: bytes, seed: int = 7) -> bytes:
    rng = random.Random(seed)
    image = bytearray(old)
    for offset in (100_000, 1_500_000, 3_000_000):
        image[offset:offset + 10_000] = rng.randbytes(10_000)
    middle = 2 << 20
    shifted = image[:middle] + rng.randbytes(BLOCK) + image[middle:]
    return bytes(shifted[:SLOT_SIZE - BLOCK])


def _release(gateway: Gateway, www: Path, url: str, image: bytes) -> Path:
    manifest = gateway.root / "update.suit"
    manifest.write_bytes(delta_manifest(gateway, www, "image.img", f"{url}/image.img", image, "2.0"))
    return manifest


def _setup(tmp_path: Path) -> tuple[Gateway, Path, bytes]:
    gateway = make_gateway(tmp_path / "gw")
    (gateway.root / "rootfs-b.img").write_bytes(bytes(SLOT_SIZE))       # B holds nothing of use
    www = tmp_path / "www"
    www.mkdir()
    return gateway, www, _new_image((gateway.root / "rootfs-a.img").read_bytes())


def _install(gateway: Gateway, manifest: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    assert main(["install", str(manifest), "--json", "--config", str(gateway.config_path)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return next(line for line in lines if line.get("event") == "outcome")


def _check_installed(gateway: Gateway, image: bytes) -> None:
    assert gateway.booted() == "B"
    assert (gateway.root / "rootfs-b.img").read_bytes()[:len(image)] == image


def test_delta_install_fetches_only_what_the_device_lacks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    require_nginx()
    gateway, www, image = _setup(tmp_path)
    with nginx_server(www, tmp_path / "nginx") as server, FaultProxy(server.port) as proxy:
        manifest = _release(gateway, www, proxy.url, image)
        outcome = _install(gateway, manifest, capsys)
        requests = list(proxy.requests)
    _check_installed(gateway, image)
    stats = outcome["delta"]["rootfs.B"]
    assert outcome["result"] == "success" and stats["mode"] == "delta", stats
    assert stats["full"] == len(image) and stats["fetched"] == proxy.bytes_served
    assert stats["fetched"] < len(image) // 20                  # 4 changed places: a few frames
    assert stats["copied"] + stats["downloaded"] == stats["frames"] and stats["kept"] == 0
    assert [r.path for r in requests] == ["/image.img.index"] + ["/image.img.frames"] * (len(requests) - 1)
    ranges = [r.headers["Range"] for r in requests[1:]]
    assert all("," not in r for r in ranges) and len(ranges) == stats["requests"] - 1
    assert all(r.headers["If-Range"] for r in requests[2:])


def test_the_ranges_share_one_kept_alive_connection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    require_nginx()
    from agent.net import direct
    gateway, www, image = _setup(tmp_path)
    opened = []
    connect = direct._connect
    monkeypatch.setattr(direct, "_connect", lambda host, port, *rest: opened.append(port) or connect(host, port, *rest))
    with nginx_server(www, tmp_path / "nginx") as server:            # straight to nginx: no proxy between
        manifest = _release(gateway, www, server.url, image)
        outcome = _install(gateway, manifest, capsys)
    _check_installed(gateway, image)
    assert outcome["delta"]["rootfs.B"]["requests"] > 2 and opened == [server.port]


def test_a_server_without_range_still_updates_the_device(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gateway, www, image = _setup(tmp_path)
    with _plain_server(www) as url:
        manifest = _release(gateway, www, url, image)
        outcome = _install(gateway, manifest, capsys)
    _check_installed(gateway, image)
    stats = outcome["delta"]["rootfs.B"]
    assert outcome["result"] == "success" and stats["mode"] == "full"
    assert "does not honour Range" in stats["reason"]


def test_a_delta_that_costs_too_much_is_a_full_download(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    require_nginx()
    gateway, www, _ = _setup(tmp_path)
    image = random.Random(9).randbytes(SLOT_SIZE - BLOCK)             # nothing in common with slot A
    with nginx_server(www, tmp_path / "nginx") as server, FaultProxy(server.port) as proxy:
        manifest = _release(gateway, www, proxy.url, image)
        outcome = _install(gateway, manifest, capsys)
        paths = [r.path for r in proxy.requests]
    _check_installed(gateway, image)
    stats = outcome["delta"]["rootfs.B"]
    assert stats["mode"] == "full" and "more than 60%" in stats["reason"]
    assert paths == ["/image.img.index", "/image.img"]


def test_connections_cut_at_random_frames_are_resumed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    require_nginx()
    gateway, www, image = _setup(tmp_path)
    rng = random.Random(11)
    with nginx_server(www, tmp_path / "nginx") as server, FaultProxy(server.port) as proxy:
        manifest = _release(gateway, www, proxy.url, image)
        proxy.add(Pass(), *(Cut(rng.randrange(1, 30_000)) for _ in range(3)))
        outcome = _install(gateway, manifest, capsys)
        assert not proxy.pending
        served = proxy.bytes_served
    _check_installed(gateway, image)
    stats = outcome["delta"]["rootfs.B"]
    assert outcome["result"] == "success" and stats["mode"] == "delta"
    assert stats["fetched"] < len(image) // 10
    assert served - stats["fetched"] <= 3 * (16384 + 1024)       # a cut costs at most the frame it broke


class _Crash(BaseException):
    """The process dies here (a power cut): nothing below it runs."""


@pytest.mark.parametrize("crash_at", [0, random.Random(17).randrange(1, 200), 200])
def test_a_crash_in_a_delta_install_resumes_without_fetching_again(crash_at: int, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A power cut as the ``crash_at``-th frame is written (the first, one drawn at random, a late
    one): the journal says ``write``, and the next start ends the install as a full one would,
    the frames already in the slot kept."""
    require_nginx()
    gateway, www, image = _setup(tmp_path)
    from agent.delta import fetch
    written = fetch._write_at
    frames = iter(range(1000))

    def crash_after_some(fd: int, data: bytes, offset: int) -> None:
        if next(frames) == crash_at:
            raise _Crash()
        written(fd, data, offset)

    with nginx_server(www, tmp_path / "nginx") as server, FaultProxy(server.port) as proxy:
        manifest = _release(gateway, www, proxy.url, image)
        monkeypatch.setattr(fetch, "_write_at", crash_after_some)
        with pytest.raises(_Crash):
            main(["install", str(manifest), "--config", str(gateway.config_path)])
        monkeypatch.setattr(fetch, "_write_at", written)
        journal = json.loads((gateway.root / "state/journal.json").read_text())
        assert journal["update"]["state"] == "write"
        gateway.power_cycle()
        capsys.readouterr()
        assert main(["run", "--json", "--config", str(gateway.config_path)]) == 0
        outcome = json.loads(capsys.readouterr().out.splitlines()[-1])
    _check_installed(gateway, image)
    stats = outcome["delta"]["rootfs.B"]
    assert outcome["result"] == "success" and stats["mode"] == "delta"
    assert stats["kept"] >= crash_at and stats["copied"] + stats["downloaded"] + stats["kept"] == stats["frames"]


@contextmanager
def _plain_server(root: Path) -> Iterator[str]:
    """An HTTP/1.0 server that ignores Range: every GET is the whole file."""
    handler = functools.partial(_Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        """No access log on stderr."""


def test_named_payloads_go_by_delta_through_the_links_a_server_gave(tmp_path: Path) -> None:
    require_nginx()
    gateway, www, image = _setup(tmp_path)
    manifest = gateway.root / "update.suit"
    manifest.write_bytes(delta_manifest(gateway, www, "image.img", "#image.img", image, "2.0"))
    with nginx_server(www, tmp_path / "nginx") as server, FaultProxy(server.port) as proxy:
        links = {f"#{name}": f"{proxy.url}/{name}" for name in ("image.img", "image.img.frames", "image.img.index")}
        outcome = gateway.installer().install(str(manifest), links=links)
        paths = {r.path for r in proxy.requests}
    _check_installed(gateway, image)
    assert outcome.result == "success" and outcome.delta["rootfs.B"]["mode"] == "delta"
    assert paths == {"/image.img.index", "/image.img.frames"}


def test_a_frames_file_that_does_not_match_its_index_is_not_used(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    require_nginx()
    gateway, www, image = _setup(tmp_path)
    with nginx_server(www, tmp_path / "nginx") as server:
        manifest = _release(gateway, www, server.url, image)
        frames = www / "image.img.frames"
        frames.write_bytes(bytes(reversed(frames.read_bytes())))       # same size, other bytes
        outcome = _install(gateway, manifest, capsys)
    _check_installed(gateway, image)
    stats = outcome["delta"]["rootfs.B"]
    assert outcome["result"] == "success" and stats["mode"] == "full" and "delta frame" in stats["reason"]
