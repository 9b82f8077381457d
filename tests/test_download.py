"""Downloads against a real nginx on loopback, through a proxy that breaks connections to plan."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

import pytest

from agent.config import DownloadConfig
from agent.download.downloader import DownloadCancelled, DownloadError, Downloader, Resume, download_link
from agent.net.http import Tls
from agent.download.sinks import FileSink
from httpfaults import (Cut, Drip, FaultProxy, Pass, Reset, Stall, Status, nginx_server, random_bytes,
                        require_nginx, swap_file)

SIZE = 3 << 20
FAST = DownloadConfig(connect_timeout=2, stall_timeout=1, stall_bytes=1024, max_attempts=6, max_time=60)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    require_nginx()
    root = tmp_path_factory.mktemp("www")
    work = tmp_path_factory.mktemp("nginx")
    with nginx_server(root, work) as server:
        yield server, root


@pytest.fixture
def payload(served) -> tuple[str, bytes]:  # type: ignore[no-untyped-def]
    """A fresh file for each test (its own name: tests that swap it do not disturb others)."""
    _, root = served
    name = f"image-{time.monotonic_ns()}.bin"
    data = random_bytes(SIZE, seed=len(name))
    (root / name).write_bytes(data)
    return name, data


@pytest.fixture
def proxy(served):  # type: ignore[no-untyped-def]
    server, _ = served
    with FaultProxy(server.port) as running:
        yield running


class Sleeps:
    """Records the waits the downloader asks for and skips them: its clock is real time plus the skips."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.skipped = 0.0

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.skipped += seconds

    def clock(self) -> float:
        return time.monotonic() + self.skipped


def fetch(proxy: FaultProxy, name: str, data: bytes, tmp_path: Path, *, config: DownloadConfig = FAST,
          digest: bool = True, resume: Resume | None = None, sleeps: Sleeps | None = None, **kwargs):  # type: ignore[no-untyped-def]
    out = tmp_path / "out.bin"
    checkpoints: list[Resume] = []
    sleeps = sleeps or Sleeps()
    timing = {"sleep": sleeps, "clock": sleeps.clock} if isinstance(sleeps, Sleeps) else {"sleep": sleeps}
    with FileSink(out, len(data)) as sink:
        result = Downloader(config, **timing).fetch(
            f"{proxy.url}/{name}", sink, size=len(data), digest=hashlib.sha256(data).digest() if digest else None,
            resume=resume, checkpoint=checkpoints.append, **kwargs)
    return result, out.read_bytes(), checkpoints


def ranges(proxy: FaultProxy) -> list[tuple[str | None, str | None]]:
    return [(r.headers.get("Range"), r.headers.get("If-Range")) for r in proxy.requests]


def test_clean_download_is_bit_exact_with_progress(proxy, payload, tmp_path) -> None:  # type: ignore[no-untyped-def]
    name, data = payload
    seen = []
    result, got, checkpoints = fetch(proxy, name, data, tmp_path, progress=seen.append)
    assert got == data and result.digest == hashlib.sha256(data).digest() and result.attempts == 1
    assert seen[-1].done == SIZE and seen[-1].total == SIZE and seen[-1].rate > 0
    assert checkpoints[-1].offset == SIZE and checkpoints[-1].validator.startswith('"')
    assert proxy.bytes_served == SIZE


@pytest.mark.parametrize("fault", [Cut(1 << 20), Reset(1 << 20), Stall(1 << 20, 3.0)])
def test_broken_connection_resumes_with_range_and_if_range(proxy, payload, tmp_path, fault) -> None:  # type: ignore[no-untyped-def]
    name, data = payload
    proxy.add(fault)
    result, got, _ = fetch(proxy, name, data, tmp_path)
    assert got == data and result.attempts == 2 and result.restarts_from_zero == 0
    (first, _), (second, validator) = ranges(proxy)
    assert first is None and second is not None and second.startswith("bytes=") and validator.startswith('"')
    offset = int(second[6:-1])
    assert 0 < offset <= 1 << 20
    assert proxy.bytes_served <= SIZE + (1 << 20) - offset + 64 * 1024   # only the lost tail is fetched again


def test_drip_below_the_stall_rate_is_a_stall(proxy, payload, tmp_path) -> None:  # type: ignore[no-untyped-def]
    name, data = payload
    proxy.add(Drip(200))
    result, got, _ = fetch(proxy, name, data, tmp_path)
    assert got == data and result.attempts == 2


