"""The MQTT contract against a real mosquitto: every message against its JSON Schema,
retained topics, Home Assistant discovery, auth, TLS, and the pipeline never waiting."""

from __future__ import annotations

import json
import os
import re
import socket
import time
from datetime import datetime
from pathlib import Path

import jsonschema
import pytest
from helpers import wait_until
from helpers.mqtt import (
    Collector,
    Mosquitto,
    free_port,
    password_file,
    publisher_config,
    scene,
    tls_files,
)

from edge_agent.errors import ConfigError
from edge_agent.publish import MqttPublisher
from edge_agent.publish.connection import PASSWORD_ENV, Backoff
from edge_agent.publish.messages import SCHEMA_NAMES, iso_utc, load_schema
from edge_agent.types import EMOTIONS, UNCERTAIN

ENTITIES = (
    "dominant_emotion",
    "face_count",
    "face_present",
    "age",
    "gender",
    "emotion_event",
    "fps",
    "latency",
    "frames_dropped",
    "outbox_depth",
    "events_dropped",
    "cpu_temperature",
    "uptime",
)
CONFIGS = len(ENTITIES) + len(EMOTIONS) + 2  # entities, then the device triggers
DEVICE = "test-device"
BASE = f"edge-agent/{DEVICE}"
STATS = {
    "fps": 14.5,
    "latency_ms": {"p50": 41.0, "p95": 60.2, "p99": 75.9},
    "frames_dropped": 3,
    "accelerator": "cpu",
    "cpu_temp_c": None,
}


def schema_for(topic: str) -> str | None:
    if topic.startswith("homeassistant/"):
        return "discovery" if topic.endswith("/config") else None
    kinds = {"availability": "availability", "state": "state", "faces": "faces"}
    return {**kinds, "events": "event", "stats": "stats"}[topic.rsplit("/", 1)[1]]


