"""The direct GET (agent/net/direct.py) against raw answers on loopback: its framings, its bounds,
and what it refuses to send or accept."""

from __future__ import annotations

import datetime
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import pytest
from pki import Authority

from agent.net import direct
from agent.net.direct import TlsError, TransferError
from agent.net.http import HttpLink, Tls


def answering(*parts: bytes, seen: list[bytes] | None = None) -> Any:
    """Reads the request, then sends ``parts`` one send each, then closes."""
    def answer(connection: socket.socket) -> None:
        with connection:
            request = connection.recv(65536)
            if seen is not None:
                seen.append(request)
            try:
                for part in parts:
                    connection.sendall(part)
            except OSError:
                pass
    return answer


def body_of(url: str, headers: dict[str, str] | None = None, size: int = 7) -> tuple[int, bytes]:
    """The status and the whole body, read ``size`` bytes at a time (both read1 and readinto1)."""
    with direct.get(url, headers or {}, timeout=(2, 2)) as answer:
        parts, into = [], bytearray(size)
        while True:
            if len(parts) % 2:
                count = answer.readinto1(into)
                part = bytes(into[:count])
            else:
                part = answer.read1(size)
            if not part:
                return answer.status_code, b"".join(parts)
            parts.append(part)


def test_a_content_length_body_and_the_request_sent(raw_server: Any) -> None:
    seen: list[bytes] = []
    url = raw_server(answering(b"HTTP/1.1 206 Partial Content\r\nContent-Length: 11\r\nETag: \"x\"\r\n\r\nhello", b" world",
                               b"EXTRA", seen=seen))
    assert body_of(url + "path?q=1", {"Range": "bytes=5-"}) == (206, b"hello world")
    request = seen[0].decode()
    assert request.startswith("GET /path?q=1 HTTP/1.1\r\nHost: 127.0.0.1:")
    assert "\r\nRange: bytes=5-\r\n" in request and request.endswith("\r\n\r\n")


def test_a_chunked_body_with_extensions_and_trailers(raw_server: Any) -> None:
    url = raw_server(answering(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                               b"5;name=x\r\nhello\r\n", b"6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n"))
    assert body_of(url) == (200, b"hello world")


def test_a_close_delimited_body_ends_with_the_connection(raw_server: Any) -> None:
    url = raw_server(answering(b"HTTP/1.0 200 OK\r\n\r\n", b"all of ", b"it"))
    assert body_of(url) == (200, b"all of it")


