"""A whole device session against the reference DDI server, each exchange checked
against hawkBit's OpenAPI document: the requests fwagent sends and the answers it gets."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from agent.ddi.client import DdiClient, DdiError
from agent.ddi.codec import Artifact, config_data, feedback
from agent.download.downloader import Downloader, Resume
from agent.download.sinks import FileSink
from ddi_openapi import DOCUMENT, check_exchanges, check_request, check_response
from agent.demo.ddi_server import DdiServer

BASE = "/DEFAULT/controller/v1/gw-1"
FILES = {"rootfs.img": bytes(range(256)) * 2048, "app.tar": b"app" * 5000, "mcu.bin": b"\x7f" * 4097}
CHUNKS = [{"part": "os", "name": "rootfs", "version": "2.0.0",
           "artifacts": {"rootfs.img": FILES["rootfs.img"], "app.tar": FILES["app.tar"]}},
          {"part": "bApp", "name": "mcu", "version": "1.7.3", "artifacts": {"mcu.bin": FILES["mcu.bin"]}}]


def download(artifact: Artifact, directory: Path, *, have: int = 0) -> bytes:
    """fwagent's downloader; ``have`` bytes already on disk (a power cut) makes it resume with Range."""
    path = directory / artifact.filename
    path.write_bytes(FILES[artifact.filename][:have])
    resume = Resume(artifact.url, have, f'"{artifact.hashes["sha1"]}"') if have else None   # hawkBit's ETag
    with FileSink(path) as sink:
        Downloader().fetch(artifact.url, sink, size=artifact.size,
                                                     digest=bytes.fromhex(artifact.hashes["sha256"]), resume=resume)
    return path.read_bytes()


def test_a_whole_device_session_conforms(tmp_path: Path) -> None:
    with DdiServer(record=True) as server:
        ddi = DdiClient.for_server(server.url, "DEFAULT", "gw-1")
        assert ddi.poll().config_data                                       # a new device: attributes wanted
        ddi.send_config_data(config_data({"hw_boardname": "gw-board", "sw_version": "1.0.0"}))
        assert ddi.poll().config_data is None
        ddi.poll()
        assert server.not_modified == 1                                     # the same answer: 304

        action = server.create_deployment("gw-1", CHUNKS, update="attempt", window="unavailable")
        waiting = ddi.deployment(ddi.poll().deployment)
        assert not waiting.may_install
        ddi.send_feedback("deploymentBase", waiting.action_id, feedback("scheduled", details=["window closed"]))
        server.set_window(action.id, "available")
        deployment = ddi.deployment(ddi.poll().deployment)
        assert deployment.may_install and len(deployment.chunks) == 2

        artifacts = [a for chunk in deployment.chunks for a in chunk.artifacts]
        ddi.send_feedback("deploymentBase", deployment.action_id,
                          feedback("download", progress=(0, len(artifacts)), details=["3 artifacts"]))
        for done, (artifact, have) in enumerate(zip(artifacts, (1000, 0, 4097)), 1):     # resumed, whole, complete
            assert download(artifact, tmp_path, have=have) == FILES[artifact.filename]
            ddi.send_feedback("deploymentBase", deployment.action_id,
                              feedback("proceeding", progress=(done, len(artifacts)), code=110))
        ddi.send_feedback("deploymentBase", deployment.action_id, feedback("downloaded", details=["sha256 verified"]))
        ddi.send_feedback("deploymentBase", deployment.action_id,
                          feedback("closed", "success", details=["booted 2.0.0"], code=0, timestamp_ms=1732350000000))
        with pytest.raises(DdiError) as gone:                               # sent again: closed already
            ddi.send_feedback("deploymentBase", deployment.action_id, feedback("closed", "success"))
        assert gone.value.code == "ddi-gone"
        ddi.send_config_data(config_data({"sw_version": "2.0.0"}, mode="replace"))

        second = server.create_deployment("gw-1", CHUNKS[1:])
        ddi.deployment(ddi.poll().deployment)
        server.cancel(second.id)
        cancel = ddi.cancel_action(ddi.poll().cancel)
        ddi.send_feedback("cancelAction", cancel.stop_id, feedback("closed", "success", details=["cancelled"]))
        assert server.actions[second.id].result == "canceled"

        with pytest.raises(DdiError) as missing:
            ddi.deployment(f"{server.url}{BASE}/deploymentBase/999")
        assert missing.value.code == "ddi-http-404"
        server.answer_429 = True
        with pytest.raises(DdiError) as quota:
            ddi.poll()
        assert quota.value.code == "ddi-quota"

    assert check_exchanges(server) == {
        ("getControllerBase", 200), ("getControllerBase", 304), ("getControllerBase", 429),
        ("putConfigData", 200),
        ("getControllerDeploymentBaseAction", 200), ("getControllerDeploymentBaseAction", 404),
        ("postDeploymentBaseActionFeedback", 200), ("postDeploymentBaseActionFeedback", 410),
        ("downloadArtifact", 200), ("downloadArtifact", 206), ("downloadArtifact", 416),
        ("getControllerCancelAction", 200), ("postCancelActionFeedback", 200)}
    ranged = [e for e in server.exchanges if e.status == 206]
    assert ranged[0].request_headers["Range"] == "bytes=1000-" and ranged[0].request_headers["If-Range"]


