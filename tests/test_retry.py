"""The retry policy of downloads, tested directly (no network, no clock)."""

from __future__ import annotations

import random
from email.utils import formatdate

import pytest

from agent.download.retry import (PERMANENT, TRANSIENT, RetryPolicy, backoff, classify_status, next_wait,
                                  retry_after)


@pytest.mark.parametrize("status, kind", [(400, PERMANENT), (401, PERMANENT), (403, PERMANENT),
                                          (404, PERMANENT), (410, PERMANENT), (408, TRANSIENT),
                                          (429, TRANSIENT), (500, TRANSIENT), (502, TRANSIENT),
                                          (503, TRANSIENT), (504, TRANSIENT)])
def test_classification(status: int, kind: str) -> None:
    assert classify_status(status) == kind


def test_full_jitter_stays_within_the_exponential_bound() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=60.0)
    rng = random.Random(7)
    for attempt in range(12):
        bound = min(60.0, 2.0 ** attempt)
        waits = [backoff(attempt, policy, rng) for _ in range(200)]
        assert all(0.0 <= w <= bound for w in waits)
        assert max(waits) > bound * 0.8          # the whole range is used: jitter, not a fixed wait


def test_retry_after_seconds_and_date() -> None:
    assert retry_after("7", now=1000.0) == 7.0
    assert retry_after(formatdate(1030.0, usegmt=True), now=1000.0) == pytest.approx(30.0)
    assert retry_after(formatdate(900.0, usegmt=True), now=1000.0) == 0.0
    assert retry_after("soon", now=0.0) is None and retry_after(None, now=0.0) is None


def test_budget_in_attempts_and_in_time() -> None:
    policy = RetryPolicy(max_attempts=3, max_time=100.0, max_delay=50.0)
    rng = random.Random(1)
    assert next_wait(0, policy, rng, server_wait=None, elapsed=0.0) is not None
    assert next_wait(2, policy, rng, server_wait=None, elapsed=0.0) is None          # third attempt was the last
    assert next_wait(0, policy, rng, server_wait=30.0, elapsed=80.0) is None         # would pass max_time
    assert next_wait(0, policy, rng, server_wait=500.0, elapsed=0.0) == 50.0         # Retry-After is capped