def test_an_interim_answer_is_passed_over(raw_server: Any) -> None:
    url = raw_server(answering(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
    assert body_of(url) == (200, b"ok")


def test_headers_are_found_in_any_case_and_repeated_ones_joined(raw_server: Any) -> None:
    url = raw_server(answering(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nX-A: 1\r\nx-a: 2\r\n\r\n"))
    with direct.get(url, {}, timeout=(2, 2)) as answer:
        assert answer.headers["Content-Length"] == "0" and answer.headers.get("X-A") == "1, 2"
        assert "CONTENT-LENGTH" in answer.headers and answer.read1(10) == b""


@pytest.mark.parametrize(("parts", "says"), [
    ((b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",), "ended 5 bytes short"),
    ((b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",), "ended 2 bytes short"),
    ((b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",), "ended inside its chunks"),
    ((b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",), "is not hexadecimal"),
    ((b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n",), "longer than its size"),
    ((b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1" * 5000,), "chunk line longer"),
])
def test_a_broken_body_is_a_transfer_error(parts: tuple[bytes, ...], says: str, raw_server: Any) -> None:
    with pytest.raises(TransferError) as caught:
        body_of(raw_server(answering(*parts)))
    assert says in caught.value.detail and caught.value.code == "transfer"
    assert isinstance(caught.value, ConnectionError)        # an OSError: the download retries it


@pytest.mark.parametrize(("answer", "says"), [
    (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP/1.x answer"),
    (b"HTTP/1.1 2000 OK\r\n\r\n", "not an HTTP/1.x answer"),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "a malformed header line"),
    (b"HTTP/1.1 200 OK\r\n folded: x\r\n\r\n", "a malformed header line"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "is not a number"),
    ("HTTP/1.1 200 OK\r\nContent-Length: \u00b2\r\n\r\n".encode("latin-1"), "is not a number"),   # isdigit, not int
    ("HTTP/1.1 2\u00b20 OK\r\n\r\n".encode("latin-1"), "not an HTTP/1.x answer"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "identity was asked for"),
    (b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 101 + b"\r\n", "more than 100 header lines"),
    (b"HTTP/1.1 200 OK\r\nX: " + b"y" * (70 << 10), "head longer than 65536"),
    (b"HTTP/1.1 200 OK\r\n", "closed before an answer"),
])
def test_a_bad_head_is_refused(answer: bytes, says: str, raw_server: Any) -> None:
    with pytest.raises(TransferError) as caught:
        direct.get(raw_server(answering(answer)), {}, timeout=(2, 2))
    assert says in caught.value.detail


@pytest.mark.parametrize("header", [{"If-Range": "\"a\"\r\nX-Evil: 1"}, {"If-Range": "a\nb"}, {"X\r\nY": "1"}])
def test_a_header_that_is_not_one_line_is_never_sent(header: dict[str, str], raw_server: Any) -> None:
    """An ETag comes from the server and goes back as If-Range: it cannot add a header."""
    seen: list[bytes] = []
    url = raw_server(answering(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", seen=seen))
    with pytest.raises(TransferError) as caught:
        direct.get(url, header, timeout=(2, 2))
    assert "would not be one line" in caught.value.detail and seen == []


def test_a_server_certificate_not_trusted_is_a_tls_error(tmp_path: Path) -> None:
    """Through HttpLink.get, as a download sees it: verified against the configured CA."""
    import threading

    now = datetime.datetime.now(datetime.timezone.utc)
    ca, other = Authority("test CA", now), Authority("another CA", now)
    issued = ca.issue(tmp_path, "site", ips=("127.0.0.1",))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(issued.cert, issued.key)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def serve() -> None:
        for _ in range(2):
            connection, _ = listener.accept()
            try:
                with context.wrap_socket(connection, server_side=True) as tls:
                    tls.recv(65536)
                    tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            except (OSError, ssl.SSLError):
                pass

    threading.Thread(target=serve, daemon=True).start()
    url = f"https://127.0.0.1:{listener.getsockname()[1]}/f"
    try:
        with pytest.raises(TlsError) as caught:
            HttpLink(other_tls=Tls.of(other.write(tmp_path / "other.pem"))).get(url, timeout=(2, 2), deadline=5)
        assert caught.value.code == "tls" and "CERTIFICATE_VERIFY_FAILED" in caught.value.detail
        with HttpLink(other_tls=Tls.of(ca.write(tmp_path / "ca.pem"))).get(url, timeout=(2, 2), deadline=5) as answer:
            assert answer.status_code == 200 and answer.read1(10) == b"ok"
    finally:
        listener.close()


def serving(requests_per_connection: int, connections: list[int], head: bytes = b"") -> Any:
    """Answers up to ``requests_per_connection`` GETs on each connection with "ok", then closes it."""
    def answer(connection: socket.socket) -> None:
        connections.append(0)
        with connection:
            for _ in range(requests_per_connection):
                if not connection.recv(65536):
                    return
                connections[-1] += 1
                connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" + head + b"\r\nok")
    return answer


def read_all(link: HttpLink, url: str) -> bytes:
    with link.get(url, timeout=(2, 2), deadline=5) as answer:
        return answer.read1(10) + answer.read1(10)


def test_a_connection_read_to_its_end_carries_the_next_get(raw_server: Any) -> None:
    connections: list[int] = []
    url = raw_server(serving(10, connections))
    link = HttpLink()
    assert [read_all(link, url) for _ in range(4)] == [b"ok"] * 4
    assert connections == [4]


def test_a_kept_connection_the_server_closed_is_replaced(raw_server: Any) -> None:
    """The server ends each connection after one answer without saying so: the next GET sees it
    closed and opens another; one that says ``Connection: close`` is never kept."""
    for head in (b"", b"Connection: close\r\n"):
        connections: list[int] = []
        url = raw_server(serving(1, connections, head))
        link = HttpLink()
        for _ in range(3):
            assert read_all(link, url) == b"ok"
            time.sleep(0.1)             # the server's close reaches this side
        assert connections == [1, 1, 1]


def test_an_answer_not_read_to_its_end_is_not_kept(raw_server: Any) -> None:
    connections: list[int] = []
    url = raw_server(serving(10, connections))
    link = HttpLink()
    with link.get(url, timeout=(2, 2), deadline=5) as answer:
        assert answer.read1(1) == b"o"
    assert read_all(link, url) == b"ok" and connections == [1, 1]


@pytest.mark.parametrize("head", [b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n",
                                  b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n"])
def test_an_answer_of_http_1_0_or_framed_twice_is_not_kept(head: bytes, raw_server: Any) -> None:
    connections: list[int] = []
    body = b"2\r\nok\r\n0\r\n\r\n" if b"chunked" in head else b"ok"

    def answer(connection: socket.socket) -> None:
        connections.append(0)
        with connection:
            while connection.recv(65536):
                connections[-1] += 1
                connection.sendall(head + b"\r\n" + body)

    url = raw_server(answer)
    link = HttpLink()
    assert read_all(link, url) == b"ok" and read_all(link, url) == b"ok"
    assert connections == [1, 1]


def test_a_configured_ca_file_that_is_missing_is_an_error_not_the_system_cas(tmp_path: Path) -> None:
    link = HttpLink(other_tls=Tls.of(tmp_path / "missing-ca.pem"))
    with pytest.raises(TlsError) as caught:
        link.get("https://127.0.0.1:9/f", timeout=(2, 2), deadline=5)
    assert caught.value.code == "tls" and "missing-ca.pem is missing" in caught.value.detail
