"""The reference DDI server behaves as hawkBit does where a device can tell, and its
answers match hawkBit's OpenAPI document (tests/ddi_openapi.py)."""

from __future__ import annotations

import hashlib
import json

import pytest
import requests

from agent.ddi.codec import feedback, parse_cancel, parse_deployment, parse_root
from ddi_openapi import check_response
from agent.demo.ddi_server import ARTIFACT_PREFIX, DdiServer

IMAGE = bytes(range(256)) * 4096          # 1 MiB
NOT_FOUND = {"exceptionClass": "org.eclipse.hawkbit.repository.exception.EntityNotFoundException",
             "errorCode": "hawkbit.server.error.repo.entitiyNotFound"}


@pytest.fixture
def server():  # type: ignore[no-untyped-def]
    with DdiServer() as running:
        yield running


def poll(server: DdiServer, device: str = "gw-1", **headers: str) -> requests.Response:
    return requests.get(server.controller_url(device), headers=headers, timeout=5)


def deploy(server: DdiServer, **options):  # type: ignore[no-untyped-def]
    return server.create_deployment("gw-1", [{"part": "os", "name": "rootfs", "version": "2.0.0",
                                             "artifacts": {"update.fwb": IMAGE}}], **options)


def conforms(answer: requests.Response) -> requests.Response:
    """The answer as it came over the wire matches the OpenAPI document."""
    check_response(answer.request.method, answer.request.url, answer.status_code, answer.headers, answer.content)
    return answer


def test_a_new_device_is_asked_for_its_attributes(server: DdiServer) -> None:
    answer = conforms(poll(server))
    root = parse_root(answer.json())
    assert root.sleep == 300 and root.config_data and root.deployment is None
    requests.put(root.config_data, json={"mode": "merge", "data": {"hw_boardname": "gw"}}, timeout=5)
    assert parse_root(poll(server).json()).config_data is None
    assert server.attributes["gw-1"] == {"hw_boardname": "gw"}


def test_etag_and_304(server: DdiServer) -> None:
    first = poll(server)
    assert conforms(poll(server, **{"If-None-Match": first.headers["ETag"]})).status_code == 304
    deploy(server)
    changed = poll(server, **{"If-None-Match": first.headers["ETag"]})
    assert changed.status_code == 200 and parse_root(changed.json()).deployment


def test_a_deployment_round_trip_and_410_once_closed(server: DdiServer) -> None:
    action = deploy(server)
    href = parse_root(poll(server).json()).deployment
    assert f"?c={action.c}" in href
    deployment = parse_deployment(conforms(requests.get(href, timeout=5)).json())
    artifact = deployment.chunks[0].artifacts[0]
    assert artifact.hashes["sha256"] == hashlib.sha256(IMAGE).hexdigest() and artifact.size == len(IMAGE)
    assert requests.get(artifact.url, timeout=5).content == IMAGE
    url = href.split("?")[0] + "/feedback"
    assert requests.post(url, json=feedback("proceeding", progress=(1, 3)), timeout=5).status_code == 200
    assert requests.post(url, json=feedback("closed", "success"), timeout=5).status_code == 200
    gone = conforms(requests.post(url, json=feedback("closed", "success"), timeout=5))
    assert gone.status_code == 410 and gone.content == b""                 # hawkBit's 410 has no body
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
    assert conforms(part).status_code == 206 and part.content == IMAGE[1000:]
    assert part.headers["Content-Range"] == f"bytes 1000-{len(IMAGE) - 1}/{len(IMAGE)}"
    stale = requests.get(artifact.url, headers={"Range": "bytes=1000-", "If-Range": '"old"'}, timeout=5)
    assert stale.status_code == 200 and stale.content == IMAGE
    past = requests.get(artifact.url, headers={"Range": f"bytes={len(IMAGE)}-"}, timeout=5)
    assert conforms(past).status_code == 416


def test_target_token_and_429() -> None:
    with DdiServer(tokens={"gw-1": "secret"}) as server:
        assert conforms(poll(server)).status_code == 401
        assert poll(server, Authorization="TargetToken secret").status_code == 200
        server.answer_429 = True
        answer = conforms(poll(server, Authorization="TargetToken secret"))
        assert answer.status_code == 429 and answer.headers["Retry-After"] == "1"
        assert answer.json()["errorCode"] == "hawkbit.server.error.quota.tooManyEntries"


def test_sleep_of_a_day_or_more_is_iso_8601() -> None:
    with DdiServer(sleep="26:00:00") as server:
        answer = poll(server).json()
        assert answer["config"]["polling"]["sleep"] == "PT26H" and parse_root(answer).sleep == 26 * 3600
    with DdiServer(sleep="36:30:05") as server:                     # as Java's Duration.toString() prints it
        assert poll(server).json()["config"]["polling"]["sleep"] == "PT36H30M5S"


def test_an_unknown_action_is_404_with_hawkbits_error_body(server: DdiServer) -> None:
    base = server.controller_url("gw-1")
    for resource in ("deploymentBase/999?c=1", "cancelAction/999"):
        answer = conforms(requests.get(f"{base}/{resource}", timeout=5))
        assert answer.status_code == 404 and answer.headers["Content-Type"] == "application/json"
        assert answer.json() == {**NOT_FOUND, "message": "Action with given identifier {999} does not exist."}
    other = server.create_deployment("gw-2", [{"part": "os", "name": "r", "version": "2", "artifacts": {}}])
    answer = conforms(requests.get(f"{base}/deploymentBase/{other.id}", timeout=5))
    assert answer.status_code == 404
    assert answer.json() == {**NOT_FOUND, "message": f"Not a valid action ({other.id}) for target: gw-1"}


