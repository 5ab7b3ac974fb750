"""One place for each rule: `config check`, `check` and `run` refuse exactly the same files,
each with the same one line naming the key, and accept the same good file.

Every file keeps MQTT on, pointed at a loopback port nobody listens on, and names a camera
clip that does not exist: a rule that is checked only when the broker, the camera or the
models are touched would show up as a different exit code, not as a hang.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edge_agent import config as config_model
from edge_agent.config import Config

TIMEOUT_S = 60.0
ERROR = "edge-agent: error: "

# (id, {key path: value}, the key path the refusal must name). "{tmp}" is the test's folder,
# which holds a regular file "a-file" and a folder "state".
BAD: list[tuple[str, dict[str, Any], str]] = [
    ("night-off-empty-span", {"display.night_off": "07:00-07:00"}, "display.night_off"),
    ("night-off-malformed", {"display.night_off": "23-07"}, "display.night_off"),
    ("topic-prefix-hash", {"mqtt.topic_prefix": "a/#"}, "mqtt.topic_prefix"),
    ("topic-prefix-plus", {"mqtt.topic_prefix": "+/x"}, "mqtt.topic_prefix"),
    ("topic-prefix-empty", {"mqtt.topic_prefix": ""}, "mqtt.topic_prefix"),
    ("discovery-prefix-hash", {"mqtt.discovery_prefix": "home/#"}, "mqtt.discovery_prefix"),
    (
        "password-file-missing",
        {"mqtt.username": "agent", "mqtt.password_file": "{tmp}/no-password"},
        "mqtt.password_file",
    ),
    (
        "password-file-folder",
        {"mqtt.username": "agent", "mqtt.password_file": "{tmp}/state"},
        "mqtt.password_file",
    ),
    (
        "password-file-empty",
        {"mqtt.username": "agent", "mqtt.password_file": "{tmp}/empty"},
        "mqtt.password_file",
    ),
    ("state-dir-a-file", {"state.dir": "{tmp}/a-file"}, "state.dir"),
    ("password-file-no-user", {"mqtt.password_file": "{tmp}/a-file"}, "mqtt.password_file"),
    ("tls-ca-missing", {"mqtt.tls_ca": "{tmp}/ca.pem"}, "mqtt.tls_ca"),
    ("tls-cert-missing", {"mqtt.tls_cert": "{tmp}/client.pem"}, "mqtt.tls_cert"),
    ("tls-key-missing", {"mqtt.tls_key": "{tmp}/client.key"}, "mqtt.tls_key"),
    ("tls-ca-not-a-ca", {"mqtt.tls_ca": "{tmp}/a-file"}, "mqtt.tls_ca"),
    ("client-id-too-long", {"mqtt.client_id": "x" * 70_000}, "mqtt.client_id"),
    ("client-id-control", {"mqtt.client_id": "kitchen\nagent"}, "mqtt.client_id"),
    ("state-dir-a-file", {"state.dir": "{tmp}/a-file"}, "state.dir"),
    ("state-dir-below-a-file", {"state.dir": "{tmp}/a-file/state"}, "state.dir"),
    ("camera-not-a-video-device", {"camera.source": "/dev/sda"}, "camera.source"),
    ("camera-unknown-scheme", {"camera.source": "ftp://cam/x"}, "camera.source"),
    ("detector-name-typo", {"detector.model": "short-range"}, "detector.model"),
    (
        "framebuffer-rotated",
        {"display.kind": "framebuffer", "display.path": "/dev/fb7", "display.rotation": 1},
        "display.rotation",
    ),
]

GOOD: dict[str, Any] = {
    "device_id": "hall-1",
    "detector.model": "full_range",
    "mqtt.topic_prefix": "home/edge-agent",
    "mqtt.discovery_prefix": "homeassistant",
    "mqtt.client_id": "hall-1-agent-" + "é" * 100,  # 213 bytes of UTF-8
    "mqtt.username": "agent",
    "mqtt.password_file": "{tmp}/a-file",
    "mqtt.tls": True,  # the system CAs, no files
    "display.night_off": "23:00-07:00",
    "state.dir": "{tmp}/state",
}


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_config(tmp_path: Path, settings: dict[str, Any]) -> Path:
    (tmp_path / "a-file").write_text("not a folder, not a certificate\n")
    (tmp_path / "a-file").chmod(0o600)  # a password file others can read is warned about
    (tmp_path / "empty").write_text("\n")
    (tmp_path / "state").mkdir(exist_ok=True)
    config = Config()
    config.accelerator = "cpu"
    config.camera.source = str(tmp_path / "no-such-clip.mp4")
    config.mqtt.host, config.mqtt.port = "127.0.0.1", unused_port()
    config.state.dir = str(tmp_path / "state")
    for path, value in settings.items():
        *sections, key = path.split(".")
        target: Any = config
        for section in sections:
            target = getattr(target, section)
        if isinstance(value, str):
            value = value.replace("{tmp}", str(tmp_path))
        setattr(target, key, value)
    path = tmp_path / "edge-agent.toml"
    path.write_text(config_model.render_toml(config))  # written unchecked, as a user might
    return path


def edge_agent(*commands: list[str]) -> list[subprocess.CompletedProcess[str]]:
    """Run `edge-agent ARGS...` for each command, side by side, as the CLI a user types."""
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    env.pop("EDGE_AGENT_MQTT_PASSWORD", None)
    started = [
        subprocess.Popen(
            [sys.executable, "-m", "edge_agent.cli", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for args in commands
    ]
    done = []
    try:
        for process in started:
            stdout, stderr = process.communicate(timeout=TIMEOUT_S)
            done.append(
                subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
            )
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
                process.wait()
    return done


def check_rows(stdout: str) -> dict[str, tuple[str, str]]:
    rows = {}
    for line in stdout.splitlines()[1:]:
        name, result, detail = line.split(None, 2)
        rows[name] = (result, detail)
    return rows


@pytest.mark.parametrize(("settings", "key"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_every_command_refuses_a_bad_file_alike(tmp_path: Path, settings: dict, key: str):
    path = write_config(tmp_path, settings)
    checked, device, run = edge_agent(
        ["config", "check", str(path)],
        ["check", "--config", str(path)],
        ["run", "--config", str(path)],
    )

    assert checked.returncode == 78, checked
    assert checked.stdout == "" and "Traceback" not in checked.stderr
    lines = checked.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{ERROR}{path}: {key} = "), lines
    message = lines[0].removeprefix(ERROR)
    assert len(message) < 400  # a 70,000-character value is not echoed in full

    assert device.returncode == 1, device
    assert "Traceback" not in device.stdout + device.stderr
    rows = check_rows(device.stdout)
    assert rows["config"] == ("FAIL", message)
    assert {result for name, (result, _) in rows.items() if name != "config"} == {"skip"}

    assert run.returncode == 78, run
    assert run.stderr.splitlines() == lines  # before any log line: nothing was opened


def test_every_command_accepts_the_good_file(tmp_path: Path):
    path = write_config(tmp_path, GOOD)
    checked, device, run = edge_agent(
        ["config", "check", str(path)],
        ["check", "--config", str(path)],
        ["run", "--config", str(path)],
    )

    assert (checked.returncode, checked.stdout, checked.stderr) == (0, f"{path}: ok\n", "")

    rows = check_rows(device.stdout)
    assert rows["config"] == ("ok", str(path)), device
    assert rows["models"][0] == "ok" and rows["camera"][0] == "FAIL"  # no such clip
    assert "Traceback" not in device.stdout + device.stderr

    # `run` gets as far as the camera.
    assert run.returncode == 66 and "no-such-clip.mp4: no such file" in run.stderr, run
    assert "Traceback" not in run.stderr