def validate_all(messages) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Validate each message by its topic; returns how many of each kind were seen."""
    seen: dict[str, int] = {}
    for message in messages:
        name = schema_for(message.topic)
        if name is None:
            continue
        instance = (
            message.payload.decode() if name == "availability" else json.loads(message.payload)
        )
        jsonschema.validate(
            instance,
            load_schema(name),
            format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
        )
        seen[name] = seen.get(name, 0) + 1
    return seen


def test_schemas_are_valid_2020_12_and_agree_with_the_labels():
    for name in SCHEMA_NAMES:
        jsonschema.Draft202012Validator.check_schema(load_schema(name))
    assert load_schema("event")["$defs"]["emotion"]["enum"] == [*EMOTIONS, UNCERTAIN]
    assert load_schema("state")["$defs"]["emotion"]["enum"] == [*EMOTIONS, UNCERTAIN]
    bad = {"id": "x", "seq": 0}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, load_schema("event"))


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_every_message_validates_and_events_tell_the_scene(
    mosquitto: Mosquitto, tmp_path: Path, protocol: str
):
    config = publisher_config(
        mosquitto.host,
        mosquitto.port,
        tmp_path,
        protocol=protocol,
        state_interval_s=0.0,
        faces_interval_s=0.0,
    )
    with Collector(mosquitto) as collector:
        publisher = MqttPublisher(config, accelerator="cpu")
        publisher.start()
        assert wait_until(lambda: str(publisher.status) == "connected", 5)
        wall = time.time()
        for result in scene(40):
            publisher.publish_frame(result, wall)  # type: ignore[arg-type]
            wall += 0.1
            for event in result.events:  # type: ignore[attr-defined]
                # The retained state follows every event (latest wins; wait for it here).
                want = (0, None) if event.type == "face_lost" else (1, event.face.emotion)
                assert collector.wait(
                    lambda c, want=want: (
                        c.snapshot("/state")
                        and (
                            c.snapshot("/state")[-1].json()["face_count"],
                            c.snapshot("/state")[-1].json()["dominant_emotion"],
                        )
                        == want
                    ),
                    5,
                ), want
        publisher.publish_stats(STATS)
        assert collector.wait(lambda c: len(c.seqs()) == 16 and c.snapshot("/stats"), 5)
        # Home Assistant restarted: it says `online`, and gets the 22 configs again.
        collector.client.publish("homeassistant/status", "online", qos=1)
        assert collector.wait(lambda c: len(c.snapshot("/config")) == 2 * CONFIGS, 5)
        publisher.stop()
        assert collector.wait(
            lambda c: (
                c.snapshot("/availability")[-1:]
                and c.snapshot("/availability")[-1].payload == b"offline"
            ),
            5,
        )
    counts = validate_all(collector.messages)
    assert counts["event"] == 16 and counts["discovery"] == 2 * CONFIGS and counts["stats"] == 1
    assert counts["state"] >= 2 and counts["faces"] >= counts["state"]

    events = collector.events()
    assert [e["seq"] for e in events] == list(range(1, 17))
    assert [e["type"] for e in events[:4]] == [
        "face_appeared",
        "emotion_changed",
        "emotion_changed",
        "face_lost",
    ]
    assert [(e["previous_emotion"], e["emotion"]) for e in events[:4]] == [
        (None, "happy"),
        ("happy", "sad"),
        ("sad", "angry"),
        (None, "angry"),
    ]
    assert [e["track"] for e in events[::4]] == [1, 2, 3, 4]
    assert events[3]["duration_s"] == pytest.approx(0.5)  # seen from t=0.0 to 0.5
    assert events[0]["gender"] == "male" and events[0]["age"] == pytest.approx(31.0, abs=1)
    assert len({e["id"] for e in events}) == 16
    # ts is the frame's capture time: frame 1 (appeared) at wall + 0.1 s.
    first_ts = datetime.fromisoformat(events[0]["ts"].replace("Z", "+00:00")).timestamp()
    assert first_ts == pytest.approx(wall - 3.9, abs=0.002)

    states = [m.json() for m in collector.snapshot("/state")]
    assert states[0]["face_count"] == 0
    shown = [(s["face_count"], s["dominant_emotion"]) for s in states]
    assert (1, "happy") in shown and (1, "sad") in shown and (1, "angry") in shown
    assert states[-1]["face_count"] == 0 and states[-1]["dominant_emotion"] is None
    stats = collector.snapshot("/stats")[0].json()
    assert stats["fps"] == 14.5 and stats["accelerator"] == "cpu"
    assert stats["outbox_depth"] >= 0 and stats["events_dropped"] == 0
    availability = [m.payload for m in collector.snapshot("/availability")]
    assert availability[0] == b"online" and availability[-1] == b"offline"


def test_retained_availability_state_stats_and_discovery_greet_a_late_subscriber(
    mosquitto: Mosquitto, tmp_path: Path
):
    publisher = MqttPublisher(
        publisher_config(
            mosquitto.host, mosquitto.port, tmp_path, state_interval_s=0.0, faces_interval_s=0.0
        )
    )
    publisher.start()
    for result in scene(4):
        publisher.publish_frame(result, time.time())  # type: ignore[arg-type]
    publisher.publish_stats(STATS)
    assert wait_until(lambda: publisher.outbox_depth == 0 and publisher.last_seq == 2, 5)
    with Collector(mosquitto, ("edge-agent/#", "homeassistant/#")) as late:
        assert late.wait(lambda c: len(c.messages) >= 4 + CONFIGS, 5)
        time.sleep(0.2)  # nothing more should come: events are not retained
        retained = {m.topic: m for m in late.messages}
        assert all(m.retain for m in late.messages)
        assert retained[f"{BASE}/availability"].payload == b"online"
        state = retained[f"{BASE}/state"].json()
        assert state["face_count"] == 1 and state["faces"][0]["emotion"] == "sad"
        assert retained[f"{BASE}/stats"].json()["fps"] == 14.5
        assert retained[f"{BASE}/faces"].json()["faces"][0]["emotion_scores"]["sad"] == 0.88
        configs = [m.json() for t, m in retained.items() if t.startswith("homeassistant/")]
        assert sorted(c["unique_id"] for c in configs if "unique_id" in c) == [
            f"edge_agent_test-device_{name}" for name in sorted(ENTITIES)
        ]
        triggers = [c for c in configs if c.get("automation_type") == "trigger"]
        assert sorted((c["type"], c["subtype"]) for c in triggers) == sorted(
            [("emotion_changed", e) for e in EMOTIONS]
            + [("face_appeared", "face"), ("face_lost", "face")]
        )
        assert f"{BASE}/events" not in retained
        validate_all(late.messages)
    publisher.stop()
    with Collector(mosquitto, (f"{BASE}/availability",)) as after:
        assert after.wait(lambda c: c.messages, 5)
        assert after.messages[0].payload == b"offline" and after.messages[0].retain


@pytest.mark.broker
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_wrong_password_is_reported_retried_and_never_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, protocol: str
):
    users = password_file(tmp_path / "passwd", "agent", "right-secret")
    with Mosquitto(tmp_path / "broker", anonymous=False, password_file=users) as broker:
        (tmp_path / "pw").write_text("wrong-secret\n")
        config = publisher_config(
            broker.host,
            broker.port,
            tmp_path / "state",
            protocol=protocol,
            username="agent",
            password_file=str(tmp_path / "pw"),
        )
        publisher = MqttPublisher(config)
        ok, message = publisher.check(timeout_s=3)
        assert not ok and "auth failed" in message and "127.0.0.1" in message
        anonymous = MqttPublisher(
            publisher_config(broker.host, broker.port, tmp_path / "anon", protocol=protocol)
        )
        assert anonymous.check(timeout_s=3)[1].endswith("(mqtt.username is empty)")
        publisher.start()
        assert wait_until(lambda: str(publisher.status).startswith("auth failed"), 5)
        assert "password" in str(publisher.status) or "authori" in str(publisher.status)
        for result in scene(10):  # the pipeline goes on; events wait in the outbox
            publisher.publish_frame(result, time.time())  # type: ignore[arg-type]
        # It keeps retrying (backoff 0.05..0.5 s): the broker sees several attempts.
        assert wait_until(lambda: broker.log().count("not authorised") >= 3, 5), broker.log()
        assert publisher.outbox_depth == 4
        publisher.stop(flush_timeout_s=0.5)

        # The right password from the environment: the backlog goes out.
        monkeypatch.setenv(PASSWORD_ENV, "right-secret")
        config.mqtt.password_file = ""
        with authed_collector(broker) as collector:
            again = MqttPublisher(config)
            assert again.check(timeout_s=3) == (
                True,
                f"connected to {broker.host}:{broker.port} (MQTT {protocol}, user agent)",
            )
            again.start()
            assert collector.wait(lambda c: c.seqs() == [1, 2, 3, 4], 5)
            again.stop()
    assert "secret" not in caplog.text


def authed_collector(broker: Mosquitto) -> Collector:
    """A collector on a broker that allows no anonymous clients: give it an account."""
    collector = Collector(broker, ("edge-agent/#",))
    collector.client.username_pw_set("agent", "right-secret")
    return collector


@pytest.mark.broker
def test_tls_with_a_client_certificate(tmp_path: Path):
    files = tls_files(tmp_path / "pki")
    with Mosquitto(tmp_path / "broker", tls=files) as broker:
        config = publisher_config(
            broker.host,
            broker.port,
            tmp_path / "state",
            tls_ca=str(files["ca"]),
            tls_cert=str(files["client_cert"]),
            tls_key=str(files["client_key"]),
        )
        with Collector(broker, ("edge-agent/#",), tls=files) as collector:
            publisher = MqttPublisher(config)
            ok, message = publisher.check(timeout_s=3)
            assert ok and "TLS" in message, message
            publisher.start()
            for result in scene(10):
                publisher.publish_frame(result, time.time())  # type: ignore[arg-type]
            assert collector.wait(lambda c: c.seqs() == [1, 2, 3, 4], 5)
            publisher.stop()
            validate_all(collector.messages)

        # Without the client certificate the broker refuses the handshake: a clear reason.
        config.mqtt.tls_cert = config.mqtt.tls_key = ""
        ok, message = MqttPublisher(config).check(timeout_s=3)
        # (TLS 1.3: the broker's "certificate required" alert, or just the closed socket.)
        assert not ok and message.startswith(
            f"MQTT broker {broker.host}:{broker.port} closed the connection ("
        ), message
        assert "\n" not in message
        # A CA that did not sign the server: not trusted.
        other = tls_files(tmp_path / "other-pki")
        config.mqtt.tls_ca = str(other["ca"])
        ok, message = MqttPublisher(config).check(timeout_s=3)
        assert not ok and "certificate" in message, message


def test_config_mistakes_are_one_line_config_errors(tmp_path: Path):
    def publisher(**mqtt: object) -> MqttPublisher:
        return MqttPublisher(publisher_config("127.0.0.1", 1883, tmp_path, **mqtt))

    with pytest.raises(ConfigError, match=r"^mqtt\.tls_ca = '/nonexistent/ca\.pem': file not"):
        publisher(tls_ca="/nonexistent/ca.pem")
    with pytest.raises(ConfigError, match=r"mqtt\.tls_key is set but mqtt\.tls_cert is empty"):
        key = tmp_path / "k.pem"
        key.write_text("x")
        publisher(tls_key=str(key))
    with pytest.raises(ConfigError, match=r"mqtt\.password_file = .*: file not found"):
        publisher(username="u", password_file=str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match=r"mqtt\.topic_prefix = 'a/\+': must not contain"):
        publisher(topic_prefix="a/+")
    config = publisher_config("127.0.0.1", 1883, tmp_path)
    config.device_id = "kitchen/door"
    with pytest.raises(ConfigError, match=r"device_id = 'kitchen/door'"):
        MqttPublisher(config)
    bad_ca = tmp_path / "bad.pem"
    bad_ca.write_text("not a certificate")
    with pytest.raises(ConfigError, match=r"mqtt\.tls_ca = .*not a usable CA file"):
        publisher(tls_ca=str(bad_ca))


def test_check_names_an_unreachable_broker(tmp_path: Path):
    port = free_port()
    ok, message = MqttPublisher(publisher_config("127.0.0.1", port, tmp_path)).check(1)
    assert not ok
    assert message == f"cannot reach MQTT broker 127.0.0.1:{port}: connection refused"


def test_publish_frame_never_waits_on_a_broker_that_does_not_answer(tmp_path: Path):
    """A listener that accepts TCP but never answers CONNECT: the sender waits, not us."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        config = publisher_config("127.0.0.1", silent.getsockname()[1], tmp_path)
        publisher = MqttPublisher(config)
        publisher.start()
        assert wait_until(lambda: str(publisher.status) == "connecting", 2)
        took: list[float] = []
        for result in scene(100):
            start = time.perf_counter()
            publisher.publish_frame(result, time.time())  # type: ignore[arg-type]
            publisher.publish_stats(STATS)
            took.append(time.perf_counter() - start)
        assert publisher.last_seq == 40 and publisher.outbox_depth == 40
        # A wait on the network would be seconds (the connect timeout); the disk's fsync
        # and a busy machine cost milliseconds.
        took.sort()
        assert took[-1] < 0.5 and took[len(took) // 2] < 0.02, (
            f"publish_frame: median {took[len(took) // 2] * 1e3:.1f} ms, "
            f"max {took[-1] * 1e3:.1f} ms"
        )
        start = time.monotonic()
        publisher.stop(flush_timeout_s=0.5)
        publisher.stop()
        assert time.monotonic() - start < 7.5  # bounded by flush + connect timeout
        assert str(publisher.status) == "disconnected"


