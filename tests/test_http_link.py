"""HttpLink (agent/net/http.py) against real servers on loopback: where credentials go, redirects
checked hop by hop, deadlines that a dripping server cannot stretch, answers bounded in size."""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pki import Authority

from agent.net.http import AnswerError, AnswerTimeout, HttpLink, Tls
from agent.net.policy import LinkError, LinkPolicy

TOKEN = {"Authorization": "TargetToken s3cret"}


@dataclass
class Site:
    """A small server: ``pages`` by path (bytes, or ("redirect", url)); every request in ``seen``
    as (path, Authorization header, client certificate subject or None)."""

    tls: ssl.SSLContext | None = None
    pages: dict[str, Any] = field(default_factory=dict)
    seen: list[tuple[str, str | None, str | None]] = field(default_factory=list)
    httpd: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.httpd is not None
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.httpd.server_address[1]}"

    @property
    def host(self) -> str:
        return self.url.split("://")[1]

    def __enter__(self) -> "Site":
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                peer = self.connection.getpeercert() if isinstance(self.connection, ssl.SSLSocket) else None
                subject = dict(x[0] for x in peer["subject"])["commonName"] if peer else None
                site.seen.append((self.path, self.headers.get("Authorization"), subject))
                page = site.pages.get(self.path, b"")
                if isinstance(page, tuple):
                    self.send_response(302)
                    self.send_header("Location", page[1])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if self.tls is not None:
            self.httpd.socket = self.tls.wrap_socket(self.httpd.socket, server_side=True)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.httpd is not None
        self.httpd.shutdown()
        self.httpd.server_close()


def exchanged(link: HttpLink, url: str) -> bytes:
    return link.exchange("GET", url, timeout=(2, 2), deadline=5, limit=1 << 20).body


def streamed(link: HttpLink, url: str) -> bytes:
    """Through ``HttpLink.get``, which a download uses: without a proxy, on a connection of its own."""
    with link.get(url, timeout=(2, 2), deadline=5) as answer:
        parts = []
        while part := answer.read1(1 << 16):
            parts.append(part)
        return b"".join(parts)


@pytest.fixture(params=["exchange", "stream"])
def get(request: pytest.FixtureRequest) -> Any:
    """Both ways a request goes: ``exchange`` (through requests) and ``get`` (direct)."""
    return exchanged if request.param == "exchange" else streamed


def test_the_token_goes_to_the_servers_origin_only_also_across_redirects(get: Any) -> None:
    with Site() as server, Site() as cdn:
        link = HttpLink(LinkPolicy.for_server(server.url, (cdn.host,)), credentials=TOKEN)
        server.pages["/to-cdn"] = ("redirect", f"{cdn.url}/file")
        cdn.pages["/back"] = ("redirect", f"{server.url}/home")
        for url in (f"{server.url}/a", f"{cdn.url}/b", f"{server.url}/to-cdn", f"{cdn.url}/back"):
            get(link, url)
    assert [(path, auth) for path, auth, _ in server.seen] == [("/a", TOKEN["Authorization"]),
                                                                ("/to-cdn", TOKEN["Authorization"]),
                                                                ("/home", TOKEN["Authorization"])]
    assert [(path, auth) for path, auth, _ in cdn.seen] == [("/b", None), ("/file", None), ("/back", None)]


def test_a_host_not_listed_is_never_asked_even_through_a_redirect(get: Any) -> None:
    with Site() as server, Site() as stranger:
        link = HttpLink(LinkPolicy.for_server(server.url), credentials=TOKEN)
        server.pages["/away"] = ("redirect", f"{stranger.url}/x")
        for url in (f"{stranger.url}/direct", f"{server.url}/away"):
            with pytest.raises(LinkError) as caught:
                get(link, url)
            assert caught.value.code == "foreign-link"
    assert stranger.seen == []


def test_a_redirect_loop_ends(get: Any) -> None:
    with Site() as server:
        server.pages["/loop"] = ("redirect", "/loop")
        with pytest.raises(LinkError) as caught:
            get(HttpLink(LinkPolicy.for_server(server.url)), f"{server.url}/loop")
    assert caught.value.code == "redirect-loop" and len(server.seen) == 6


