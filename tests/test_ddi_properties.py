"""Properties of what the server sends (hypothesis): whatever it is, the DDI codec either reads it
or refuses it with a DdiFormatError; nothing of it names a path outside the state directory; and
a running daemon fed such answers neither crashes nor stops polling."""

from __future__ import annotations

import copy
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from install_bench import make_gateway
from test_daemon import Running, connect

from agent.daemon.plan import PlanError, download_dir, plan_action
from agent.ddi.codec import ACTION_ID, DdiFormatError, load_json, parse_cancel, parse_deployment, parse_root
from agent.net.policy import LinkError, LinkPolicy
from hil.server.hostile import HostileDdiServer

SERVER = "https://ddi.example.com"
POLICY = LinkPolicy.for_server(SERVER, ("cdn.example.com",))

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=24) \
    | st.sampled_from(["..", "/", "../../etc", "/etc/passwd", "7", "a/b", "file:///x", f"{SERVER}/x",
                       "http://ddi.example.com/x", "https://cdn.example.com/y", "https://evil.example/z", "", "\0",
                       "https://evil.example\\@ddi.example.com/x", "https://u:p@ddi.example.com/x",
                       "https://ddi.example.com:443@evil.example/x", "https://ddi.example.com\t/x",
                       "forced", "skip", "unavailable", "sha256", "ab" * 32, "P" + "9" * 400 + "DT1S",
                       "PT" + "9" * 5000 + "S", "x" * 5000])
json_values = st.recursive(scalars, lambda children: st.lists(children, max_size=4)
                           | st.dictionaries(st.text(max_size=12), children, max_size=4), max_leaves=12)


def valid_deployment() -> dict[str, Any]:
    """A deploymentBase as hawkBit sends it."""
    artifact = {"filename": "u.fwb", "size": 10, "hashes": {"sha256": "ab" * 32, "sha1": "cd" * 20},
                "_links": {"download": {"href": f"{SERVER}/DEFAULT/controller/v1/gw/softwaremodules/1/artifacts/u.fwb"},
                           "download-http": {"href": "http://ddi.example.com/u.fwb"}}}
    return {"id": "7", "deployment": {"download": "forced", "update": "forced", "maintenanceWindow": "available",
                                      "chunks": [{"part": "os", "name": "gw", "version": "2.0", "artifacts": [artifact],
                                                  "metadata": [{"key": "k", "value": "v"}]}]}}


FIELDS = [("id",), ("deployment",), ("deployment", "download"), ("deployment", "update"),
          ("deployment", "maintenanceWindow"), ("deployment", "chunks"), ("deployment", "chunks", 0),
          ("deployment", "chunks", 0, "part"), ("deployment", "chunks", 0, "encrypted"),
          ("deployment", "chunks", 0, "metadata"), ("deployment", "chunks", 0, "artifacts"),
          ("deployment", "chunks", 0, "artifacts", 0), ("deployment", "chunks", 0, "artifacts", 0, "filename"),
          ("deployment", "chunks", 0, "artifacts", 0, "size"), ("deployment", "chunks", 0, "artifacts", 0, "hashes"),
          ("deployment", "chunks", 0, "artifacts", 0, "hashes", "sha256"),
          ("deployment", "chunks", 0, "artifacts", 0, "_links"),
          ("deployment", "chunks", 0, "artifacts", 0, "_links", "download", "href")]
mutations = st.lists(st.tuples(st.sampled_from(FIELDS), json_values), max_size=4)


def mutated(body: dict[str, Any], changes: list[tuple[tuple[Any, ...], Any]]) -> Any:
    body = copy.deepcopy(body)
    for path, value in changes:
        node: Any = body
        for key in path[:-1]:
            try:
                node = node[key]
            except (KeyError, IndexError, TypeError):
                break
        else:
            try:
                node[path[-1]] = value
            except (IndexError, TypeError):
                pass
    return body


@settings(max_examples=3000, deadline=None)
@given(mutations)
def test_a_deployment_is_read_or_refused_and_names_no_path(changes: list) -> None:
    body = mutated(valid_deployment(), changes)
    try:
        deployment = parse_deployment(body)
    except DdiFormatError:
        return
    assert ACTION_ID.fullmatch(deployment.action_id)
    incoming = Path("/state/incoming")
    directory = download_dir(incoming, deployment.action_id)
    assert directory.parent == incoming and re.fullmatch(r"action-[0-9a-f]{16}", directory.name)
    try:
        plan = plan_action(deployment, POLICY)
    except PlanError:
        return
    assert all(re.fullmatch(r"artifact-\d+", name) for name in plan.local_names().values())
    for artifact in (plan.main, *plan.payloads):
        assert artifact.url.startswith((f"{SERVER}/", "https://cdn.example.com/"))


