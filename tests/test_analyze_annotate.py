"""`analyze --annotate OUT` never destroys its input, never overwrites a file unasked, and
never leaves a half-written file behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
from helpers import cli


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return cli("analyze", *args)


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("edge-agent: error:")]
    assert len(errors) == 1, done.stderr
    return errors[0]


@pytest.mark.parametrize("name", ["single_face.jpg", "single_face.mp4"])
@pytest.mark.parametrize("how", ["same-path", "symlink", "hard-link", "dotted-path"])
def test_annotate_refuses_its_own_input(media, tmp_path: Path, name: str, how: str) -> None:
    original = media(name).read_bytes()
    source = tmp_path / name
    source.write_bytes(original)
    out = source
    if how == "symlink":
        out = tmp_path / f"link{source.suffix}"
        out.symlink_to(source)
    elif how == "hard-link":
        out = tmp_path / f"hard{source.suffix}"
        os.link(source, out)
    elif how == "dotted-path":
        (tmp_path / "sub").mkdir()
        out = tmp_path / "sub" / ".." / name
    for extra in ((), ("--force",)):  # not even with --force
        done = analyze(str(source), "--annotate", str(out), *extra)
        assert done.returncode == 64, done.stderr
        assert "is the input" in one_error_line(done)
        assert source.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_annotate_refuses_an_image_of_the_folder_it_reads(media, tmp_path: Path) -> None:
    original = media("single_face.jpg").read_bytes()
    (tmp_path / "a.jpg").write_bytes(original)
    done = analyze(str(tmp_path), "--annotate", str(tmp_path / "a.jpg"), "--force")
    assert done.returncode == 64 and "is the input" in one_error_line(done)
    assert (tmp_path / "a.jpg").read_bytes() == original


def test_annotate_keeps_an_existing_file_unless_forced(media, tmp_path: Path) -> None:
    out = tmp_path / "out.png"
    out.write_bytes(b"keep me")
    done = analyze(str(media("single_face.jpg")), "--annotate", str(out))
    assert done.returncode == 64 and "--force" in one_error_line(done)
    assert out.read_bytes() == b"keep me"
    done = analyze(str(media("single_face.jpg")), "--annotate", str(out), "--force")
    assert done.returncode == 0, done.stderr
    assert cv2.imread(str(out)).shape == cv2.imread(str(media("single_face.jpg"))).shape
    assert out.stat().st_mode & 0o044 == 0o044 & ~_umask()  # readable like any new file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]  # no temporary left


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_an_interrupted_run_leaves_no_half_file(media, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edge_agent.cli",
            "analyze",
            str(media("single_face.mp4")),
            "--annotate",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},  # each row as it is written
    )
    assert process.stdout is not None
    for _ in range(6):  # the header and five rows: the video file is being written
        process.stdout.readline()
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert list(tmp_path.iterdir()) == []  # neither OUT nor a temporary file
