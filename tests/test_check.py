"""`edge-agent check` on real models, real video, a real broker and the png panel."""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

import pytest
from helpers.daemon import base_config, write

from edge_agent import config as config_model
from edge_agent.cli import check
from edge_agent.vision.manifest import DEFAULT_MODELS_DIR, resolve
from edge_agent.vision.pipeline import BLAZEFACE

CLIP = "WolfgangLanger_Pexels.mp4"


def run(path: Path | None, capsys) -> tuple[int, dict[str, tuple[str, str]]]:
    code = check.main(argparse.Namespace(config=str(path) if path else None))
    out = capsys.readouterr().out
    rows = {}
    for line in out.splitlines()[1:]:
        name, result, detail = line.split(None, 2)
        rows[name] = (result, detail)
    return code, rows


@pytest.fixture
def good(tmp_path, media):
    config = base_config(tmp_path)
    config.camera.source = str(media(CLIP))
    config.display.kind = "png"
    config.display.path = str(tmp_path / "panel.png")
    (tmp_path / "state").mkdir()
    return config


def test_a_ready_device_passes_every_check(tmp_path, good, capsys):
    code, rows = run(write(tmp_path / "c.toml", good), capsys)
    assert code == 0, rows
    assert list(rows) == [
        "config",
        "models",
        "accelerator",
        "runtime",
        "camera",
        "broker",
        "display",
        "state",
    ]
    assert rows["models"][0] == "ok" and "match their checksums" in rows["models"][1]
    assert rows["accelerator"] == ("ok", 'CPU (accelerator = "cpu")')
    assert "ms on cpu" in rows["runtime"][1]
    assert rows["camera"][0] == "ok" and "640x360 frame" in rows["camera"][1]
    assert rows["broker"] == ("skip", "mqtt.enabled = false")
    assert rows["display"][0] == "ok" and rows["state"][0] == "ok"


def test_broker_is_connected_to(tmp_path, good, capsys, mosquitto):
    good.mqtt.enabled = True
    good.mqtt.host, good.mqtt.port = mosquitto.host, mosquitto.port
    code, rows = run(write(tmp_path / "c.toml", good), capsys)
    assert code == 0 and rows["broker"][0] == "ok", rows
    assert f"{mosquitto.port}" in rows["broker"][1]


def test_an_unreachable_broker_fails_with_exit_1(tmp_path, good, capsys):
    good.mqtt.enabled = True
    good.mqtt.host, good.mqtt.port = "127.0.0.1", 9  # nothing listens on discard
    code, rows = run(write(tmp_path / "c.toml", good), capsys)
    assert code == 1 and rows["broker"][0] == "FAIL"
    assert rows["camera"][0] == "ok"  # the other checks still ran


def test_a_missing_tls_file_is_a_failed_config_row_not_a_crash(tmp_path, good, capsys):
    good.mqtt.enabled = True
    good.mqtt.host, good.mqtt.port = "127.0.0.1", 9
    good.mqtt.tls_ca = str(tmp_path / "missing-ca.pem")
    code, rows = run(write(tmp_path / "c.toml", good), capsys)
    # The TLS files are checked when the config loads, as `config check` and `run` do.
    assert code == 1 and rows["config"][0] == "FAIL" and rows["broker"][0] == "skip"
    assert "mqtt.tls_ca" in rows["config"][1] and "not found" in rows["config"][1]


def test_an_altered_model_fails_its_checksum(tmp_path, good, capsys):
    source = Path(good.models.dir) if good.models.dir else DEFAULT_MODELS_DIR
    models = tmp_path / "models"
    shutil.copytree(source, models)
    detector = BLAZEFACE[good.detector.model][0]
    victim = resolve(detector, good.models.variant, models).path  # the one the config uses
    victim.write_bytes(victim.read_bytes()[:-100])
    good.models.dir = str(models)
    code, rows = run(write(tmp_path / "c.toml", good), capsys)
    assert code == 1
    assert rows["models"][0] == "FAIL" and "checksum" in rows["models"][1]
    assert rows["runtime"][0] == "skip"


def test_a_missing_camera_source_fails(tmp_path, good, capsys):
    good.camera.source = str(tmp_path / "gone.mp4")
    code, rows = run(write(tmp_path / "c.toml", good), capsys)
    assert code == 1 and rows["camera"][0] == "FAIL" and "gone.mp4" in rows["camera"][1]


def test_an_invalid_config_fails_first_and_skips_the_rest(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text("[detector]\nscore_threshold = 3\n")
    code, rows = run(path, capsys)
    assert code == 1
    assert rows["config"][0] == "FAIL" and "detector.score_threshold = 3" in rows["config"][1]
    assert {result for name, (result, _) in rows.items() if name != "config"} == {"skip"}


def test_check_needs_no_models_to_report_their_absence(tmp_path, capsys):
    config = config_model.Config()
    config.models.dir = str(tmp_path / "empty")
    config.mqtt.enabled = False
    config.camera.source = str(tmp_path / "none.mp4")
    os.makedirs(tmp_path / "empty")
    code, rows = run(write(tmp_path / "c.toml", config), capsys)
    assert code == 1 and rows["models"][0] == "FAIL" and "manifest" in rows["models"][1]


def test_a_missing_video_device_is_said_to_be_missing(tmp_path, good, capsys):
    good.camera.source = "/dev/video99"
    code, rows = run(write(tmp_path / "c.toml", good), capsys)
    assert code == 1
    assert rows["camera"] == ("FAIL", "/dev/video99: no such device (is the camera plugged in?)")


def test_a_corrupt_outbox_is_named_in_the_state_row(tmp_path, good, capsys):
    (tmp_path / "state" / "outbox.sqlite3").write_bytes(b"not a database at all " * 200)
    _, rows = run(write(tmp_path / "c.toml", good), capsys)
    assert rows["state"][0] == "warn", rows
    assert "outbox.sqlite3: database corrupt" in rows["state"][1]


@pytest.fixture
def read_only_dir(tmp_path):
    """A real read-only file system (a tmpfs remounted ro); needs root's mount."""
    import subprocess

    mount = tmp_path / "ro"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a read-only file system needs root")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)]).returncode:
        pytest.skip("this machine does not allow mounting a tmpfs")
    try:
        (mount / "state").mkdir()
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        yield mount / "state"
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_read_only_state_dir_fails_check_and_run_in_plain_words(
    tmp_path, good, capsys, read_only_dir
):
    from helpers import cli

    good.state.dir = str(read_only_dir)
    path = write(tmp_path / "c.toml", good)
    code, rows = run(path, capsys)
    assert code == 1
    assert rows["state"] == (
        "FAIL",
        f"{read_only_dir}: read-only file system: the agent cannot start or store events",
    )
    good.mqtt.enabled = True  # the outbox opens with the publisher
    good.mqtt.port = 1
    done = cli("run", "--config", str(write(tmp_path / "c.toml", good)))
    assert done.returncode == 78, done.stderr
    assert "Read-only file system" in done.stderr and "Traceback" not in done.stderr
