"""Pixel bombs: images and frames over camera.max_pixels are refused from their header,
before decoding, so a file of a few KB cannot take gigabytes of memory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from edge_agent.capture.files import VideoSource, read_image
from edge_agent.errors import EX_DATAERR, BadMediaError

# Runs `edge-agent analyze` as a child of a fresh interpreter, so RUSAGE_CHILDREN measures
# that one process and nothing pytest ran before.
MEASURE = """
import resource, subprocess, sys
done = subprocess.run([sys.executable, "-m", "edge_agent.cli", "analyze", sys.argv[1]],
                      capture_output=True, text=True, timeout=120)
peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(done.returncode, round(peak_mb), sep="\\n")
sys.stderr.write(done.stderr)
"""


def analyze_measured(path: Path) -> tuple[int, float, list[str]]:
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(path)],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    code, peak = done.stdout.split()
    return int(code), float(peak), [line for line in done.stderr.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def png_bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    Image.new("1", (30000, 30000)).save(path, optimize=True)
    assert path.stat().st_size < 1_000_000
    return path


@pytest.fixture(scope="module")
def big_jpeg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bomb") / "big.jpg"
    Image.new("L", (12000, 9000), 128).save(path, quality=50)
    return path


@pytest.mark.parametrize("name", ["png_bomb", "big_jpeg"])
def test_analyze_refuses_a_pixel_bomb_from_its_header(name: str, request) -> None:
    path: Path = request.getfixturevalue(name)
    code, peak_mb, lines = analyze_measured(path)
    assert code == EX_DATAERR, lines
    assert len(lines) == 1, lines
    assert "camera.max_pixels" in lines[0] and "megapixels" in lines[0], lines
    assert peak_mb < 400, f"peak RSS {peak_mb} MB"


def test_read_image_refuses_before_decoding(png_bomb: Path, tmp_path: Path) -> None:
    with pytest.raises(BadMediaError, match=r"30000x30000 \(900.0 megapixels\)"):
        read_image(png_bomb)
    small = tmp_path / "small.png"
    Image.new("RGB", (200, 100)).save(small)
    assert read_image(small).shape == (100, 200, 3)
    with pytest.raises(BadMediaError, match="200x100"):
        read_image(small, max_pixels=10_000)


def test_a_video_over_the_budget_is_refused_not_downscaled(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, (320, 240))
    for _ in range(3):
        writer.write(np.zeros((240, 320, 3), np.uint8))
    writer.release()
    with pytest.raises(BadMediaError, match="a video frame of 320x240"):
        VideoSource(path, max_pixels=320 * 240 - 1)
    source = VideoSource(path, max_pixels=320 * 240)
    assert next(source.frames()).image.shape == (240, 320, 3)
    source.close()
