"""The DDI client: the HTTP side of agent/ddi/codec.py.

Every request has a deadline for the whole exchange and a bound on the
answer's size; the token goes to the server's origin only (agent/net/).
Answers are classified so that the daemon can decide: 401/403 are
authentication errors (retried slowly, reported clearly), 429 carrying
hawkBit's quota error code is not retried blindly, 410 means the action is
closed on the server, other 4xx are permanent, 5xx and network errors
transient. The root poll sends If-None-Match with the last ETag; a 304
returns the last answer again.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from agent.ddi.codec import (ACTION_ID, Cancel, DdiFormatError, Deployment, RootPoll, load_json, parse_cancel,
                             parse_deployment, parse_root)
from agent.errors import FwagentError
from agent.net.http import Answer, AnswerError, AnswerTimeout, HttpLink
from agent.log import redact
from agent.net.policy import LinkError, LinkPolicy

QUOTA_ERRORS = ("hawkbit.server.error.quota",)     # errorCode prefix of quota answers


class DdiError(FwagentError, ConnectionError):
    code = "ddi"

    def __init__(self, detail: str, *, code: str = "ddi", status: int | None = None, transient: bool = False,
                 retry_after: float | None = None) -> None:
        super().__init__(detail, code=code)
        self.status = status
        self.transient = transient
        self.retry_after = retry_after


@dataclass(frozen=True)
class PollPolicy:
    """Local bounds around the server's suggestion, and the jitter that spreads a fleet."""

    minimum: float = 30.0
    maximum: float = 24 * 3600.0
    default: float = 300.0          # when the server suggests nothing
    jitter: float = 0.1             # +- this share of the interval
    startup_spread: float = 300.0   # the first poll comes within this many seconds of a start


def next_poll(suggested: float | None, policy: PollPolicy, rng: random.Random) -> float:
    """Seconds until the next poll: the server's sleep, bounded locally, with jitter (pure)."""
    base = policy.default if suggested is None else suggested
    base = min(max(base, policy.minimum), policy.maximum)
    return base * (1.0 + rng.uniform(-policy.jitter, policy.jitter))


def first_poll(policy: PollPolicy, rng: random.Random) -> float:
    """Seconds from a start to the first poll: random within ``startup_spread`` (pure).

    A fleet that powers up together (a site's power comes back) would otherwise
    poll in the same second, and keep doing so for hours with a small jitter.
    """
    return rng.uniform(0.0, max(policy.startup_spread, 0.0))


def poll_after_error(error: DdiError | None, failures: int, policy: PollPolicy, rng: random.Random) -> float:
    """Seconds until the next poll after ``failures`` failed ones in a row (pure).

    * Refused credentials (401/403): slowly, never sooner than the default
      interval, doubling up to the maximum: a device whose token was revoked must
      not hammer the server, and the operator sees the error in the log meanwhile.
    * A quota answer (429 with the quota code): the server's Retry-After, else the
      default interval; never the quick path.
    * Anything else (network, 5xx, a busy 429, an unreadable answer): exponential
      from the minimum with full jitter, capped at the default interval, or the
      server's Retry-After when it gives one.
    """
    code = error.code if error is not None else ""
    retry_after = getattr(error, "retry_after", None)
    if code == "ddi-auth":
        return min(policy.default * 2 ** (failures - 1), policy.maximum) * rng.uniform(1.0, 1.0 + policy.jitter)
    if code == "ddi-quota":
        return min(max(retry_after or policy.default, policy.minimum), policy.maximum)
    if retry_after:
        return min(max(retry_after, 1.0), policy.maximum)
    ceiling = min(policy.minimum * 2 ** (failures - 1), policy.default)
    return max(1.0, rng.uniform(0.0, ceiling))


def auth_header(target_token: str | None = None, gateway_token: str | None = None) -> dict[str, str]:
    """The Authorization header of a device (TargetToken) or of a gateway for its devices."""
    if target_token:
        return {"Authorization": f"TargetToken {target_token}"}
    if gateway_token:
        return {"Authorization": f"GatewayToken {gateway_token}"}
    return {}


