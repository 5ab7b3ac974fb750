"""`edge-agent analyze PATH`: the vision core on a file, as JSON lines or a table."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from edge_agent.capture.files import IMAGE_SUFFIXES, FolderSource, ImageSource, open_path
from edge_agent.cli.annotate import draw_faces
from edge_agent.config import load_or_default
from edge_agent.errors import UsageError
from edge_agent.types import FrameResult
from edge_agent.vision.pipeline import Pipeline


class Annotator:
    """Writes annotated frames: one image for a still, a video otherwise."""

    def __init__(self, out: Path, single_image: bool, fps: float) -> None:
        self.out, self.single_image, self.fps = out, single_image, fps
        is_image_name = out.suffix.lower() in IMAGE_SUFFIXES
        if single_image != is_image_name:
            wanted = "an image name (.jpg, .png)" if single_image else "a video name (.mp4)"
            raise UsageError(f"--annotate {out}: the input calls for {wanted}")
        if not out.parent.is_dir():
            raise UsageError(f"--annotate {out}: folder {out.parent} does not exist")
        self._writer: cv2.VideoWriter | None = None
        self._size = (0, 0)

    def write(self, image: np.ndarray, result: FrameResult) -> None:
        annotated = draw_faces(image.copy(), result.faces)
        if self.single_image:
            if not cv2.imwrite(str(self.out), annotated):
                raise UsageError(f"--annotate {self.out}: cannot write this file")
            return
        if self._writer is None:
            height, width = annotated.shape[:2]
            self._size = (width, height)
            self._writer = cv2.VideoWriter(
                str(self.out), cv2.VideoWriter.fourcc(*"mp4v"), self.fps, (width, height)
            )
            if not self._writer.isOpened():
                raise UsageError(f"--annotate {self.out}: cannot write a video here")
        if annotated.shape[1::-1] != self._size:  # a folder of stills of mixed sizes
            annotated = cv2.resize(annotated, self._size)
        self._writer.write(annotated)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()


def _table_row(result: FrameResult) -> list[str]:
    if not result.faces:
        return [f"{result.frame:>6} {result.t:>8.2f}  -"]
    rows = []
    for face in result.faces:
        age = "-" if face.age is None else f"{face.age:.0f}"
        emotion = face.emotion or "-"
        confidence = (
            ""
            if not face.emotion_scores or not face.emotion
            else f" ({face.emotion_scores[face.emotion]:.2f})"
        )
        gender = face.gender or "-"
        box = ",".join(f"{v:.0f}" for v in face.box)
        rows.append(
            f"{result.frame:>6} {result.t:>8.2f} {face.track:>5}  "
            f"{emotion + confidence:<18} {age:>4}  {gender:<7} {box}"
        )
    return rows


def main(args: argparse.Namespace) -> int:
    config = load_or_default(args.config)
    source = open_path(Path(args.path))
    annotator = None
    if args.annotate:
        annotator = Annotator(
            Path(args.annotate), isinstance(source, ImageSource), source.fps or 1.0
        )
    pipeline = Pipeline(config)
    out = sys.stdout
    if not args.json:
        print(
            f"{'frame':>6} {'t (s)':>8} {'track':>5}  {'emotion':<18} {'age':>4}  "
            f"{'gender':<7} box x,y,w,h",
            file=out,
        )
    frames = faces_seen = 0
    last_t = 0.0
    try:
        # Photos are judged each on its own (the whole detector pyramid, no tracking from
        # one photo to the next); a video's frames are a stream.
        stills = isinstance(source, ImageSource | FolderSource)
        for frame in source.frames():
            result = pipeline.process_still(frame) if stills else pipeline.process(frame)
            frames += 1
            faces_seen += bool(result.faces)
            last_t = frame.t
            if args.json:
                out.write(json.dumps(result.to_json()) + "\n")
            else:
                out.write("\n".join(_table_row(result)) + "\n")
            if annotator is not None:
                annotator.write(frame.image, result)
    finally:
        source.close()
        if annotator is not None:
            annotator.close()
    pipeline.finish(last_t)
    if not args.json:
        print(f"{frames} frame(s), faces on {faces_seen}", file=sys.stderr)
    return 0
