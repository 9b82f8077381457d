"""The DDI client: the HTTP side of agent/ddi/codec.py.

Every request has a timeout. Answers are classified so that the daemon can
decide: 401/403 are authentication errors (retried slowly, reported clearly),
429 carrying hawkBit's quota error code is not retried blindly, 410 means the
action is closed on the server, other 4xx are permanent, 5xx and network
errors transient. The root poll sends If-None-Match with the last ETag; a 304
returns the last answer again.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from agent.ddi.codec import Cancel, Deployment, RootPoll, parse_cancel, parse_deployment, parse_root
from agent.errors import FwagentError

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


class DdiClient:
    def __init__(self, base_url: str, tenant: str, controller_id: str, *, session: Any,
                 target_token: str | None = None, gateway_token: str | None = None,
                 timeout: tuple[float, float] = (10.0, 30.0)) -> None:
        self.root_url = f"{base_url.rstrip('/')}/{tenant}/controller/v1/{controller_id}"
        self.session = session
        self.timeout = timeout
        self.headers = {"Accept": "application/hal+json, application/json"}
        if target_token:
            self.headers["Authorization"] = f"TargetToken {target_token}"
        elif gateway_token:
            self.headers["Authorization"] = f"GatewayToken {gateway_token}"
        self._etag: str | None = None
        self._last: RootPoll | None = None

    def poll(self) -> RootPoll:
        headers = dict(self.headers)
        if self._etag and self._last is not None:
            headers["If-None-Match"] = self._etag
        response = self._request("GET", self.root_url, headers=headers)
        if response.status_code == 304 and self._last is not None:
            return self._last
        self._last = parse_root(self._json(response))
        self._etag = response.headers.get("ETag")
        return self._last

    def deployment(self, href: str) -> Deployment:
        return parse_deployment(self._json(self._request("GET", href, headers=self.headers)))

    def cancel_action(self, href: str) -> Cancel:
        return parse_cancel(self._json(self._request("GET", href, headers=self.headers)))

    def send_feedback(self, kind: str, action_id: str, body: dict[str, Any]) -> None:
        """``kind``: deploymentBase or cancelAction."""
        if kind not in ("deploymentBase", "cancelAction"):
            raise ValueError(f"feedback kind {kind!r}")
        self._request("POST", f"{self.root_url}/{kind}/{action_id}/feedback", json=body, headers=self.headers)

    def send_config_data(self, body: dict[str, Any]) -> None:
        self._request("PUT", f"{self.root_url}/configData", json=body, headers=self.headers)

    # --- plumbing ------------------------------------------------------------------------

    def _request(self, method: str, url: str, **kwargs: Any) -> Any:
        import requests

        try:
            response = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.exceptions.SSLError as exc:
            raise DdiError(f"{method} {url}: TLS: {exc}", code="ddi-tls") from None
        except requests.RequestException as exc:
            raise DdiError(f"{method} {url}: {type(exc).__name__}", code="ddi-unreachable", transient=True) from None
        status = response.status_code
        if status < 400 or status == 304:
            return response
        detail = f"{method} {url}: HTTP {status}"
        if status in (401, 403):
            raise DdiError(f"{detail}: the server refused the device's credentials", code="ddi-auth",
                           status=status, transient=True)
        if status == 410:
            raise DdiError(f"{detail}: the action is closed on the server", code="ddi-gone", status=status)
        if status == 429:
            error = self._error_code(response)
            quota = error.startswith(QUOTA_ERRORS)
            raise DdiError(f"{detail}: {error or 'too many requests'}", code="ddi-quota" if quota else "ddi-busy",
                           status=status, transient=not quota, retry_after=_seconds(response.headers.get("Retry-After")))
        raise DdiError(detail, code=f"ddi-http-{status}", status=status, transient=status >= 500)

    @staticmethod
    def _json(response: Any) -> Any:
        try:
            return response.json()
        except ValueError:
            raise DdiError(f"{response.url}: the answer is not JSON", code="ddi-format") from None

    @staticmethod
    def _error_code(response: Any) -> str:
        try:
            body = response.json()
        except ValueError:
            return ""
        return str(body.get("errorCode", "")) if isinstance(body, dict) else ""


def _seconds(value: str | None) -> float | None:
    return float(value) if value and value.strip().isdigit() else None