class DdiClient:
    """The controller's side of DDI over an HttpLink (agent/net/http.py), which adds the token to
    requests for the server's origin only. Links the server hands out for its own resources
    must lead back to it (``foreign-link`` otherwise); every answer is bounded in time
    (``timeout`` seconds for the whole exchange) and size (``max_answer`` bytes)."""

    def __init__(self, base_url: str, tenant: str, controller_id: str, *, link: HttpLink,
                 timeout: tuple[float, float] = (10.0, 30.0), max_answer: int = 1 << 20) -> None:
        self.root_url = f"{base_url.rstrip('/')}/{tenant}/controller/v1/{controller_id}"
        self.link = link
        self.timeout = timeout
        self.max_answer = max_answer
        self.headers = {"Accept": "application/hal+json, application/json"}
        self._etag: str | None = None
        self._last: RootPoll | None = None

    @classmethod
    def for_server(cls, base_url: str, tenant: str, controller_id: str, *, target_token: str | None = None,
                   gateway_token: str | None = None, **kwargs: Any) -> "DdiClient":
        """A client with a link of its own (the system's CAs), for tools that only talk DDI."""
        link = HttpLink(LinkPolicy.for_server(base_url), credentials=auth_header(target_token, gateway_token))
        return cls(base_url, tenant, controller_id, link=link, **kwargs)

    def poll(self) -> RootPoll:
        headers = dict(self.headers)
        if self._etag and self._last is not None:
            headers["If-None-Match"] = self._etag
        answer = self._request("GET", self.root_url, headers=headers)
        if answer.status == 304 and self._last is not None:
            return self._last
        self._last = parse_root(self._json(answer))
        self._etag = answer.headers.get("ETag")
        return self._last

    def deployment(self, href: str) -> Deployment:
        return parse_deployment(self._json(self._request("GET", href, headers=self.headers, own=True)))

    def cancel_action(self, href: str) -> Cancel:
        return parse_cancel(self._json(self._request("GET", href, headers=self.headers, own=True)))

    def send_feedback(self, kind: str, action_id: str, body: dict[str, Any]) -> None:
        """``kind``: deploymentBase or cancelAction."""
        if kind not in ("deploymentBase", "cancelAction"):
            raise ValueError(f"feedback kind {kind!r}")
        if not ACTION_ID.fullmatch(action_id):
            raise DdiError(f"{action_id[:80]!r} is not an action id: nothing is sent for it", code="ddi-action-id")
        self._request("POST", f"{self.root_url}/{kind}/{action_id}/feedback", json=body, headers=self.headers)

    def send_config_data(self, body: dict[str, Any]) -> None:
        self._request("PUT", f"{self.root_url}/configData", json=body, headers=self.headers)

    # --- plumbing ------------------------------------------------------------------------

    def _request(self, method: str, url: str, *, own: bool = False, **kwargs: Any) -> Answer:
        """``own``: a link the server handed out, which must lead back to the server."""
        import requests

        shown = redact(url)
        try:
            if own:
                self.link.policy.require_server(url)
            answer = self.link.exchange(method, url, timeout=self.timeout, deadline=self.timeout[1],
                                        limit=self.max_answer, **kwargs)
        except LinkError as err:
            raise DdiError(f"{method} {err.detail}", code=f"ddi-{err.code}") from None
        except AnswerTimeout as err:
            raise DdiError(err.detail, code="ddi-timeout", transient=True) from None
        except AnswerError as err:
            code = {"answer-too-large": "ddi-too-large", "answer-broken": "ddi-unreachable"}.get(err.code, "ddi-format")
            raise DdiError(err.detail, code=code, transient=True) from None
        except requests.exceptions.SSLError as exc:
            raise DdiError(f"{method} {shown}: TLS: {exc}", code="ddi-tls") from None
        except requests.RequestException as exc:
            raise DdiError(f"{method} {shown}: {type(exc).__name__}", code="ddi-unreachable", transient=True) from None
        status = answer.status
        if 200 <= status < 300 or status == 304:
            return answer
        detail = f"{method} {shown}: HTTP {status}"
        if status < 400:
            raise DdiError(f"{detail}: a redirect fwagent does not follow here", code="ddi-redirect",
                           status=status, transient=True)
        if status in (401, 403):
            raise DdiError(f"{detail}: the server refused the device's credentials", code="ddi-auth",
                           status=status, transient=True)
        if status == 410:
            raise DdiError(f"{detail}: the action is closed on the server", code="ddi-gone", status=status)
        if status == 429:
            error = self._error_code(answer)
            quota = error.startswith(QUOTA_ERRORS)
            raise DdiError(f"{detail}: {error or 'too many requests'}", code="ddi-quota" if quota else "ddi-busy",
                           status=status, transient=not quota, retry_after=_seconds(answer.headers.get("Retry-After")))
        raise DdiError(detail, code=f"ddi-http-{status}", status=status, transient=status >= 500)

    @staticmethod
    def _json(answer: Answer) -> Any:
        return load_json(answer.body, redact(answer.url))

    @staticmethod
    def _error_code(answer: Answer) -> str:
        try:
            body = load_json(answer.body, "")
        except DdiFormatError:
            return ""
        return str(body.get("errorCode", ""))[:200] if isinstance(body, dict) else ""


def _seconds(value: str | None) -> float | None:
    return float(value) if value and value.strip().isdigit() and len(value.strip()) < 10 else None
