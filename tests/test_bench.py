"""`edge-agent bench` reports what the issue asks for (no speed is asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys


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
    assert summary["frames"] >= 100  # 72-frame clip, looped to reach N
    assert summary["fps"] > 0 and summary["rss_mb"] > 10 and 0 < summary["startup_s"] < 30
    assert set(summary["latency_ms"]) == {"p50", "p95", "p99"}
    assert summary["latency_ms"]["p50"] <= summary["latency_ms"]["p99"]
    stages = summary["stages_ms"]
    assert set(stages) == {"decode", "detect", "classify", "track", "publish", "display"}
    assert stages["detect"] > 0 and stages["classify"] > 0 and stages["decode"] > 0
    assert summary["frames_dropped"] == 0  # a file at full speed loses nothing
    assert summary["accelerator"] == "cpu"
    assert "fps" in done.stdout.splitlines()[1]  # the readable table comes first


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
