"""The MQTT link against a real mosquitto on loopback."""

from __future__ import annotations

import json
import queue
import random
import subprocess
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from agent.demo.local import free_port

from agent.mqtt import MqttConfig, MqttLink


class Watcher:
    """A second client that publishes wake-ups and records what the device publishes."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("mqtt://").split(":")
        self.messages: queue.Queue[tuple[str, dict, bool]] = queue.Queue()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"watcher-{random.random()}")
        self.client.on_message = lambda _c, _u, m: self.messages.put((m.topic, json.loads(m.payload), m.retain))
        self.client.connect(host, int(port))
        self.client.subscribe("fwagent/#", qos=1)
        self.client.loop_start()

    def next(self, topic: str, timeout: float = 5.0) -> tuple[dict, bool]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                got, payload, retained = self.messages.get(timeout=deadline - time.monotonic())
            except queue.Empty:
                break
            if got == topic:
                return payload, retained
        raise AssertionError(f"nothing on {topic}")

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_wakeup_state_progress_and_last_will(broker: str) -> None:
    wakeups: queue.Queue[str] = queue.Queue()
    link = MqttLink(MqttConfig(url=broker, device_id="gw-1", progress_interval=60), wakeups.put)
    link.start()
    assert link.connected.wait(5)
    watcher = Watcher(broker)
    try:
        assert watcher.next("fwagent/gw-1/state")[0] == {"state": "online"}         # live or retained
        late = Watcher(broker)                      # joins after the broker has the state: gets it retained
        try:
            assert late.next("fwagent/gw-1/state") == ({"state": "online"}, True)
        finally:
            late.stop()
        watcher.client.publish("fwagent/gw-1/wakeup", b"{}", qos=1)
        assert wakeups.get(timeout=5) == "wakeup"
        link.publish_state("downloading", action="42")
        assert watcher.next("fwagent/gw-1/state")[0] == {"state": "downloading", "action": "42"}
        assert link.publish_progress(done=1, total=10) and not link.publish_progress(done=2, total=10)
        assert watcher.next("fwagent/gw-1/progress")[0] == {"done": 1, "total": 10}
        link.client.socket().close()           # the device vanishes without a goodbye
        assert watcher.next("fwagent/gw-1/state", timeout=10)[0] == {"state": "offline"}
    finally:
        watcher.stop()
        link.client.loop_stop()


def test_broadcast_wakeups_are_spread(broker: str) -> None:
    wakeups: queue.Queue[tuple[str, float]] = queue.Queue()
    links = []
    sent = time.monotonic()
    for number in range(5):
        config = MqttConfig(url=broker, device_id=f"gw-{number}", broadcast_topic="fwagent/all/wakeup", spread=1.0)
        link = MqttLink(config, lambda reason: wakeups.put((reason, time.monotonic())), rng=random.Random(number))
        link.start()
        assert link.connected.wait(5)
        links.append(link)
    watcher = Watcher(broker)
    try:
        sent = time.monotonic()
        watcher.client.publish("fwagent/all/wakeup", b"{}", qos=1)
        times = sorted(wakeups.get(timeout=5)[1] - sent for _ in links)
        assert times[-1] - times[0] > 0.2 and times[-1] <= 1.5          # spread over the second, not at once
    finally:
        watcher.stop()
        for link in links:
            link.stop()


def test_a_broker_that_is_down_never_blocks(tmp_path: Path) -> None:
    link = MqttLink(MqttConfig(url=f"mqtt://127.0.0.1:{free_port()}", device_id="gw-1"), lambda _r: None)
    started = time.monotonic()
    link.start()
    link.publish_state("idle")                  # queued, not blocking
    link.stop()
    assert time.monotonic() - started < 2 and not link.connected.is_set()


def test_a_broker_with_passwords_takes_the_configured_credentials(tmp_path: Path) -> None:
    from conftest import mosquitto, require_tool

    passwd = tmp_path / "passwd"
    subprocess.run([require_tool("mosquitto_passwd", "mosquitto"), "-c", "-b", str(passwd), "gw-1", "s3cret"],
                   check=True, timeout=10, capture_output=True)
    passwd.chmod(0o600)
    with mosquitto(tmp_path, f"allow_anonymous false\npassword_file {passwd}\n") as url:
        wrong = MqttLink(MqttConfig(url=url, device_id="gw-1", username="gw-1", password="nope"), lambda _r: None)
        woken: queue.Queue = queue.Queue()
        right = MqttLink(MqttConfig(url=url, device_id="gw-1", username="gw-1", password="s3cret"), woken.put)
        wrong.start()
        right.start()
        try:
            assert right.connected.wait(10), "the right password is taken"
            assert not wrong.connected.wait(1), "a wrong password is refused"
            publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
            publisher.username_pw_set("gw-1", "s3cret")
            host, port = url.removeprefix("mqtt://").split(":")
            publisher.connect(host, int(port))
            publisher.loop_start()
            publisher.publish("fwagent/gw-1/wakeup", b"{}", qos=1).wait_for_publish(5)
            assert woken.get(timeout=5) == "wakeup"
            publisher.loop_stop()
        finally:
            wrong.stop()
            right.stop()


def test_a_tls_broker_is_checked_against_the_configured_ca(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Only the configured CA counts: variables that name another one change nothing."""
    import datetime

    from conftest import mosquitto
    from pki import Authority

    now = datetime.datetime.now(datetime.timezone.utc)
    ca, other = Authority("broker CA", now), Authority("another CA", now)
    server = ca.issue(tmp_path, "broker", ips=("127.0.0.1",))
    trusted, untrusted = ca.write(tmp_path / "ca.crt"), other.write(tmp_path / "other.crt")
    for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.setenv(variable, str(untrusted))
    settings = f"allow_anonymous true\ncafile {trusted}\ncertfile {server.cert}\nkeyfile {server.key}\n"
    with mosquitto(tmp_path, settings) as url:
        tls_url = url.replace("mqtt://", "mqtts://")
        woken: queue.Queue = queue.Queue()
        good = MqttLink(MqttConfig(url=tls_url, device_id="gw-1", ca_file=str(trusted)), woken.put)
        bad = MqttLink(MqttConfig(url=tls_url, device_id="gw-2", ca_file=str(untrusted)), lambda _r: None)
        good.start()
        bad.start()
        try:
            assert good.connected.wait(10), "the broker's certificate is signed by the configured CA"
            assert not bad.connected.wait(1.5), "a broker the configured CA did not sign is refused"
            good.client.publish("fwagent/gw-1/wakeup", b"{}", qos=1)     # through the same TLS session
            assert woken.get(timeout=5) == "wakeup"
        finally:
            good.stop()
            bad.stop()


def test_after_a_dropped_connection_the_last_state_goes_over_the_last_will(broker: str) -> None:
    link = MqttLink(MqttConfig(url=broker, device_id="gw-7"), lambda _r: None)
    watcher = Watcher(broker)
    try:
        link.start()
        assert link.connected.wait(10)
        assert watcher.next("fwagent/gw-7/state")[0] == {"state": "online"}
        link.publish_state("download", action="12")
        assert watcher.next("fwagent/gw-7/state")[0] == {"state": "download", "action": "12"}
        link.connected.clear()
        link.client.socket().close()               # the link drops; paho reconnects by itself
        assert watcher.next("fwagent/gw-7/state", timeout=10)[0] == {"state": "offline"}
        assert watcher.next("fwagent/gw-7/state", timeout=15)[0] == {"state": "download", "action": "12"}
    finally:
        link.stop()
        watcher.stop()
