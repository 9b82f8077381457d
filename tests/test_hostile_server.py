"""The daemon, as a process, against a DDI server that lies (hil/server/hostile.py).

Only the signing keys and the configuration are trusted. Whatever the server
(or whoever answers in its place) sends, nothing of it becomes a path, the
device's credentials go to the configured server's origin only, no answer
holds or floods the daemon, a closed action is not installed again, and the
daemon keeps polling.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_process import DaemonProcess
from install_bench import Gateway, make_gateway
from pki import Authority, Issued

from agent.demo.ddi_server import Action
from hil.server.hostile import ForeignHost, HostileDdiServer, answer, drip, huge, nested, redirect

DEVICE = "gw-test"


@pytest.fixture
def gateway(tmp_path: Path) -> Gateway:
    return make_gateway(tmp_path / "gw")


@pytest.fixture
def server() -> Iterator[HostileDdiServer]:
    with HostileDdiServer(sleep="00:00:01") as server:
        yield server


@pytest.fixture
def foreign() -> Iterator[ForeignHost]:
    with ForeignHost() as host:
        yield host


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Issued, Path]:
    """(the CA the device is configured with, a server certificate it signed, another CA)."""
    directory = tmp_path_factory.mktemp("pki")
    now = datetime.datetime.now(datetime.timezone.utc)
    ca, other = Authority("fwagent test CA", now), Authority("another CA", now)
    return ca.write(directory / "ca.pem"), ca.issue(directory, "server", ips=("127.0.0.1",)), \
        other.write(directory / "other.pem")


def connect(gateway: Gateway, url: str, server: str = "", extra: str = "") -> None:
    gateway.config_path.write_text(gateway.config_path.read_text() + f'\n[server]\nurl = "{url}"\n'
                                   f'startup_spread = 0\npoll_min = 1\ntimeout = 3\n{server}\n{extra}\n')


def deploy(server: HostileDdiServer, gateway: Gateway, name: str = "u2", sequence: int = 2) -> Action:
    bundle = gateway.bundle(name, sequence=sequence, version=f"{sequence}.0.0")
    return server.create_deployment(DEVICE, [{"part": "os", "name": "gateway", "version": f"{sequence}.0.0",
                                              "artifacts": {f"{name}.fwb": bundle.read_bytes()}}])


def start(gateway: Gateway, tmp_path: Path, env: dict[str, str] | None = None) -> DaemonProcess:
    return DaemonProcess(gateway.config_path, tmp_path / "daemon.log", env=env)


def closed(server: HostileDdiServer, action: Action) -> Callable[[], bool]:
    return lambda: server.actions[action.id].state == "closed"


def details(server: HostileDdiServer, action: Action) -> str:
    return " ".join(d for s in server.statuses(action.id) for d in s.get("details", []))


def polls(server: HostileDdiServer) -> int:
    return sum(1 for method, path in list(server.requests) if method == "GET" and path.endswith(f"/{DEVICE}"))


def untouched(gateway: Gateway, slot_b: str) -> bool:
    return gateway.booted() == "A" and gateway.bootloader().get_primary() == "A" and gateway.slot_digest("B") == slot_b


def artifact_links(body: dict[str, Any], href: Callable[[str], str]) -> dict[str, Any]:
    """A deploymentBase with every artifact's download links replaced by ``href(old)``."""
    for chunk in body["deployment"]["chunks"]:
        for artifact in chunk["artifacts"]:
            artifact["_links"] = {rel: {"href": href(link["href"])} for rel, link in artifact["_links"].items()}
    return body


