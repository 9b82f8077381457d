"""The downloader's test network: nginx on loopback and the fault-injecting proxy."""

from __future__ import annotations

import hashlib
import os
import socket
import time
from pathlib import Path

import pytest
import requests

from httpfaults import (
    Cut,
    Drip,
    FaultProxy,
    MiB,
    Pass,
    Reset,
    Stall,
    Status,
    nginx_etag,
    nginx_server,
    random_bytes,
    random_file,
    require_nginx,
    sparse_file,
    swap_file,
)

SIZE = 256 * 1024 + 7


@pytest.fixture(scope="module")
def www(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("www")
    random_file(root / "fw.bin", SIZE, seed=3)
    return root


@pytest.fixture(scope="module")
def data(www: Path) -> bytes:
    return (www / "fw.bin").read_bytes()


@pytest.fixture(scope="module")
def nginx(www: Path, tmp_path_factory: pytest.TempPathFactory):
    require_nginx()
    with nginx_server(www, tmp_path_factory.mktemp("nginx")) as server:
        yield server


def raw_get(port: int, path: str = "/fw.bin", headers: dict[str, str] | None = None,
            timeout: float = 5.0) -> tuple[bytes, bytes, str]:
    """One request over a plain socket: (response head, body bytes, how it ended).

    The ending is "eof" (FIN), "reset" (RST) or "timeout" (no byte for ``timeout``).
    """
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1"] + [f"{k}: {v}" for k, v in (headers or {}).items()]
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        received = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    ending = "eof"
                    break
                received += chunk
        except ConnectionResetError:
            ending = "reset"
        except TimeoutError:
            ending = "timeout"
    head, _, body = received.partition(b"\r\n\r\n")
    return head, body, ending


def header(head: bytes, name: str) -> str | None:
    for line in head.decode("latin-1").split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


# --------------------------------------------------------------------- nginx


def test_nginx_serves_ranges_with_etag(nginx, data: bytes) -> None:
    full = requests.get(f"{nginx.url}/fw.bin", timeout=5)
    assert full.status_code == 200
    assert full.content == data
    assert full.headers["Accept-Ranges"] == "bytes"
    etag = full.headers["ETag"]
    assert etag == nginx_etag(nginx.root / "fw.bin")

    part = requests.get(f"{nginx.url}/fw.bin", headers={"Range": "bytes=1000-1999"}, timeout=5)
    assert part.status_code == 206
    assert part.headers["Content-Range"] == f"bytes 1000-1999/{SIZE}"
    assert part.headers["ETag"] == etag
    assert part.content == data[1000:2000]

    tail = requests.get(f"{nginx.url}/fw.bin", headers={"Range": f"bytes={SIZE - 5}-"}, timeout=5)
    assert tail.status_code == 206 and tail.content == data[-5:]

    same = requests.get(f"{nginx.url}/fw.bin", headers={"Range": "bytes=10-19", "If-Range": etag}, timeout=5)
    assert same.status_code == 206 and same.content == data[10:20]
    other = requests.get(f"{nginx.url}/fw.bin", headers={"Range": "bytes=10-19", "If-Range": '"0-0"'}, timeout=5)
    assert other.status_code == 200 and other.content == data

    assert requests.get(f"{nginx.url}/missing", timeout=5).status_code == 404


def test_nginx_runs_in_tmp_and_stops(www: Path, tmp_path: Path) -> None:
    require_nginx()
    with nginx_server(www, tmp_path) as server:
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert requests.get(f"{server.url}/fw.bin", timeout=5).status_code == 200
        proc = server.process
    assert proc.poll() is not None
    assert server.access_log.is_file() and server.access_log.is_relative_to(tmp_path)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()


def test_swap_file_changes_content_and_etag(nginx, tmp_path: Path) -> None:
    path = nginx.root / "swapped.bin"
    path.write_bytes(b"a" * 100)
    old = requests.get(f"{nginx.url}/swapped.bin", timeout=5).headers["ETag"]

    new_etag = swap_file(path, b"b" * 100)  # same size, same second: only the mtime can tell
    fresh = requests.get(f"{nginx.url}/swapped.bin", timeout=5)
    assert fresh.content == b"b" * 100
    assert fresh.headers["ETag"] == new_etag != old

    # A resume against the old version gets the whole new file.
    stale = requests.get(f"{nginx.url}/swapped.bin", headers={"Range": "bytes=50-", "If-Range": old}, timeout=5)
    assert stale.status_code == 200 and stale.content == b"b" * 100
    assert not list(path.parent.glob(".swapped.bin.swap*"))


# --------------------------------------------------------------------- files


def test_random_file_is_deterministic_and_aperiodic(tmp_path: Path) -> None:
    size = 3 * MiB + 12345
    digest = random_file(tmp_path / "a", size, seed=9)
    assert random_file(tmp_path / "b", size, seed=9) == digest
    content = (tmp_path / "a").read_bytes()
    assert len(content) == size
    assert hashlib.sha256(content).hexdigest() == digest
    assert content == random_bytes(size, seed=9)
    assert random_bytes(1000, seed=9, offset=MiB + 5) == content[MiB + 5:MiB + 1005]
    assert random_file(tmp_path / "c", size, seed=10) != digest
    # Nothing repeats: windows from several places are found once only.
    for at in (0, 5000, MiB - 10, MiB + 5000, 2 * MiB + 5000, size - 64):
        assert content.count(content[at:at + 32]) == 1


def test_sparse_file(tmp_path: Path) -> None:
    path = sparse_file(tmp_path / "s", 64 * MiB)
    assert path.stat().st_size == 64 * MiB
    assert path.stat().st_blocks * 512 < MiB
    with path.open("rb") as f:
        f.seek(32 * MiB)
        assert f.read(16) == bytes(16)


# --------------------------------------------------------------------- proxy


def test_pass_through_forces_connection_close(nginx, data: bytes) -> None:
    with FaultProxy(nginx.port) as proxy:
        r = requests.get(f"{proxy.url}/fw.bin", timeout=5)
        assert r.status_code == 200 and r.content == data
        assert r.headers["Connection"] == "close"
        assert r.headers["ETag"] == nginx_etag(nginx.root / "fw.bin")
        head, body, ending = raw_get(proxy.port, headers={"Connection": "keep-alive"})
        assert body == data and ending == "eof"
        assert header(head, "Connection") == "close"
        assert proxy.bytes_served == 2 * SIZE
        assert proxy.head_bytes_served > 0
        assert proxy.connections == 2
        assert proxy.applied == [Pass(), Pass()]
    assert proxy.errors == []


def test_cut_truncates_body_and_closes(nginx, data: bytes) -> None:
    with FaultProxy(nginx.port, [Cut(1000), Cut(500), Cut(123)]) as proxy:
        head, body, ending = raw_get(proxy.port)
        assert head.startswith(b"HTTP/1.1 200")
        assert header(head, "Content-Length") == str(SIZE)
        assert body == data[:1000] and ending == "eof"

        head, body, ending = raw_get(proxy.port, headers={"Range": "bytes=4000-"})
        assert head.startswith(b"HTTP/1.1 206")
        assert body == data[4000:4500] and ending == "eof"

        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            requests.get(f"{proxy.url}/fw.bin", timeout=5)
        assert proxy.bytes_served == 1000 + 500 + 123
    assert proxy.errors == []


def test_cut_beyond_the_body_relays_all(nginx, data: bytes) -> None:
    with FaultProxy(nginx.port, [Cut(SIZE + 10)]) as proxy:
        assert requests.get(f"{proxy.url}/fw.bin", timeout=5).content == data


def test_reset_sends_rst(nginx, data: bytes) -> None:
    with FaultProxy(nginx.port, [Reset(2000), Reset(0)]) as proxy:
        _head, body, ending = raw_get(proxy.port)
        assert ending == "reset"
        assert data.startswith(body) and len(body) <= 2000
        with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)):
            r = requests.get(f"{proxy.url}/fw.bin", timeout=5, stream=True)
            for _ in r.iter_content(4096):
                pass
        assert proxy.bytes_served == 2000


