"""The embedded MQTT 3.1.1 broker the demo starts when mosquitto is absent, driven by real
paho clients, raw sockets and the daemon's own publisher. Loopback only, every wait bounded.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as paho
import pytest
from helpers import wait_until
from helpers.mqtt import Collector, first_occurrences, publisher_config, scene
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.demo.broker import (
    CONNACK,
    CONNECT,
    PINGREQ,
    PINGRESP,
    SUBACK,
    SUBSCRIBE,
    EmbeddedBroker,
    _string,
    packet,
    topic_matches,
    valid_filter,
)


@pytest.fixture
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as running:
        yield running


class Client:
    """A paho 3.1.1 client that records what it receives."""

    def __init__(
        self, broker: EmbeddedBroker, *, client_id: str = "", will: tuple[str, str] | None = None
    ) -> None:
        self.messages: list[tuple[str, bytes, int, bool]] = []
        self.lock = threading.Lock()
        self.acked = threading.Event()
        self.disconnected = threading.Event()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"t-{uuid.uuid4().hex[:8]}",
            protocol=paho.MQTTv311,
        )
        if will is not None:
            self.client.will_set(will[0], will[1], qos=1, retain=True)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_args: self.acked.set()
        self.client.on_disconnect = lambda *_args: self.disconnected.set()
        connected = threading.Event()
        self.client.on_connect = lambda *_args: connected.set()
        self.client.connect(broker.host, broker.port, keepalive=10)
        self.client.loop_start()
        assert connected.wait(5), "no CONNACK"

    def _on_message(self, _c: Any, _u: Any, message: Any) -> None:
        with self.lock:
            self.messages.append(
                (message.topic, bytes(message.payload), message.qos, bool(message.retain))
            )

    def subscribe(self, *topics: tuple[str, int]) -> Client:
        self.acked.clear()
        self.client.subscribe(list(topics))
        assert self.acked.wait(5), "no SUBACK"
        return self

    def publish(self, topic: str, payload: str | bytes, qos: int = 1, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(5)  # returns at PUBACK (QoS 1) or PUBCOMP (QoS 2)
        assert info.is_published()

    def got(self, count: int, timeout: float = 5.0) -> list[tuple[str, bytes, int, bool]]:
        wait_until(lambda: len(self.messages) >= count, timeout)
        time.sleep(0.1)  # and nothing more
        with self.lock:
            return list(self.messages)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_topic_matching_follows_the_spec() -> None:
    cases = [
        ("a/b/c", "a/b/c", True),
        ("a/+/c", "a/b/c", True),
        ("a/+/c", "a/b/d", False),
        ("a/#", "a", True),
        ("a/#", "a/b/c", True),
        ("#", "a/b", True),
        ("+", "a/b", False),
        ("+/+", "/b", True),
        ("a/+", "a/", True),
        ("#", "$SYS/x", False),
        ("+/x", "$SYS/x", False),
        ("$SYS/#", "$SYS/x", True),
        ("a/b", "a/b/c", False),
        ("a/b/c", "a/b", False),
    ]
    for topic_filter, topic, expected in cases:
        assert topic_matches(topic_filter, topic) is expected, (topic_filter, topic)
    assert valid_filter("a/+/#") and not valid_filter("a/#/b") and not valid_filter("a+")
    assert not valid_filter("") and not valid_filter("a/b#")


def test_wildcard_subscriptions_route_each_message_once(broker: EmbeddedBroker) -> None:
    sub = Client(broker).subscribe(("a/+/c", 1), ("a/#", 0))
    other = Client(broker).subscribe(("x/#", 1))
    pub = Client(broker)
    pub.publish("a/b/c", "1")
    pub.publish("a/z", "2", qos=0)
    pub.publish("b/c", "3")
    pub.publish("$SYS/a", "4")
    received = sub.got(2)
    assert [(t, p, q) for t, p, q, _ in received] == [("a/b/c", b"1", 1), ("a/z", b"2", 0)]
    assert other.got(0) == []
    sub.client.unsubscribe("a/+/c")
    time.sleep(0.2)
    pub.publish("a/b/c", "5")
    assert [(t, q) for t, _, q, _ in sub.got(3)][-1] == ("a/b/c", 0)  # now only via a/#
    for client in (sub, other, pub):
        client.stop()


def test_qos_is_the_lower_of_publish_and_subscription(broker: EmbeddedBroker) -> None:
    low = Client(broker).subscribe(("q", 0))
    high = Client(broker).subscribe(("q", 2))  # granted 1
    pub = Client(broker)
    pub.publish("q", "at most once", qos=0)
    pub.publish("q", "at least once", qos=1)
    pub.publish("q", "exactly once", qos=2)  # PUBREC / PUBREL / PUBCOMP, delivered at QoS 1
    assert [q for _, _, q, _ in low.got(3)] == [0, 0, 0]
    assert [(p, q) for _, p, q, _ in high.got(3)] == [
        (b"at most once", 0),
        (b"at least once", 1),
        (b"exactly once", 1),
    ]
    for client in (low, high, pub):
        client.stop()


def test_retained_messages_go_to_new_subscribers_and_can_be_cleared(broker: EmbeddedBroker) -> None:
    pub = Client(broker)
    live = Client(broker).subscribe(("r/#", 1))
    pub.publish("r/1", "first", retain=True)
    pub.publish("r/1", "second", retain=True)
    pub.publish("r/2", "two", retain=True)
    assert [(p, r) for _, p, _, r in live.got(3)] == [
        (b"first", False),
        (b"second", False),
        (b"two", False),
    ]  # live delivery: no flag
    late = Client(broker).subscribe(("r/+", 1))
    assert sorted((t, p, r) for t, p, _, r in late.got(2)) == [
        ("r/1", b"second", True),
        ("r/2", b"two", True),
    ]
    pub.publish("r/1", b"", retain=True)  # clears r/1
    latest = Client(broker).subscribe(("r/#", 1))
    assert [(t, p) for t, p, _, _ in latest.got(1)] == [("r/2", b"two")]
    for client in (pub, live, late, latest):
        client.stop()


def _raw_connect(
    broker: EmbeddedBroker,
    client_id: str,
    *,
    keepalive: int = 10,
    level: int = 4,
    flags: int = 0x02,
    will: tuple[str, bytes] | None = None,
) -> tuple[socket.socket, bytes]:
    body = _string("MQTT") + bytes([level])
    payload = _string(client_id)
    if will is not None:
        flags |= 0x04 | 0x08 | 0x20  # will, QoS 1, retained
        payload += _string(will[0]) + len(will[1]).to_bytes(2, "big") + will[1]
    body += bytes([flags]) + keepalive.to_bytes(2, "big") + payload
    sock = socket.create_connection((broker.host, broker.port), 5)
    sock.settimeout(5)
    sock.sendall(packet(CONNECT, 0, body))
    return sock, _recv_packet(sock)


def _recv_packet(sock: socket.socket) -> bytes:
    data = b""
    while len(data) < 2 or len(data) < 2 + data[1]:  # small packets only
        chunk = sock.recv(256)
        if not chunk:
            break
        data += chunk
    return data


def test_connect_refusals_ping_and_subscribe_on_the_wire(broker: EmbeddedBroker) -> None:
    sock, connack = _raw_connect(broker, "raw", level=5)  # MQTT 5 is not spoken
    assert connack == bytes([CONNACK << 4, 2, 0, 1])
    assert sock.recv(16) == b""  # and the connection is closed
    sock.close()
    sock, connack = _raw_connect(broker, "", flags=0)  # no id and no clean session
    assert connack == bytes([CONNACK << 4, 2, 0, 2])
    sock.close()
    sock, connack = _raw_connect(broker, "")  # an empty id with a clean session is fine
    assert connack == bytes([CONNACK << 4, 2, 0, 0])
    sock.sendall(packet(PINGREQ, 0, b""))
    assert _recv_packet(sock) == bytes([PINGRESP << 4, 0])
    sock.sendall(
        packet(
            SUBSCRIBE,
            2,
            (7).to_bytes(2, "big") + _string("a/#/b") + b"\x01" + _string("ok/+") + b"\x01",
        )
    )
    assert _recv_packet(sock) == bytes([SUBACK << 4, 4, 0, 7, 0x80, 1])  # bad filter: 0x80
    sock.close()


def test_last_will_on_a_lost_connection_not_on_disconnect(broker: EmbeddedBroker) -> None:
    watcher = Client(broker).subscribe(("dev/+/availability", 1))
    polite = Client(broker, will=("dev/polite/availability", "offline"))
    polite.publish("dev/polite/availability", "online", retain=True)
    polite.stop()  # DISCONNECT: no will
    sock, connack = _raw_connect(broker, "rude", will=("dev/rude/availability", b"offline"))
    assert connack[-1] == 0
    sock.close()  # gone without DISCONNECT
    received = watcher.got(2)
    assert [(t, p) for t, p, _, _ in received] == [
        ("dev/polite/availability", b"online"),
        ("dev/rude/availability", b"offline"),
    ]
    late = Client(broker).subscribe(("dev/rude/availability", 1))
    assert [(p, r) for _, p, _, r in late.got(1)] == [(b"offline", True)]  # the will retained
    watcher.stop()
    late.stop()


def test_keepalive_expiry_and_takeover_send_the_will(broker: EmbeddedBroker) -> None:
    watcher = Client(broker).subscribe(("w/#", 1))
    silent, _ = _raw_connect(broker, "silent", keepalive=1, will=("w/silent", b"gone"))
    first, _ = _raw_connect(broker, "same", will=("w/same", b"taken over"))
    second = Client(broker, client_id="same")
    assert first.recv(16) == b""  # the broker closed the older connection
    received = watcher.got(2, timeout=5)  # the silent one after 1.5 x 1 s
    assert sorted(p for _, p, _, _ in received) == [b"gone", b"taken over"]
    assert silent.recv(16) == b""
    second.publish("w/still-there", "yes")
    assert watcher.got(3)[-1][1] == b"yes"
    for sock in (silent, first):
        sock.close()
    for client in (watcher, second):
        client.stop()


def test_the_daemon_publisher_delivers_through_it(broker: EmbeddedBroker, tmp_path) -> None:
    from edge_agent.publish import MqttPublisher

    config = publisher_config(broker.host, broker.port, tmp_path, protocol="3.1.1")
    with Collector(broker, ("edge-agent/#",)) as collector:  # type: ignore[arg-type]
        publisher = MqttPublisher(config)
        publisher.start()
        for result in scene(40):
            publisher.publish_frame(result, time.time())  # type: ignore[arg-type]
        assert collector.wait(lambda c: len(set(c.seqs())) >= 16, 10)
        publisher.stop(flush_timeout_s=5)
        assert collector.wait(
            lambda c: any(m.payload == b"offline" for m in c.snapshot("/availability")), 5
        )
        assert first_occurrences(collector.seqs()) == list(range(1, 17))
        assert [e["type"] for e in collector.events()[:4]] == [
            "face_appeared",
            "emotion_changed",
            "emotion_changed",
            "face_lost",
        ]
        assert collector.snapshot("/availability")[0].payload == b"online"
        assert collector.snapshot("/state")


def test_stop_closes_every_connection() -> None:
    broker = EmbeddedBroker().start()
    client = Client(broker).subscribe(("#", 0))
    started = time.monotonic()
    broker.stop()
    assert time.monotonic() - started < 3
    assert client.disconnected.wait(5)
    client.client.loop_stop()
    with pytest.raises(OSError):
        socket.create_connection((broker.host, broker.port), 1).close()