def files_outside(root: Path, state: Path) -> dict[str, str]:
    """Every file under ``root`` but the state directory, the logs and the (file) bootloader's
    environment, which every start writes to confirm the booted slot, with its SHA-256."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file() and state not in p.parents and p.suffix != ".log" and p.name != "bootenv.json"}


# --- nothing the server sends becomes a path ---------------------------------------------------------


@pytest.mark.parametrize("bad_id", ["{victim}", "../../../victim", "..", "a/b", "7/../../../victim", "x" * 65,
                                    "caf\u00e9", " 7", "7\n"])
def test_an_action_id_that_is_no_id_is_refused_and_never_becomes_a_path(
        bad_id: str, gateway: Gateway, server: HostileDdiServer, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("precious")
    connect(gateway, server.url)
    action = deploy(server, gateway)
    server.add("deployment", rewrite=lambda body: {**body, "id": bad_id.format(victim=victim)})
    before, slot_b = files_outside(tmp_path, gateway.root / "state"), gateway.slot_digest("B")
    with start(gateway, tmp_path) as daemon:
        daemon.wait_for(closed(server, action), "the action to be closed as failed")
    assert server.actions[action.id].result == "failure"
    assert "ddi-action-id" in details(server, action) and "is not an action id" in details(server, action)
    assert (victim / "keep").read_text() == "precious" and [p.name for p in victim.iterdir()] == ["keep"]
    assert files_outside(tmp_path, gateway.root / "state") == before
    assert untouched(gateway, slot_b)
    assert "Traceback" not in daemon.log()


@pytest.mark.parametrize("name", ["../../../victim/u2.fwb", "{absolute}", "..", "a\nb.fwb", "x" * 256])
def test_an_artifact_name_that_is_no_file_name_is_refused(name: str, gateway: Gateway, server: HostileDdiServer,
                                                          tmp_path: Path) -> None:
    absolute = Path(f"/tmp/fwagent-{os.getpid()}-{tmp_path.name}.fwb")
    connect(gateway, server.url)
    action = deploy(server, gateway)

    def rename(body: dict[str, Any]) -> dict[str, Any]:
        body["deployment"]["chunks"][0]["artifacts"][0]["filename"] = name.format(absolute=absolute)
        return body

    server.add("deployment", rewrite=rename)
    before = files_outside(tmp_path, gateway.root / "state")
    with start(gateway, tmp_path) as daemon:
        daemon.wait_for(closed(server, action), "the action to be closed as failed")
    assert server.actions[action.id].result == "failure" and "ddi-artifact-name" in details(server, action)
    assert files_outside(tmp_path, gateway.root / "state") == before and not absolute.exists()
    assert not any((gateway.root / "state").rglob("*.fwb"))


def test_downloads_are_named_by_the_agent_and_private(gateway: Gateway, server: HostileDdiServer,
                                                      tmp_path: Path) -> None:
    """A name the server may give (dots, dashes) is fine, but it names no file: the agent does.
    (A closed maintenance window: the bundle is downloaded ahead instead of streamed.)"""
    connect(gateway, server.url, extra="[download]\nrate_limit = 1000000\n")
    bundle = gateway.bundle("u2", sequence=2)
    action = server.create_deployment(DEVICE, [{"part": "os", "name": "gw", "version": "2",
                                                "artifacts": {"..-rf.fwb": bundle.read_bytes()}}],
                                      window="unavailable")
    incoming = gateway.root / "state" / "incoming"
    with start(gateway, tmp_path) as daemon:
        daemon.wait_for(lambda: any(incoming.glob("action-*/artifact-0")), "the download")
        [download] = incoming.glob("action-*/artifact-0")
        assert download.parent.name == "action-" + hashlib.sha256(str(action.id).encode()).hexdigest()[:16]
        assert incoming.stat().st_mode & 0o777 == 0o700 and download.parent.stat().st_mode & 0o777 == 0o700
        assert download.stat().st_mode & 0o777 == 0o600
        server.set_window(action.id, "available")
        daemon.wait_for(closed(server, action), "the update")
    assert server.actions[action.id].result == "success" and list(incoming.iterdir()) == []


# --- credentials go to the server's origin only --------------------------------------------------------


def test_controller_links_to_another_host_are_not_followed(gateway: Gateway, server: HostileDdiServer,
                                                           foreign: ForeignHost, tmp_path: Path) -> None:
    connect(gateway, server.url, 'target_token = "s3cret-token"')
    server.tokens[DEVICE] = "s3cret-token"
    deploy(server, gateway)

    def elsewhere(body: dict[str, Any]) -> dict[str, Any]:
        for link in body.get("_links", {}).values():
            link["href"] = link["href"].replace(server.url, foreign.url)
        return body

    server.add("root", rewrite=elsewhere)
    with start(gateway, tmp_path) as daemon:
        daemon.wait_for(lambda: polls(server) >= 4, "four polls")
        assert daemon.alive()
    assert foreign.seen == []
    assert "code=ddi-foreign-link" in daemon.log() and "s3cret-token" not in daemon.log()


def test_artifacts_on_a_host_not_listed_fail_the_action_and_are_never_asked_for(
        gateway: Gateway, server: HostileDdiServer, foreign: ForeignHost, tmp_path: Path) -> None:
    connect(gateway, server.url, 'target_token = "s3cret-token"')
    server.tokens[DEVICE] = "s3cret-token"
    action = deploy(server, gateway)
    server.add("deployment", rewrite=lambda body: artifact_links(body, lambda href: href.replace(server.url,
                                                                                                  foreign.url)))
    slot_b = gateway.slot_digest("B")
    with start(gateway, tmp_path) as daemon:
        daemon.wait_for(closed(server, action), "the action to be closed as failed")
    assert server.actions[action.id].result == "failure" and "foreign-link" in details(server, action)
    assert foreign.seen == [] and untouched(gateway, slot_b)


def test_a_listed_host_serves_artifacts_and_never_sees_the_token(gateway: Gateway, server: HostileDdiServer,
                                                                 foreign: ForeignHost, tmp_path: Path) -> None:
    port = foreign.url.rsplit(":", 1)[1]
    connect(gateway, server.url, 'target_token = "s3cret-token"', f'[download]\nhosts = ["127.0.0.1:{port}"]')
    server.tokens[DEVICE] = "s3cret-token"
    action = deploy(server, gateway)
    foreign.files["/cdn/u2.fwb"] = (gateway.root / "u2.fwb").read_bytes()
    server.add("deployment", rewrite=lambda body: artifact_links(body, lambda _href: f"{foreign.url}/cdn/u2.fwb"))
    with start(gateway, tmp_path) as daemon:
        daemon.wait_for(closed(server, action), "the update")
    assert server.actions[action.id].result == "success", details(server, action)
    assert foreign.seen and all("Authorization" not in seen.headers for seen in foreign.seen)
    assert gateway.booted() == "B"


@pytest.mark.parametrize("where", ["deployment", "redirect"])
def test_a_link_whose_host_two_parsers_read_differently_is_refused(
        where: str, gateway: Gateway, server: HostileDdiServer, foreign: ForeignHost, tmp_path: Path) -> None:
    """``http://FOREIGN\\@SERVER/...``: a check reading SERVER would hand the token to FOREIGN."""
    connect(gateway, server.url, 'target_token = "s3cret-token"')
    server.tokens[DEVICE] = "s3cret-token"
    action = deploy(server, gateway)
    tricky = server.url.replace("http://", f"http://{foreign.url.removeprefix('http://')}\\@") + "/u2.fwb"
    if where == "deployment":
        server.add("deployment", rewrite=lambda body: artifact_links(body, lambda _href: tricky))
    else:
        server.add("artifact", reply=redirect(tricky))
    with start(gateway, tmp_path) as daemon:
        daemon.wait_for(closed(server, action), "the action to be closed as failed")
    assert server.actions[action.id].result == "failure" and "unsupported-link" in details(server, action)
    assert foreign.seen == []


