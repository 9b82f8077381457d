"""HTTP/1.1 GETs on sockets of their own, for downloads that are streamed: no requests, no urllib3.

A bundle streamed into its slots is the largest thing fwagent reads, and the
install that reads it should be small: requests and urllib3 cost about 12 MiB
of a process that otherwise needs under 30. A direct connection (no proxy)
needs none of what they do: this module sends a GET and reads its answer,
``Content-Length``, chunked or close-delimited, and imports ``ssl`` only for
https. A connection whose answer was read to its framed end may carry the
next GET to the same origin (a delta's ranges). HttpLink (http.py) decides which hop goes here and keeps every rule:
the policy admits each hop, credentials and TLS settings per origin,
redirects, the deadline watch.

Bounds: the answer's head (status line and headers) at most ``MAX_HEAD``
bytes and ``MAX_HEADERS`` lines, a chunk-size line at most ``MAX_LINE``;
each socket operation has the caller's timeout. The URL is split once, by
urllib.parse, the parser LinkPolicy checked it with, so what was admitted is
what is connected to. A header value sent must be one line (an ETag comes
from the server and goes back as If-Range).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from agent.errors import FwagentError

MAX_HEAD = 64 << 10
MAX_HEADERS = 100
MAX_LINE = 4096
NO_BODY = (204, 304)


def decimal(text: str | None) -> int | None:
    """A header's non-negative decimal number (ASCII digits only: ``str.isdigit`` also takes
    "²", which ``int`` refuses), or None."""
    if text is None or not 0 < len(text) <= 20 or not text.isascii() or not text.isdigit():
        return None
    return int(text)


class TransferError(FwagentError, ConnectionError):
    """An answer that is not HTTP/1.x, breaks a bound, or ends before its declared length."""

    code = "transfer"


class TlsError(FwagentError, ConnectionError):
    """The TLS handshake failed: the server's certificate, the client's, or the protocol."""

    code = "tls"


class Headers(Mapping[str, str]):
    """An answer's headers, looked up in any case; a repeated header's values joined by ", "."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._items: dict[str, tuple[str, str]] = {}
        for name, value in pairs:
            key = name.lower()
            if key in self._items:
                value = f"{self._items[key][1]}, {value}"
            self._items[key] = (name, value)

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()][1]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)


