"""HTTP test infrastructure for the downloader: a real nginx and a faulty network.

* ``nginx_server(root, tmp)`` runs the system nginx on a free loopback port,
  serving ``root`` with its ordinary behaviour (sendfile, ETag, Range), as the
  current user, everything it writes kept under ``tmp``. With ``tls=TlsFiles(...)``
  it serves https (and asks for client certificates when ``client_ca`` is set).
* ``FaultProxy(upstream_port)`` sits between a client and that nginx and
  breaks connections on purpose, one planned fault per connection: ``Cut``,
  ``Reset``, ``Stall``, ``Drip``, ``Status``, ``Pass``. Every relayed response
  carries ``Connection: close``, so one connection carries one request.
* ``swap_file``, ``sparse_file``, ``random_file`` prepare what nginx serves.

No pytest code runs at import, so a benchmark or a subprocess can use these
helpers too; ``require_nginx()`` is the one pytest-aware function.
"""

from __future__ import annotations

import hashlib
import http
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Self

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from agent.demo.local import free_port, stop_process

MiB = 1 << 20

# Every socket operation of the proxy is bounded by this (seconds).
IO_TIMEOUT = 10.0
MAX_HEAD = 64 * 1024


# --------------------------------------------------------------------- nginx


def nginx_binary() -> str | None:
    """Path of the nginx binary: on PATH, else in the sbin directories (Debian), else None."""
    from conftest import SBIN
    return shutil.which("nginx") or shutil.which("nginx", path=os.pathsep.join(SBIN))


def nginx_has_tls(binary: str) -> bool:
    """Whether this nginx was built with the SSL module (Debian's nginx-light is)."""
    done = subprocess.run([binary, "-V"], capture_output=True, text=True, timeout=10)
    return "--with-http_ssl_module" in done.stdout + done.stderr


def require_nginx(*, tls: bool = False) -> str:
    """nginx's path; skip the test without it, fail it under CI (as ``require_tool``).
    With ``tls``, the same when nginx cannot serve https."""
    path = nginx_binary()
    if path and (not tls or nginx_has_tls(path)):
        return path
    from conftest import missing

    missing(f"{path} was built without the SSL module (apt-get install nginx-light, see README.md)" if path
            else "nginx is not installed (apt-get install nginx-light, see README.md)")
    raise AssertionError("unreachable")


def wait_for_port(port: int, timeout: float, alive=lambda: True) -> bool:
    """True once 127.0.0.1:port accepts a connection, False after ``timeout`` or when ``alive()`` turns false."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.02)
    return False


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for an https server: its certificate (for 127.0.0.1) and key; with
    ``client_ca``, clients must present a certificate signed by that CA (mutual TLS)."""

    cert: Path
    key: Path
    client_ca: Path | None = None


@dataclass
class NginxServer:
    port: int
    root: Path
    prefix: Path
    process: subprocess.Popen
    tls: TlsFiles | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def error_log(self) -> Path:
        return self.prefix / "error.log"

    @property
    def access_log(self) -> Path:
        return self.prefix / "access.log"


def _quoted(path: Path) -> str:
    text = str(path)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _tls_conf(tls: TlsFiles | None) -> str:
    """The server block's TLS directives (none for plain http)."""
    if tls is None:
        return ""
    lines = [f"ssl_certificate {_quoted(Path(tls.cert).resolve())};",
             f"ssl_certificate_key {_quoted(Path(tls.key).resolve())};"]
    if tls.client_ca is not None:
        lines += [f"ssl_client_certificate {_quoted(Path(tls.client_ca).resolve())};",
                  "ssl_verify_client on;"]
    return "".join(f"\n        {line}" for line in lines)


def _nginx_conf(root: Path, prefix: Path, port: int, tls: TlsFiles | None = None) -> str:
    def q(name: str) -> str:
        return _quoted(prefix / name)

    ssl = " ssl" if tls is not None else ""
    return f"""\
daemon off;
master_process off;
worker_processes 1;
error_log {q("error.log")} info;
pid {q("nginx.pid")};
lock_file {q("nginx.lock")};

events {{
    worker_connections 256;
}}

http {{
    access_log {q("access.log")};
    client_body_temp_path {q("client_body")};
    proxy_temp_path {q("proxy")};
    fastcgi_temp_path {q("fastcgi")};
    uwsgi_temp_path {q("uwsgi")};
    scgi_temp_path {q("scgi")};

    default_type application/octet-stream;
    sendfile on;
    etag on;
    keepalive_timeout 5s;

    server {{
        listen 127.0.0.1:{port}{ssl};
        server_name localhost;
        root {_quoted(root)};{_tls_conf(tls)}
        location / {{
        }}
    }}
}}
"""