@pytest.mark.parametrize("listed", [False, True])
def test_redirects_are_checked_hop_by_hop(listed: bool, gateway: Gateway, server: HostileDdiServer,
                                          foreign: ForeignHost, tmp_path: Path) -> None:
    port = foreign.url.rsplit(":", 1)[1]
    connect(gateway, server.url, 'target_token = "s3cret-token"',
            f'[download]\nhosts = ["127.0.0.1:{port}"]' if listed else "")
    server.tokens[DEVICE] = "s3cret-token"
    action = deploy(server, gateway)
    foreign.files["/cdn/u2.fwb"] = (gateway.root / "u2.fwb").read_bytes()
    server.add("artifact", reply=redirect(f"{foreign.url}/cdn/u2.fwb"))
    with start(gateway, tmp_path) as daemon:
        daemon.wait_for(closed(server, action), "the action to end")
    if listed:
        assert server.actions[action.id].result == "success", details(server, action)
        assert foreign.seen and all("Authorization" not in seen.headers for seen in foreign.seen)
    else:
        assert server.actions[action.id].result == "failure" and "foreign-link" in details(server, action)
        assert foreign.seen == []


def test_an_https_server_cannot_send_the_device_to_plain_http(gateway: Gateway, pki: tuple[Path, Issued, Path],
                                                              tmp_path: Path) -> None:
    """Neither an http link nor a redirect to http: the token would travel in clear."""
    ca, issued, _ = pki
    with HostileDdiServer(sleep="00:00:01", tls=(issued.cert, issued.key), tokens={DEVICE: "s3cret-token"}) \
            as server, ForeignHost() as clear:
        connect(gateway, server.url, f'target_token = "s3cret-token"\nca_file = "{ca}"')
        first = deploy(server, gateway)
        server.add("deployment", times=1, rewrite=lambda body: artifact_links(
            body, lambda href: href.replace(server.url, clear.url)))
        with start(gateway, tmp_path) as daemon:
            daemon.wait_for(closed(server, first), "the first action to be closed as failed")
            second = deploy(server, gateway, "u3", sequence=3)
            server.add("artifact", reply=redirect(f"{clear.url}/u3.fwb"))
            daemon.wait_for(closed(server, second), "the second action to be closed as failed")
        assert "insecure-link" in details(server, first) and "insecure-link" in details(server, second)
        assert clear.seen == []


