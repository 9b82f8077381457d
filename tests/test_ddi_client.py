"""The DDI client against the reference server, and the poll-interval policy."""

from __future__ import annotations

import random

import pytest

from agent.ddi.client import DdiClient, DdiError, PollPolicy, first_poll, next_poll
from agent.ddi.codec import config_data, feedback
from agent.demo.ddi_server import DdiServer

IMAGE = b"\x42" * 100_000


def client(server: DdiServer, **kwargs) -> DdiClient:  # type: ignore[no-untyped-def]
    return DdiClient.for_server(server.url, "DEFAULT", "gw-1", **kwargs)


def test_poll_sends_if_none_match_and_keeps_the_last_answer_on_304() -> None:
    with DdiServer() as server:
        ddi = client(server)
        first = ddi.poll()
        again = ddi.poll()
        assert again == first
        assert server.not_modified == 1
        server.create_deployment("gw-1", [{"part": "os", "name": "r", "version": "2", "artifacts": {"a": IMAGE}}])
        assert ddi.poll().deployment is not None


def test_a_whole_action_through_the_client() -> None:
    with DdiServer() as server:
        action = server.create_deployment("gw-1", [{"part": "os", "name": "r", "version": "2",
                                                    "artifacts": {"a": IMAGE}}])
        ddi = client(server)
        root = ddi.poll()
        ddi.send_config_data(config_data({"hw_boardname": "gw", "sw_version": "1.0.0"}))
        deployment = ddi.deployment(root.deployment)
        ddi.send_feedback("deploymentBase", deployment.action_id, feedback("proceeding", progress=(1, 2)))
        ddi.send_feedback("deploymentBase", deployment.action_id, feedback("closed", "success"))
        with pytest.raises(DdiError) as gone:
            ddi.send_feedback("deploymentBase", deployment.action_id, feedback("closed", "success"))
        assert gone.value.code == "ddi-gone" and not gone.value.transient
        assert server.actions[action.id].result == "success"
        assert server.attributes["gw-1"]["sw_version"] == "1.0.0"


def test_authentication_and_quota_answers_are_classified() -> None:
    with DdiServer(tokens={"gw-1": "right"}) as server:
        with pytest.raises(DdiError) as refused:
            client(server, target_token="wrong").poll()
        assert refused.value.code == "ddi-auth" and refused.value.status == 401
        good = client(server, target_token="right")
        assert good.poll().sleep == 300
        server.answer_429 = True
        with pytest.raises(DdiError) as quota:
            good.poll()
        assert quota.value.code == "ddi-quota" and not quota.value.transient and quota.value.retry_after == 1


def test_an_unreachable_server_is_transient() -> None:
    ddi = DdiClient.for_server("http://127.0.0.1:9", "DEFAULT", "gw-1", timeout=(1, 1))
    with pytest.raises(DdiError) as unreachable:
        ddi.poll()
    assert unreachable.value.code == "ddi-unreachable" and unreachable.value.transient


def test_next_poll_bounds_and_jitter() -> None:
    policy = PollPolicy(minimum=30, maximum=3600, default=300, jitter=0.1)
    rng = random.Random(5)
    waits = [next_poll(300, policy, rng) for _ in range(1000)]
    assert 270 <= min(waits) < 280 and 320 < max(waits) <= 330      # spread, within +-10 %
    assert 27 <= next_poll(5, policy, rng) <= 33                      # raised to the local minimum
    assert next_poll(86400 * 3, policy, rng) <= 3960                  # capped at the local maximum
    assert 270 <= next_poll(None, policy, rng) <= 330                 # the default when the server is silent


def test_first_poll_is_spread_over_the_startup_window() -> None:
    rng = random.Random(7)
    waits = [first_poll(PollPolicy(startup_spread=20), rng) for _ in range(2000)]
    assert 0 <= min(waits) < 0.5 and 19.5 < max(waits) <= 20
    assert 9 < sum(waits) / len(waits) < 11                            # uniform, not bunched
    assert first_poll(PollPolicy(startup_spread=0), rng) == 0
