"""HttpLink: every HTTP request fwagent makes goes through here.

* TLS settings come from the configuration alone and go with every request:
  the server's CA and client certificate for the server's origin, the
  ``[download]`` ones for any other host, the system's CAs where none is
  configured. ``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE`` and ``~/.netrc``
  have no say, and no cookie is kept; proxies come from ``[download].proxy``
  or, read explicitly, from the usual ``https_proxy``/``no_proxy`` variables.
* Redirects are followed here, GET only, at most ``MAX_REDIRECTS``, each hop
  checked by the LinkPolicy (policy.py); credentials are added hop by hop, to
  the server's origin only.
* A deadline bounds a whole exchange from the moment the request is sent, not
  each read alone: a watchdog shuts the socket down when it passes, so a
  server that sends one byte a second cannot hold a request (or the daemon)
  for longer. Before that, connecting is bounded by the connect timeout (per
  address the name resolves to) and name resolution by the system's resolver.
* An answer read whole (``exchange``: JSON) is bounded in size, and identity
  encoding is asked for and required, so nothing is inflated on the device.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

from agent import __version__
from agent.errors import FwagentError
from agent.log import redact
from agent.net.direct import decimal, shut
from agent.net.policy import LinkError, LinkPolicy, origin_of

MAX_REDIRECTS = 5
REDIRECTS = (301, 302, 303, 307, 308)
READ_SIZE = 64 << 10


class AnswerError(FwagentError, ValueError):
    """An answer too large, or in an encoding fwagent does not accept."""

    code = "answer"


class AnswerTimeout(FwagentError, TimeoutError):
    """The whole exchange took longer than its deadline (however slowly bytes kept coming)."""

    code = "answer-timeout"


@dataclass(frozen=True)
class Tls:
    verify: str | bool = True                 # a CA file, or True: the system's CAs (system_cas); never off
    cert: tuple[str, str] | None = None       # client certificate and key

    @classmethod
    def of(cls, ca_file: Any = None, client_cert: Any = None, client_key: Any = None) -> "Tls":
        """From configured paths (None: the system's CAs, no client certificate)."""
        return cls(verify=str(ca_file) if ca_file else True,
                   cert=(str(client_cert), str(client_key)) if client_cert else None)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str                                  # after redirects


class HttpLink:
    """``credentials``: headers (Authorization) for the server's origin only."""

    def __init__(self, policy: LinkPolicy = LinkPolicy(), *, server_tls: Tls = Tls(), other_tls: Tls = Tls(),
                 credentials: Mapping[str, str] | None = None, proxy: str | None = None) -> None:
        self.policy = policy
        self.server_tls = server_tls
        self.other_tls = other_tls
        self.credentials = dict(credentials or {})
        self.proxy = proxy
        self._session: Any = None
        self._contexts: dict[Tls, tuple[tuple[float, ...], Any]] = {}   # (the files' times, context)
        self._idle: dict[Any, socket.socket] = {}      # kept connections of direct GETs
        self._lock = threading.Lock()

    @property
    def session(self) -> Any:
        """Made on first use: requests costs several MiB, and an install from a file needs none."""
        with self._lock:
            if self._session is None:
                self._session = _new_session()
            return self._session

    def get(self, url: str, *, headers: Mapping[str, str] | None = None, timeout: tuple[float, float],
            deadline: float | None = None) -> "StreamAnswer":
        """A GET whose body the caller reads as it arrives (``read1``) and closes; redirects followed.
        ``deadline``: seconds until the answer's head is in, over every hop. A hop that no proxy
        serves goes on a connection of its own (direct.py), the others through requests. Failures:
        LinkError, AnswerTimeout, TlsError, or another OSError (the transfer broke)."""
        with _Watch(deadline) as watch:
            try:
                return self._follow("GET", url, lambda hop, to_server: self._get_hop(hop, headers or {}, timeout,
                                                                                     to_server))
            except OSError:
                if watch.expired:
                    raise watch.timeout("GET", url) from None
                raise

    def exchange(self, method: str, url: str, *, headers: Mapping[str, str] | None = None, json: Any = None,
                 timeout: tuple[float, float], deadline: float, limit: int) -> Answer:
        """A whole answer within ``deadline`` seconds, its body at most ``limit`` bytes."""
        import urllib3

        with _Watch(deadline) as watch:
            sent = {**(headers or {}), "Accept-Encoding": "identity"}
            response = self._follow(method, url, lambda hop, to_server: self._send(method, hop, sent, json, timeout,
                                                                                   to_server))
            try:
                body = _read_bounded(response, limit)
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                if watch.expired:
                    raise watch.timeout(method, url) from None
                raise AnswerError(f"{method} {redact(url)}: the answer broke off: {type(exc).__name__}",
                                  code="answer-broken") from None
            finally:
                watch.release()          # before the connection goes back to the pool, for another request
                response.close()
            if watch.expired:            # the watchdog's shutdown looks like the end of a close-delimited body
                raise watch.timeout(method, url)
        return Answer(response.status_code, response.headers, body, response.url)

    # --- plumbing -----------------------------------------------------------------------

    def _follow(self, method: str, url: str, hop: Callable[[str, bool], Any]) -> Any:
        """``hop(url, to_server)`` for ``url`` and each redirect (GET only), every hop admitted by
        the policy first; the last answer."""
        current, previous = url, None
        for _ in range(MAX_REDIRECTS + 1):
            to_server = self.policy.admit(current, after=previous)
            response = hop(current, to_server)
            if method != "GET" or response.status_code not in REDIRECTS or "Location" not in response.headers:
                return response
            location = response.headers["Location"]
            if (watch := _Watch.current()) is not None:
                watch.release()
            response.close()
            previous, current = current, urljoin(current, location)
        raise LinkError(f"{redact(url)}: more than {MAX_REDIRECTS} redirects", code="redirect-loop")

    def _send(self, method: str, url: str, headers: Mapping[str, str] | None, json: Any,
              timeout: tuple[float, float], to_server: bool) -> Any:
        tls = self.server_tls if to_server else self.other_tls
        sent = {**(headers or {}), **(self.credentials if to_server else {})}
        _urllib3_agrees(url)
        try:
            return self.session.request(method, url, headers=sent, json=json, stream=True, timeout=timeout,
                                        allow_redirects=False, verify=system_cas() if tls.verify is True else tls.verify,
                                        cert=tls.cert, proxies=self._proxies(url))
        except Exception:
            watch = _Watch.current()
            if watch is not None and watch.expired:
                raise watch.timeout(method, url) from None
            raise

    def _get_hop(self, url: str, headers: Mapping[str, str], timeout: tuple[float, float],
                 to_server: bool) -> "StreamAnswer":
        if self.proxy or _environment_proxy(url) or "@" in url.split("/", 3)[2]:
            # through a proxy, or with a user name in the URL (Basic credentials): requests' way
            return RequestsAnswer.of(lambda: self._send("GET", url, headers, None, timeout, to_server))
        from agent.net import direct

        tls = self.server_tls if to_server else self.other_tls
        sent = {"User-Agent": f"fwagent/{__version__}", "Accept-Encoding": "identity", **headers,
                **(self.credentials if to_server else {})}
        context = self._tls_context(tls) if url[:6].lower() == "https:" else None
        watch = _Watch.current()
        key = (origin_of(url), tls)
        with self._lock:
            idle = self._idle.pop(key, None)
        return direct.get(url, sent, timeout=timeout, tls=context, on_socket=watch.arm if watch else None,
                          idle=idle, keep=lambda sock: self._keep(key, sock))

    def _keep(self, key: Any, sock: socket.socket) -> None:
        """One idle connection per origin and TLS setting: the next GET there takes it."""
        with self._lock:
            old = self._idle.pop(key, None)
            self._idle[key] = sock
        if old is not None:
            old.close()

    def _tls_context(self, tls: Tls) -> Any:
        """One SSL context per TLS setting, made on first use (loading CAs costs), made again when
        one of its files has changed (a CA or a client certificate renewed)."""
        from agent.net import direct

        verify = system_cas() if tls.verify is True else tls.verify
        files = [path for path in (verify if isinstance(verify, str) else None, *(tls.cert or ())) if path]
        stamp = tuple(_mtime(path) for path in files)
        with self._lock:
            cached = self._contexts.get(tls)
            if cached is None or cached[0] != stamp:
                self._contexts[tls] = cached = (stamp, direct.tls_context(verify, tls.cert))
            return cached[1]

    def _proxies(self, url: str) -> dict[str, str]:
        if self.proxy:
            return {"http": self.proxy, "https": self.proxy}
        from requests.utils import get_environ_proxies
        return get_environ_proxies(url)


class RequestsAnswer:
    """A streamed requests response, as direct.DirectAnswer reads: ``read1``, ``readinto1``,
    ``interrupt``, ``close``; its failures as OSErrors (TlsError for TLS)."""

    def __init__(self, response: Any) -> None:
        self.response = response
        self.status_code, self.reason = response.status_code, response.reason
        self.headers, self.url = response.headers, response.url

    @classmethod
    def of(cls, send: Any) -> "RequestsAnswer":
        import requests

        from agent.net.direct import TlsError, TransferError
        try:
            return cls(send())
        except requests.exceptions.SSLError as exc:
            raise TlsError(f"TLS: {exc}", code="tls") from None
        except requests.RequestException as exc:
            raise TransferError(_reason(exc), code="transfer") from None

    def read1(self, size: int) -> bytes:
        import requests
        import urllib3

        from agent.net.direct import TransferError
        try:
            return self.response.raw.read1(size, decode_content=False)
        # AttributeError: http.client's read1 trips over its own closed file object when an
        # interrupt shuts the socket down under it.
        except (requests.RequestException, urllib3.exceptions.HTTPError, AttributeError) as exc:
            raise TransferError(_reason(exc), code="transfer") from None

    def readinto1(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read1(len(view))
        view[:len(data)] = data
        return len(data)

    def interrupt(self) -> None:
        """End a blocked read from another thread: shut the socket down (closing the response
        under a reader makes http.client fail in odd ways); the reader then sees the end."""
        sock = _socket_of(self.response)
        if sock is not None:
            shut(sock)
        else:
            with contextlib.suppress(OSError):     # already closed: nothing left to interrupt
                self.response.close()

    def close(self) -> None:
        self.response.close()

    def __enter__(self) -> "RequestsAnswer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


StreamAnswer = Any     # direct.DirectAnswer or RequestsAnswer: status_code, reason, headers, url, read1,
                       # readinto1, interrupt, close


def _socket_of(response: Any) -> socket.socket | None:
    """The socket under a streamed response: once the head is read, urllib3's connection no
    longer holds it; http.client's response file does (fp -> buffered reader -> SocketIO)."""
    fp = getattr(getattr(response.raw, "_fp", None), "fp", None)
    sock = getattr(getattr(fp, "raw", None), "_sock", None)
    if sock is None:
        sock = getattr(getattr(response.raw, "_connection", None), "sock", None)
    return sock if isinstance(sock, socket.socket) else None


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return -1.0          # missing: tls_context says so


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:300]


def _environment_proxy(url: str) -> bool:
    """Whether a proxy variable is set for the URL's scheme (requests then decides, no_proxy too)."""
    scheme = url.split(":", 1)[0].lower()
    return any(os.environ.get(name) for name in (f"{scheme}_proxy", f"{scheme.upper()}_PROXY", "all_proxy",
                                                  "ALL_PROXY"))


def _urllib3_agrees(url: str) -> None:
    """Two URL parsers that disagree are how a link says one host to a check and another to the
    connection: urllib3 must see the scheme, host and port LinkPolicy saw (urllib.parse's)."""
    from urllib.parse import urlsplit

    from urllib3.exceptions import LocationParseError
    from urllib3.util import parse_url
    try:
        parts, sent = urlsplit(url), parse_url(url)
        seen = (parts.scheme.lower(), (parts.hostname or "").lower(), parts.port)
    except (ValueError, LocationParseError):
        raise LinkError(f"{redact(url)[:200]!r} is not a URL", code="unsupported-link") from None
    if ((sent.scheme or "").lower(), (sent.host or "").lower().strip("[]"), sent.port) != seen:
        raise LinkError(f"{redact(url)[:200]!r}: its host is ambiguous", code="unsupported-link")


def system_cas() -> str | bool:
    """The system's CA certificates where OpenSSL finds them (its default file or directory, or
    ``SSL_CERT_FILE``/``SSL_CERT_DIR``), as MQTT uses them; not the copy requests carries."""
    import ssl

    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.capath):
        if candidate and os.path.exists(candidate):
            return candidate
    return True