class DirectAnswer:
    """The answer to one GET, its head read; ``read1`` returns the body as it arrives."""

    def __init__(self, sock: socket.socket, url: str, status: int, reason: str, headers: Headers,
                 rest: bytes, *, keep: Callable[[socket.socket], None] | None = None,
                 persistent: bool = True) -> None:
        self.sock, self.url = sock, url
        self.status_code, self.reason, self.headers = status, reason, headers
        # Once the body is read to its framed end, the connection may serve the next GET: an
        # HTTP/1.1 answer that does not say close, framed by one length or by chunks alone.
        self._keep = keep if persistent and "close" not in headers.get("Connection", "").lower() else None
        self._buffer = rest                 # bytes received after the head, not yet handed out
        self._chunk_begun = False
        coding = headers.get("Transfer-Encoding", "").strip().lower()
        if coding not in ("", "chunked"):
            raise TransferError(f"{url}: Transfer-Encoding {coding[:40]!r}: identity was asked for", code="transfer")
        self._chunked = coding == "chunked"
        length = headers.get("Content-Length", "").strip()
        if self._chunked and length:
            self._keep = None               # framed twice: the chunks win, the connection is not trusted again
        self._left: int | None = None       # body bytes still due (of a length, or of the chunk)
        self._ended = status in NO_BODY
        if self._chunked:
            self._left = 0                  # no chunk begun yet
        elif length:
            self._left = decimal(length)
            if self._left is None:
                raise TransferError(f"{url}: Content-Length {length[:40]!r} is not a number", code="transfer")
            self._ended = self._ended or self._left == 0
        elif not self._ended:
            self._keep = None               # close-delimited: the connection ends with the body

    def read1(self, size: int) -> bytes:
        """Up to ``size`` bytes of the body, at most one receive's worth; b"" at its end. A body cut
        short of its length (or its last chunk) is a TransferError."""
        buffer = bytearray(size)
        return bytes(buffer[:self.readinto1(buffer)])

    def readinto1(self, buffer: Any) -> int:
        """``read1`` into ``buffer`` (no copy on the way): the count, 0 at the body's end."""
        view = memoryview(buffer).cast("B")
        if self._ended or not view:
            return 0
        if self._chunked and self._left == 0:
            self._left = self._next_chunk()
            if self._left == 0:
                self._end_chunks()
                return 0
        if self._left is not None:
            view = view[:self._left]
        count = self._take(view)
        if not count:
            if self._left is None:          # close-delimited: the end of the connection is the end
                self._ended = True
                return 0
            raise TransferError(f"{self.url}: the answer ended {self._left} bytes short", code="transfer")
        if self._left is not None:
            self._left -= count
            if self._left == 0 and not self._chunked:
                self._ended = True
        return count

    def interrupt(self) -> None:
        """From another thread: a read blocked on the socket returns (at its end)."""
        self._keep = None
        shut(self.sock)

    def close(self) -> None:
        """The connection goes back to ``keep`` when the body was read to its end and nothing
        more came; otherwise it is closed."""
        keep, self._keep = self._keep, None
        if keep is not None and self._ended and not self._buffer and not getattr(self.sock, "pending", int)():
            keep(self.sock)
        else:
            with contextlib.suppress(OSError):
                self.sock.close()
        self._ended = True

    def __enter__(self) -> "DirectAnswer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- framing ---------------------------------------------------------------------------

    def _take(self, view: memoryview) -> int:
        if self._buffer:
            count = min(len(view), len(self._buffer))
            view[:count], self._buffer = self._buffer[:count], self._buffer[count:]
            return count
        return self.sock.recv_into(view)

    def _line(self) -> bytes:
        while b"\r\n" not in self._buffer:
            if len(self._buffer) > MAX_LINE:
                raise TransferError(f"{self.url}: a chunk line longer than {MAX_LINE} bytes", code="transfer")
            data = self.sock.recv(MAX_LINE)
            if not data:
                raise TransferError(f"{self.url}: the answer ended inside its chunks", code="transfer")
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\r\n", 1)
        return line

    def _next_chunk(self) -> int:
        if self._chunk_begun:
            if self._line():                # the CRLF after the previous chunk's data
                raise TransferError(f"{self.url}: a chunk longer than its size", code="transfer")
        self._chunk_begun = True
        size = self._line().split(b";", 1)[0].strip()
        if not size or len(size) > 16 or any(c not in b"0123456789abcdefABCDEF" for c in size):
            raise TransferError(f"{self.url}: a chunk size {size[:20]!r} is not hexadecimal", code="transfer")
        return int(size, 16)

    def _end_chunks(self) -> None:
        for _ in range(MAX_HEADERS):        # trailer lines, up to the empty one
            if not self._line():
                self._ended = True
                return
        raise TransferError(f"{self.url}: more than {MAX_HEADERS} trailer lines", code="transfer")


