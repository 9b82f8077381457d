"""Where fwagent's HTTP requests may go, and whether credentials go with them (pure).

Only the configuration is trusted. The links a DDI server hands out (its
deploymentBase and cancelAction hrefs, its artifacts' download links) and
every redirect are the server's words, or the words of whoever answers in
its place on the network. So:

* Credentials (the target or gateway token, the server's client
  certificate) go to the configured server's origin only: the same scheme,
  host and port as ``[server].url``.
* With a server, a link to any other host (an artifact's, a redirect's, a
  signed manifest's own URI) is followed only when ``[download].hosts`` lists
  that host (``host`` for any port, ``host:port`` for one), and never carries
  the server's credentials; nor may a link carry a user name or password of
  its own. Without a server (``fwagent install URL``) the operator's URL and
  the signed manifest's are what is trusted, and any host is allowed.
* Nothing goes down from https to http: with an https server every link must
  be https, and no redirect leads from https to http.
* http and https only: a ``file://`` or any other scheme is refused for good.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from agent.errors import FwagentError
from agent.log import redact

DEFAULT_PORTS = {"http": 80, "https": 443}
_UNSAFE = re.compile(r"[^\x21-\x7e]|\\")     # anything but printable ASCII, and the backslash


class LinkError(FwagentError, ValueError):
    """A link that the policy refuses; permanent, whoever asks again."""

    code = "link"


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str            # lower case; an IPv6 address without its brackets
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def origin_of(url: str) -> Origin:
    """The origin of an http(s) URL, as the HTTP stack that sends it will see it.

    Two URL parsers that disagree are how a link says one host to a check and
    another to the connection (``http://evil\\@server/``): so only printable
    ASCII without a backslash is taken (an international host name must come
    as punycode), urllib.parse's reading is the one connected to (a request
    sent through urllib3 must read the same: agent/net/http.py checks), and
    anything else is a LinkError (``unsupported-link``)."""
    shown = redact(url)[:200]
    if _UNSAFE.search(url):
        raise LinkError(f"{shown!r}: a link is printable ASCII without spaces or backslashes",
                        code="unsupported-link")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise LinkError(f"{shown!r} is not a URL", code="unsupported-link") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise LinkError(f"{shown!r}: scheme {scheme or 'none'!r} is not http or https", code="unsupported-link")
    host = (parts.hostname or "").lower()
    if not host:
        raise LinkError(f"{shown!r} names no host", code="unsupported-link")
    return Origin(scheme, host, port or DEFAULT_PORTS[scheme])


@dataclass(frozen=True)
class LinkPolicy:
    server: Origin | None = None              # the configured server: the only one given credentials
    hosts: frozenset[str] = frozenset()       # other hosts allowed: "host" (any port) or "host:port"
    netloc: str = ""                          # the configured URL's authority, user name and password included

    @classmethod
    def for_server(cls, url: str | None, hosts: tuple[str, ...] = ()) -> "LinkPolicy":
        if not url:
            return cls(None, frozenset(h.lower() for h in hosts))
        return cls(origin_of(url), frozenset(h.lower() for h in hosts), urlsplit(url).netloc)

    @property
    def https_only(self) -> bool:
        return self.server is not None and self.server.scheme == "https"

    def admit(self, url: str, *, after: str | None = None) -> bool:
        """Admit ``url`` (or raise a LinkError saying why not); True when it is the server's own
        origin, the only one the server's credentials go to. ``after``: the URL that redirected here."""
        origin = origin_of(url)
        if self.server is not None and "@" in urlsplit(url).netloc and urlsplit(url).netloc != self.netloc:
            raise LinkError(f"{redact(url)[:200]}: a link carries no user name or password", code="unsupported-link")
        if origin.scheme == "http" and (self.https_only or (after is not None and origin_of(after).scheme == "https")):
            raise LinkError(f"{redact(url)[:200]}: plain http after https; the link must be https",
                            code="insecure-link")
        if origin == self.server:
            return True
        if self.server is None or self._listed(origin):
            return False
        raise LinkError(f"{redact(url)[:200]}: {origin.host} is neither the server ({self.server.host}) nor a "
                        "host [download].hosts lists", code="foreign-link")

    def require_server(self, url: str) -> None:
        """A link that must lead back to the server itself (the DDI controller's own resources)."""
        if not self.admit(url):
            raise LinkError(f"{redact(url)[:200]}: a controller link must stay on the server "
                            f"{self.server}", code="foreign-link")

    def _listed(self, origin: Origin) -> bool:
        host = f"[{origin.host}]" if ":" in origin.host else origin.host
        return bool({host, f"{host}:{origin.port}"} & self.hosts)