def test_no_redirect_leads_from_https_to_http(tmp_path: Path, get: Any) -> None:
    """Even with no server configured (an operator's URL), a redirect never goes down to http."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca = Authority("test CA", now)
    issued = ca.issue(tmp_path, "site", ips=("127.0.0.1",))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(issued.cert, issued.key)
    with Site(tls=context) as secure, Site() as clear:
        secure.pages["/down"] = ("redirect", f"{clear.url}/x")
        link = HttpLink(other_tls=Tls.of(ca.write(tmp_path / "ca.pem")))
        with pytest.raises(LinkError) as caught:
            get(link, f"{secure.url}/down")
    assert caught.value.code == "insecure-link" and clear.seen == []


def test_the_client_certificate_goes_to_the_servers_origin_only(tmp_path: Path, get: Any) -> None:
    now = datetime.datetime.now(datetime.timezone.utc)
    ca = Authority("test CA", now)
    ca_file = ca.write(tmp_path / "ca.pem")
    device = ca.issue(tmp_path, "device-0001", client=True)

    def context(name: str) -> ssl.SSLContext:
        issued = ca.issue(tmp_path, name, ips=("127.0.0.1",))
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(issued.cert, issued.key)
        tls.load_verify_locations(ca_file)
        tls.verify_mode = ssl.CERT_OPTIONAL          # asks every client for a certificate
        return tls

    with Site(tls=context("server")) as server, Site(tls=context("cdn")) as cdn:
        link = HttpLink(LinkPolicy.for_server(server.url, (cdn.host,)), credentials=TOKEN,
                        server_tls=Tls.of(ca_file, device.cert, device.key), other_tls=Tls.of(ca_file))
        get(link, f"{server.url}/a")
        get(link, f"{cdn.url}/b")
    assert server.seen == [("/a", TOKEN["Authorization"], "device-0001")]
    assert cdn.seen == [("/b", None, None)]


# --- deadlines and bounds ----------------------------------------------------------------------------


def dripping(data: bytes, interval: float, *, at_once: int = 0) -> Any:
    """Sends the first ``at_once`` bytes of ``data``, then the rest one byte every ``interval`` s."""
    def answer(connection: socket.socket) -> None:
        with connection:
            connection.recv(65536)
            try:
                connection.sendall(data[:at_once])
                for byte in data[at_once:]:
                    connection.sendall(bytes([byte]))
                    time.sleep(interval)
            except OSError:
                pass          # the client hung up at its deadline
    return answer


@pytest.mark.parametrize("where", ["head", "body", "close-delimited body"])
def test_a_dripping_answer_ends_at_the_deadline(where: str, raw_server: Any) -> None:
    """One byte every 0.3 s: each read succeeds, so only a deadline for the whole exchange ends it
    (the answer would otherwise be whole, and good, after about 20 s). A body that the closing
    connection ends is not taken as whole when the deadline's shutdown ended it."""
    body = b'{"ok": true}' + b" " * 40
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
    if where == "close-delimited body":
        head = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"
    url = raw_server(dripping(head + body, 0.3, at_once=0 if where == "head" else len(head)))
    with pytest.raises(AnswerTimeout) as caught:
        HttpLink().exchange("GET", url, timeout=(2, 2), deadline=1.5, limit=1 << 20)
    assert caught.value.code == "answer-timeout"


def test_a_dripping_head_ends_at_the_deadline_of_a_streamed_get(raw_server: Any) -> None:
    """A download's GET: the head within its deadline (the body is watched for stalls as it comes)."""
    url = raw_server(dripping(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" + b"X-Pad: y\r\n" * 20 + b"\r\nok", 0.3))
    started = time.monotonic()
    with pytest.raises(AnswerTimeout) as caught:
        HttpLink().get(url, timeout=(2, 2), deadline=1.5)
    assert caught.value.code == "answer-timeout" and time.monotonic() - started < 4


def whole(head: bytes, body: bytes) -> Any:
    def answer(connection: socket.socket) -> None:
        with connection:
            connection.recv(65536)
            try:
                connection.sendall(head + body)
            except OSError:
                pass
    return answer


@pytest.mark.parametrize(("head", "code"), [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 3000000\r\n\r\n", "answer-too-large"),     # said in advance
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", "answer-too-large"),            # found while reading
    (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 10\r\n\r\n", "answer-encoding"),
])
def test_an_answer_over_its_bounds_is_refused(head: bytes, code: str, raw_server: Any) -> None:
    url = raw_server(whole(head, b"x" * 3_000_000 if b"gzip" not in head else b"\x1f\x8b" + b"\0" * 8))
    with pytest.raises(AnswerError) as caught:
        HttpLink().exchange("GET", url, timeout=(2, 2), deadline=10, limit=1 << 20)
    assert caught.value.code == code


def test_an_answer_that_breaks_off_is_a_coded_error(raw_server: Any) -> None:
    url = raw_server(whole(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", b"12345"))
    with pytest.raises(AnswerError) as caught:
        HttpLink().exchange("GET", url, timeout=(2, 2), deadline=5, limit=1 << 20)
    assert caught.value.code == "answer-broken"


def test_no_cookie_is_kept_or_sent(raw_server: Any) -> None:
    requests_seen: list[bytes] = []

    def answer(connection: socket.socket) -> None:
        with connection:
            requests_seen.append(connection.recv(65536))
            connection.sendall(b"HTTP/1.1 200 OK\r\nSet-Cookie: big=" + b"x" * 4000 + b"; Path=/\r\n"
                               b"Content-Length: 2\r\nConnection: close\r\n\r\n{}")

    url = raw_server(answer)
    link = HttpLink()
    for _ in range(3):
        assert link.exchange("GET", url, timeout=(2, 2), deadline=5, limit=1 << 20).body == b"{}"
    assert len(requests_seen) == 3 and not any(b"cookie" in request.lower() for request in requests_seen)
    assert len(link.session.cookies) == 0


def test_proxies_come_from_the_configuration_or_else_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("https_proxy", "http://env-proxy:3128")
    monkeypatch.setenv("no_proxy", "internal.example")
    assert HttpLink()._proxies("https://cdn.example/x").get("https") == "http://env-proxy:3128"
    assert "https" not in HttpLink()._proxies("https://internal.example/x")
    assert HttpLink(proxy="http://configured:8080")._proxies("https://cdn.example/x") == {
        "http": "http://configured:8080", "https": "http://configured:8080"}