def get(url: str, headers: Mapping[str, str], *, timeout: tuple[float, float], tls: Any = None,
        on_socket: Callable[[socket.socket], None] | None = None, idle: socket.socket | None = None,
        keep: Callable[[socket.socket], None] | None = None) -> DirectAnswer:
    """GET ``url`` (http, or https with ``tls``: an ssl.SSLContext), on ``idle`` (a kept
    connection to the same origin, with the same TLS) when it is still open, else on a new one.
    ``timeout``: (connect, read) seconds; ``on_socket(sock)`` as soon as it is connected (the
    deadline watch takes it there); ``keep(sock)`` takes the connection back once the answer
    is read to its end."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [f"GET {target} HTTP/1.1", f"Host: {_authority(host, parts.port)}"]
    for name, value in headers.items():
        if any(c in value for c in "\r\n\0") or any(c in name for c in "\r\n\0: "):
            if idle is not None:
                idle.close()
            raise TransferError(f"{url}: header {name[:40]!r} would not be one line", code="transfer")
        lines.append(f"{name}: {value}")
    sock = idle if idle is not None and _still_open(idle) else _connect(host, port, timeout, tls, on_socket)
    try:
        sock.settimeout(timeout[1])
        if on_socket is not None and sock is idle:
            on_socket(sock)
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("ascii"))
        rest = b""
        for _ in range(MAX_HEADERS):
            version, status, reason, fields, rest = _read_head(sock, url, rest)
            if not 100 <= status < 200 or status == 101:
                return DirectAnswer(sock, url, status, reason, Headers(fields), rest, keep=keep,
                                    persistent=version == "HTTP/1.1")
            # an interim answer (100 Continue): the real one follows
        raise TransferError(f"{url}: more than {MAX_HEADERS} interim answers", code="transfer")
    except BaseException:
        sock.close()
        raise


def _connect(host: str, port: int, timeout: tuple[float, float], tls: Any,
             on_socket: Callable[[socket.socket], None] | None) -> socket.socket:
    sock = socket.create_connection((host.encode("ascii"), port), timeout=timeout[0])   # no idna codec: ASCII
    try:
        sock.settimeout(timeout[1])
        if on_socket is not None:
            on_socket(sock)
        if tls is not None:
            try:
                sock = tls.wrap_socket(sock, server_hostname=host)
            except (OSError, ValueError) as exc:
                if isinstance(exc, TimeoutError):
                    raise
                raise TlsError(f"TLS: {exc}", code="tls") from None
            if on_socket is not None:
                on_socket(sock)
        return sock
    except BaseException:
        sock.close()
        raise


def _still_open(sock: socket.socket) -> bool:
    """A kept connection the server has not closed (nor sent anything on) meanwhile; closed if not."""
    try:
        sock.settimeout(0)                  # a look, not a wait
        if not socket.socket.recv(sock, 1, socket.MSG_PEEK):
            sock.close()
            return False
    except BlockingIOError:
        return True                         # nothing to read: open and quiet
    except OSError:
        sock.close()
        return False
    sock.close()                            # bytes nobody asked for
    return False


def shut(sock: socket.socket) -> None:
    """The plain socket's shutdown, also under TLS: SSLSocket's own would drop its state under
    the reading thread."""
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def tls_context(verify: str | bool, cert: tuple[str, str] | None) -> Any:
    """A client context: the CA file or directory ``verify`` (True: OpenSSL's defaults), the
    host name checked, and the client certificate."""
    import os
    import ssl

    if isinstance(verify, str) and not (os.path.isfile(verify) or os.path.isdir(verify)):
        # Never the system's CAs in place of a configured one that is missing.
        raise TlsError(f"TLS: the CA file {verify} is missing", code="tls")
    try:
        context = ssl.create_default_context(cafile=verify if isinstance(verify, str) and os.path.isfile(verify)
                                             else None,
                                             capath=verify if isinstance(verify, str) and os.path.isdir(verify)
                                             else None)
        if cert is not None:
            context.load_cert_chain(cert[0], cert[1])
    except (OSError, ValueError) as exc:     # ssl.SSLError is an OSError
        raise TlsError(f"TLS: the configured certificates cannot be loaded: {exc}", code="tls") from None
    return context


def _authority(host: str, port: int | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{port}" if port else shown


def _read_head(sock: socket.socket, url: str,
               received: bytes) -> tuple[str, int, str, list[tuple[str, str]], bytes]:
    """The HTTP version, status, reason and header fields of the answer ``received`` begins (read
    on from ``sock``), and the bytes after its head."""
    while b"\r\n\r\n" not in received:
        if len(received) > MAX_HEAD:
            raise TransferError(f"{url}: an answer head longer than {MAX_HEAD} bytes", code="transfer")
        data = sock.recv(MAX_HEAD)
        if not data:
            raise TransferError(f"{url}: the connection closed before an answer", code="transfer")
        received += data
    head, rest = received.split(b"\r\n\r\n", 1)
    if len(head) > MAX_HEAD:
        raise TransferError(f"{url}: an answer head longer than {MAX_HEAD} bytes", code="transfer")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    version, _, tail = status_line.partition(" ")
    code, _, reason = tail.partition(" ")
    if not version.startswith("HTTP/1.") or len(code) != 3 or decimal(code) is None:
        raise TransferError(f"{url}: not an HTTP/1.x answer: {status_line[:60]!r}", code="transfer")
    if len(lines) > MAX_HEADERS:
        raise TransferError(f"{url}: more than {MAX_HEADERS} header lines", code="transfer")
    fields = []
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip() or line[:1] in " \t":
            raise TransferError(f"{url}: a malformed header line {line[:60]!r}", code="transfer")
        fields.append((name, value.strip(" \t")))
    return version, int(code), reason, fields, rest
