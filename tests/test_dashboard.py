"""`edge-agent dashboard` without a browser: the fleet model built from MQTT messages, the
HTTP server (read-only, password, Host check, the event stream) on a real socket, and the
command line against a real mosquitto and publisher. The page itself is driven in a real
Chromium in test_dashboard_browser.py."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import cli, wait_until
from helpers.dashboard import Dashboard, PageDevice, read_events
from helpers.mqtt import Mosquitto, free_port, sad_face_publisher

from edge_agent.dashboard import fleet as fleet_module
from edge_agent.dashboard.fleet import WINDOW_S, Fleet, Timeline
from edge_agent.dashboard.server import DashboardServer
from edge_agent.types import EMOTIONS


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def scores(label: str, high: float = 0.88) -> dict[str, float]:
    values = dict.fromkeys(EMOTIONS, 0.02)
    values[label] = high
    return values


def faces_payload(*faces: tuple[int, str | None, dict[str, float] | None]) -> bytes:
    return json.dumps(
        {
            "device": "kitchen",
            "updated_at": "2026-05-01T12:00:00.000Z",
            "face_count": len(faces),
            "faces": [
                {
                    "track": track,
                    "emotion": emotion,
                    "emotion_scores": face_scores,
                    "age": 32.5,
                    "gender": "male",
                    "gender_score": 0.8,
                }
                for track, emotion, face_scores in faces
            ],
        }
    ).encode()


def view(fleet: Fleet, device: str) -> dict[str, Any]:
    return next(d for d in fleet.snapshot()["devices"] if d["id"] == device)


# -- the fleet model ----------------------------------------------------------------------


def test_a_device_is_built_from_its_topics_and_an_offline_one_has_no_faces():
    clock = Clock()
    fleet = Fleet("edge-agent", clock=clock)
    fleet.receive("edge-agent/kitchen/availability", b"online")
    fleet.receive(
        "edge-agent/kitchen/state",
        json.dumps(
            {
                "face_count": 1,
                "dominant_emotion": "sad",
                "updated_at": "2026-05-01T12:00:00.000Z",
                "faces": [{"track": 1, "emotion": "sad", "age": 33, "gender": "male"}],
            }
        ).encode(),
    )
    kitchen = view(fleet, "kitchen")
    # Before any <base>/faces, the state's faces are shown (without scores).
    assert [(f["track"], f["emotion"], f["age"], f["scores"]) for f in kitchen["faces"]] == [
        (1, "sad", 33.0, None)
    ]
    fleet.receive("edge-agent/kitchen/faces", faces_payload((1, "sad", scores("sad"))))
    fleet.receive(
        "edge-agent/kitchen/stats",
        json.dumps(
            {"fps": 14.8, "camera": "ok", "latency_ms": {"p95": 58.0}, "extra": "x"}
        ).encode(),
    )
    # Once faces arrive they win over the state's list, whose next copy is not used.
    fleet.receive(
        "edge-agent/kitchen/state",
        json.dumps({"face_count": 1, "dominant_emotion": "sad", "faces": []}).encode(),
    )
    kitchen = view(fleet, "kitchen")
    assert kitchen["availability"] == "online"
    assert kitchen["state"]["dominant_emotion"] == "sad"
    (face,) = kitchen["faces"]
    assert face["scores"][EMOTIONS.index("sad")] == 0.88 and face["gender_score"] == 0.8
    assert kitchen["stats"]["fps"] == 14.8 and kitchen["stats"]["latency_ms"]["p95"] == 58.0
    assert "extra" not in kitchen["stats"]

    delta = fleet.receive("edge-agent/kitchen/availability", b"offline")
    assert delta is not None
    assert delta["patch"]["faces"] == [] and delta["patch"]["state"]["face_count"] == 0
    kitchen = view(fleet, "kitchen")
    assert kitchen["faces"] == [] and kitchen["state"]["dominant_emotion"] is None
    # The retained faces come back with the device, before its `online`.
    delta = fleet.receive("edge-agent/kitchen/availability", b"online")
    assert delta is not None and len(delta["patch"]["faces"]) == 1


def test_timelines_hold_one_row_per_second_of_change_over_the_window():
    clock = Clock(1000.2)
    fleet = Fleet("edge-agent", clock=clock)
    fleet.receive("edge-agent/kitchen/availability", b"online")
    first = fleet.receive("edge-agent/kitchen/faces", faces_payload((1, "sad", scores("sad"))))
    assert first is not None and first["point"][0] == 1000
    assert first["face_points"]["1"][1][EMOTIONS.index("sad")] == 0.88
    clock.now = 1000.6  # the same second: replaced, not added
    fleet.receive("edge-agent/kitchen/faces", faces_payload((1, "happy", scores("happy"))))
    clock.now = 1001.1  # the same values again: nothing new to draw
    repeat = fleet.receive("edge-agent/kitchen/faces", faces_payload((1, "happy", scores("happy"))))
    assert repeat is not None and "point" not in repeat and "face_points" not in repeat
    clock.now = 1002.0  # a second face: the device's row is the mean of both
    fleet.receive(
        "edge-agent/kitchen/faces",
        faces_payload((1, "happy", scores("happy")), (2, "sad", scores("sad", 0.5))),
    )
    timeline = view(fleet, "kitchen")["timeline"]
    assert timeline["t"] == [1000, 1002]
    assert timeline["v"][0][EMOTIONS.index("happy")] == 0.88
    assert timeline["v"][1][EMOTIONS.index("sad")] == round((0.02 + 0.5) / 2, 3)
    assert set(view(fleet, "kitchen")["face_timelines"]) == {"1", "2"}
    clock.now = 1003.0  # face 1 leaves: its timeline goes with it; no face: a gap
    fleet.receive("edge-agent/kitchen/faces", faces_payload((2, "sad", scores("sad", 0.5))))
    assert set(view(fleet, "kitchen")["face_timelines"]) == {"2"}
    clock.now = 1004.0
    gone = fleet.receive("edge-agent/kitchen/faces", faces_payload())
    assert gone is not None and gone["point"] == [1004, [None] * len(EMOTIONS)]

    # Past the window only the newest row before it is kept: what held at its start.
    series = Timeline()
    for second in range(0, 1000, 10):
        series.put(second, [second])
    assert series.t[0] <= 990 - WINDOW_S < series.t[1]


def test_the_room_mood_counts_the_faces_of_online_devices():
    fleet = Fleet("edge-agent", clock=Clock())
    for device in ("a", "b"):
        fleet.receive(f"edge-agent/{device}/availability", b"online")
    fleet.receive("edge-agent/a/faces", faces_payload((1, "happy", None), (2, "uncertain", None)))
    fleet.receive("edge-agent/b/faces", faces_payload((7, "happy", scores("happy"))))
    labels = fleet.snapshot()["labels"]
    row = fleet.snapshot()["mood"]["v"][-1]
    assert dict(zip(labels, row, strict=True)) == {
        **dict.fromkeys(labels, 0),
        "happy": 2,
        "uncertain": 1,
    }
    fleet.receive("edge-agent/b/availability", b"offline")
    row = fleet.snapshot()["mood"]["v"][-1]
    assert row[labels.index("happy")] == 1


def test_events_are_logged_once_and_untrusted_input_is_bounded_or_dropped(monkeypatch):
    fleet = Fleet("edge-agent", clock=Clock())
    event = {
        "id": "e-1",
        "seq": 3,
        "type": "emotion_changed",
        "ts": "2026-05-01T12:00:00.300Z",
        "track": 1,
        "emotion": "<img src=x onerror=alert(1)>" + "x" * 500,
        "previous_emotion": "happy",
        "age": "thirty",  # wrong type: dropped, not passed on
        "gender": ["male"],
    }
    first = fleet.receive("edge-agent/<script>alert(1)/events", json.dumps(event).encode())
    assert first is not None
    logged = first["event"]
    assert logged["device"] == "<script>alert(1)" and logged["seq"] == 3
    assert logged["emotion"].startswith("<img src=x") and len(logged["emotion"]) == 100
    assert logged["age"] is None and logged["gender"] is None
    # A QoS 1 redelivery (same id) is not logged twice.
    assert fleet.receive("edge-agent/<script>alert(1)/events", json.dumps(event).encode()) is None
    assert len(fleet.snapshot()["events"]) == 1

    ignored = [
        ("other/kitchen/state", b"{}"),  # not under the prefix
        ("edge-agent/kitchen/config", b"{}"),  # not a kind the dashboard reads
        ("edge-agent/a/b/state", b"{}"),  # a device id with a slash
        ("edge-agent/kitchen/state", b"not json"),
        ("edge-agent/kitchen/state", b"[1, 2]"),
        ("edge-agent/kitchen/state", b"\xff\xfe"),
        ("edge-agent/kitchen/stats", b'{"fps": NaN}' + b" " * fleet_module.MAX_PAYLOAD),
    ]
    for topic, payload in ignored:
        assert fleet.receive(topic, payload) is None, topic
    assert [d["id"] for d in fleet.snapshot()["devices"]] == ["<script>alert(1)"]

    monkeypatch.setattr(fleet_module, "MAX_DEVICES", 3)
    for n in range(5):
        fleet.receive(f"edge-agent/extra-{n}/availability", b"online")
    assert len(fleet.snapshot()["devices"]) == 3


def test_every_delta_reaches_an_attached_page_as_ascii_json_after_its_snapshot():
    fleet = Fleet("edge-agent", clock=Clock())
    fleet.receive("edge-agent/kitchen/availability", b"online")
    received: list[bytes] = []
    snapshot = json.loads(fleet.attach(received.append))
    assert [d["id"] for d in snapshot["devices"]] == ["kitchen"]
    delta = fleet.receive("edge-agent/k\u00e9\u2028/availability", "on\u2028line".encode())
    fleet.set_broker("connection lost, retrying in 0.5 s")
    assert [json.loads(item) for item in received] == [
        delta,
        {"type": "broker", "status": "connection lost, retrying in 0.5 s"},
    ]
    assert all(item.isascii() and b"\n" not in item for item in received)
    fleet.detach(received.append)
    fleet.receive("edge-agent/kitchen/availability", b"offline")
    assert len(received) == 2


# -- the HTTP server ----------------------------------------------------------------------


@pytest.fixture
def served() -> Iterator[tuple[DashboardServer, Fleet]]:
    yield from _serve(None)


@pytest.fixture
def served_with_password() -> Iterator[tuple[DashboardServer, Fleet]]:
    yield from _serve("s3cret \u00e9")


def _serve(password: str | None) -> Iterator[tuple[DashboardServer, Fleet]]:
    fleet = Fleet("edge-agent")
    server = DashboardServer(("127.0.0.1", 0), fleet, password)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, fleet
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def request(
    server: DashboardServer, method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    connection.request(
        method, path, body=b"{}" if method == "POST" else None, headers=headers or {}
    )
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, dict(response.getheaders()), body


def test_the_server_serves_the_page_and_its_vendored_chart_library_only(served):
    server, _fleet = served
    status, headers, body = request(server, "GET", "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b'<script src="/static/app.js"' in body
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    for path in ("/static/app.js", "/static/style.css", "/static/uplot/uPlot.iife.min.js"):
        status, _headers, body = request(server, "GET", path)
        assert status == 200 and len(body) > 1000, path
    status, _headers, body = request(server, "GET", "/static/uplot/LICENSE")
    assert status == 200 and b"MIT License" in body
    for path in ("/static/../config.py", "/etc/passwd", "/static/", "/fleet.py"):
        assert request(server, "GET", path)[0] == 404, path
    assert request(server, "HEAD", "/")[2] == b""


def test_no_endpoint_accepts_a_write(served):
    server, fleet = served
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        for path in ("/", "/events", "/static/app.js"):
            status, headers, _body = request(server, method, path)
            assert status == 405 and headers["Allow"] == "GET, HEAD", (method, path)
    assert fleet.snapshot()["devices"] == []


def test_without_a_password_only_loopback_host_names_are_answered(served):
    server, _fleet = served
    for host in ("127.0.0.1", f"127.0.0.1:{server.port}", "localhost:8080", "[::1]:8080"):
        assert request(server, "GET", "/", {"Host": host})[0] == 200, host
    # DNS rebinding: a site that resolves its own name to 127.0.0.1 is refused.
    for host in ("evil.example", "evil.example:8080", "192.168.1.5:8080"):
        assert request(server, "GET", "/", {"Host": host})[0] == 403, host


def test_with_a_password_every_request_needs_it(served_with_password):
    server, _fleet = served_with_password

    def basic(user: str, password: str) -> dict[str, str]:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    for path in ("/", "/events", "/static/app.js"):
        status, headers, _body = request(server, "GET", path)
        assert status == 401 and headers["WWW-Authenticate"].startswith("Basic"), path
    assert request(server, "GET", "/", basic("anyone", "wrong"))[0] == 401
    assert request(server, "GET", "/", {"Authorization": "Basic !!!"})[0] == 401
    assert request(server, "GET", "/", basic("anyone", "s3cret \u00e9"))[0] == 200
    assert request(server, "GET", "/", {**basic("x", "s3cret \u00e9"), "Host": "pi.lan"})[0] == 200


def test_a_page_gets_a_snapshot_then_every_change(served):
    server, fleet = served
    fleet.receive("edge-agent/kitchen/availability", b"online")
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    connection.request("GET", "/events")
    response = connection.getresponse()
    assert response.status == 200 and response.getheader("Content-Type") == "text/event-stream"
    ((name, snapshot),) = read_events(response, 1)
    assert name == "snapshot" and [d["id"] for d in snapshot["devices"]] == ["kitchen"]
    fleet.receive("edge-agent/hall/availability", b"offline")
    ((name, delta),) = read_events(response, 1)
    assert (
        name == "message"
        and delta["id"] == "hall"
        and delta["patch"]["availability"] == ("offline")
    )
    response.close()
    connection.close()

    def gone() -> bool:  # noticed when a write to it fails
        fleet.receive("edge-agent/hall/availability", b"offline")
        return not fleet._listeners

    assert wait_until(gone, 5)


# -- the command line ---------------------------------------------------------------------


def _config(path: Path, port: int, extra: str = "") -> Path:
    path.write_text(f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\n{extra}')
    return path


def test_another_address_than_loopback_needs_a_password(tmp_path: Path):
    config = _config(tmp_path / "c.toml", free_port())
    done = cli("dashboard", "--config", str(config), "--listen", "0.0.0.0:8080", timeout=30)
    assert done.returncode == 64
    assert done.stderr == (
        "edge-agent: error: --listen = '0.0.0.0:8080': not a loopback address, so the page "
        "needs a password: set dashboard.password_file or --password-file\n"
    )
    config = _config(tmp_path / "c.toml", free_port(), '[dashboard]\nlisten = "0.0.0.0:8080"\n')
    done = cli("dashboard", "--config", str(config), timeout=30)
    assert done.returncode == 78 and "dashboard.listen = '0.0.0.0:8080'" in done.stderr
    done = cli("dashboard", "--config", str(config), "--listen", "localhost", timeout=30)
    assert done.returncode == 64
    assert "--listen = 'localhost': must be HOST:PORT" in done.stderr
    missing = tmp_path / "nope"
    done = cli("dashboard", "--config", str(config), "--password-file", str(missing), timeout=30)
    assert done.returncode == 64
    assert done.stderr == f"edge-agent: error: --password-file = '{missing}': file not found\n"


def test_an_unreachable_broker_or_a_taken_port_is_one_line_and_69(tmp_path: Path, mosquitto):
    port = free_port()
    config = _config(tmp_path / "c.toml", port)
    listen = f"127.0.0.1:{free_port()}"
    done = cli("dashboard", "--config", str(config), "--listen", listen, timeout=30)
    assert done.returncode == 69
    assert done.stderr == (
        f"edge-agent: error: cannot reach MQTT broker 127.0.0.1:{port}: connection refused\n"
    )
    config = _config(tmp_path / "c.toml", mosquitto.port)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        done = cli("dashboard", "--config", str(config), "--listen", f"127.0.0.1:{busy}")
    assert done.returncode == 69
    assert done.stderr == (
        f"edge-agent: error: cannot listen on 127.0.0.1:{busy}: address already in use\n"
    )


def test_the_dashboard_streams_a_live_publisher_and_stops_on_sigterm(
    mosquitto: Mosquitto, tmp_path: Path
):
    publisher, stream = sad_face_publisher(mosquitto, tmp_path)
    password = tmp_path / "password"
    password.write_text("letmein\n")
    password.chmod(0o600)
    config = _config(tmp_path / "c.toml", mosquitto.port)
    port = free_port()
    with Dashboard(
        "--config",
        str(config),
        "--listen",
        f"127.0.0.1:{port}",
        "--password-file",
        str(password),
        "--device",
        "test-device",
    ) as dashboard:
        try:
            assert dashboard.url() == f"http://127.0.0.1:{port}/", dashboard.output()
            assert wait_until(lambda: dashboard.err, 5)
            assert f"the page asks for the password in {password}" in dashboard.err[0]
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            token = base64.b64encode(b"me:letmein").decode()
            connection.request("GET", "/events", headers={"Authorization": f"Basic {token}"})
            response = connection.getresponse()
            ((_, snapshot),) = read_events(response, 1)
            assert snapshot["broker"] == "connected" and snapshot["device_filter"] == "test-device"
            # The retained messages: in the snapshot, or right after it.
            device = PageDevice(snapshot, "test-device")
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not (
                device.data.get("availability") == "online"
                and (device.data.get("stats") or {}).get("fps") == 12.5
                and [f["emotion"] for f in device.data.get("faces", [])] == ["sad"]
            ):
                device.apply(read_events(response, 1)[0][1])
            assert device.data["availability"] == "online", device.data
            assert device.data["stats"]["fps"] == 12.5, device.data
            assert [f["emotion"] for f in device.data["faces"]] == ["sad"], device.data
            for result in stream:  # the face leaves: a live face_lost
                publisher.publish_frame(result, time.time())  # type: ignore[arg-type]
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not any(
                e["type"] == "face_lost" for e in device.events
            ):
                device.apply(read_events(response, 1)[0][1])
            lost = next(e for e in device.events if e["type"] == "face_lost")
            assert lost["device"] == "test-device" and lost["track"] == 1
            response.close()
            connection.close()
        finally:
            publisher.stop()
        assert dashboard.stop() == 0, dashboard.output()
    assert "Traceback" not in dashboard.output()
