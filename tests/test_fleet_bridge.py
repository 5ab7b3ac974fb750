"""A fleet on an existing engine (docs/fleet.md): an edge mosquitto bridged to a central one
with the bridge config written in docs/fleet.md, the agent's publisher on the edge broker,
`edge-agent dashboard` and a persistent subscriber on the central one. The central broker
goes down while events are published and the edge broker is restarted meanwhile: every
event still arrives, and the dashboard follows the device again once the central is back."""

from __future__ import annotations

import itertools
import re
import time
from pathlib import Path

import pytest
from helpers import wait_until
from helpers.dashboard import Dashboard, PageDevice, open_stream, read_events
from helpers.mqtt import (
    EVENTS_PER_CYCLE,
    Collector,
    Mosquitto,
    first_occurrences,
    free_port,
    publisher_config,
    scene,
)

from edge_agent.publish import MqttPublisher

pytestmark = [pytest.mark.slow, pytest.mark.broker]

DOC = Path(__file__).resolve().parents[1] / "docs" / "fleet.md"
DEVICE = "bridged-pi"
CYCLE = 10  # frames of helpers.mqtt.scene per EVENTS_PER_CYCLE events


def documented_bridge(central_port: int) -> list[str]:
    """The bridge section of docs/fleet.md (the first ```conf block), aimed at `central_port`."""
    block = re.search(r"```conf\n(.*?)```", DOC.read_text(), re.S)
    assert block, "docs/fleet.md has no ```conf block"
    lines = [line.strip() for line in block[1].splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    assert "topic edge-agent/# out 1" in lines and "cleansession false" in lines
    return [
        f"address 127.0.0.1:{central_port}" if line.startswith("address ") else line
        for line in lines
    ]


def test_events_cross_a_bridge_through_an_outage_and_the_dashboard_follows(tmp_path: Path):
    central = Mosquitto(tmp_path / "central", persistence=True).start()
    edge = Mosquitto(tmp_path / "edge", persistence=True)
    edge.settings += documented_bridge(central.port)
    edge.start()
    publisher = MqttPublisher(
        publisher_config(edge.host, edge.port, tmp_path / "agent", DEVICE, state_interval_s=0.0)
    )
    recorder = Collector(
        central, ("edge-agent/+/events",), client_id="central-recorder", persistent=True
    )
    config = tmp_path / "dashboard.toml"
    config.write_text(f'[mqtt]\nhost = "127.0.0.1"\nport = {central.port}\n')
    frames = scene()
    try:
        recorder.start()
        publisher.start()
        with Dashboard("--config", str(config), "--listen", f"127.0.0.1:{free_port()}") as board:
            port = int(board.url().rsplit(":", 1)[1].strip("/"))
            stream = open_stream(port)
            ((_, snapshot),) = read_events(stream, 1)
            device = PageDevice(snapshot, DEVICE)

            def publish(cycles: int) -> None:
                for result in itertools.islice(frames, cycles * CYCLE):
                    publisher.publish_frame(result, time.time())  # type: ignore[arg-type]
                    time.sleep(0.01)

            def follow(predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
                deadline = time.monotonic() + timeout
                while not predicate() and time.monotonic() < deadline:
                    try:
                        deltas = read_events(stream, 1)
                    except TimeoutError:  # a quiet stream: look again
                        continue
                    for _, delta in deltas:
                        device.apply(delta)
                        if delta.get("type") == "broker":
                            device.data["broker"] = delta["status"]
                return bool(predicate())

            # Through the bridge, as if the dashboard sat next to the device.
            publish(2)
            assert follow(lambda: len(device.events) >= 2 * EVENTS_PER_CYCLE, 15), device.events
            assert device.data["availability"] == "online"

            # The central broker goes down; events go on and queue on the edge broker,
            # which is itself restarted (its persistence keeps the bridge's queue).
            central.stop()
            publish(2)
            assert wait_until(lambda: publisher.outbox_depth == 0, 10), "the edge took them"
            edge.stop()
            edge.start()
            central.start()
            total = 4 * EVENTS_PER_CYCLE
            assert recorder.wait(lambda c: len(set(c.seqs())) >= total, 40), recorder.seqs()
            assert first_occurrences(recorder.seqs()) == list(range(1, total + 1))

            # The dashboard reconnects by itself and shows what comes next.
            assert follow(lambda: device.data.get("broker") == "connected", 30), board.output()
            publish(1)
            later = total + EVENTS_PER_CYCLE
            assert follow(lambda: any(e["seq"] == later for e in device.events), 20)
            seqs = [e["seq"] for e in device.events]
            assert len(seqs) == len(set(seqs)), "a redelivered event was logged twice"
            stream.close()
            assert board.stop() == 0, board.output()
        # A consumer that connects now gets the device's latest messages, retained centrally.
        with Collector(central, (f"edge-agent/{DEVICE}/+",)) as late:
            assert late.wait(lambda c: c.snapshot("/availability"), 5)
            assert [(m.payload, m.retain) for m in late.snapshot("/availability")] == [
                (b"online", True)
            ]
            assert late.wait(lambda c: c.snapshot("/state"), 5)
            assert late.snapshot("/state")[0].retain
    finally:
        publisher.stop()
        recorder.stop()
        edge.stop()
        central.stop()