@pytest.mark.broker
def test_a_full_outbox_keeps_the_newest_and_counts_the_dropped(tmp_path: Path):
    port = free_port()
    config = publisher_config("127.0.0.1", port, tmp_path / "state", outbox_max_events=10)
    offline = MqttPublisher(config)
    offline.start()
    for result in scene(40):  # 16 events, no broker
        offline.publish_frame(result, time.time())  # type: ignore[arg-type]
    assert offline.outbox_depth == 10 and offline.events_dropped == 6
    offline.stop(flush_timeout_s=0)
    with Mosquitto(tmp_path / "broker", port=port) as broker, Collector(broker) as collector:
        publisher = MqttPublisher(config)  # the next start sends what was kept
        publisher.start()
        publisher.publish_stats(STATS)
        assert collector.wait(lambda c: len(c.seqs()) == 10 and c.snapshot("/stats"), 5)
        assert collector.seqs() == list(range(7, 17))
        assert collector.snapshot("/stats")[0].json()["events_dropped"] == 6
        publisher.stop()


def test_backoff_doubles_with_jitter_up_to_the_cap():
    low = Backoff(1.0, 8.0, rng=lambda: 0.0)
    high = Backoff(1.0, 8.0, rng=lambda: 1.0)
    assert [low.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert [high.next() for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    high.reset()
    assert high.next() == 1.0


def test_publish_frame_before_start_is_a_programming_error(tmp_path: Path):
    publisher = MqttPublisher(publisher_config("127.0.0.1", 1883, tmp_path))
    with pytest.raises(RuntimeError, match="start"):
        publisher.publish_frame(next(scene(1)), time.time())  # type: ignore[arg-type]
    publisher.stop()  # stopping what never started is fine


def test_password_is_taken_from_the_environment_without_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv(PASSWORD_ENV, "from-env")
    publisher = MqttPublisher(publisher_config("127.0.0.1", 1883, tmp_path, username="u"))
    assert publisher.connection.password == "from-env"
    assert "from-env" not in repr(publisher.connection)
    assert os.environ[PASSWORD_ENV] == "from-env"


def test_timestamps_are_utc_iso_8601_rounded_to_the_millisecond():
    assert iso_utc(1746100800.0 + 0.1 * 8) == "2025-05-01T12:00:00.800Z"
    assert iso_utc(1746100800.9996) == "2025-05-01T12:00:01.000Z"


def test_a_password_file_that_is_not_text_is_refused_without_quoting_it(tmp_path: Path):
    secret = tmp_path / "password"
    secret.write_bytes(b"s3cr\xe9t-pass")
    config = publisher_config("127.0.0.1", 1, tmp_path / "state")
    config.mqtt.username = "agent"
    config.mqtt.password_file = str(secret)
    with pytest.raises(ConfigError, match="not UTF-8 text") as refused:
        MqttPublisher(config)
    assert "0xe9" not in str(refused.value) and "s3cr" not in str(refused.value)


def test_device_ids_that_differ_only_in_unsafe_characters_stay_apart():
    from edge_agent.publish.discovery import node_id

    assert node_id("kitchen-1") == "kitchen-1"  # safe ids are kept as they are
    dotted, underscored = node_id("pi.kitchen"), node_id("pi_kitchen")
    assert dotted != underscored and dotted.startswith("pi_kitchen_")
    assert re.fullmatch(r"[a-zA-Z0-9_-]+", dotted)


def test_a_reloaded_stats_period_reaches_home_assistant(mosquitto: Mosquitto, tmp_path: Path):
    config = publisher_config(mosquitto.host, mosquitto.port, tmp_path)
    config.mqtt.stats_interval_s = 30.0
    with Collector(mosquitto) as collector:
        publisher = MqttPublisher(config, accelerator="cpu")
        publisher.start()

        def fps_config(c: Collector) -> list[dict]:
            return [m.json() for m in c.snapshot("/config") if m.topic.endswith("/fps/config")]

        try:
            assert collector.wait(lambda c: fps_config(c), 5)
            assert fps_config(collector)[-1]["expire_after"] == 91
            publisher.set_stats_interval(300.0)  # what a SIGHUP reload hands over
            assert collector.wait(lambda c: fps_config(c)[-1]["expire_after"] == 901, 5)
        finally:
            publisher.stop()


def test_state_changes_only_when_an_owner_would_care_and_faces_carry_the_detail(
    mosquitto: Mosquitto, tmp_path: Path
):
    """One steady happy face whose scores and age jitter every frame: `faces` follows every
    frame, `state` (what Home Assistant records) changes twice: empty, then the face."""
    import numpy as np

    from edge_agent.types import Detection, FrameResult
    from edge_agent.vision.classify import FaceAttributes
    from edge_agent.vision.track import Tracker, TrackerSettings

    tracker = Tracker(TrackerSettings(confirm_hits=2, smoothing_s=0.0, emotion_hold_s=0.0))
    rng = np.random.default_rng(0)
    config = publisher_config(
        mosquitto.host, mosquitto.port, tmp_path, state_interval_s=0.0, faces_interval_s=0.0
    )
    with Collector(mosquitto, (f"{BASE}/state", f"{BASE}/faces")) as collector:
        publisher = MqttPublisher(config)
        publisher.start()
        wall = time.time()
        for index in range(60):
            t = index * 0.1
            tracks = tracker.associate([Detection((100.0, 80.0, 90.0, 90.0), 0.95)], t)
            scores = np.full(len(EMOTIONS), 0.02, np.float32)
            scores[EMOTIONS.index("happy")] = rng.uniform(0.80, 0.90)
            tracker.observe(
                tracks[0], FaceAttributes(scores, 30.0 + rng.uniform(-0.6, 0.6), 0.2), t
            )
            tracker.confirm(tracks, t)
            result = FrameResult(index, t, [tr.result() for tr in tracks], tracker.drain_events())
            publisher.publish_frame(result, wall + t)
            time.sleep(0.005)
        assert collector.wait(lambda c: len(c.snapshot("/faces")) >= 40, 5)
        time.sleep(0.3)
        publisher.stop()
    states = [m.json() for m in collector.snapshot("/state")]
    assert [(s["face_count"], s["dominant_emotion"]) for s in states] == [(0, None), (1, "happy")]
    assert states[1]["faces"] == [{"track": 1, "emotion": "happy", "age": 30, "gender": "male"}]
    validate_all(collector.messages)


def test_stated_age_moves_in_whole_years_only_past_the_step():
    from edge_agent.publish.messages import stated_age

    assert stated_age(None, None) is None
    assert stated_age(32.4, None) == 32
    assert stated_age(33.9, 32) == 32  # within 2 years: unchanged
    assert stated_age(30.1, 32) == 32
    assert stated_age(34.0, 32) == 34
    assert stated_age(29.6, 32) == 30
    assert stated_age(None, 32) == 32  # no new estimate keeps the stated one


def test_a_tie_keeps_the_dominant_emotion_and_gender_needs_confidence_to_change():
    from edge_agent.publish.messages import dominant_emotion, stated_gender

    def face(emotion: str, score: float) -> dict[str, object]:
        return {"emotion": emotion, "emotion_scores": {emotion: score}}

    jitter = [face("happy", 0.7), face("sad", 0.8)]
    assert dominant_emotion(jitter) == "sad"  # no history: the larger summed score
    assert dominant_emotion(jitter, previous="happy") == "happy"  # a tie keeps it
    assert dominant_emotion([*jitter, face("sad", 0.6)], previous="happy") == "sad"
    assert stated_gender("male", 0.55, None) == "male"
    assert stated_gender("female", 0.55, "male") == "male"  # near 0.5: no flip
    assert stated_gender("female", 0.65, "male") == "female"
    assert stated_gender(None, None, "male") == "male"


def test_stop_sends_the_latest_faces_and_online_waits_for_announce(
    mosquitto: Mosquitto, tmp_path: Path
):
    """The last payloads go out at stop even inside their interval; with hold_online,
    `online` comes only after announce(), behind the state it follows."""
    from helpers.mqtt import scene as frames

    config = publisher_config(mosquitto.host, mosquitto.port, tmp_path, faces_interval_s=5.0)
    with Collector(mosquitto, (f"{BASE}/#",)) as collector:
        publisher = MqttPublisher(config)
        publisher.start(STATS, hold_online=True)
        assert collector.wait(lambda c: c.snapshot("/stats"), 5)
        time.sleep(0.3)
        assert not collector.snapshot("/availability")
        stream = frames(6)
        for result in stream:
            publisher.publish_frame(result, time.time())  # type: ignore[arg-type]
        publisher.announce()
        assert collector.wait(lambda c: c.snapshot("/availability"), 5)
        topics = [m.topic.rsplit("/", 1)[1] for m in collector.snapshot()]
        assert topics.index("availability") > max(
            i for i, t in enumerate(topics) if t in ("state", "faces", "stats")
        )
        publisher.stop()  # the newest faces waited for its 5 s slot: it goes now
    with Collector(mosquitto, (f"{BASE}/faces", f"{BASE}/state")) as late:
        assert late.wait(lambda c: len(c.messages) == 2, 5)
        retained = {m.topic.rsplit("/", 1)[1]: m.json() for m in late.messages}
    assert retained["faces"]["faces"][0]["emotion_scores"] is not None
    assert retained["faces"]["face_count"] == retained["state"]["face_count"] == 1
    assert retained["faces"]["updated_at"] >= retained["state"]["updated_at"]