def test_the_configured_ca_wins_over_the_environment(gateway: Gateway, pki: tuple[Path, Issued, Path],
                                                     tmp_path: Path) -> None:
    """REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE name another CA: the server link and the downloads
    still trust the configured one (and only it)."""
    ca, issued, other = pki
    env = {"REQUESTS_CA_BUNDLE": str(other), "CURL_CA_BUNDLE": str(other), "SSL_CERT_FILE": str(other)}
    with HostileDdiServer(sleep="00:00:01", tls=(issued.cert, issued.key)) as server:
        connect(gateway, server.url, f'ca_file = "{ca}"')
        action = deploy(server, gateway)
        with start(gateway, tmp_path, env=env) as daemon:
            daemon.wait_for(closed(server, action), "the update")
        assert server.actions[action.id].result == "success" and gateway.booted() == "B"
        assert "event=environment-ignored variable=REQUESTS_CA_BUNDLE" in daemon.log()


@pytest.mark.parametrize("configured", [True, False])
def test_a_ca_from_requests_variables_is_not_trusted(configured: bool, gateway: Gateway,
                                                     pki: tuple[Path, Issued, Path], tmp_path: Path) -> None:
    """Neither over a configured CA nor in place of the system's: REQUESTS_CA_BUNDLE and
    CURL_CA_BUNDLE are some HTTP libraries' conventions, not the device's configuration."""
    ca, issued, other = pki
    with HostileDdiServer(sleep="00:00:01", tls=(issued.cert, issued.key)) as server:
        connect(gateway, server.url, f'ca_file = "{other}"' if configured else "")
        with start(gateway, tmp_path, env={"REQUESTS_CA_BUNDLE": str(ca), "CURL_CA_BUNDLE": str(ca)}) as daemon:
            daemon.wait_for(lambda: "code=ddi-tls" in daemon.log(), "the refused TLS handshake")
        assert server.requests == []
        assert "event=environment-ignored variable=CURL_CA_BUNDLE" in daemon.log()