def test_stall_holds_then_closes(nginx, data: bytes) -> None:
    with FaultProxy(nginx.port, [Stall(3000, 1.0), Stall(100, 0.3)]) as proxy:
        started = time.monotonic()
        with pytest.raises(requests.exceptions.ConnectionError):  # a read timeout mid-body
            r = requests.get(f"{proxy.url}/fw.bin", timeout=(2, 0.3), stream=True)
            received = b""
            for chunk in r.iter_content(1024):
                received += chunk
        assert time.monotonic() - started < 1.0
        assert proxy.bytes_served == 3000

        started = time.monotonic()
        head, body, ending = raw_get(proxy.port, timeout=3)
        held = time.monotonic() - started
        assert head.startswith(b"HTTP/1.1 200")
        assert body == data[:100] and ending == "eof"
        assert 0.25 <= held < 2.5


def test_drip_is_slow(nginx, data: bytes) -> None:
    rate = 400_000  # SIZE takes ~0.65 s
    with FaultProxy(nginx.port, [Drip(rate)]) as proxy:
        started = time.monotonic()
        r = requests.get(f"{proxy.url}/fw.bin", timeout=5)
        took = time.monotonic() - started
    assert r.content == data
    assert took >= 0.5 * SIZE / rate


@pytest.mark.parametrize(
    ("fault", "headers"),
    [
        (Status(500), {}),
        (Status(503, {"Retry-After": "1"}), {"Retry-After": "1"}),
        (Status(429, {"Retry-After": "2"}), {"Retry-After": "2"}),
        (Status(429), {}),
        (Status(404, body=b"no such firmware\n"), {}),
    ],
)
def test_status_answers_without_upstream(nginx, fault: Status, headers: dict[str, str]) -> None:
    before = nginx.access_log.read_bytes().count(b"\n")
    with FaultProxy(nginx.port, [fault]) as proxy:
        r = requests.get(f"{proxy.url}/fw.bin", timeout=5)
        assert r.status_code == fault.code
        assert r.content == fault.body
        assert r.headers["Connection"] == "close"
        for name, value in headers.items():
            assert r.headers[name] == value
        if not headers:
            assert "Retry-After" not in r.headers
    # Counted after the send returns, which may be after the client has read it all: after the join.
    assert proxy.bytes_served == len(fault.body)
    assert nginx.access_log.read_bytes().count(b"\n") == before