def _read_bounded(response: Any, limit: int) -> bytes:
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise AnswerError(f"{redact(response.url)}: the answer is {encoding}-encoded; identity was asked for",
                          code="answer-encoding")
    length = response.headers.get("Content-Length", "")
    if (declared := decimal(length)) is not None and declared > limit:
        raise AnswerError(f"{redact(response.url)}: the answer has {length} bytes, more than the {limit} "
                          "allowed", code="answer-too-large")
    parts, total = [], 0
    while chunk := response.raw.read(READ_SIZE, decode_content=False):
        total += len(chunk)
        if total > limit:
            raise AnswerError(f"{redact(response.url)}: the answer is longer than the {limit} bytes allowed",
                              code="answer-too-large")
        parts.append(chunk)
    return b"".join(parts)


class _Watch:
    """Shuts down the socket of the request on this thread when ``seconds`` have passed.

    The connection classes below hand their socket over as the answer is
    awaited (``getresponse``); a read blocked on it then returns at once."""

    _local = threading.local()

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.lock = threading.Lock()
        self.sock: socket.socket | None = None
        self.expired = False
        self.done = False
        self.timer: threading.Timer | None = None

    @classmethod
    def current(cls) -> "_Watch | None":
        return getattr(cls._local, "watch", None)

    def __enter__(self) -> "_Watch":
        if self.seconds is not None:
            self._local.watch = self
            self.timer = threading.Timer(self.seconds, self._expire)
            self.timer.daemon = True
            self.timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.timer is not None:
            self.timer.cancel()
            with self.lock:
                self.done, self.sock = True, None
            self._local.watch = None

    def release(self) -> None:
        """The socket is no longer this request's (it goes back to the pool): never shut it."""
        with self.lock:
            self.sock = None

    def timeout(self, method: str, url: str) -> AnswerTimeout:
        return AnswerTimeout(f"{method} {redact(url)}: no whole answer within {self.seconds:g} s",
                             code="answer-timeout")

    def arm(self, sock: socket.socket) -> None:
        with self.lock:
            if self.done:
                return
            self.sock = sock
            if self.expired:
                shut(sock)

    def _expire(self) -> None:
        with self.lock:
            if self.done:
                return
            self.expired = True
            if self.sock is not None:
                shut(self.sock)


def _new_session() -> Any:
    from http.cookiejar import DefaultCookiePolicy

    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
    from urllib3.poolmanager import ProxyManager

    def watched(base: type) -> type:
        class Watched(base):  # type: ignore[misc, valid-type]
            def getresponse(self, *args: Any, **kwargs: Any) -> Any:
                watch = _Watch.current()
                if watch is not None and self.sock is not None:
                    watch.arm(self.sock)
                return super().getresponse(*args, **kwargs)
        return Watched

    pools = {"http": type("WatchedPool", (HTTPConnectionPool,), {"ConnectionCls": watched(HTTPConnection)}),
             "https": type("WatchedTlsPool", (HTTPSConnectionPool,), {"ConnectionCls": watched(HTTPSConnection)})}

    class Adapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = pools

        def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
            manager = super().proxy_manager_for(proxy, **kwargs)
            if type(manager) is ProxyManager:     # not SOCKS: its pools are its own
                manager.pool_classes_by_scheme = pools
            return manager

    session = requests.Session()
    session.trust_env = False      # no CA bundle, proxy or .netrc credentials from the environment
    session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))    # DDI needs none: none are kept
    for prefix in ("http://", "https://"):
        session.mount(prefix, Adapter())
    return session