@settings(max_examples=2000, deadline=None)
@given(json_values)
def test_any_json_is_read_or_refused_with_a_format_error(value: Any) -> None:
    for parse in (parse_root, parse_deployment, parse_cancel):
        try:
            parse(value)
        except DdiFormatError:
            pass


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=200) | st.builds(lambda n: b"[" * n + b"]" * n, st.integers(0, 5000))
       | st.builds(lambda n: b'{"a":' * n + b"1" + b"}" * n, st.integers(0, 5000)))
def test_any_bytes_are_json_or_a_format_error(data: bytes) -> None:
    try:
        load_json(data, "answer")
    except DdiFormatError:
        pass


authority_pieces = st.sampled_from(["ddi.example.com", "evil.example", "cdn.example.com", "@", "\\", ":", "443",
                                   "8443", "/", "?", "#", "[", "]", "%40", "%5C", " ", "\t", "u", "p", ".", "::1",
                                   "xn--caf-dma.com", "caf\u00e9.com", "HTTPS://", "http://"])


@settings(max_examples=3000, deadline=None)
@given(st.sampled_from(["https://", "http://", "HTTPS://", ""]), st.lists(authority_pieces, max_size=8))
def test_credentials_go_only_where_the_connection_goes(scheme: str, pieces: list[str]) -> None:
    """Whatever a link looks like, when the policy says "the server's", the request that the HTTP
    stack sends goes to the server's host and port."""
    import requests
    from urllib3.util import parse_url

    url = scheme + "".join(pieces) + "/x"
    try:
        to_server = POLICY.admit(url)
    except LinkError:
        return
    prepared = requests.models.PreparedRequest()
    prepared.prepare_url(url, None)
    sent = parse_url(prepared.url)
    destination = (sent.scheme, sent.host, sent.port or {"http": 80, "https": 443}[sent.scheme])
    if to_server:
        assert destination == ("https", "ddi.example.com", 443), url
    else:
        assert destination[1] == "cdn.example.com", url


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=80))
def test_an_action_id_is_accepted_only_when_it_is_safe_in_a_url(text: str) -> None:
    if ACTION_ID.fullmatch(text):
        assert "/" not in text and text not in (".", "..") and text.isascii() and text.isprintable()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutations, min_size=1, max_size=6), st.lists(json_values, max_size=3),
       st.lists(scalars, max_size=2))
def test_a_running_daemon_survives_any_answer_and_keeps_polling(deployments: list, roots: list, sleeps: list) -> None:
    """Root answers replaced by any JSON, then each fetch of the deployment answered with the next
    mutation of it, until they are used up or the device has installed (a mutation may be harmless)."""
    with tempfile.TemporaryDirectory() as directory, HostileDdiServer(sleep="00:00:01") as server:
        gateway = make_gateway(Path(directory) / "gw")
        connect(gateway, server)     # type: ignore[arg-type]
        bundle = gateway.bundle("u2", sequence=2)
        action = server.create_deployment("gw-test", [{"part": "os", "name": "gw", "version": "2",
                                                       "artifacts": {"u2.fwb": bundle.read_bytes()}}])
        for root in roots:
            server.add("root", times=1, rewrite=lambda _body, root=root: root)
        for sleep in sleeps:
            server.add("root", times=1, rewrite=lambda body, sleep=sleep: {**body, "config": {"polling": {"sleep": sleep}}})
        pending = list(deployments)
        server.add("deployment", rewrite=lambda body: mutated(body, pending.pop(0)) if pending else body)
        daemon = Running(gateway, server, Path(directory) / "daemon.log")   # type: ignore[arg-type]
        try:
            def poke_until(condition: Any, what: str) -> None:
                deadline = time.monotonic() + 20
                while not condition():
                    assert time.monotonic() < deadline, f"{what}\n{daemon.log()}"
                    daemon.daemon.wakeup("test")
                    time.sleep(0.05)

            poke_until(lambda: not pending or server.actions[action.id].state == "closed", "every answer served")
            polled = len(server.requests)
            poke_until(lambda: len(server.requests) > polled + 1, "a poll after them")
            assert daemon.thread.is_alive()
        finally:
            daemon.stop()
        log = daemon.log()
        assert "code=internal" not in log and "Traceback" not in log and "event=request-failed" not in log, log