def test_target_token_exchanges_conform() -> None:
    with DdiServer(tokens={"gw-1": "right"}, record=True) as server:
        with pytest.raises(DdiError) as refused:
            DdiClient.for_server(server.url, "DEFAULT", "gw-1", target_token="wrong").poll()
        assert refused.value.code == "ddi-auth"
        DdiClient.for_server(server.url, "DEFAULT", "gw-1", target_token="right").poll()
    assert check_exchanges(server) == {("getControllerBase", 401), ("getControllerBase", 200)}
    # The document declares no security scheme (hawkBit's authentication is configured, not
    # described), so the header is checked here.
    assert [e.request_headers["Authorization"] for e in server.exchanges] == ["TargetToken wrong", "TargetToken right"]


FEEDBACK = f"{BASE}/deploymentBase/1/feedback"
JSON = {"Content-Type": "application/json"}
HAL = {"Content-Type": "application/hal+json"}
ARTIFACT = f"{BASE}/softwaremodules/101/artifacts/rootfs.img"
OCTETS = {"Content-Type": "application/octet-stream"}
SHA1_ETAG = '"' + "0" * 40 + '"'


@pytest.mark.parametrize("method, url, headers, body, says", [
    pytest.param("POST", FEEDBACK, JSON, b'{"status": {"execution": "closed"}}',
                 "status: 'result' is a required property", id="feedback-without-result"),
    pytest.param("POST", FEEDBACK, JSON, b'{"status": {"execution": "done", "result": {"finished": "none"}}}',
                 "status.execution: 'done' is not one of", id="unknown-execution"),
    pytest.param("POST", FEEDBACK, JSON, b'{"status": {"execution": "closed", "result": {"finshed": "success"}}}',
                 "'finshed' was unexpected", id="misspelt-field"),
    pytest.param("PUT", f"{BASE}/configData", JSON, b'{"data": {"k": 1}}', "data.k: 1 is not of type 'string'",
                 id="attribute-not-a-string"),
    pytest.param("PUT", f"{BASE}/configData", {}, b'{"data": {"k": "v"}}', "mimetype not found",
                 id="body-without-content-type"),
    pytest.param("GET", f"{BASE}/deploymentBase/7?c=soon", {}, None, "c: Failed to cast", id="c-not-a-number"),
    pytest.param("GET", f"{BASE}/deploymentBase/7?c=4294967296", {}, None, "c: 4294967296 is not a 'int32'",
                 id="c-past-int32"),
    pytest.param("GET", f"{BASE}/installedBaseline", {}, None, "Path not found", id="no-such-resource"),
])
def test_the_validator_refuses_bad_requests(method: str, url: str, headers: dict[str, str], body: bytes | None,
                                            says: str) -> None:
    with pytest.raises(AssertionError, match=re.escape(says)):
        check_request(method, url, headers, body)


@pytest.mark.parametrize("method, url, status, headers, body, says", [
    pytest.param("GET", BASE, 200, HAL, b'{"_links": {"deploymentBase": "/deploymentBase/7"}}',
                 "_links.deploymentBase: '/deploymentBase/7' is not of type 'object'", id="link-not-an-object"),
    pytest.param("GET", BASE, 200, HAL, b'{"config": {"polling": {"sleep": "5 minutes"}}}',
                 "config.polling.sleep: '5 minutes' does not match", id="sleep-in-no-known-form"),
    pytest.param("GET", BASE, 304, {}, b"", "Missing required header: ETag", id="304-without-etag"),
    pytest.param("GET", BASE, 418, {}, b"", "Unknown response http status: 418", id="undocumented-status"),
    pytest.param("GET", f"{BASE}/deploymentBase/7", 200, HAL, b'{"id": "7"}', "'deployment' is a required property",
                 id="deployment-missing"),
    pytest.param("GET", f"{BASE}/deploymentBase/7", 404, JSON, b'{"error": "Not Found"}', "'error' was unexpected",
                 id="error-body-not-exception-info"),
    pytest.param("POST", FEEDBACK, 200, HAL, b"{}", "body where the document declares none", id="body-on-feedback"),
    pytest.param("GET", ARTIFACT, 200, OCTETS | {"ETag": '"3f2a"'}, b"\0", "ETag: '\"3f2a\"' does not match",
                 id="etag-not-sha1"),
    pytest.param("GET", ARTIFACT, 206, OCTETS | {"ETag": SHA1_ETAG}, b"\0", "Missing required header: Content-Range",
                 id="206-without-content-range"),
])
def test_the_validator_refuses_bad_answers(method: str, url: str, status: int, headers: dict[str, str], body: bytes,
                                           says: str) -> None:
    with pytest.raises(AssertionError, match=re.escape(says)):
        check_response(method, url, status, headers, body)


def test_the_documents_sleep_pattern_is_its_notation_not_a_regex() -> None:
    """Why ddi_openapi.amended replaces it: as written, no real sleep value matches."""
    pattern = json.loads(DOCUMENT.read_text())["components"]["schemas"]["DdiPolling"]["properties"]["sleep"]["pattern"]
    assert pattern == "HH:MM:SS" and not any(re.search(pattern, s) for s in ("00:05:00", "12:00:00", "PT26H"))