def test_feedback_on_an_unknown_action_is_404(server: DdiServer) -> None:
    base = server.controller_url("gw-1")
    for kind in ("deploymentBase", "cancelAction"):
        answer = conforms(requests.post(f"{base}/{kind}/999/feedback", json=feedback("closed", "success"), timeout=5))
        assert answer.status_code == 404 and answer.json()["errorCode"] == NOT_FOUND["errorCode"]


def test_every_artifact_has_three_hashes_and_both_links(server: DdiServer) -> None:
    files = {"rootfs.img": IMAGE, "app.tar": b"app" * 1000, "mcu.bin": b"\x7f" * 4097}
    server.create_deployment("gw-1", [
        {"part": "os", "name": "rootfs", "version": "2.0.0",
         "artifacts": {"rootfs.img": files["rootfs.img"], "app.tar": files["app.tar"]}},
        {"part": "bApp", "name": "mcu", "version": "1.7.3", "artifacts": {"mcu.bin": files["mcu.bin"]}}])
    answer = conforms(requests.get(parse_root(poll(server).json()).deployment, timeout=5))
    artifacts = [a for chunk in answer.json()["deployment"]["chunks"] for a in chunk["artifacts"]]
    assert sorted(a["filename"] for a in artifacts) == sorted(files)
    for artifact in artifacts:
        data = files[artifact["filename"]]
        assert artifact["hashes"] == {"sha1": hashlib.sha1(data).hexdigest(), "md5": hashlib.md5(data).hexdigest(),
                                      "sha256": hashlib.sha256(data).hexdigest()}
        links = artifact["_links"]
        assert set(links) == {"download", "download-http"}
        for link in links.values():
            download = conforms(requests.get(link["href"], timeout=5))
            assert download.content == data
            assert download.headers["ETag"] == f'"{artifact["hashes"]["sha1"]}"'     # hawkBit's ETag: the SHA-1


def test_resources_in_the_wrong_state_are_404_without_a_body(server: DdiServer) -> None:
    action = deploy(server)
    base = server.controller_url("gw-1")
    wrong = conforms(requests.get(f"{base}/cancelAction/{action.id}", timeout=5))             # not being cancelled
    assert wrong.status_code == 404 and wrong.content == b""
    server.cancel(action.id)
    wrong = conforms(requests.get(f"{base}/deploymentBase/{action.id}", timeout=5))           # being cancelled
    assert wrong.status_code == 404 and wrong.content == b""


def test_a_finished_action_is_still_shown(server: DdiServer) -> None:
    deploy(server)
    href = parse_root(poll(server).json()).deployment
    requests.post(href.split("?")[0] + "/feedback", json=feedback("closed", "success"), timeout=5)
    shown = conforms(requests.get(href, timeout=5))                  # hawkBit refuses only cancelled actions here
    assert shown.status_code == 200 and parse_deployment(shown.json()).chunks[0].name == "rootfs"


def test_cancel_feedback_needs_a_cancel(server: DdiServer) -> None:
    action = deploy(server)
    url = f"{server.controller_url('gw-1')}/cancelAction/{action.id}/feedback"
    refused = conforms(requests.post(url, json=feedback("closed", "success"), timeout=5))
    assert refused.status_code == 405 and refused.json()["errorCode"] == "hawkbit.server.error.action.notCancelable"
    assert server.actions[action.id].state == "open"
    server.cancel(action.id)
    assert requests.post(url, json=feedback("closed", "success"), timeout=5).status_code == 200
    again = requests.post(url, json=feedback("closed", "success"), timeout=5)     # cancelled already: taken
    assert again.status_code == 200 and server.actions[action.id].result == "canceled"


def test_the_recorder_keeps_every_exchange() -> None:
    with DdiServer(record=True) as server:
        deploy(server)
        href = parse_root(poll(server, Accept="application/hal+json").json()).deployment
        url = parse_deployment(requests.get(href, timeout=5).json()).chunks[0].artifacts[0].url
        requests.get(url, headers={"Range": "bytes=10-"}, timeout=5)
        body = feedback("proceeding")
        requests.post(href.split("?")[0] + "/feedback", json=body, timeout=5)
    root, deployment, artifact, sent = server.exchanges
    assert [(e.method, e.path) for e in server.exchanges] == server.requests
    assert root.request_headers["Accept"] == "application/hal+json" and root.request_body == b""
    assert root.status == 200 and root.response_headers["ETag"] and parse_root(json.loads(root.response_body))
    assert server.url + deployment.path == href and deployment.status == 200
    assert artifact.status == 206 and artifact.request_headers["Range"] == "bytes=10-"
    assert artifact.response_body == IMAGE[10:10 + ARTIFACT_PREFIX]               # a prefix, and the whole length
    assert artifact.response_length == len(IMAGE) - 10 == int(artifact.response_headers["Content-Length"])
    assert json.loads(sent.request_body) == body and sent.response_body == b"" and sent.response_length == 0
    assert "Content-Type" not in sent.response_headers and "Date" in sent.response_headers
    assert root.at <= deployment.at <= artifact.at <= sent.at
    with DdiServer() as quiet:
        poll(quiet)
        assert quiet.exchanges == [] and len(quiet.requests) == 1
