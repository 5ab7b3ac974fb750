"""`edge-agent bench` reports what the issue asks for (no speed is asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import cv2
from helpers import cli
from helpers.mqtt import Collector


def test_bench_json_summary_on_the_last_line(media, tmp_path) -> None:
    config = tmp_path / "bench.toml"
    config.write_text("[mqtt]\nenabled = false\n")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge_agent.cli",
            "bench",
            "--source",
            str(media("single_face.mp4")),
            "--frames",
            "100",
            "--json",
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.splitlines()[-1])
    assert summary["frames"] == 100  # exactly N: the 72-frame clip, looped, cut at N
    assert summary["fps"] > 0 and summary["rss_mb"] > 10 and 0 < summary["startup_s"] < 30
    # the models and their arenas are the process's own memory, and part of its peak
    assert 10 < summary["rss_anon_mb"] < summary["rss_mb"]
    assert set(summary["latency_ms"]) == {"p50", "p95", "p99"}
    assert summary["latency_ms"]["p50"] <= summary["latency_ms"]["p99"]
    stages = summary["stages_ms"]
    assert set(stages) == {"decode", "detect", "classify", "track", "publish", "display"}
    assert stages["detect"] > 0 and stages["classify"] > 0 and stages["decode"] > 0
    assert summary["frames_dropped"] == 0  # a file at full speed loses nothing
    assert summary["accelerator"] == "cpu"
    assert "fps" in done.stdout.splitlines()[1]  # the readable table comes first


def test_bench_multiface_makes_its_clip_once_and_plays_it(media, tmp_path) -> None:
    """The first `--multiface` makes the group clip (in a process of its own) from the two
    samples it needs, caches it whole and benches it; the second plays the cached file."""
    cache = tmp_path / "cache"
    (cache / "samples").mkdir(parents=True)
    for name in ("multi_face.jpg", "no_face.mp4"):
        (cache / "samples" / name).write_bytes(media(name).read_bytes())
    config = tmp_path / "bench.toml"
    config.write_text("[mqtt]\nenabled = false\n")
    command = ["bench", "--multiface", "--frames", "30", "--json", "--config", str(config)]
    env = {"EDGE_AGENT_CACHE": str(cache)}
    first = cli(*command, timeout=180, env=env)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout.splitlines()[-1])["frames"] == 30
    clip = cache / "samples" / "group_640x480.mp4"
    assert sorted(p.name for p in clip.parent.iterdir()) == sorted(
        ["multi_face.jpg", "no_face.mp4", clip.name]  # no partial file left beside it
    )
    capture = cv2.VideoCapture(str(clip))
    frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    ok, frame = capture.read()
    capture.release()
    assert ok and frame.shape == (480, 640, 3) and frames == 4 * 72
    made = clip.stat().st_mtime_ns
    second = cli(*command, timeout=180, env=env)
    assert second.returncode == 0, second.stderr
    assert clip.stat().st_mtime_ns == made


def test_bench_refuses_zero_frames(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "bench", "--frames", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 64 and "--frames 0" in done.stderr


def test_bench_fails_when_the_source_breaks_off(media, tmp_path) -> None:
    folder = tmp_path / "stills"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(media("single_face.jpg").read_bytes())
    (folder / "b.jpg").write_text("not a picture")
    config = tmp_path / "bench.toml"
    config.write_text("[mqtt]\nenabled = false\n")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge_agent.cli",
            "bench",
            "--source",
            str(folder),
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 65 and "b.jpg" in done.stderr
    assert "fps" not in done.stdout  # no numbers from a broken run


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "bench", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def appliance_config(tmp_path: Path, broker) -> Path:
    """What /etc/edge-agent/config.toml of a running appliance looks like."""
    config = tmp_path / "appliance.toml"
    config.write_text(
        'device_id = "kitchen"\n'
        f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\nclient_id = "kitchen-agent"\n'
        f'[state]\ndir = "{tmp_path / "appliance-state"}"\n'
    )
    return config


def test_bench_leaves_the_broker_alone_unless_asked(media, tmp_path, mosquitto) -> None:
    config = appliance_config(tmp_path, mosquitto)
    with Collector(mosquitto) as seen:
        done = bench("--source", str(media("single_face.mp4")), "--config", str(config))
        time.sleep(0.3)  # anything in flight would have arrived by now
    assert done.returncode == 0, done.stderr
    assert seen.snapshot() == []
    assert not (tmp_path / "appliance-state").exists()


def test_bench_mqtt_publishes_as_its_own_device_and_client(media, tmp_path, mosquitto) -> None:
    config = appliance_config(tmp_path, mosquitto)
    # The running daemon's session, under its client id: bench must not take it over.
    daemon = Collector(mosquitto, client_id="kitchen-agent")
    kicked: list[object] = []
    daemon.client.on_disconnect = lambda *args: kicked.append(args)
    with daemon:
        done = bench(
            "--source",
            str(media("single_face.mp4")),
            "--frames",
            "40",
            "--mqtt",
            "--config",
            str(config),
        )
        assert daemon.wait(lambda c: any(m.topic.endswith("/events") for m in c.snapshot()), 5)
        assert kicked == []  # (before the collector's own disconnect)
    assert done.returncode == 0, done.stderr
    topics = {m.topic for m in daemon.snapshot()}
    ours = {t for t in topics if t.startswith("edge-agent/")}
    assert ours and all(t.startswith("edge-agent/kitchen-bench/") for t in ours), topics
    assert not any("/kitchen/" in t or t.endswith("/kitchen") for t in topics), topics
    assert not (tmp_path / "appliance-state").exists()  # a temporary state folder instead
    assert "stay in the outbox" not in done.stderr