@pytest.mark.parametrize("fault, expected_wait", [
    (Status(503, {"Retry-After": "2"}), 2.0),
    (Status(429, {"Retry-After": "1"}), 1.0),
])
def test_retry_after_is_honoured(proxy, payload, tmp_path, fault, expected_wait) -> None:  # type: ignore[no-untyped-def]
    name, data = payload
    proxy.add(fault)
    sleeps = Sleeps()
    result, got, _ = fetch(proxy, name, data, tmp_path, sleeps=sleeps)
    assert got == data and result.attempts == 2
    assert sum(sleeps.waits) == pytest.approx(expected_wait, abs=0.05)


@pytest.mark.parametrize("fault", [Status(500), Status(429), Status(502), Status(503)])
def test_transient_errors_back_off_with_jitter(proxy, payload, tmp_path, fault) -> None:  # type: ignore[no-untyped-def]
    name, data = payload
    proxy.add(fault, fault)
    sleeps = Sleeps()
    result, got, _ = fetch(proxy, name, data, tmp_path, sleeps=sleeps)
    assert got == data and result.attempts == 3
    assert 0 < len(sleeps.waits) and sum(sleeps.waits) <= 1.0 + 2.0    # full jitter below 1 s, then 2 s


@pytest.mark.parametrize("code", [404, 403, 410, 400])
def test_permanent_errors_are_not_retried(proxy, payload, tmp_path, code) -> None:  # type: ignore[no-untyped-def]
    name, data = payload
    proxy.add(Status(code))
    with pytest.raises(DownloadError) as caught:
        fetch(proxy, name, data, tmp_path)
    assert caught.value.code == f"download-http-{code}" and len(proxy.requests) == 1


def test_a_real_404_from_nginx_is_final(proxy, payload, tmp_path) -> None:  # type: ignore[no-untyped-def]
    name, data = payload
    with pytest.raises(DownloadError, match="HTTP 404") as caught:
        fetch(proxy, "missing-" + name, data, tmp_path)
    assert caught.value.code == "download-http-404" and len(proxy.requests) == 1


def test_gives_up_after_max_attempts(proxy, payload, tmp_path) -> None:  # type: ignore[no-untyped-def]
    name, data = payload
    proxy.add(*[Status(500)] * 10)
    config = DownloadConfig(connect_timeout=2, stall_timeout=1, max_attempts=3)
    with pytest.raises(DownloadError, match=r"gave up after 3 attempt"):
        fetch(proxy, name, data, tmp_path, config=config)
    assert len(proxy.requests) == 3


def test_cuts_that_make_progress_do_not_use_up_the_attempts(proxy, payload, tmp_path) -> None:  # type: ignore[no-untyped-def]
    name, data = payload
    proxy.add(*[Cut(256 * 1024)] * 8)                    # eight drops, each after some progress
    config = DownloadConfig(connect_timeout=2, stall_timeout=1, max_attempts=3)
    result, got, _ = fetch(proxy, name, data, tmp_path, config=config)
    assert got == data and result.attempts == 9


def test_a_file_swapped_on_the_server_is_never_spliced(proxy, payload, served, tmp_path) -> None:  # type: ignore[no-untyped-def]
    name, data = payload
    _, root = served
    new = random_bytes(SIZE, seed=99)
    proxy.add(Cut(1 << 20))
    done = threading.Event()

    def swap_when_cut() -> None:
        proxy.wait_requests(1)
        time.sleep(0.3)
        swap_file(root / name, new)
        done.set()

    threading.Thread(target=swap_when_cut, daemon=True).start()
    # Without a manifest digest the new file arrives whole, restarted from zero.
    class WaitForSwap(Sleeps):
        def __call__(self, seconds: float) -> None:
            done.wait(5)
            super().__call__(seconds)

    result, got, _ = fetch(proxy, name, new, tmp_path, digest=False, sleeps=WaitForSwap())
    assert got == new and result.restarts_from_zero == 1
    assert ranges(proxy)[1][0] is not None     # it asked for the rest, If-Range said no


def test_corrupt_content_is_fetched_again_once_then_refused(proxy, payload, tmp_path) -> None:  # type: ignore[no-untyped-def]
    name, data = payload
    wrong = bytearray(data)
    wrong[12345] ^= 1
    out = tmp_path / "out.bin"
    with FileSink(out, SIZE) as sink, pytest.raises(DownloadError) as caught:
        sleeps = Sleeps()
        Downloader(FAST, sleep=sleeps, clock=sleeps.clock).fetch(f"{proxy.url}/{name}", sink, size=SIZE,
                                               digest=hashlib.sha256(bytes(wrong)).digest())
    assert caught.value.code == "digest-mismatch"
    assert len(proxy.requests) == 2 and proxy.bytes_served == 2 * SIZE