def test_without_a_configured_ca_the_systems_cas_are_trusted(gateway: Gateway, pki: tuple[Path, Issued, Path],
                                                             tmp_path: Path) -> None:
    """The system's CAs as OpenSSL finds them (SSL_CERT_FILE stands in for /etc/ssl here), as
    for MQTT: not the copy of a CA list that the HTTP library carries."""
    ca, issued, _ = pki
    with HostileDdiServer(sleep="00:00:01", tls=(issued.cert, issued.key)) as server:
        connect(gateway, server.url)
        action = deploy(server, gateway)
        with start(gateway, tmp_path, env={"SSL_CERT_FILE": str(ca)}) as daemon:
            daemon.wait_for(closed(server, action), "the update")
        assert server.actions[action.id].result == "success"


# --- no answer holds, floods or stops the daemon ---------------------------------------------------------


@pytest.mark.parametrize(("reply", "code"), [
    (huge(8 << 20), "ddi-too-large"),
    (huge(8 << 20, declared=False), "ddi-too-large"),
    (drip(b'{"config": {"polling": {"sleep": "00:00:01"}}}', 0.5), "ddi-timeout"),
    (nested(200_000), "ddi-too-deep"),
    (nested(40), "ddi-too-deep"),
    (answer(200, b'{"config": 7}'), "ddi-format"),
    (answer(200, b"\xff\xfe not json"), "ddi-format"),
    (redirect("http://127.0.0.2:9/elsewhere"), "ddi-foreign-link"),
    (answer(302), "ddi-redirect"),
])
def test_an_answer_out_of_bounds_is_a_coded_error_and_polling_goes_on(
        reply: Any, code: str, gateway: Gateway, server: HostileDdiServer, tmp_path: Path) -> None:
    connect(gateway, server.url)
    server.add("root", reply=reply, times=2)
    action = deploy(server, gateway)
    with start(gateway, tmp_path) as daemon:
        daemon.wait_for(closed(server, action), "the update after two bad answers", timeout=60)
    log = daemon.log()
    assert log.count(f"event=poll-failed code={code}") == 2, log
    assert server.actions[action.id].result == "success" and "Traceback" not in log


def test_a_closed_action_offered_again_is_not_installed_again(gateway: Gateway, server: HostileDdiServer,
                                                              tmp_path: Path) -> None:
    connect(gateway, server.url)
    action = deploy(server, gateway)
    with start(gateway, tmp_path) as daemon:
        daemon.wait_for(closed(server, action), "the update")
        installed = gateway.slot_digest("B"), gateway.slot_digest("A"), gateway.bootloader().variables()
        for _ in range(3):
            server.reopen(action.id)
            daemon.wait_for(closed(server, action), "the action offered again to be closed")
    assert daemon.log().count("event=install-step step=reboot") == 1
    assert details(server, action).count("already installed") == 3
    assert (gateway.slot_digest("B"), gateway.slot_digest("A"), gateway.bootloader().variables()) == installed
    assert gateway.booted() == "B"


def test_a_file_link_is_refused_at_once_not_retried(gateway: Gateway, server: HostileDdiServer,
                                                    tmp_path: Path) -> None:
    connect(gateway, server.url)
    action = deploy(server, gateway)
    server.add("deployment", rewrite=lambda body: artifact_links(body, lambda _href: "file:///etc/passwd"))
    with start(gateway, tmp_path) as daemon:
        daemon.wait_for(closed(server, action), "the action to be closed as failed", timeout=15)
    assert "unsupported-link" in details(server, action)
    assert not any((gateway.root / "state").rglob("artifact-*"))


