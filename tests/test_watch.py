"""`edge-agent watch`: the table it draws, a live run against mosquitto, and its errors."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from helpers import wait_until
from helpers.mqtt import Mosquitto, free_port, sad_face_publisher

from edge_agent.cli.watch import Board


def _config_file(path: Path, port: int) -> Path:
    path.write_text(f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\n')
    return path


def test_the_board_shows_devices_faces_and_recent_events():
    board = Board("edge-agent", "broker:1883", status="connected")
    board.receive("edge-agent/kitchen/availability", b"online")
    stats = {"fps": 14.52, "outbox_depth": 3}
    board.receive("edge-agent/kitchen/stats", json.dumps(stats).encode())
    board.receive(
        "edge-agent/kitchen/state",
        json.dumps(
            {
                "face_count": 1,
                "dominant_emotion": "happy",
                "faces": [
                    {
                        "track": 7,
                        "emotion": "happy",
                        "emotion_scores": {"happy": 0.91},
                        "age": 33.4,
                        "gender": "female",
                        "gender_score": 0.83,
                    }
                ],
            }
        ).encode(),
    )
    board.receive(
        "edge-agent/kitchen/events",
        json.dumps(
            {
                "seq": 12,
                "type": "emotion_changed",
                "ts": "2025-05-01T12:00:01.250Z",
                "track": 7,
                "emotion": "happy",
                "previous_emotion": "neutral",
            }
        ).encode(),
    )
    board.receive("edge-agent/hall/availability", b"offline")
    board.receive("other/kitchen/state", b"{}")  # not ours
    board.receive("edge-agent/kitchen/state", b"not json")  # ignored, keeps the last state
    text = "\n".join(board.render(width=200))
    kitchen = next(line for line in text.splitlines() if line.startswith("kitchen"))
    assert kitchen.split()[:6] == ["kitchen", "online", "14.5", "1", "happy", "1"]
    assert "face #7" in text and "0.91" in text and "age  33" in text and "female 0.83" in text
    assert "12:00:01.250 kitchen #12 emotion_changed face #7 neutral -> happy" in text
    hall = next(line for line in text.splitlines() if line.startswith("hall"))
    assert hall.split()[:3] == ["hall", "offline", "-"]
    assert "2 device(s)" in text and "(connected)" in text
    assert all(len(line) <= 40 for line in board.render(width=40))


def test_watch_shows_a_live_device_and_exits_cleanly_on_ctrl_c(
    mosquitto: Mosquitto, tmp_path: Path
):
    publisher, stream = sad_face_publisher(mosquitto, tmp_path)
    config = _config_file(tmp_path / "watch.toml", mosquitto.port)
    watch = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edge_agent.cli",
            "watch",
            "--config",
            str(config),
            "--device",
            "test-device",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(watch.stdout), daemon=True)
    reader.start()
    try:
        # The retained state and stats fill the table at once.
        assert wait_until(lambda: any("face #1" in line for line in list(lines)), 10)
        for result in stream:  # the face leaves, another comes: live events
            publisher.publish_frame(result, time.time())  # type: ignore[arg-type]
        assert wait_until(lambda: any("face_lost" in line for line in list(lines)), 10)
        watch.send_signal(signal.SIGINT)
        watch.wait(timeout=10)
        reader.join(5)
        err = watch.stderr.read() if watch.stderr else ""
    finally:
        if watch.poll() is None:
            watch.kill()
        publisher.stop()
    out = "".join(lines)
    assert watch.returncode == 0, err
    assert "Traceback" not in err
    assert "test-device" in out and "online" in out and "12.5" in out
    assert "sad" in out and "face #1" in out
    assert "face_lost face #1" in out


def test_watch_names_an_unreachable_broker_in_one_line(tmp_path: Path):
    port = free_port()
    config = _config_file(tmp_path / "watch.toml", port)
    done = subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "watch", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 69
    assert done.stderr == (
        f"edge-agent: error: cannot reach MQTT broker 127.0.0.1:{port}: connection refused\n"
    )
