"""Test helpers for MQTT: a real mosquitto on a free loopback port (the demo's launcher),
certificates, a scene that drives the real tracker so publishers get genuine TrackEvents, a
subscriber that records everything, and a publisher in a process of its own.

The `mosquitto` fixture (conftest.py) gives a running anonymous broker; `Mosquitto(...)`
builds others (password file, TLS, persistence). Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.demo import mosquitto as launcher
from edge_agent.demo.mosquitto import free_port as free_port  # for the tests
from helpers import need, wait_until

TESTS = Path(__file__).resolve().parent.parent


class Mosquitto(launcher.Mosquitto):
    """The demo's mosquitto launcher with what the tests read and need: notices and
    connection messages in `log()`, and room for many QoS 1 messages queued for a
    persistent session that is away. Skipped where mosquitto is missing, failed in CI."""

    def __init__(self, directory: Path, **options: Any) -> None:
        options.setdefault("binary", need("mosquitto"))
        options.setdefault("log_types", ("error", "warning", "notice", "information"))
        options.setdefault("connection_messages", True)
        options.setdefault("max_queued_messages", 100000)
        super().__init__(directory, **options)


def password_file(path: Path, user: str, password: str) -> Path:
    """A mosquitto password file made by `mosquitto_passwd -b`."""
    subprocess.run(
        [need("mosquitto_passwd"), "-c", "-b", str(path), user, password],
        check=True,
        capture_output=True,
        timeout=10,
    )
    return path


def tls_files(directory: Path) -> dict[str, Path]:
    """A throwaway CA, a server certificate for 127.0.0.1/localhost and a client
    certificate, made with the openssl command line."""
    openssl = need("openssl")
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        name: directory / name
        for name in ("ca.crt", "ca.key", "server.crt", "server.key", "client.crt", "client.key")
    }

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, timeout=30, cwd=directory)

    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run(
        "req",
        "-x509",
        *key,
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=edge-agent test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    server_names = "subjectAltName=IP:127.0.0.1,DNS:localhost"
    for name, usage, extra in (
        ("server", "serverAuth", server_names),
        ("client", "clientAuth", None),
    ):
        ext = directory / f"{name}.ext"
        ext.write_text(
            f"basicConstraints=CA:FALSE\nextendedKeyUsage={usage}\n"
            + (f"{extra}\n" if extra else "")
        )
        run(
            "req",
            *key,
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            "-subj",
            f"/CN=edge-agent test {name}",
        )
        run(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{name}.crt",
            "-days",
            "2",
            "-extfile",
            ext.name,
        )
    return {
        "ca": files["ca.crt"],
        "server_cert": files["server.crt"],
        "server_key": files["server.key"],
        "client_cert": files["client.crt"],
        "client_key": files["client.key"],
    }


# -- a scene with real tracker events -------------------------------------------------------

# Per 10-frame cycle (0.1 s a frame): a face shows happy, sad, then angry for six frames
# and leaves for four: face_appeared, emotion_changed twice, face_lost (4 events).
_CYCLE = ("happy", "happy", "happy", "sad", "sad", "angry", None, None, None, None)
EVENTS_PER_CYCLE = 4


def scene(frames: int | None = None, *, start: int = 0) -> Iterator[object]:
    """FrameResults from the real Tracker fed with synthetic detections and attributes."""
    from edge_agent.types import EMOTIONS, Detection, FrameResult
    from edge_agent.vision.classify import FaceAttributes
    from edge_agent.vision.track import Tracker, TrackerSettings

    tracker = Tracker(
        TrackerSettings(confirm_hits=2, lost_after_s=0.3, smoothing_s=0.0, emotion_hold_s=0.0)
    )
    index = start
    while frames is None or index < start + frames:
        t = index * 0.1
        label = _CYCLE[index % len(_CYCLE)]
        detections = [] if label is None else [Detection((100.0, 80.0, 90.0, 90.0), 0.95)]
        tracks = tracker.associate(detections, t)
        for track in tracks:
            scores = np.full(len(EMOTIONS), 0.02, np.float32)
            scores[EMOTIONS.index(label)] = 0.88
            tracker.observe(track, FaceAttributes(scores, 31.0 + index % 7, 0.2), t)
        tracker.confirm(tracks, t)
        yield FrameResult(index, t, [track.result() for track in tracks], tracker.drain_events())
        index += 1


# -- a subscriber that records everything ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    qos: int

    def json(self) -> Any:
        return json.loads(self.payload)


class Collector:
    """A paho subscriber recording every message. `persistent` keeps its session (and
    queued QoS 1 messages) on the broker across its own and the broker's restarts."""

    def __init__(
        self,
        broker: launcher.BrokerProcess,
        topics: tuple[str, ...] = ("#",),
        *,
        client_id: str = "",
        persistent: bool = False,
        tls: dict[str, Path] | None = None,
    ) -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.broker = broker
        self.topics = topics
        self.messages: list[Received] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"collector-{uuid.uuid4().hex[:8]}",
            protocol=paho.MQTTv311,
            clean_session=not persistent,
        )
        if tls is not None:
            self.client.tls_set(
                ca_certs=str(tls["ca"]),
                certfile=str(tls["client_cert"]),
                keyfile=str(tls["client_key"]),
            )
        self.client.reconnect_delay_set(0.05, 0.5)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_args: self._subscribed.set()
        self.client.on_message = self._on_message

    def _on_connect(
        self, client: Any, _userdata: Any, _flags: Any, reason: Any, _properties: Any
    ) -> None:
        if not reason.is_failure:
            client.subscribe([(topic, 1) for topic in self.topics])

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        with self._lock:
            self.messages.append(
                Received(message.topic, bytes(message.payload), bool(message.retain), message.qos)
            )

    def start(self, timeout: float = 5.0) -> Collector:
        self.client.connect(self.broker.host, self.broker.port, keepalive=10)
        self.client.loop_start()
        if not self._subscribed.wait(timeout):
            self.stop()
            raise RuntimeError("the collector did not get its SUBACK")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Collector:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def snapshot(self, suffix: str = "") -> list[Received]:
        with self._lock:
            return [m for m in self.messages if m.topic.endswith(suffix)]

    def events(self) -> list[dict[str, Any]]:
        return [m.json() for m in self.snapshot("/events")]

    def seqs(self) -> list[int]:
        return [event["seq"] for event in self.events()]

    def wait(self, predicate: Callable[[Collector], bool], timeout: float) -> bool:
        return wait_until(lambda: predicate(self), timeout)