def test_resume_record_continues_after_a_restart(proxy, payload, tmp_path) -> None:  # type: ignore[no-untyped-def]
    name, data = payload
    half = SIZE // 2
    (tmp_path / "out.bin").write_bytes(data[:half])
    etag = None
    # The validator of the earlier process: what nginx sends for this file.
    import requests
    etag = requests.head(f"{proxy.url}/{name}", timeout=5).headers["ETag"]
    proxy.requests.clear()
    result, got, _ = fetch(proxy, name, data, tmp_path, resume=Resume(f"{proxy.url}/{name}", half, etag))
    assert got == data and ranges(proxy) == [(f"bytes={half}-", etag)]
    assert proxy.bytes_served == SIZE - half


def test_resume_at_the_end_gets_416_and_completes(proxy, payload, tmp_path) -> None:  # type: ignore[no-untyped-def]
    name, data = payload
    (tmp_path / "out.bin").write_bytes(data)
    result, got, _ = fetch(proxy, name, data, tmp_path, resume=Resume(f"{proxy.url}/{name}", SIZE, None))
    assert got == data and result.size == SIZE and proxy.bytes_served < 1024


def test_cancel_stops_within_a_second(proxy, payload, tmp_path) -> None:  # type: ignore[no-untyped-def]
    name, data = payload
    proxy.add(Stall(4096, 20.0))
    cancel = threading.Event()
    config = DownloadConfig(connect_timeout=2, stall_timeout=30)
    threading.Timer(0.5, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(DownloadCancelled):
        fetch(proxy, name, data, tmp_path, config=config, cancel=cancel)
    assert time.monotonic() - started < 0.5 + 1.5


def test_rate_limit_caps_the_bandwidth(proxy, payload, tmp_path) -> None:  # type: ignore[no-untyped-def]
    name, data = payload
    config = DownloadConfig(connect_timeout=2, stall_timeout=5, rate_limit=4 << 20)
    started = time.monotonic()
    _, got, _ = fetch(proxy, name, data, tmp_path, config=config, sleeps=time.sleep)  # type: ignore[arg-type]
    assert got == data and time.monotonic() - started >= SIZE / (4 << 20) * 0.8


def test_a_file_sink_checks_free_space_first(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="MiB free") as caught:
        FileSink(tmp_path / "huge.bin", 1 << 60)
    assert caught.value.code == "no-space" and not (tmp_path / "huge.bin").exists()


def test_tls_verification_is_never_off(tmp_path: Path) -> None:
    assert download_link(DownloadConfig()).other_tls.verify is True
    ca = tmp_path / "ca.pem"
    link = download_link(DownloadConfig(ca_file=ca, client_cert=tmp_path / "c.pem", client_key=tmp_path / "k.pem",
                                        proxy="http://proxy:3128"))
    assert link.other_tls == Tls(str(ca), (str(tmp_path / "c.pem"), str(tmp_path / "k.pem")))
    assert link._proxies("https://example.com/x") == {"http": "http://proxy:3128", "https": "http://proxy:3128"}


def test_pass_between_faults_keeps_the_plan_in_order(proxy, payload, tmp_path) -> None:  # type: ignore[no-untyped-def]
    name, data = payload
    proxy.add(Cut(100_000), Pass())
    result, got, _ = fetch(proxy, name, data, tmp_path)
    assert got == data and result.attempts == 2


def test_a_configured_proxy_carries_the_request(proxy, payload, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The URL names a host that does not exist; only the proxy (relaying to nginx) can answer.
    A proxy in the environment does not override the configured one."""
    name, data = payload
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")     # nothing listens there
    config = DownloadConfig(connect_timeout=2, stall_timeout=2, proxy=proxy.url)
    out = tmp_path / "out.bin"
    with FileSink(out, SIZE) as sink:
        Downloader(config).fetch(f"http://updates.invalid/{name}", sink, size=SIZE,
                                 digest=hashlib.sha256(data).digest())
    assert out.read_bytes() == data
    assert proxy.requests[0].path == f"http://updates.invalid/{name}"     # absolute URI: a proxy request


def test_proxies_from_the_environment(proxy, payload, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    name, data = payload
    monkeypatch.setenv("http_proxy", proxy.url)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    out = tmp_path / "out.bin"
    with FileSink(out, SIZE) as sink:
        Downloader(FAST).fetch(f"http://updates.invalid/{name}", sink, size=SIZE)
    assert out.read_bytes() == data and len(proxy.requests) == 1


CONSTANT_MEMORY_CHILD = """
import hashlib, sys
from agent.config import DownloadConfig
from agent.download.downloader import Downloader

class Discard:
    '''Counts the bytes: the memory measured is the downloader's, not a file's.'''
    def __init__(self): self.size = 0
    def write(self, data): self.size += len(data)
    def sync(self): pass
    def restart(self, offset): self.size = offset
    def read_back(self, size): return iter(())

url, size, digest = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3])
sink = Discard()
result = Downloader(DownloadConfig()).fetch(url, sink, size=size, digest=digest)
hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]
print(result.size, hwm)
"""


@pytest.mark.slow
def test_five_gib_in_constant_memory(served, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    from httpfaults import sparse_file
    server, root = served
    size = 5 << 30
    sparse_file(root / "huge.img", size)
    zeros, sha = bytes(1 << 20), hashlib.sha256()
    for _ in range(size >> 20):
        sha.update(zeros)
    result = subprocess.run([sys.executable, "-c", CONSTANT_MEMORY_CHILD, f"{server.url}/huge.img", str(size),
                             sha.hexdigest()], capture_output=True, text=True, timeout=600,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr
    done, peak_kib = map(int, result.stdout.split())
    assert done == size and peak_kib < 40 * 1024, f"peak RSS {peak_kib} KiB"


def test_a_sink_error_surfaces_and_nothing_hangs(proxy, payload, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Writes happen behind the receiving thread; a failing write still ends the download at once."""
    name, data = payload

    class FullDisk(FileSink):
        def write(self, chunk):  # type: ignore[no-untyped-def]
            if os.lseek(self.fd, 0, os.SEEK_CUR) > 1 << 20:
                raise OSError(28, "No space left on device")
            super().write(chunk)

    started = time.monotonic()
    with FullDisk(tmp_path / "out.bin", SIZE) as sink, pytest.raises(OSError, match="No space left"):
        Downloader(FAST).fetch(f"{proxy.url}/{name}", sink, size=SIZE, digest=hashlib.sha256(data).digest())
    assert time.monotonic() - started < 5 and len(proxy.requests) == 1


