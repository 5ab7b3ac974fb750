"""Every exit code the README documents, from the real CLI in a subprocess.

Each failure must end in exactly one `edge-agent: error:` line and never a traceback.
70 (internal error) is left out: it is reachable only through a bug.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_one_error_line(done: subprocess.CompletedProcess[str], code: int) -> str:
    assert done.returncode == code, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("edge-agent: error:")]
    assert len(errors) == 1, done.stderr
    return errors[0]


def test_0_success(tmp_path: Path) -> None:
    config = tmp_path / "ok.toml"
    config.write_text('device_id = "kitchen"\n')
    done = cli("config", "check", str(config))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{config}: ok" and "Traceback" not in done.stderr


def test_0_help_and_version() -> None:
    assert cli("--version").returncode == 0
    assert cli("analyze", "--help").returncode == 0


def test_1_check_found_a_problem(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[detector]\nscore_threshold = 7\n")
    done = cli("check", "--config", str(config))
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "config" in done.stdout and "FAIL" in done.stdout


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("bogus",),
        ("analyze",),
        ("analyze", "a.jpg", "--no-such-flag"),
        ("bench", "--frames", "many"),
        ("config",),
    ],
    ids=["no-command", "unknown-command", "missing-path", "unknown-flag", "bad-int", "no-sub"],
)
def test_64_bad_command_line(args: tuple[str, ...]) -> None:
    line = assert_one_error_line(cli(*args), 64)
    assert "--help" in line
    assert len(cli(*args).stderr.splitlines()) == 1  # no usage block around it


def test_65_not_usable_media(tmp_path: Path) -> None:
    notes = tmp_path / "notes.jpg"
    notes.write_text("hello, not a picture")
    line = assert_one_error_line(cli("analyze", str(notes)), 65)
    assert "notes.jpg" in line


def test_66_input_missing(tmp_path: Path) -> None:
    line = assert_one_error_line(cli("analyze", str(tmp_path / "missing.mp4")), 66)
    assert "no such file" in line


def test_69_model_missing(media, tmp_path: Path) -> None:
    empty = tmp_path / "models"
    empty.mkdir()
    config = tmp_path / "models.toml"
    config.write_text(f'accelerator = "cpu"\n[models]\ndir = "{empty}"\n')
    line = assert_one_error_line(
        cli("analyze", str(media("single_face.jpg")), "--config", str(config)), 69
    )
    assert "manifest" in line


def test_78_invalid_configuration(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[detector]\nscore_threshold = 7\n")
    line = assert_one_error_line(cli("config", "check", str(config)), 78)
    assert "detector.score_threshold" in line
