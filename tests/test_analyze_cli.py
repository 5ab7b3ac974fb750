"""`edge-agent analyze` as a user runs it: real files, real output, real exit codes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import cli


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return cli("analyze", *args)


def test_json_lines_follow_the_documented_shape(media) -> None:
    done = analyze(str(media("single_face.jpg")), "--json")
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    frame = json.loads(line)
    assert set(frame) == {"frame", "t", "faces"}
    (face,) = frame["faces"]
    assert set(face) == {
        "track",
        "box",
        "score",
        "emotion",
        "emotion_scores",
        "age",
        "gender",
        "gender_score",
    }
    assert len(face["box"]) == 4 and face["track"] == 1
    assert set(face["emotion_scores"]) == {
        "angry",
        "disgust",
        "fear",
        "happy",
        "sad",
        "surprise",
        "neutral",
    }


def test_table_output_and_annotated_video(media, tmp_path: Path) -> None:
    out = tmp_path / "annotated.mp4"
    done = analyze(str(media("single_face.mp4")), "--annotate", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].split()[:3] == ["frame", "t", "(s)"]
    capture = cv2.VideoCapture(str(out))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 72
    ok, first = capture.read()
    original = cv2.VideoCapture(str(media("single_face.mp4"))).read()[1]
    assert ok and first.shape == original.shape
    # boxes were drawn: the annotated frame differs from the source well beyond codec noise
    assert np.abs(first.astype(int) - original.astype(int)).max() > 100


def test_annotated_image_for_a_still(media, tmp_path: Path) -> None:
    out = tmp_path / "faces.png"
    done = analyze(str(media("single_face.jpg")), "--annotate", str(out))
    assert done.returncode == 0, done.stderr
    assert cv2.imread(str(out)).shape == cv2.imread(str(media("single_face.jpg"))).shape


def test_folder_of_images_is_one_stream(media, tmp_path: Path) -> None:
    for name in ("single_face.jpg", "multi_face.jpg"):
        (tmp_path / name).write_bytes(media(name).read_bytes())
    (tmp_path / "notes.txt").write_text("not an image")
    done = analyze(str(tmp_path), "--json")
    assert done.returncode == 0, done.stderr
    frames = [json.loads(line) for line in done.stdout.splitlines()]
    assert [f["frame"] for f in frames] == [0, 1]
    assert [f["t"] for f in frames] == [0.0, 1.0]
    assert [f["file"] for f in frames] == ["multi_face.jpg", "single_face.jpg"]
    assert "warning" not in done.stderr  # a text file is not media: nothing to say


def test_a_folder_goes_on_past_a_bad_image_and_names_every_file(media, tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(media("single_face.jpg").read_bytes())
    (tmp_path / "b.jpg").write_text("not a picture")
    (tmp_path / "c.png").write_bytes(b"")
    (tmp_path / "d.jpg").write_bytes(media("multi_face.jpg").read_bytes())
    (tmp_path / "clip.mp4").write_bytes(media("single_face.mp4").read_bytes())
    (tmp_path / "more").mkdir()
    done = analyze(str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    rows = done.stdout.splitlines()
    assert rows[0].split()[:2] == ["file", "frame"]
    assert {row.split()[0] for row in rows[1:]} == {"a.jpg", "d.jpg"}
    warnings = [line for line in done.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 4, done.stderr
    assert all(line.startswith("edge-agent: warning: ") for line in warnings)
    by_file = {Path(line.split(": ")[2]).name: line for line in warnings}
    assert set(by_file) == {"b.jpg", "c.png", "clip.mp4", "more"}
    assert "not a readable image" in by_file["b.jpg"] and "empty" in by_file["c.png"]
    assert "skipped" in by_file["clip.mp4"] and "skipped" in by_file["more"]
    assert "edge-agent: error:" not in done.stderr

    done = analyze(str(tmp_path), "--json")
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["file"] for line in done.stdout.splitlines()] == ["a.jpg", "d.jpg"]


def test_a_folder_with_no_readable_image_is_bad_media(tmp_path: Path) -> None:
    (tmp_path / "b.jpg").write_text("not a picture")
    (tmp_path / "c.png").write_bytes(b"")
    done = analyze(str(tmp_path), "--json")
    assert done.returncode == 65
    assert done.stdout == "" and "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("edge-agent: error:")]
    assert len(errors) == 1 and "none of its 2 image(s)" in errors[0]
    assert done.stderr.count("edge-agent: warning:") == 2


def _write(path: Path, image: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), image)
    return path


@pytest.mark.parametrize(
    ("make", "code", "message"),
    [
        (lambda d: d / "missing.mp4", 66, "no such file"),
        (
            lambda d: ((d / "empty.jpg").write_bytes(b"") and d / "empty.jpg") or d / "empty.jpg",
            65,
            "empty",
        ),
        (
            lambda d: (d / "notes.jpg").write_text("hello, not a picture") and d / "notes.jpg",
            65,
            "not a readable image",
        ),
        (
            lambda d: (
                (d / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x07" * 4000)
                and d / "clip.mp4"
            ),
            65,
            "not a readable",
        ),
    ],
    ids=["missing", "zero-bytes", "text-named-jpg", "corrupt-video"],
)
def test_bad_input_gives_one_line_and_a_documented_code(tmp_path, make, code, message) -> None:
    done = analyze(str(make(tmp_path)))
    assert done.returncode == code
    assert "Traceback" not in done.stderr
    error_lines = [line for line in done.stderr.splitlines() if line.startswith("edge-agent:")]
    assert len(error_lines) == 1 and message in error_lines[0]


def test_truncated_jpeg_is_refused_cleanly(media, tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(media("single_face.jpg").read_bytes()[:200])
    done = analyze(str(broken))  # the header alone: no image data to decode
    assert done.returncode == 65
    assert "broken.jpg: not a readable image" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("kind", ["rgba", "grey", "one-pixel"])
def test_unusual_but_valid_images_are_accepted(media, tmp_path: Path, kind: str) -> None:
    face = cv2.imread(str(media("single_face.jpg")))
    if kind == "rgba":
        path = _write(tmp_path / "face.png", cv2.cvtColor(face, cv2.COLOR_BGR2BGRA))
    elif kind == "grey":
        path = _write(tmp_path / "face.png", cv2.cvtColor(face, cv2.COLOR_BGR2GRAY))
    else:
        path = _write(tmp_path / "dot.png", np.zeros((1, 1, 3), np.uint8))
    done = analyze(str(path), "--json")
    assert done.returncode == 0, done.stderr
    faces = json.loads(done.stdout)["faces"]
    assert len(faces) == (0 if kind == "one-pixel" else 1)


def test_annotate_into_a_missing_folder_is_a_usage_error(media, tmp_path: Path) -> None:
    done = analyze(str(media("single_face.jpg")), "--annotate", str(tmp_path / "no" / "x.png"))
    assert done.returncode == 64
    assert "does not exist" in done.stderr and "Traceback" not in done.stderr


def _library_lines(stderr: str) -> list[str]:
    """Lines OpenCV, FFmpeg or the TFLite runtime print by themselves."""
    return [
        line
        for line in stderr.splitlines()
        if line.startswith(("[ WARN", "[ INFO", "[ERROR", "[mov", "[tcp", "WARNING ", "W0000"))
        or "moov atom" in line
        or "libedgetpu" in line
    ]


@pytest.mark.parametrize("kind", ["truncated-mp4", "missing"])
def test_a_failure_is_exactly_one_line_on_stderr(media, tmp_path: Path, kind: str) -> None:
    path = tmp_path / "clip.mp4"
    if kind == "truncated-mp4":  # the header without its index: FFmpeg has much to say
        path.write_bytes(media("single_face.mp4").read_bytes()[:100_000])
    done = analyze(str(path))
    assert done.returncode == (65 if kind == "truncated-mp4" else 66)
    assert done.stderr.splitlines() == [done.stderr.strip()], done.stderr
    assert done.stderr.startswith("edge-agent: error: ")


def test_a_good_image_has_no_library_chatter_on_stderr(media) -> None:
    done = analyze(str(media("single_face.jpg")), "--json")
    assert done.returncode == 0, done.stderr
    assert _library_lines(done.stderr) == [], done.stderr
