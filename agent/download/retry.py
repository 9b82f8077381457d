"""When to retry a download, and how long to wait (pure: no I/O, the clock and dice are given).

* 4xx answers other than 408 and 429 are permanent: retrying cannot help.
* 429 and 503 honour Retry-After (seconds or an HTTP date), capped by the policy.
* Other 5xx, timeouts, resets and stalls are transient.
* Waits grow exponentially with full jitter (a random wait between 0 and the
  exponential bound), so a fleet that lost its server does not come back in step.
* Attempts and total time are both bounded.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

PERMANENT = "permanent"
TRANSIENT = "transient"


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 10
    max_time: float = 3600.0      # seconds for the whole download, waits included
    base_delay: float = 1.0
    max_delay: float = 300.0


def classify_status(status: int) -> str:
    if status in (408, 429) or status >= 500:
        return TRANSIENT
    return PERMANENT


def backoff(attempt: int, policy: RetryPolicy, rng: random.Random) -> float:
    """Full jitter: uniform in [0, min(max_delay, base * 2**attempt)]; attempt counts from 0."""
    bound = min(policy.max_delay, policy.base_delay * (2 ** min(attempt, 32)))
    return rng.uniform(0.0, bound)


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date), None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    from email.utils import parsedate_to_datetime     # an HTTP date is rare: its parser is not loaded before
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - now)


def next_wait(attempt: int, policy: RetryPolicy, rng: random.Random, *, server_wait: float | None,
              elapsed: float) -> float | None:
    """How long to wait before attempt ``attempt + 1``; None when the budget is spent."""
    if attempt + 1 >= policy.max_attempts:
        return None
    wait = backoff(attempt, policy, rng) if server_wait is None else min(server_wait, policy.max_delay)
    if elapsed + wait > policy.max_time:
        return None
    return wait