@contextmanager
def nginx_server(root: Path, tmp: Path, *, start_timeout: float = 10.0,
                 tls: TlsFiles | None = None) -> Iterator[NginxServer]:
    """Run nginx serving ``root`` on 127.0.0.1 until the block ends; its files go under ``tmp``.

    With ``tls``, it serves https on that port (``.url`` starts with https://);
    the certificate must name the IP address 127.0.0.1 to be accepted.

    nginx runs in the foreground without a master process, so it needs no
    privileges and reads ``root`` as the current user. Raises RuntimeError
    (with nginx's error log) when it does not come up.
    """
    binary = nginx_binary()
    if binary is None:
        raise RuntimeError("nginx is not installed")
    root = Path(root).resolve()
    prefix = Path(tmp).resolve() / "nginx"
    prefix.mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    failures = []
    for _attempt in range(5):  # another process may take the free port first
        port = free_port()
        conf.write_text(_nginx_conf(root, prefix, port, tls))
        log = (prefix / "error.log").open("ab")
        try:
            proc = subprocess.Popen(
                [binary, "-p", f"{prefix}/", "-c", str(conf), "-e", str(prefix / "error.log")],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        finally:
            log.close()
        try:
            if wait_for_port(port, start_timeout, alive=lambda p=proc: p.poll() is None):
                yield NginxServer(port=port, root=root, prefix=prefix, process=proc, tls=tls)
                return
            failures.append((prefix / "error.log").read_text(errors="replace")[-2000:])
            if proc.poll() is None or "in use" not in failures[-1]:
                break
        finally:
            stop_process(proc)
    raise RuntimeError("nginx did not start:\n" + failures[-1] if failures else "nginx did not start")


# --------------------------------------------------------------------- files


def swap_file(path: Path, data: bytes) -> str:
    """Replace ``path`` atomically with ``data``; returns the ETag nginx will now send.

    nginx's ETag is "<mtime hex>-<size hex>" in whole seconds, so the new file
    gets an mtime whose second differs from the old file's.
    """
    path = Path(path)
    try:
        old = int(path.stat().st_mtime)
    except FileNotFoundError:
        old = None
    mtime = int(time.time())
    if old is not None and mtime == old:
        mtime = old + 1
    tmp = path.with_name(f".{path.name}.swap{os.getpid()}")
    tmp.write_bytes(data)
    os.utime(tmp, (mtime, mtime))
    os.replace(tmp, path)
    return f'"{mtime:x}-{len(data):x}"'


def nginx_etag(path: Path) -> str:
    """The ETag nginx sends for ``path`` as it is now."""
    st = Path(path).stat()
    return f'"{int(st.st_mtime):x}-{st.st_size:x}"'


def sparse_file(path: Path, size: int) -> Path:
    """A file of ``size`` zero bytes that takes no disk space (a hole)."""
    path = Path(path)
    with path.open("wb") as f:
        f.truncate(size)
    return path


def _keystream(seed: int):
    key = hashlib.sha256(f"fwagent-test-content:{seed}".encode()).digest()
    return lambda offset: Cipher(algorithms.AES(key), modes.CTR((offset // 16).to_bytes(16, "big"))).encryptor()


def random_bytes(size: int, seed: int = 0, offset: int = 0) -> bytes:
    """Bytes ``offset`` to ``offset + size`` of what ``random_file(path, ..., seed)`` writes."""
    skip = offset % 16
    return _keystream(seed)(offset).update(bytes(skip + size))[skip:]


def random_file(path: Path, size: int, seed: int = 0) -> str:
    """Write ``size`` pseudo-random bytes to ``path``; returns their SHA-256 (hex).

    The content is an AES-CTR keystream keyed by ``seed``: it never repeats,
    so a byte read from a wrong offset shows, and any slice can be recomputed
    with ``random_bytes``. Well under 1 ms per MiB.
    """
    digest = hashlib.sha256()
    stream = _keystream(seed)(0)
    zeros = bytes(MiB)
    with Path(path).open("wb") as f:
        left = size
        while left > 0:
            block = stream.update(zeros[: min(left, MiB)])
            f.write(block)
            digest.update(block)
            left -= len(block)
    return digest.hexdigest()


# --------------------------------------------------------------------- faults


@dataclass(frozen=True)
class Pass:
    """Relay the response cleanly."""


@dataclass(frozen=True)
class Cut:
    """Relay ``after_bytes`` of the response body, then close the connection (FIN)."""

    after_bytes: int


@dataclass(frozen=True)
class Reset:
    """Relay ``after_bytes`` of the response body, then reset the connection (RST)."""

    after_bytes: int


@dataclass(frozen=True)
class Stall:
    """Relay ``after_bytes`` of the body, then send nothing for ``seconds``, then close."""

    after_bytes: int
    seconds: float


@dataclass(frozen=True)
class Drip:
    """Relay the body at about ``bytes_per_second``."""

    bytes_per_second: float


@dataclass(frozen=True)
class Status:
    """Answer without asking upstream: status ``code``, extra ``headers``, ``body``; then close."""

    code: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


Fault = Pass | Cut | Reset | Stall | Drip | Status


class Headers(dict):
    """Request headers as sent; lookups ignore case (keys are stored lower-cased)."""

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__((k.lower(), v) for k, v in pairs)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def get(self, key: str, default=None):
        return super().get(key.lower(), default)


class Request(NamedTuple):
    method: str
    path: str
    headers: Headers


class _Closed(Exception):
    """The peer went away or the proxy is stopping."""


def _read_head(sock: socket.socket, stop: threading.Event) -> tuple[bytes, bytes]:
    """Read up to the end of an HTTP head; returns (head without the blank line, bytes after it)."""
    data = b""
    while b"\r\n\r\n" not in data:
        if stop.is_set() or len(data) > MAX_HEAD:
            raise _Closed
        try:
            chunk = sock.recv(65536)
        except OSError as e:
            raise _Closed from e
        if not chunk:
            raise _Closed
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


_HOP = {"connection", "keep-alive", "proxy-connection"}


def _split_head(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    lines = head.decode("latin-1").split("\r\n")
    pairs = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            pairs.append((name.strip(), value.strip()))
    return lines[0], pairs


def _join_head(first: str, pairs: list[tuple[str, str]]) -> bytes:
    """The head with hop-by-hop headers replaced by ``Connection: close``."""
    lines = [first] + [f"{k}: {v}" for k, v in pairs if k.lower() not in _HOP]
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _close(sock: socket.socket | None, *, reset: bool = False) -> None:
    if sock is None:
        return
    try:
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        else:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class FaultProxy:
    """A TCP proxy on 127.0.0.1 in front of an HTTP server that breaks connections to plan.

    Connection n (counted by requests received) gets the n-th fault of the
    plan; once the plan is used up, connections pass through cleanly.
    ``requests`` records (method, path, headers) of every request, in order,
    and ``applied`` the fault each one got. ``bytes_served`` counts response
    body bytes sent to clients (heads not counted: ``head_bytes_served``).
    """

    def __init__(self, upstream_port: int, plan: Iterable[Fault] = (), *, upstream_host: str = "127.0.0.1",
                 timeout: float = IO_TIMEOUT) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.timeout = timeout
        self.requests: list[Request] = []
        self.applied: list[Fault] = []
        self.bytes_served = 0
        self.head_bytes_served = 0
        self.connections = 0
        self.errors: list[str] = []
        self._plan: list[Fault] = list(plan)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._sockets: set[socket.socket] = set()
        self.port = 0

    # -- public ----------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, *faults: Fault) -> None:
        """Append faults to the plan (also while running)."""
        with self._lock:
            self._plan.extend(faults)

    @property
    def pending(self) -> list[Fault]:
        """Faults not yet used."""
        with self._lock:
            return list(self._plan)

    def wait_requests(self, n: int, timeout: float = 5.0) -> list[Request]:
        """Block until at least ``n`` requests were seen; TimeoutError after ``timeout``."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.requests) >= n, timeout):
                raise TimeoutError(f"{len(self.requests)} requests seen, waited for {n}")
            return list(self.requests)

    def start(self) -> Self:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        listener.settimeout(0.1)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._spawn(self._accept_loop, "faultproxy-accept")
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, close every connection, join the threads (bounded by ``timeout``)."""
        self._stop.set()
        _close(self._listener)
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads)
        if threads:
            threads[0].join(max(0.0, deadline - time.monotonic()))  # the accept loop
        with self._lock:
            sockets = list(self._sockets)
            threads = list(self._threads)
        for s in sockets:
            _close(s)
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- machinery -------------------------------------------------------

    def _spawn(self, target, name: str, *args) -> None:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self._lock:
            self._threads = [x for x in self._threads if x.is_alive() or x is self._threads[0]]
            self._threads.append(t)
        t.start()

    def _track(self, sock: socket.socket) -> socket.socket:
        sock.settimeout(self.timeout)
        with self._lock:
            self._sockets.add(sock)
        return sock

    def _untrack(self, sock: socket.socket | None, *, reset: bool = False) -> None:
        if sock is None:
            return
        with self._lock:
            self._sockets.discard(sock)
        _close(sock, reset=reset)

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
            self._spawn(self._serve, "faultproxy-conn", self._track(client))

    def _send(self, sock: socket.socket, data: bytes, counter: str | None = None) -> None:
        """Send all of ``data``, adding its length to the attribute named ``counter``."""
        if self._stop.is_set():
            raise _Closed
        try:
            sock.sendall(data)
        except OSError as e:
            raise _Closed from e
        if counter:
            with self._lock:
                setattr(self, counter, getattr(self, counter) + len(data))

    def _serve(self, client: socket.socket) -> None:
        upstream = None
        reset = False
        try:
            head, rest = _read_head(client, self._stop)
            first, pairs = _split_head(head)
            parts = first.split(" ")
            method, path = (parts + ["", ""])[:2]
            headers = Headers(pairs)
            length = int(headers.get("content-length", "0") or 0)
            while len(rest) < length:  # a request body goes upstream with the head
                try:
                    chunk = client.recv(65536)
                except OSError as e:
                    raise _Closed from e
                if not chunk:
                    raise _Closed
                rest += chunk
            with self._changed:
                fault = self._plan.pop(0) if self._plan else Pass()
                self.requests.append(Request(method, path, headers))
                self.applied.append(fault)
                self._changed.notify_all()

            if isinstance(fault, Status):
                self._answer(client, fault)
                return
            try:
                upstream = self._track(socket.create_connection(self.upstream, timeout=self.timeout))
            except OSError:
                self._answer(client, Status(502, body=b"upstream unreachable\n"))
                return
            self._send(upstream, _join_head(first, pairs) + rest)
            rhead, body = _read_head(upstream, self._stop)
            rfirst, rpairs = _split_head(rhead)
            self._send(client, _join_head(rfirst, rpairs), "head_bytes_served")
            reset = self._relay_body(client, upstream, body, fault)
        except _Closed:
            pass
        except Exception as e:  # noqa: BLE001 -- a bug in the proxy must not pass silently
            with self._lock:
                self.errors.append(f"{type(e).__name__}: {e}")
        finally:
            self._untrack(upstream)
            self._untrack(client, reset=reset)

    def _answer(self, client: socket.socket, fault: Status) -> None:
        try:
            reason = http.HTTPStatus(fault.code).phrase
        except ValueError:
            reason = "Status"
        pairs = list(fault.headers.items())
        if not any(k.lower() == "content-length" for k, _ in pairs):
            pairs.append(("Content-Length", str(len(fault.body))))
        self._send(client, _join_head(f"HTTP/1.1 {fault.code} {reason}", pairs), "head_bytes_served")
        if fault.body:
            self._send(client, fault.body, "bytes_served")

    def _relay_body(self, client: socket.socket, upstream: socket.socket, first: bytes, fault: Fault) -> bool:
        """Relay the response body under ``fault``; True when the client connection is to be reset."""
        limit = fault.after_bytes if isinstance(fault, Cut | Reset | Stall) else None
        rate = fault.bytes_per_second if isinstance(fault, Drip) else None
        sent = 0
        started = time.monotonic()
        pending = first
        while True:
            if not pending:
                try:
                    pending = upstream.recv(65536)
                except OSError as e:
                    raise _Closed from e
                if not pending:
                    break  # upstream finished the response
            if limit is not None:
                pending = pending[: limit - sent]
                if not pending:
                    break
            if rate is None:
                piece, pending = pending, b""
            else:
                piece, pending = pending[: max(1, int(rate / 20))], pending[max(1, int(rate / 20)):]
            self._send(client, piece, "bytes_served")
            sent += len(piece)
            if rate is not None:
                delay = started + sent / rate - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    raise _Closed
        if isinstance(fault, Stall):
            self._untrack(upstream)
            self._stop.wait(fault.seconds)
        return isinstance(fault, Reset)
