"""DDI messages against the server's own OpenAPI document (tests/vectors/ddi/, via tests/ddi_openapi.py)."""

from __future__ import annotations

import json

import pytest

from agent.ddi.codec import (DdiFormatError, config_data, feedback, parse_cancel, parse_deployment, parse_root,
                             parse_sleep)
from ddi_openapi import DOCUMENT, check_request

SCHEMAS = json.loads(DOCUMENT.read_text())["components"]["schemas"]
FEEDBACK = "/DEFAULT/controller/v1/gw-1/deploymentBase/1/feedback"
CONFIG_DATA = "/DEFAULT/controller/v1/gw-1/configData"
JSON = {"Content-Type": "application/json"}


def test_the_specs_own_root_example() -> None:
    root = parse_root(SCHEMAS["DdiControllerBase"]["example"])
    assert root.sleep == 12 * 3600
    assert root.deployment.endswith("/deploymentBase/5?c=-2127183556")
    assert root.config_data.endswith("/configData") and root.installed.endswith("/installedBase/4")
    assert root.cancel is None


def test_the_specs_own_deployment_example() -> None:
    deployment = parse_deployment(SCHEMAS["DdiDeploymentBase"]["example"])
    assert (deployment.action_id, deployment.download, deployment.update) == ("8", "forced", "forced")
    assert deployment.maintenance_window == "available" and deployment.may_install
    artifact = deployment.chunks[0].artifacts[0]
    assert (artifact.filename, artifact.size) == ("binary.tgz", 13)
    assert artifact.url.startswith("https://")          # download (https) preferred to download-http
    assert artifact.hashes["sha256"] == "b3a04740a19e36057ccf258701922f3cd2f1a880536be53a3ca8d50f6b615975"


@pytest.mark.parametrize("update, window, may", [("forced", None, True), ("attempt", "available", True),
                                                 ("skip", None, False), ("forced", "unavailable", False)])
def test_when_a_deployment_may_install(update: str, window: str | None, may: bool) -> None:
    deployment = {"download": "forced", "update": update, "chunks": []}
    if window:
        deployment["maintenanceWindow"] = window
    assert parse_deployment({"id": "1", "deployment": deployment}).may_install is may


@pytest.mark.parametrize("text, seconds", [("00:05:00", 300), ("12:00:00", 43200), ("23:59:59", 86399),
                                           ("26:00:00", 93600), ("PT26H", 93600), ("P1DT2H", 93600),
                                           ("PT30S", 30), ("PT1M30.5S", 90.5), ("P2D", 172800)])
def test_sleep_in_both_forms(text: str, seconds: float) -> None:
    assert parse_sleep(text) == seconds


@pytest.mark.parametrize("text", ["5 minutes", "00:61:00", "P", "PT", "P1DT", "", "1:2:3:4", "-00:01:00",
                                  "P" + "9" * 400 + "DT1S", "PT" + "9" * 5000 + "S", "PT1." + "9" * 5000 + "S"])
def test_bad_sleep_is_named(text: str) -> None:
    with pytest.raises(DdiFormatError, match="config.polling.sleep"):
        parse_sleep(text)


@pytest.mark.parametrize("body, message", [
    ({"id": "1"}, "deployment must be an object"),
    ({"id": "", "deployment": {"chunks": []}}, "deploymentBase.id '' is not an action id"),
    ({"id": "1", "deployment": {"update": "now", "chunks": []}}, "deployment.update is 'now'"),
    ({"id": "1", "deployment": {"chunks": [{"part": "os", "name": "n", "version": "1",
                                            "artifacts": [{"filename": "f", "size": -1}]}]}},
     r"deployment.chunks\[0\].artifacts\[0\].size must be a non-negative integer"),
    ({"id": "1", "deployment": {"chunks": [{"part": "os", "name": "n", "version": "1",
                                            "artifacts": [{"filename": "f", "size": 1, "hashes": {"sha1": "xyz"}}]}]}},
     r"hashes.sha1 must be hexadecimal"),
])
def test_a_deployment_the_client_cannot_read_is_refused_with_the_field(body: dict, message: str) -> None:
    with pytest.raises(DdiFormatError, match=message):
        parse_deployment(body)


def test_cancel() -> None:
    cancel = parse_cancel({"id": "42", "cancelAction": {"stopId": "42"}})
    assert (cancel.action_id, cancel.stop_id) == ("42", "42")
    with pytest.raises(DdiFormatError, match="cancelAction.cancelAction.stopId"):
        parse_cancel({"id": "42", "cancelAction": {}})


@pytest.mark.parametrize("kwargs", [
    {"execution": "proceeding", "progress": (3, 10), "details": ["Downloading 30%"], "code": 110},
    {"execution": "closed", "finished": "success", "timestamp_ms": 1732350000000},
    {"execution": "closed", "finished": "failure", "code": 4201, "details": ["verify failed"]},
    {"execution": "downloaded"}, {"execution": "scheduled"}, {"execution": "rejected"},
    {"execution": "resumed"}, {"execution": "download", "progress": (0, None)},
])
def test_feedback_matches_the_servers_schema(kwargs: dict) -> None:
    body = feedback(**kwargs)
    check_request("POST", FEEDBACK, JSON, json.dumps(body).encode())
    assert body["status"]["execution"] == kwargs["execution"]


def test_feedback_refuses_what_the_server_would() -> None:
    with pytest.raises(ValueError, match="execution 'done'"):
        feedback("done")
    with pytest.raises(ValueError, match="finished 'ok'"):
        feedback("closed", "ok")


def test_config_data_matches_the_schema_and_the_server_limits() -> None:
    body = config_data({"hw_boardname": "gw-board", "hw_revision": "rev1", "sw_version": "1.2.0"})
    check_request("PUT", CONFIG_DATA, JSON, json.dumps(body).encode())
    assert body == {"mode": "merge", "data": {"hw_boardname": "gw-board", "hw_revision": "rev1",
                                              "sw_version": "1.2.0"}}
    with pytest.raises(ValueError, match="1 to 128 characters"):
        config_data({"k": "v" * 129})
    with pytest.raises(ValueError, match="mode 'add'"):
        config_data({"k": "v"}, mode="add")