def test_an_answer_that_keeps_the_line_busy_without_bytes_is_a_stall(raw_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A chunked answer whose trailer lines never end: every read finds a line, none finds a byte
    of the payload. The stall watch ends each attempt; the download gives up after its attempts."""
    import socket
    import threading

    attempts = []

    def answer(connection: socket.socket) -> None:
        attempts.append(1)
        with connection:
            connection.recv(65536)
            try:
                connection.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n")
                while not done.wait(0.3):
                    connection.sendall(b"X-Trailer: more\r\n")
            except OSError:
                pass             # the device hung up: as it should

    done = threading.Event()
    url = raw_server(answer)
    config = DownloadConfig(connect_timeout=2, stall_timeout=1, max_attempts=2, max_time=60)
    try:
        with FileSink(tmp_path / "out.bin") as sink, pytest.raises(DownloadError) as caught:
            Downloader(config).fetch(url, sink, size=6)
    finally:
        done.set()
    assert len(attempts) == 2 and "gave up after 2 attempt(s)" in caught.value.detail


def test_a_remote_file_left_idle_resumes_where_it_was_not_at_a_false_end(raw_server) -> None:  # type: ignore[no-untyped-def]
    """A close-delimited answer (no length) that the reader leaves idle for longer than the stall
    time (a bundle reader while the payloads it names are fetched): the stall watch ends the
    connection, and the end it leaves is not the file's: the next read resumes with a Range."""
    import re
    import socket

    from agent.download.remote import RemoteFile

    data = bytes(range(256)) * 64
    ranges: list[str | None] = []

    def answer(connection: socket.socket) -> None:
        with connection:
            request = connection.recv(65536).decode()
            wanted = re.search(r"Range: bytes=(\d+)-", request)
            ranges.append(wanted.group(0) if wanted else None)
            start = int(wanted.group(1)) if wanted else 0
            head = (b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes %d-%d/*\r\n" % (start, len(data) - 1)
                    if wanted else b"HTTP/1.1 200 OK\r\n") + b'ETag: "v1"\r\nConnection: close\r\n\r\n'
            try:
                if wanted:
                    connection.sendall(head + data[start:])
                else:                                  # the first answer: the rest only much later
                    connection.sendall(head + data[:8000])
                    time.sleep(3)
                    connection.sendall(data[8000:])
            except OSError:
                pass

    remote = RemoteFile(Downloader(FAST), raw_server(answer))
    try:
        first = remote.read(8000)                     # more than stall_bytes: no stall by rate
        time.sleep(1.6)                                # idle for longer than the stall time (1 s)
        rest = bytearray()
        while chunk := remote.read(4096):
            rest += chunk
    finally:
        remote.close()
    assert first + rest == data
    assert ranges[0] is None and ranges[1] == "Range: bytes=8000-"
