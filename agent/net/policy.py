"""Where fwagent's HTTP requests may go, and whether credentials go with them (pure).

Only the configuration is trusted. The links a DDI server hands out (its
deploymentBase and cancelAction hrefs, its artifacts' download links) and
every redirect are the server's words, or the words of whoever answers in
its place on the network. So:

* Credentials (the target or gateway token, the server's client
  certificate) go to the configured server's origin only: the same scheme,
  host and port as ``[server].url``.
* A link to any other host is followed only when ``[download].hosts`` lists
  that host (``host`` for any port, ``host:port`` for one), and never carries
  the server's credentials. Without a server (``fwagent install URL``, a
  signed manifest's own URIs) the operator's configuration and the signature
  are what is trusted, and any host is allowed.
* Nothing goes down from https to http: with an https server every link must
  be https, and no redirect leads from https to http.
* http and https only: a ``file://`` or any other scheme is refused for good.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from agent.errors import FwagentError
from agent.log import redact

DEFAULT_PORTS = {"http": 80, "https": 443}


class LinkError(FwagentError, PermissionError):
    """A link that the policy refuses; permanent, whoever asks again."""

    code = "link"


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"


def origin_of(url: str) -> Origin:
    """The origin of an http(s) URL; anything else is a LinkError (``unsupported-link``)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise LinkError(f"{redact(url)[:200]!r} is not a URL", code="unsupported-link") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise LinkError(f"{redact(url)[:200]!r}: scheme {scheme or 'none'!r} is not http or https",
                        code="unsupported-link")
    if not parts.hostname:
        raise LinkError(f"{redact(url)[:200]!r} names no host", code="unsupported-link")
    return Origin(scheme, parts.hostname.lower(), port or DEFAULT_PORTS[scheme])


@dataclass(frozen=True)
class LinkPolicy:
    server: Origin | None = None              # the configured server: the only one given credentials
    hosts: frozenset[str] = frozenset()       # other hosts allowed: "host" (any port) or "host:port"

    @classmethod
    def for_server(cls, url: str | None, hosts: tuple[str, ...] = ()) -> "LinkPolicy":
        return cls(origin_of(url) if url else None, frozenset(h.lower() for h in hosts))

    @property
    def https_only(self) -> bool:
        return self.server is not None and self.server.scheme == "https"

    def check(self, url: str, *, after: str | None = None) -> bool:
        """Whether ``url`` may be requested, and with the server's credentials (True) or without
        (False); a LinkError says why not. ``after``: the URL that redirected to this one."""
        origin = origin_of(url)
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
        if not self.check(url):
            raise LinkError(f"{redact(url)[:200]}: a controller link must stay on the server "
                            f"{self.server}", code="foreign-link")

    def _listed(self, origin: Origin) -> bool:
        return origin.host in self.hosts or f"{origin.host}:{origin.port}" in self.hosts \
            or f"[{origin.host}]:{origin.port}" in self.hosts or f"[{origin.host}]" in self.hosts