def test_a_step_report_the_server_drops_is_sent_again_in_order(gateway: Gateway, server: HostileDdiServer,
                                                               tmp_path: Path) -> None:
    connect(gateway, server.url)
    action = deploy(server, gateway)
    server.add("feedback", reply=answer(500), times=3)
    with start(gateway, tmp_path) as daemon:
        daemon.wait_for(closed(server, action), "the update")
    steps = [d for s in server.statuses(action.id) for d in s.get("details", [])]
    wanted = ["checking the signed manifest of u2.fwb", "verifying the signed manifest", "installing into slot B", "switching to slot B",
              "rebooting into slot B", "running the health checks", "committing slot B"]
    found = [next(i for i, d in enumerate(steps) if text in d) for text in wanted]
    assert found == sorted(found), steps
    assert all(sum(text in d for d in steps) == 1 for text in wanted), steps


def test_a_final_result_waits_for_the_step_reports_of_its_action(gateway: Gateway, server: HostileDdiServer,
                                                                   tmp_path: Path) -> None:
    """The last step report meets a 500: the result, ready right after it, must not overtake it
    (a closed action takes no more reports)."""
    connect(gateway, server.url)
    action = deploy(server, gateway)
    server.add("feedback", reply=answer(500), times=2, when=lambda body: b"committing slot B" in body)
    with start(gateway, tmp_path) as daemon:
        daemon.wait_for(closed(server, action), "the update")
    steps = [d for s in server.statuses(action.id) for d in s.get("details", [])]
    committing = next(i for i, d in enumerate(steps) if "committing slot B" in d)
    assert committing < next(i for i, d in enumerate(steps) if "update committed" in d), steps
    assert "report-refused" not in daemon.log()


def test_credentials_in_urls_are_never_logged(gateway: Gateway, server: HostileDdiServer, tmp_path: Path) -> None:
    host = server.url.removeprefix("http://")
    connect(gateway, f"http://fleet:s3cret-password@{host}",
            extra='[mqtt]\nurl = "mqtt://gw:s3cret-mqtt@127.0.0.1:9"\n')
    server.add("root", reply=answer(503), times=1)
    with start(gateway, tmp_path) as daemon:
        daemon.wait_for(lambda: polls(server) >= 2, "two polls")
    log = daemon.log()
    assert "fleet:***@" in log and "gw:***@" in log
    assert "s3cret" not in log


def test_a_wakeup_flood_is_one_line_and_a_few_polls(gateway: Gateway, server: HostileDdiServer, broker: str,
                                                    tmp_path: Path) -> None:
    """2,000 wake-ups and a 5 MiB message over a real broker (mosquitto)."""
    import paho.mqtt.client as mqtt

    connect(gateway, server.url, "poll_default = 3600\n", f'[mqtt]\nurl = "{broker}"\n')
    server.sleep = "01:00:00"
    with start(gateway, tmp_path) as daemon:
        daemon.wait_for(lambda: polls(server) >= 1, "the first poll")
        sender = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        host, port = broker.removeprefix("mqtt://").split(":")
        sender.connect(host, int(port))
        sender.loop_start()
        try:
            def subscribed() -> bool:      # the device listens once a wake-up makes it poll
                sender.publish(f"fwagent/{DEVICE}/wakeup", b"{}", qos=1)
                return polls(server) >= 2
            daemon.wait_for(subscribed, "a wake-up to be heard")
            first, flooded = polls(server), time.monotonic()
            for _ in range(2000):
                sender.publish(f"fwagent/{DEVICE}/wakeup", b"{}", qos=1)
            sender.publish(f"fwagent/{DEVICE}/wakeup", b"x" * (5 << 20), qos=1).wait_for_publish(10)
            daemon.wait_for(lambda: "event=mqtt-message-dropped" in daemon.log(), "the big message to be dropped")
        finally:
            sender.loop_stop()
            sender.disconnect()
    log = daemon.log()
    assert 1 <= log.count("event=wakeup") <= 4, log
    assert "size=5242880" in log
    assert polls(server) - first <= 2 + (time.monotonic() - flooded)    # at most one a second, whatever comes
