"""A hostile DDI server, and a foreign host: what a device meets when its server lies.

``HostileDdiServer`` is the reference server (ddi.py) whose answers a test
changes, route by route (``root``, ``deployment``, ``cancel``, ``feedback``,
``config``, ``artifact``):

* ``rewrite``: a function from the JSON the reference server would send to
  the JSON sent instead (an id that is a path, a link to another host, an
  http link from an https server, the same action offered again);
* ``reply``: an answer of its own sent in place of the reference one (huge,
  dripping one byte at a time, nested without end, a redirect, any status);
* ``times``: how many answers a trick changes; after that the reference
  server answers again (None: every answer);
* ``when``: which requests it applies to, by their body (a feedback's text).

``ForeignHost`` is another origin on loopback (another port, http or https)
that records every request it gets, headers included, and serves files or
redirects: where a leaked token, or a request that should never have been
made, shows up.
"""

from __future__ import annotations

import re
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agent.demo.ddi_server import DdiServer, _Handler

ROUTES = ("root", "deployment", "cancel", "feedback", "config", "artifact")
_ROUTE = re.compile(r"^/[^/]+/controller/v1/[^/]+(?P<rest>/.*)?$")


@dataclass(frozen=True)
class Reply:
    """An answer sent as is: ``chunks`` are written one by one, ``interval`` seconds apart."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    chunks: Callable[[], Iterator[bytes]] = lambda: iter(())
    interval: float = 0.0


def answer(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, {"Content-Type": "application/json", "Content-Length": str(len(body)), **(headers or {})},
                 lambda: iter((body,)))


def huge(size: int, *, declared: bool = True) -> Reply:
    """A JSON string of ``size`` bytes, with a Content-Length or (``declared=False``) chunked."""
    head, tail = b'{"config": {"polling": {"sleep": "00:00:01"}}, "pad": "', b'"}'

    def chunks() -> Iterator[bytes]:
        yield head
        left = size
        while left > 0:
            yield b"x" * min(left, 1 << 20)
            left -= 1 << 20
        yield tail
    length = {"Content-Length": str(len(head) + size + len(tail))} if declared else {"Transfer-Encoding": "chunked"}
    return Reply(200, {"Content-Type": "application/json", **length}, chunks)


def drip(body: bytes, interval: float) -> Reply:
    """``body`` one byte every ``interval`` seconds, its length announced."""
    return Reply(200, {"Content-Type": "application/json", "Content-Length": str(len(body))},
                 lambda: (body[i:i + 1] for i in range(len(body))), interval)


def nested(depth: int) -> Reply:
    return answer(200, b"[" * depth + b"]" * depth)


def redirect(location: str, status: int = 302) -> Reply:
    return answer(status, headers={"Location": location})


@dataclass
class Trick:
    route: str
    rewrite: Callable[[Any], Any] | None = None
    reply: Reply | None = None
    times: int | None = None
    when: Callable[[bytes], bool] | None = None
    used: int = 0


class HostileDdiServer(DdiServer):
    """The reference server, with tricks: ``server.add("deployment", rewrite=...)``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tricks: list[Trick] = []
        self.tricks_lock = threading.Lock()      # apart: answers are rewritten under the model's lock

    def add(self, route: str, *, rewrite: Callable[[Any], Any] | None = None, reply: Reply | None = None,
            times: int | None = None, when: Callable[[bytes], bool] | None = None) -> Trick:
        if route not in ROUTES or (rewrite is None) == (reply is None):
            raise ValueError(f"a trick needs a route of {ROUTES} and one of rewrite and reply")
        trick = Trick(route, rewrite, reply, times, when)
        with self.tricks_lock:
            self.tricks.append(trick)
        return trick

    def clear(self) -> None:
        with self.tricks_lock:
            self.tricks.clear()

    def take(self, route: str, kind: str, body: bytes = b"") -> Trick | None:
        """The first trick of ``kind`` (rewrite or reply) still in force for ``route`` and a request
        with ``body``, counted as used."""
        with self.tricks_lock:
            for trick in self.tricks:
                if trick.route == route and getattr(trick, kind) is not None \
                        and (trick.times is None or trick.used < trick.times) \
                        and (trick.when is None or trick.when(body)):
                    trick.used += 1
                    return trick
        return None

    def handler_class(self) -> type[_Handler]:
        return _HostileHandler


def route_of(method: str, path: str) -> str | None:
    match = _ROUTE.match(urlsplit(path).path)
    if match is None:
        return None
    rest = match["rest"] or ""
    if rest == "":
        return "root"
    if rest.endswith("/feedback"):
        return "feedback"
    if rest == "/configData":
        return "config"
    for prefix, route in (("/deploymentBase/", "deployment"), ("/cancelAction/", "cancel"),
                          ("/softwaremodules/", "artifact")):
        if rest.startswith(prefix):
            return route
    return None


class _HostileHandler(_Handler):
    server_model: HostileDdiServer

    def _dispatch(self, method: str, raw: bytes) -> None:
        self._route, self._body = route_of(method, self.path), raw
        trick = self.server_model.take(self._route, "reply", raw) if self._route else None
        if trick is None:
            return super()._dispatch(method, raw)
        reply = trick.reply
        assert reply is not None
        self.send_response(reply.status)
        for key, value in reply.headers.items():
            self.send_header(key, value)
        self.end_headers()
        chunked = reply.headers.get("Transfer-Encoding") == "chunked"
        sent = 0
        try:
            for chunk in reply.chunks():
                if reply.interval:
                    time.sleep(reply.interval)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
                sent += len(chunk)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True        # the device hung up: as it should, often
        self._status, self._length, self._kept = reply.status, sent, b""

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        if body is not None and status < 300 and getattr(self, "_route", None):
            trick = self.server_model.take(self._route, "rewrite", self._body)
            if trick is not None:
                assert trick.rewrite is not None
                body = trick.rewrite(body)
                headers = {k: v for k, v in (headers or {}).items() if k != "ETag"}  # not the true answer's
        super()._send(status, body, headers)


# --- another origin ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]


class ForeignHost:
    """``with ForeignHost() as host:`` serves ``host.url`` (another origin than the DDI server's):
    ``files`` by path, ``redirects`` by path; every request lands in ``seen``."""

    def __init__(self, *, tls: tuple[Path, Path] | None = None) -> None:
        self.tls = tls
        self.files: dict[str, bytes] = {}
        self.redirects: dict[str, str] = {}
        self.seen: list[Seen] = []
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._httpd is not None
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> "ForeignHost":
        host = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                host.seen.append(Seen("GET", self.path, dict(self.headers.items())))
                path = urlsplit(self.path).path
                if path in host.redirects:
                    self.send_response(302)
                    self.send_header("Location", host.redirects[path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = host.files.get(path)
                self.send_response(200 if data is not None else 404)
                self.send_header("Content-Length", str(len(data or b"")))
                self.end_headers()
                self.wfile.write(data or b"")

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        if self.tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*self.tls)
            self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        threading.Thread(target=self._httpd.serve_forever, name="foreign-host", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._httpd is not None
        self._httpd.shutdown()
        self._httpd.server_close()
