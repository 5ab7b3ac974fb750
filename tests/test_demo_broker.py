"""The embedded broker `edge-agent demo` starts where mosquitto is absent (amqtt, in a process
of its own), through what the demo relies on: the daemon's real publisher speaking MQTT
3.1.1, and paho subscribers. Events at QoS 1 all arrive, state and availability are
retained, the last will reaches a subscriber when the publisher is killed, and the broker
starts, fails and stops in one line and a bounded time. Loopback only, every wait bounded.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from helpers import wait_until
from helpers.mqtt import Collector, PublisherProcess, first_occurrences, publisher_config, scene
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.cli import demo
from edge_agent.demo import broker as embedded
from edge_agent.demo.broker import EmbeddedBroker
from edge_agent.demo.mosquitto import BrokerError
from edge_agent.publish import MqttPublisher

BASE = "edge-agent/test-device"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(tmp_path / "broker") as running:
        yield running


def publisher(broker: EmbeddedBroker, state_dir: Path, **mqtt: object) -> MqttPublisher:
    config = publisher_config(broker.host, broker.port, state_dir, protocol="3.1.1", **mqtt)
    running = MqttPublisher(config)
    running.start()
    return running


def test_it_says_what_it_is(broker: EmbeddedBroker) -> None:
    assert (broker.name, broker.protocol, broker.host) == ("embedded", "3.1.1", "127.0.0.1")
    assert broker.process is not None and broker.process.poll() is None


def test_the_daemon_publisher_delivers_every_event_at_qos_1(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    with Collector(broker, ("edge-agent/#",)) as collector:
        sender = publisher(broker, tmp_path)
        for result in scene(40):
            sender.publish_frame(result, time.time())  # type: ignore[arg-type]
        assert collector.wait(lambda c: len(set(c.seqs())) >= 16, 10)
        sender.stop(flush_timeout_s=5)
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
        assert {m.qos for m in collector.snapshot("/events")} == {1}
        assert collector.snapshot("/availability")[0].payload == b"online"
        assert collector.snapshot("/state")
    assert "Traceback" not in broker.log(), broker.log()


def test_state_and_availability_are_retained_for_a_late_subscriber(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    sender = publisher(broker, tmp_path, state_interval_s=0.0, faces_interval_s=0.0)
    for result in scene(4):
        sender.publish_frame(result, time.time())  # type: ignore[arg-type]
    assert wait_until(lambda: sender.outbox_depth == 0 and sender.last_seq == 2, 5)
    with Collector(broker, ("edge-agent/#", "homeassistant/#")) as late:
        assert late.wait(lambda c: len(c.messages) >= 6, 5)
        time.sleep(0.2)  # nothing more should come: events are not retained
        retained = {m.topic: m for m in late.messages}
        assert all(m.retain for m in late.messages)
        assert retained[f"{BASE}/availability"].payload == b"online"
        state = retained[f"{BASE}/state"].json()
        assert state["face_count"] == 1 and state["faces"][0]["emotion"] == "sad"
        assert sum(t.startswith("homeassistant/") for t in retained) == 22  # discovery
        assert f"{BASE}/events" not in retained
    sender.stop()
    # amqtt 0.12 also hands a new client, as it connects, the retained messages that match
    # the other clients' subscriptions (here the late one's homeassistant/#): only the
    # topic subscribed to counts.
    with Collector(broker, (f"{BASE}/availability",)) as after:
        assert after.wait(lambda c: c.snapshot("/availability"), 5)
        offline = after.snapshot("/availability")[-1]
        assert offline.payload == b"offline" and offline.retain


def test_the_last_will_says_offline_when_the_publisher_is_killed(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    availability = f"{BASE}/availability"
    with Collector(broker, (availability,)) as collector:
        child = PublisherProcess(broker.host, broker.port, tmp_path, frames=10, protocol="3.1.1")
        try:
            assert collector.wait(lambda c: [m.payload for m in c.messages] == [b"online"], 10), (
                child.stderr()
            )
        finally:
            child.kill()
        assert collector.wait(
            lambda c: [m.payload for m in c.messages] == [b"online", b"offline"], 5
        )
        assert not collector.messages[1].retain  # a live delivery
    with Collector(broker, (availability,)) as late:  # and it stays retained
        assert late.wait(lambda c: c.snapshot("/availability"), 5)
        offline = late.snapshot("/availability")[-1]
        assert offline.payload == b"offline" and offline.retain


def test_stop_is_quick_and_closes_every_connection(tmp_path: Path) -> None:
    broker = EmbeddedBroker(tmp_path).start()
    disconnected = threading.Event()
    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:8]}", protocol=paho.MQTTv311
    )
    client.on_disconnect = lambda *_args: disconnected.set()
    client.connect(broker.host, broker.port, keepalive=10)
    client.loop_start()
    started = time.monotonic()
    broker.stop()
    assert time.monotonic() - started < 3
    assert disconnected.wait(5)
    client.loop_stop()
    with pytest.raises(OSError):
        socket.create_connection((broker.host, broker.port), 1).close()
    broker.stop()  # twice is harmless


def test_a_taken_port_is_one_line_naming_the_broker(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()  # another program's listener must not pass for the broker
        port = taken.getsockname()[1]
        with pytest.raises(BrokerError) as failure:
            EmbeddedBroker(tmp_path, port=port).start()
    message = str(failure.value)
    assert message.startswith("the embedded MQTT broker (amqtt) did not start: ")
    assert "\n" not in message and "address already in use" in message.lower(), message


def test_without_amqtt_it_says_how_to_install_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(embedded.importlib.util, "find_spec", lambda _name: None)
    with pytest.raises(BrokerError, match=r"needs amqtt: pip install 'edge-agent\[demo\]'"):
        EmbeddedBroker(tmp_path).start()


def test_the_demo_falls_back_to_it_when_mosquitto_fails(tmp_path: Path, monkeypatch, capsys):
    fake = tmp_path / "bin" / "mosquitto"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'Error: this mosquitto is broken' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    broker = demo.start_broker("auto", tmp_path / "work")
    try:
        assert (broker.name, broker.protocol) == ("embedded", "3.1.1")
    finally:
        broker.stop()
    assert capsys.readouterr().out.splitlines() == [
        f"starting the MQTT broker: {fake} ...",
        f"  mosquitto ({fake}) did not start: Error: this mosquitto is broken; "
        "using the embedded broker instead",
    ]
