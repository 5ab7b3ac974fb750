"""Nothing lost: a broker that goes away mid-stream, a publisher SIGKILLed mid-stream, and
the last will. Real mosquitto, real processes, every wait bounded."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest
from helpers import wait_until
from helpers.mqtt import (
    EVENTS_PER_CYCLE,
    Collector,
    Mosquitto,
    PublisherProcess,
    first_occurrences,
    publisher_config,
    scene,
)

from edge_agent.publish import MqttPublisher

pytestmark = pytest.mark.broker  # every test here runs a mosquitto

AVAILABILITY = "edge-agent/test-device/availability"


def test_last_will_says_offline_when_the_publisher_is_killed(mosquitto: Mosquitto, tmp_path: Path):
    with Collector(mosquitto, (AVAILABILITY,)) as collector:
        child = PublisherProcess(mosquitto.host, mosquitto.port, tmp_path, frames=10)
        try:
            assert collector.wait(lambda c: [m.payload for m in c.messages] == [b"online"], 10), (
                child.stderr()
            )
        finally:
            child.kill()
        assert collector.wait(
            lambda c: [m.payload for m in c.messages] == [b"online", b"offline"], 5
        )
    with Collector(mosquitto, (AVAILABILITY,)) as late:  # and it stays retained
        assert late.wait(lambda c: c.messages, 5)
        assert late.messages[0].payload == b"offline" and late.messages[0].retain


def test_broker_down_for_seconds_mid_stream_then_every_seq_arrives_in_order(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, logger="edge_agent.mqtt")
    broker = Mosquitto(tmp_path / "broker", persistence=True).start()
    collector = Collector(
        broker, ("edge-agent/+/events",), client_id="dashboard", persistent=True
    ).start()
    publisher = MqttPublisher(publisher_config(broker.host, broker.port, tmp_path / "state"))
    publisher.start()
    feeding = threading.Event()
    feeding.set()
    slowest = [0.0]
    statuses: set[str] = set()

    def feed() -> None:
        for result in scene():
            if not feeding.is_set():
                return
            start = time.perf_counter()
            publisher.publish_frame(result, time.time())  # type: ignore[arg-type]
            slowest[0] = max(slowest[0], time.perf_counter() - start)
            statuses.add(str(publisher.status))
            time.sleep(0.01)

    feeder = threading.Thread(target=feed, daemon=True)
    try:
        feeder.start()
        assert collector.wait(lambda c: len(c.seqs()) >= 8, 5)
        broker.stop()
        down_at = publisher.last_seq
        time.sleep(3.0)  # the pipeline keeps producing; the outbox keeps it
        assert str(publisher.status).startswith("disconnected"), publisher.status
        assert "the broker closed the connection" in caplog.text, caplog.text
        assert "unspecified" not in caplog.text.lower()
        assert publisher.last_seq >= down_at + 8 and publisher.outbox_depth >= 8
        broker.start()
        assert wait_until(lambda: str(publisher.status) == "connected", 5)
        time.sleep(0.5)
        feeding.clear()
        feeder.join(5)
        total = publisher.last_seq
        assert collector.wait(lambda c: set(c.seqs()) >= set(range(1, total + 1)), 10), sorted(
            set(range(1, total + 1)) - set(collector.seqs())
        )
        assert first_occurrences(collector.seqs()) == list(range(1, total + 1))
        assert wait_until(lambda: publisher.outbox_depth == 0, 5)
        # Down for 3 s: a publish_frame that waited on the network would take seconds.
        assert slowest[0] < 0.5, f"publish_frame took {slowest[0] * 1e3:.1f} ms"
        assert any(s.startswith("disconnected") for s in statuses)
        assert caplog.text.count("MQTT connected to") == 2  # once, and once after the outage
    finally:
        feeding.clear()
        publisher.stop(flush_timeout_s=1)
        collector.stop()
        broker.stop()


def test_publisher_killed_mid_stream_and_restarted_sends_every_seq(tmp_path: Path):
    broker = Mosquitto(tmp_path / "broker", persistence=True).start()
    collector = Collector(
        broker, ("edge-agent/+/events",), client_id="dashboard", persistent=True
    ).start()
    state = tmp_path / "state"
    first = second = None
    try:
        # 1. Streaming while connected.
        first = PublisherProcess(broker.host, broker.port, state, frames=400, interval=0.02)
        assert collector.wait(lambda c: len(c.seqs()) >= 2 * EVENTS_PER_CYCLE, 10), first.stderr()
        # 2. The broker goes away; the publisher keeps storing events, then is SIGKILLed.
        broker.stop()
        delivered = max(collector.seqs())
        assert wait_until(lambda: first.last_seq >= delivered + 2 * EVENTS_PER_CYCLE, 10)
        first.kill()
        stored = first.last_seq
        # 3. Broker back, publisher restarted on the same state dir: the backlog goes out
        #    first, and new events continue the sequence.
        broker.start()
        second = PublisherProcess(broker.host, broker.port, state, frames=20, start=1000)
        assert second.wait_line("done", 15), second.stderr()
        total = second.last_seq
        assert total == stored + 2 * EVENTS_PER_CYCLE  # seq continued, nothing reused
        assert collector.wait(lambda c: set(c.seqs()) >= set(range(1, total + 1)), 10), sorted(
            set(range(1, total + 1)) - set(collector.seqs())
        )
        assert first_occurrences(collector.seqs()) == list(range(1, total + 1))
        assert stored > delivered  # some came from the dead process's outbox only
    finally:
        for child in (first, second):
            if child is not None:
                child.kill()
        collector.stop()
        broker.stop()


def test_stop_sends_the_backlog_before_saying_offline(tmp_path: Path):
    """A finite source ends: stop() flushes the outbox (bounded), then `offline`."""
    from helpers.mqtt import free_port

    port = free_port()
    config = publisher_config("127.0.0.1", port, tmp_path / "state")
    offline = MqttPublisher(config)
    offline.start()
    for result in scene(1000):  # 400 events while no broker listens
        offline.publish_frame(result, time.time())  # type: ignore[arg-type]
    offline.stop(flush_timeout_s=0)
    with (
        Mosquitto(tmp_path / "broker", port=port) as broker,
        Collector(broker, ("edge-agent/+/events", AVAILABILITY)) as collector,
    ):
        publisher = MqttPublisher(config)
        publisher.start()
        publisher.stop(flush_timeout_s=10)  # at once: the backlog is still on disk
        assert collector.wait(
            lambda c: (
                c.snapshot("/availability")[-1:] != []
                and c.snapshot("/availability")[-1].payload == b"offline"
            ),
            5,
        )
        order = [m.topic.rsplit("/", 1)[1] for m in collector.snapshot()]
        assert order[-1] == "availability" and order.count("events") >= 400
        assert first_occurrences(collector.seqs()) == list(range(1, 401))
    again = MqttPublisher(config)
    again.start()
    assert again.outbox_depth == 0 and again.last_seq == 400
    again.stop(flush_timeout_s=0)


def test_a_frozen_broker_does_not_make_the_sender_spin(tmp_path: Path):
    """A broker that stops answering (the link looks open, no acks come) fills the window;
    the sender must then wait on the socket, not busy-loop until keepalive notices."""
    import resource
    import signal

    broker = Mosquitto(tmp_path / "broker").start()
    publisher = MqttPublisher(publisher_config(broker.host, broker.port, tmp_path / "state"))
    publisher.start()
    try:
        deadline = time.monotonic() + 5
        while str(publisher.status) != "connected" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert broker.process is not None
        broker.process.send_signal(signal.SIGSTOP)
        frames = scene(700)
        for result in frames:  # events and state changes fill the in-flight window
            publisher.publish_frame(result, time.time())
        before = resource.getrusage(resource.RUSAGE_SELF)
        time.sleep(2.0)
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        assert cpu < 0.5, f"{cpu:.2f} s of CPU in 2 s while the broker was frozen"
    finally:
        if broker.process is not None:
            broker.process.send_signal(signal.SIGCONT)
        publisher.stop(flush_timeout_s=1.0)
        broker.stop()
