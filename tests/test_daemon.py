"""`edge-agent run` as systemd runs it: a real subprocess, a real datagram socket as
NOTIFY_SOCKET, real models and real video. Nothing inside the daemon is replaced."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from helpers.camera import MjpegCamera
from helpers.daemon import Daemon, NotifySocket, base_config, on_a_clip, write

from edge_agent.config import Config

CLIP = "WolfgangLanger_Pexels.mp4"


@pytest.fixture
def notify(tmp_path):
    sock = NotifySocket(tmp_path / "notify.sock")
    yield sock
    sock.close()


@pytest.fixture
def daemons():
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.kill()


def looping(
    tmp_path: Path, clip: Path, notify: NotifySocket, daemons: list[Daemon]
) -> tuple[Config, Path, Daemon]:
    """The daemon on `clip` played in a loop, MQTT off: its config, config file, process."""
    config = base_config(tmp_path)
    config.camera.source = str(clip)
    config.camera.loop = True
    path = write(tmp_path / "config.toml", config)
    daemon = Daemon(path, notify)
    daemons.append(daemon)
    return config, path, daemon


def test_ready_watchdog_status_reload_and_sigterm(tmp_path, media, notify, daemons):
    config, path, daemon = looping(tmp_path, media(CLIP), notify, daemons)

    assert notify.wait_for("READY=1", 60), daemon.output()
    ready_at = time.monotonic()
    time.sleep(1.5)
    pings = notify.lines("WATCHDOG=1", since=ready_at)
    assert 3 <= len(pings) <= 7, pings  # every 0.3 s while frames flow
    assert notify.wait_for("STATUS=", 3, since=ready_at)
    status = notify.lines("STATUS=", since=ready_at)[-1]
    assert " fps, " in status and "camera ok" in status and "broker disabled" in status

    # SIGHUP with a valid file: the new threshold is applied, the camera not reopened.
    before = config.detector.score_threshold
    config.detector.score_threshold = 0.8
    config.camera.width = 320  # needs a restart: reported, not applied
    write(path, config)
    hup_at = time.monotonic()
    daemon.process.send_signal(signal.SIGHUP)
    assert daemon.wait_log(f"detector.score_threshold = 0.8 (was {before})", 10), daemon.output()
    assert daemon.wait_log("camera.width = 320 (was 640) needs a restart", 2)
    assert daemon.wait_log("(detector.score_threshold = 0.8)", 5)  # in the pipeline itself
    assert notify.wait_for("RELOADING=1", 2, since=hup_at)
    assert notify.wait_for("READY=1", 2, since=hup_at)

    # SIGHUP with an invalid file: rejected with the key named, the old config kept.
    path.write_text("[detector]\nscore_threshold = 7\n")
    bad_at = time.monotonic()
    daemon.process.send_signal(signal.SIGHUP)
    assert daemon.wait_log("config reload rejected", 10), daemon.output()
    assert daemon.wait_log("detector.score_threshold = 7: must be at most 1", 1)
    time.sleep(1.0)
    assert daemon.process.poll() is None
    assert len(notify.lines("WATCHDOG=1", since=bad_at)) >= 2  # still running, still pinging
    assert sum("edge_agent.daemon: camera file" in line for line in daemon.log) == 1

    # SIGTERM: STOPPING=1, then exit 0 well within 5 s.
    term_at = time.monotonic()
    daemon.process.send_signal(signal.SIGTERM)
    assert daemon.wait(5) == 0, daemon.output()
    assert time.monotonic() - term_at < 5
    assert notify.wait_for("STOPPING=1", 1, since=term_at)
    assert "Traceback" not in daemon.output()


@pytest.mark.slow
def test_a_camera_that_stops_delivering_stops_the_watchdog(tmp_path, media, notify, daemons):
    """A real network camera that goes silent: pings stop, so systemd would restart us."""
    with MjpegCamera(media(CLIP), frames=48, fps=24) as camera:
        config = base_config(tmp_path)
        config.camera.source = camera.url
        daemon = Daemon(write(tmp_path / "config.toml", config), notify)
        daemons.append(daemon)
        assert notify.wait_for("READY=1", 60), daemon.output()
        ready_at = time.monotonic()
        assert len(camera.jpegs) == 48
        while camera.sent < 48 and time.monotonic() - ready_at < 10:
            time.sleep(0.05)
        assert notify.lines("WATCHDOG=1", since=ready_at), "pinged while frames flowed"
        time.sleep(0.5)  # the last frames through inference
        stalled_at = time.monotonic()
        time.sleep(3.0)
        assert daemon.process.poll() is None
        assert notify.lines("WATCHDOG=1", since=stalled_at) == []
        late = time.monotonic()  # the camera counts as stalled after 2 s without frames
        assert notify.wait_for("STATUS=", 3, since=late)
        assert "camera stalled" in notify.lines("STATUS=", since=late)[-1]
        term_at = time.monotonic()
        daemon.process.send_signal(signal.SIGTERM)
        assert daemon.wait(5) == 0, daemon.output()
        assert time.monotonic() - term_at < 5


@pytest.mark.slow
def test_a_finite_file_runs_every_frame_and_exits_0(tmp_path, media, notify, daemons):
    config = base_config(tmp_path)
    config.camera.source = str(media("face_noface.mov"))  # 169 frames
    config.camera.realtime = False
    daemon = Daemon(write(tmp_path / "config.toml", config), notify)
    daemons.append(daemon)
    assert daemon.wait(60) == 0, daemon.output()
    assert "source ended after 169 frame(s)" in daemon.output()
    assert notify.wait_for("READY=1", 1) and notify.wait_for("STOPPING=1", 1)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[detector]\nscore_threshold = 1.5\n", "detector.score_threshold = 1.5"),
        ("[camera]\nsorce = 'auto'\n", "camera.sorce: unknown key"),
        ("[camera\n", "TOML syntax error at line 1"),
    ],
)
def test_bad_config_exits_78_before_anything_starts(tmp_path, notify, daemons, text, key):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    daemon = Daemon(path, notify)
    daemons.append(daemon)
    assert daemon.wait(30) == 78
    output = daemon.output()
    assert key in output and "Traceback" not in output
    assert notify.lines("READY=1") == []


def test_a_missing_source_file_exits_66(tmp_path, notify, daemons):
    config = base_config(tmp_path)
    config.camera.source = str(tmp_path / "nope.mp4")
    daemon = Daemon(write(tmp_path / "config.toml", config), notify)
    daemons.append(daemon)
    assert daemon.wait(60) == 66
    assert "nope.mp4: no such file" in daemon.output()


@pytest.mark.slow
def test_the_whole_appliance_with_a_real_broker_and_panel(
    tmp_path, media, notify, daemons, mosquitto
):
    """Camera → pipeline → MQTT (real mosquitto) and the png panel, under the notify socket."""
    import jsonschema
    from helpers.mqtt import Collector

    from edge_agent.publish.messages import load_schema

    broker = (mosquitto.host, mosquitto.port)
    config = on_a_clip(tmp_path, media(CLIP), "daemon-test", broker, stats_interval_s=1.0)
    config.mqtt.discovery = False
    config.display.kind = "png"
    config.display.path = str(tmp_path / "panel.png")
    with Collector(mosquitto, ("edge-agent/daemon-test/#",)) as collector:
        daemon = Daemon(write(tmp_path / "config.toml", config), notify)
        daemons.append(daemon)
        assert notify.wait_for("READY=1", 60), daemon.output()
        assert collector.wait(lambda c: len(c.snapshot("/stats")) >= 2, 10), daemon.output()
        stats = collector.snapshot("/stats")[-1].json()
        jsonschema.validate(stats, load_schema("stats"))
        assert stats["fps"] > 5 and stats["camera"] == "ok" and stats["accelerator"] == "cpu"
        assert set(stats["latency_ms"]) == {"p50", "p95", "p99"}
        assert stats["uptime_s"] > 0
        assert collector.wait(
            lambda c: any(m.json()["face_count"] == 1 for m in c.snapshot("/state")), 10
        )
        assert notify.wait_for("STATUS=", 3, since=time.monotonic())
        assert "broker connected" in notify.lines("STATUS=")[-1]
        assert (tmp_path / "panel.png").stat().st_size > 0
        # Home Assistant is told `online` only once the fresh state and stats are there.
        topics = [m.topic.rsplit("/", 1)[1] for m in collector.snapshot()]
        online = topics.index("availability")
        assert {"state", "faces", "stats"} <= set(topics[:online]), topics[: online + 1]
        # ... and that state already holds the face in view from the first frames: no
        # "no one there" between unavailable and the face.
        before = [m for m in collector.snapshot()[:online] if m.topic.endswith("/state")]
        assert before[-1].json()["face_count"] == 1, [m.json() for m in before]
        seen = len(collector.snapshot())
        term_at = time.monotonic()
        daemon.process.send_signal(signal.SIGTERM)
        assert daemon.wait(5) == 0, daemon.output()
        assert time.monotonic() - term_at < 5
        assert collector.wait(
            lambda c: (
                c.snapshot("/availability")[-1:]
                and c.snapshot("/availability")[-1].payload == b"offline"
            ),
            5,
        )
        # A stop is not the face leaving: no face_lost and no empty state before offline.
        after = collector.snapshot()[seen:]
        assert not [m for m in after if m.topic.endswith("/events")], after
        assert all(m.json()["face_count"] == 1 for m in after if m.topic.endswith("/state"))
    assert "Traceback" not in daemon.output()


@pytest.mark.slow
def test_faces_end_on_time_when_a_live_camera_goes_silent(
    tmp_path, media, notify, daemons, mosquitto
):
    """No frame, no detection: the face must still be reported gone after lost_after_s,
    not left on the dashboard until the camera comes back."""
    from helpers.mqtt import Collector

    with (
        MjpegCamera(media(CLIP), frames=48, fps=24) as camera,
        Collector(mosquitto, ("edge-agent/silent-cam/#",)) as collector,
    ):
        config = base_config(tmp_path)
        config.device_id = "silent-cam"
        config.camera.source = camera.url
        config.tracker.lost_after_s = 1.0
        config.mqtt.enabled = True
        config.mqtt.host, config.mqtt.port = mosquitto.host, mosquitto.port
        config.mqtt.discovery = False
        config.display.kind = "png"
        panel = tmp_path / "panel.png"
        config.display.path = str(panel)
        daemon = Daemon(write(tmp_path / "config.toml", config), notify)
        daemons.append(daemon)
        assert notify.wait_for("READY=1", 60), daemon.output()

        def events(kind: str) -> list:
            return [m for m in collector.snapshot("/events") if m.json()["type"] == kind]

        assert collector.wait(lambda c: events("face_appeared"), 10), daemon.output()
        while camera.sent < 48:
            time.sleep(0.05)
        silent_at = time.monotonic()
        assert collector.wait(lambda c: events("face_lost"), 5), daemon.output()
        assert time.monotonic() - silent_at < 3.0
        assert daemon.process.poll() is None  # still running, waiting for the camera
        assert collector.wait(lambda c: c.snapshot("/state")[-1].json()["face_count"] == 0, 3)
        # The panel is redrawn without frames: the face goes, "camera stalled" comes.
        with_face = panel.read_bytes()
        deadline = time.monotonic() + 5
        while panel.read_bytes() == with_face and time.monotonic() < deadline:
            time.sleep(0.1)
        assert panel.read_bytes() != with_face
        # ...and the camera's state is published when it changes, not at the next period.
        assert collector.wait(
            lambda c: any(m.json()["camera"] == "stalled" for m in c.snapshot("/stats")), 3
        )
        daemon.process.send_signal(signal.SIGTERM)
        assert daemon.wait(5) == 0, daemon.output()


def test_a_second_daemon_on_the_same_state_dir_exits_75(tmp_path, media, notify, daemons):
    config, path, first = looping(tmp_path, media(CLIP), notify, daemons)
    assert notify.wait_for("READY=1", 60), first.output()
    state = Path(config.state.dir)
    assert (state / "lock").read_text().strip() == str(first.process.pid)

    started = time.monotonic()
    second = Daemon(path, None, watchdog_usec=None)
    daemons.append(second)
    assert second.wait(15) == 75, second.output()
    assert time.monotonic() - started < 15
    busy = f"edge-agent: error: state dir {state} in use by PID {first.process.pid}"
    assert second.log[-1] == busy, second.output()
    assert not any("loading" in line or "Traceback" in line for line in second.log)
    assert first.process.poll() is None
    assert state.stat().st_mode & 0o777 == 0o700
    assert (state / "lock").stat().st_mode & 0o777 == 0o600
    first.process.send_signal(signal.SIGTERM)
    assert first.wait(5) == 0, first.output()


def test_a_looping_file_that_vanishes_is_a_lost_camera_until_it_is_back(tmp_path, notify, daemons):
    """Deleted under a running daemon (camera.loop): camera lost, the daemon stays up, and
    it delivers again once the file is back; no exit 65 and restart loop."""
    import cv2
    import numpy as np

    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter.fourcc(*"MJPG"), 20.0, (160, 120))
    for i in range(10):  # half a second a pass
        writer.write(np.full((120, 160, 3), i * 20, np.uint8))
    writer.release()
    kept = clip.read_bytes()
    _, _, daemon = looping(tmp_path, clip, notify, daemons)
    assert notify.wait_for("READY=1", 60), daemon.output()

    clip.unlink()
    gone_at = time.monotonic()
    assert daemon.wait_log("camera file", 10) and daemon.wait_log("reopening in", 5), (
        daemon.output()
    )
    assert notify.wait_for("STATUS=", 5, since=gone_at)
    deadline = time.monotonic() + 5
    while not any("camera lost" in line for line in notify.lines("STATUS=", since=gone_at)):
        assert time.monotonic() < deadline, notify.lines("STATUS=", since=gone_at)
        time.sleep(0.1)
    time.sleep(1.0)
    assert daemon.process.poll() is None, daemon.output()

    clip.write_bytes(kept)
    back_at = time.monotonic()
    assert daemon.wait_log("is delivering again", 40), daemon.output()
    assert notify.wait_for("WATCHDOG=1", 5, since=back_at)
    daemon.process.send_signal(signal.SIGTERM)
    assert daemon.wait(5) == 0, daemon.output()
    assert "Traceback" not in daemon.output()
