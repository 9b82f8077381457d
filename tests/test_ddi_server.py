"""The reference DDI server behaves as hawkBit does where a device can tell, and answers
with bodies that match the server's OpenAPI schemas."""

from __future__ import annotations

import hashlib

import pytest
import requests

from agent.ddi.codec import feedback, parse_cancel, parse_deployment, parse_root
from hil.server.ddi import DdiServer
from test_ddi_codec import SCHEMAS, conforms

IMAGE = bytes(range(256)) * 4096          # 1 MiB


@pytest.fixture
def server():  # type: ignore[no-untyped-def]
    with DdiServer() as running:
        yield running


def poll(server: DdiServer, device: str = "gw-1", **headers: str) -> requests.Response:
    return requests.get(server.controller_url(device), headers=headers, timeout=5)


def deploy(server: DdiServer, **options):  # type: ignore[no-untyped-def]
    return server.create_deployment("gw-1", [{"part": "os", "name": "rootfs", "version": "2.0.0",
                                             "artifacts": {"update.fwb": IMAGE}}], **options)


def test_a_new_device_is_asked_for_its_attributes(server: DdiServer) -> None:
    answer = poll(server)
    conforms(answer.json(), SCHEMAS["DdiControllerBase"])
    root = parse_root(answer.json())
    assert root.sleep == 300 and root.config_data and root.deployment is None
    requests.put(root.config_data, json={"mode": "merge", "data": {"hw_boardname": "gw"}}, timeout=5)
    assert parse_root(poll(server).json()).config_data is None
    assert server.attributes["gw-1"] == {"hw_boardname": "gw"}


def test_etag_and_304(server: DdiServer) -> None:
    first = poll(server)
    assert poll(server, **{"If-None-Match": first.headers["ETag"]}).status_code == 304
    deploy(server)
    changed = poll(server, **{"If-None-Match": first.headers["ETag"]})
    assert changed.status_code == 200 and parse_root(changed.json()).deployment


def test_a_deployment_round_trip_and_410_once_closed(server: DdiServer) -> None:
    action = deploy(server)
    href = parse_root(poll(server).json()).deployment
    assert f"?c={action.c}" in href
    body = requests.get(href, timeout=5).json()
    conforms(body, SCHEMAS["DdiDeploymentBase"])
    deployment = parse_deployment(body)
    artifact = deployment.chunks[0].artifacts[0]
    assert artifact.hashes["sha256"] == hashlib.sha256(IMAGE).hexdigest() and artifact.size == len(IMAGE)
    assert requests.get(artifact.url, timeout=5).content == IMAGE
    url = href.split("?")[0] + "/feedback"
    assert requests.post(url, json=feedback("proceeding", progress=(1, 3)), timeout=5).status_code == 200
    assert requests.post(url, json=feedback("closed", "success"), timeout=5).status_code == 200
    assert requests.post(url, json=feedback("closed", "success"), timeout=5).status_code == 410
    assert [s.get("execution") for s in server.statuses(action.id)] == ["retrieved", "proceeding", "closed"]
    root = parse_root(poll(server).json())
    assert root.deployment is None and root.config_data        # attributes asked for again after an update


def test_maintenance_window_turns_update_to_skip_and_changes_c(server: DdiServer) -> None:
    action = deploy(server, window="unavailable")
    href = parse_root(poll(server).json()).deployment
    deployment = parse_deployment(requests.get(href, timeout=5).json())
    assert (deployment.update, deployment.maintenance_window, deployment.may_install) == ("skip", "unavailable", False)
    server.set_window(action.id, "available")
    opened = parse_root(poll(server).json()).deployment
    assert opened != href
    assert parse_deployment(requests.get(opened, timeout=5).json()).may_install


def test_cancel_flow(server: DdiServer) -> None:
    action = deploy(server)
    server.cancel(action.id)
    root = parse_root(poll(server).json())
    assert root.deployment is None and root.cancel
    cancel = parse_cancel(requests.get(root.cancel, timeout=5).json())
    assert cancel.stop_id == str(action.id)
    requests.post(root.cancel + "/feedback", json=feedback("rejected"), timeout=5)
    assert parse_root(poll(server).json()).deployment                  # rejected: running again
    server.cancel(action.id)
    requests.post(root.cancel + "/feedback", json=feedback("closed", "success"), timeout=5)
    assert server.actions[action.id].result == "canceled" and parse_root(poll(server).json()).cancel is None


def test_range_if_range_and_416(server: DdiServer) -> None:
    deploy(server)
    href = parse_root(poll(server).json()).deployment
    artifact = parse_deployment(requests.get(href, timeout=5).json()).chunks[0].artifacts[0]
    whole = requests.get(artifact.url, timeout=5)
    part = requests.get(artifact.url, headers={"Range": "bytes=1000-", "If-Range": whole.headers["ETag"]}, timeout=5)
    assert part.status_code == 206 and part.content == IMAGE[1000:]
    assert part.headers["Content-Range"] == f"bytes 1000-{len(IMAGE) - 1}/{len(IMAGE)}"
    stale = requests.get(artifact.url, headers={"Range": "bytes=1000-", "If-Range": '"old"'}, timeout=5)
    assert stale.status_code == 200 and stale.content == IMAGE
    assert requests.get(artifact.url, headers={"Range": f"bytes={len(IMAGE)}-"}, timeout=5).status_code == 416


def test_target_token_and_429() -> None:
    with DdiServer(tokens={"gw-1": "secret"}) as server:
        assert poll(server).status_code == 401
        assert poll(server, Authorization="TargetToken secret").status_code == 200
        server.answer_429 = True
        answer = poll(server, Authorization="TargetToken secret")
        assert answer.status_code == 429 and answer.headers["Retry-After"] == "1"


def test_sleep_of_a_day_or_more_is_iso_8601() -> None:
    with DdiServer(sleep="26:00:00") as server:
        answer = poll(server).json()
        assert answer["config"]["polling"]["sleep"] == "PT26H0M0S" and parse_root(answer).sleep == 26 * 3600
