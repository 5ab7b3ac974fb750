"""Reading what the devices publish: topic filters for one device or all under a prefix, the
(device, kind) of a received topic, and a read-only MQTT client that keeps its subscriptions
across broker restarts.

`edge-agent watch` and `edge-agent dashboard` both read the fleet this way, so they connect
with the same config keys (TLS, login, protocol) as the agent, fail the same way at start (one
line, exit 69) and recover from a lost broker the same way (backoff, then resubscribe).
Nothing here publishes, and nothing imports the vision stack.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode

from edge_agent.config import MqttConfig
from edge_agent.publish.connection import (
    Backoff,
    Connection,
    MqttError,
    connect_once,
    describe_error,
)
from edge_agent.publish.messages import Topics

CONNECTED = "connected"
# The topics under a device's base that subscribers read (`Topics` names each).
KINDS = ("availability", "state", "faces", "stats", "events")
FIRST_CONNECT_S = 5.0


def topic_filters(prefix: str, device: str, kinds: Iterable[str]) -> list[str]:
    """`<prefix>/<device>/<kind>` for each kind; device "+" matches every device."""
    topics = Topics.of(prefix, device)
    return [f"{topics.base}/{kind}" for kind in kinds]


def split_topic(prefix: str, topic: str) -> tuple[str, str] | None:
    """(device id, kind) of `<prefix>/<device>/<kind>`; None for any other topic. A device
    id never holds a "/", since the subscriptions match it with "+"."""
    head = prefix.rstrip("/") + "/"
    if not topic.startswith(head):
        return None
    device, _, kind = topic[len(head) :].rpartition("/")
    if not device or "/" in device or not kind:
        return None
    return device, kind


class Subscriber:
    """One paho client subscribed to `filters`, handing each message to `on_message(topic,
    payload)` on the thread that calls `step`. `status` is "connected" or why not, and
    `on_status()` is called whenever it changes."""

    def __init__(
        self,
        mqtt: MqttConfig,
        filters: list[str],
        on_message: Callable[[str, bytes], object],
        *,
        name: str,
        qos: int = 0,
    ) -> None:
        self.connection = Connection.from_config(mqtt)
        self.filters = [(topic, qos) for topic in filters]
        self.on_message = on_message
        self.on_status: Callable[[], None] = lambda: None
        self.status = "connecting"
        self.client_id = f"edge-agent-{name}-{uuid.uuid4().hex[:8]}"
        self.client: paho.Client | None = None
        self._backoff = Backoff(0.5, 10.0)
        self._stop = threading.Event()

    def _set_status(self, status: str) -> None:
        if status != self.status:
            self.status = status
            self.on_status()

    def connect(self, timeout_s: float = FIRST_CONNECT_S) -> None:
        """The first connection; raises MqttError (exit 69) with the reason when the broker
        cannot be reached or refuses the login."""

        def setup(client: paho.Client) -> None:
            client.on_message = self._deliver

        client = connect_once(self.connection, self.client_id, timeout_s, setup)
        client.on_connect = self._on_connect
        client.subscribe(self.filters)
        self.client = client
        self._set_status(CONNECTED)

    def _deliver(self, _client: Any, _userdata: Any, message: paho.MQTTMessage) -> None:
        self.on_message(message.topic, bytes(message.payload))

    def _on_connect(self, client: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        # Clean sessions: after a reconnect the broker knows no subscription of ours.
        if not reason.is_failure:
            client.subscribe(self.filters)
            self._set_status(CONNECTED)
        else:
            self._set_status(str(self.connection.refusal(reason)))

    def step(self, timeout: float = 0.1) -> None:
        """One turn of the network loop. After a lost connection it waits (backoff with
        jitter, cut short by `stop`) and tries once to reconnect."""
        client = self.client
        if client is None:
            raise RuntimeError("connect() first")
        rc = client.loop(timeout=timeout)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            delay = self._backoff.next()
            self._set_status(f"connection lost, retrying in {delay:.1f} s")
            if self._stop.wait(delay):
                return
            try:
                client.reconnect()  # the backoff resets only once the broker says yes
            except (OSError, MqttError) as error:
                self._set_status(f"disconnected ({describe_error(error)})")
        if self.status == CONNECTED:
            self._backoff.reset()

    def run(self) -> None:
        """`step` until `stop`: the body of a background thread."""
        while not self._stop.is_set():
            self.step()

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self._stop.set()
        if self.client is not None:
            self.client.disconnect()