def test_plan_is_consumed_per_connection_in_order(nginx, data: bytes) -> None:
    plan = [Status(503, {"Retry-After": "1"}), Cut(10), Pass(), Status(404)]
    with FaultProxy(nginx.port, plan) as proxy:
        outcomes = []
        for _ in range(6):
            head, body, ending = raw_get(proxy.port)
            outcomes.append((head.split(b" ")[1].decode(), len(body), ending))
        assert outcomes == [
            ("503", 0, "eof"), ("200", 10, "eof"), ("200", SIZE, "eof"),
            ("404", 0, "eof"), ("200", SIZE, "eof"), ("200", SIZE, "eof"),
        ]
        assert proxy.applied == plan + [Pass(), Pass()]
        assert proxy.pending == []

        proxy.add(Status(500), Cut(1))
        assert proxy.pending == [Status(500), Cut(1)]
        assert requests.get(f"{proxy.url}/fw.bin", timeout=5).status_code == 500
        assert raw_get(proxy.port)[1] == data[:1]
        assert requests.get(f"{proxy.url}/fw.bin", timeout=5).content == data
    assert proxy.errors == []


def test_requests_are_recorded(nginx) -> None:
    etag = nginx_etag(nginx.root / "fw.bin")
    with FaultProxy(nginx.port, [Cut(5)]) as proxy:
        raw_get(proxy.port)
        requests.get(f"{proxy.url}/fw.bin", headers={"Range": "bytes=5-", "If-Range": etag}, timeout=5)
        requests.head(f"{proxy.url}/other?x=1", timeout=5)
        seen = proxy.wait_requests(3, timeout=2)
    assert [(r.method, r.path) for r in seen] == [("GET", "/fw.bin"), ("GET", "/fw.bin"), ("HEAD", "/other?x=1")]
    assert "Range" not in seen[0].headers
    _method, _path, headers = seen[1]
    assert headers["Range"] == headers["range"] == "bytes=5-"
    assert headers.get("IF-RANGE") == etag
    assert "If-Range" in headers


def test_wait_requests_times_out(nginx) -> None:
    with FaultProxy(nginx.port) as proxy:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            proxy.wait_requests(1, timeout=0.2)
        assert time.monotonic() - started < 1.0


def test_stop_is_bounded_with_a_stalled_connection(nginx) -> None:
    proxy = FaultProxy(nginx.port, [Stall(0, 60)]).start()
    client = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    client.sendall(b"GET /fw.bin HTTP/1.1\r\nHost: x\r\n\r\n")
    received = b""
    while b"\r\n\r\n" not in received:  # the head came, then nothing
        received += client.recv(65536)
    assert received.startswith(b"HTTP/1.1 200")
    started = time.monotonic()
    proxy.stop()
    assert time.monotonic() - started < 2.0
    assert not any(t.is_alive() for t in proxy._threads)
    client.settimeout(2)
    assert client.recv(65536) == b""  # closed by the stop
    client.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=1).close()


def test_upstream_down_is_a_502(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    with FaultProxy(dead) as proxy:
        assert requests.get(f"{proxy.url}/x", timeout=5).status_code == 502


def test_nginx_binary_is_executable() -> None:
    path = require_nginx()
    assert os.access(path, os.X_OK)
