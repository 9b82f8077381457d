"""Wake-ups and telemetry over MQTT (paho-mqtt).

* A message on the device's wake-up topic (default ``fwagent/<id>/wakeup``)
  asks for an immediate poll; one on a broadcast topic asks for a poll after a
  random delay of up to ``spread`` seconds, so that a fleet woken together does
  not stampede the server.
* The state is published retained, progress at most every ``progress_interval``
  seconds, both QoS 1, as JSON on ``fwagent/<id>/state`` and ``.../progress``.
* A last will marks the device ``offline`` when it vanishes.

paho's network thread runs the callbacks; they only hand a wake-up to
``on_wakeup`` (which must not block: the daemon posts an event) or start a
timer. A wake-up carries no data: a message longer than ``MAX_MESSAGE`` is
not one, and is dropped (logged at most once per ``LOG_INTERVAL``, with the
count); broadcast wake-ups that arrive while one is pending are folded into it. A broker that is down never blocks the caller: connecting is
asynchronous and paho reconnects by itself.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

MAX_MESSAGE = 1024        # bytes of a wake-up message; anything longer is dropped
LOG_INTERVAL = 10.0       # seconds between two log lines about dropped messages


@dataclass(frozen=True)
class MqttConfig:
    url: str                                   # mqtt://host:1883 or mqtts://host:8883
    device_id: str
    wakeup_topic: str | None = None            # default fwagent/<id>/wakeup
    broadcast_topic: str | None = None         # e.g. fwagent/all/wakeup
    spread: float = 60.0                       # seconds, for broadcast wake-ups
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    keepalive: int = 60
    progress_interval: float = 1.0

    @property
    def prefix(self) -> str:
        return f"fwagent/{self.device_id}"


class MqttLink:
    def __init__(self, config: MqttConfig, on_wakeup: Callable[[str], None], *, log: Any = None,
                 rng: random.Random | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        import paho.mqtt.client as mqtt

        from agent.log import Throttle

        self.config = config
        self.log = log
        self.dropped = 0                            # oversized messages since the last log line
        self.drop_log = Throttle(LOG_INTERVAL, clock)
        self.on_wakeup = on_wakeup
        self.rng = rng or random.Random()
        self.clock = clock
        self.last_progress = float("-inf")
        self.last_state: str | None = None
        self.was_connected = False
        self.timers: list[threading.Timer] = []
        self.connected = threading.Event()         # connected, and the broker has taken the subscriptions
        self.wakeup_topic = config.wakeup_topic or f"{config.prefix}/wakeup"
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"fwagent-{config.device_id}")
        if config.username:
            self.client.username_pw_set(config.username, config.password)
        url = urlsplit(config.url)
        if url.scheme == "mqtts":
            self.client.tls_set(ca_certs=config.ca_file)
        self.host, self.port = url.hostname or "localhost", url.port or (8883 if url.scheme == "mqtts" else 1883)
        self.client.will_set(f"{config.prefix}/state", json.dumps({"state": "offline"}), qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *_args: self.connected.clear()
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe

    def start(self) -> None:
        """Connect in the background; never blocks on the broker."""
        self.client.connect_async(self.host, self.port, keepalive=self.config.keepalive)
        self.client.loop_start()

    def stop(self) -> None:
        for timer in self.timers:
            timer.cancel()
        self.client.disconnect()
        self.client.loop_stop()

    def publish_state(self, state: str, **details: Any) -> None:
        self.last_state = json.dumps({"state": state, **details})
        self.client.publish(f"{self.config.prefix}/state", self.last_state, qos=1, retain=True)

    def publish_progress(self, **progress: Any) -> bool:
        """Throttled: returns False when this update was dropped as too soon after the last."""
        now = self.clock()
        if now - self.last_progress < self.config.progress_interval:
            return False
        self.last_progress = now
        self.client.publish(f"{self.config.prefix}/progress", json.dumps(progress), qos=1)
        return True

    # --- paho's network thread ---------------------------------------------------------

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if getattr(reason, "is_failure", False):
            return
        topics = [(self.wakeup_topic, 1)]
        if self.config.broadcast_topic:
            topics.append((self.config.broadcast_topic, 1))
        client.subscribe(topics)
        if self.was_connected and self.last_state is not None:
            # Back after a drop: the broker published the last will; the last state goes over it.
            client.publish(f"{self.config.prefix}/state", self.last_state, qos=1, retain=True)
        else:
            self.publish_state("online")   # the broker takes it after the subscription, sent first
        self.was_connected = True

    def _on_subscribe(self, client: Any, userdata: Any, mid: Any, reasons: Any, properties: Any) -> None:
        """The broker's answer to the subscription: from now on a wake-up reaches this device."""
        refused = [str(reason) for reason in reasons or () if getattr(reason, "is_failure", False)]
        if not refused:
            self.connected.set()
        elif self.log is not None:
            self.log.error("mqtt-subscribe-refused", reasons=", ".join(refused),
                           msg="the broker refused the wake-up topics: wake-ups will not reach this device")

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        if len(message.payload) > MAX_MESSAGE:
            self.dropped += 1
            if self.log is not None and self.drop_log.due():
                self.log.warning("mqtt-message-dropped", topic=message.topic, size=len(message.payload),
                                 dropped=self.dropped, msg=f"a wake-up carries at most {MAX_MESSAGE} bytes")
                self.dropped = 0
            return
        if message.topic == self.wakeup_topic:
            self.on_wakeup("wakeup")
        elif message.topic == self.config.broadcast_topic:
            self.timers = [t for t in self.timers if t.is_alive()]
            if self.timers:
                return                      # a broadcast wake-up is pending already: this one is in it
            delay = self.rng.uniform(0.0, self.config.spread)
            timer = threading.Timer(delay, self.on_wakeup, args=("broadcast",))
            timer.daemon = True
            self.timers.append(timer)
            timer.start()