def first_occurrences(seqs: list[int]) -> list[int]:
    """The sequence with redeliveries removed (QoS 1 is at least once)."""
    seen: set[int] = set()
    return [s for s in seqs if not (s in seen or seen.add(s))]  # type: ignore[func-returns-value]


# -- a publisher in its own process (to SIGKILL it) -----------------------------------------


def publisher_config(
    host: str, port: int, state_dir: Path, device: str = "test-device", **mqtt: Any
) -> Any:
    from edge_agent.config import Config

    config = Config(device_id=device)
    config.state.dir = str(state_dir)
    config.mqtt.host, config.mqtt.port = host, port
    config.mqtt.reconnect_min_s, config.mqtt.reconnect_max_s = 0.05, 0.5
    for key, value in mqtt.items():
        setattr(config.mqtt, key, value)
    return config


class PublisherProcess:
    """`python -m helpers.mqtt publish '<json>'`: a publisher fed by `scene`, printing
    `seq N` after each frame with events and `done` at the end, then idling until killed.
    `mqtt` overrides settings of the `[mqtt]` table (`protocol="3.1.1"`)."""

    def __init__(
        self,
        host: str,
        port: int,
        state_dir: Path,
        *,
        frames: int,
        start: int = 0,
        interval: float = 0.005,
        **mqtt: Any,
    ) -> None:
        options = {
            "host": host,
            "port": port,
            "state_dir": str(state_dir),
            "frames": frames,
            "start": start,
            "interval": interval,
            "mqtt": mqtt,
        }
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "helpers.mqtt", "publish", json.dumps(options)],
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS.parent)])},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.strip())

    def wait_line(self, text: str, timeout: float) -> bool:
        return (
            wait_until(lambda: text in self.lines or self.process.poll() is not None, timeout)
            and text in self.lines
        )

    @property
    def last_seq(self) -> int:
        seqs = [int(line.split()[1]) for line in list(self.lines) if line.startswith("seq ")]
        return max(seqs, default=0)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self._reader.join(5)

    def stderr(self) -> str:
        return self.process.stderr.read() if self.process.stderr else ""


def _publish_main(options: dict[str, Any]) -> None:
    from edge_agent.publish import MqttPublisher

    config = publisher_config(
        options["host"], options["port"], Path(options["state_dir"]), **options["mqtt"]
    )
    publisher = MqttPublisher(config)
    publisher.start()
    for result in scene(options["frames"], start=options["start"]):
        publisher.publish_frame(result, time.time())  # type: ignore[arg-type]
        if result.events:  # type: ignore[attr-defined]
            print(f"seq {publisher.last_seq}", flush=True)
        time.sleep(options["interval"])
    print("done", flush=True)
    time.sleep(600)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "publish":
        _publish_main(json.loads(sys.argv[2]))


def sad_face_publisher(broker: Mosquitto, state_dir: Path) -> tuple[Any, Iterator[object]]:
    """A started MqttPublisher that has shown one face, now sad (2 events delivered), and
    stats with fps 12.5: a live device for a subscriber to find; and the rest of its scene
    (8 frames: the face leaves, another comes)."""
    import itertools

    from edge_agent.publish import MqttPublisher

    publisher = MqttPublisher(
        publisher_config(broker.host, broker.port, state_dir, state_interval_s=0.0)
    )
    publisher.start()
    stream = scene(12)
    for result in itertools.islice(stream, 4):  # one face, now sad
        publisher.publish_frame(result, time.time())  # type: ignore[arg-type]
    publisher.publish_stats({"fps": 12.5})
    assert wait_until(lambda: publisher.outbox_depth == 0 and publisher.last_seq == 2, 5)
    return publisher, stream
