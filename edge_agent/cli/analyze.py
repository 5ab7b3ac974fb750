"""`edge-agent analyze PATH`: the vision core on a file, as JSON lines or a table."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from edge_agent.capture.files import (
    IMAGE_SUFFIXES,
    FolderSource,
    ImageSource,
    VideoSource,
    open_path,
)
from edge_agent.cli import warn
from edge_agent.cli.annotate import draw_faces
from edge_agent.config import load_or_default
from edge_agent.errors import BadMediaError, EdgeAgentError, UsageError
from edge_agent.types import Frame, FrameResult
from edge_agent.vision.pipeline import Pipeline


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)  # symlinks and hard links included
    except OSError:
        return False


def check_annotate_target(out: Path, inputs: list[Path], *, force: bool) -> None:
    """Refuse an OUT that is one of the inputs (it would be overwritten while it is read)
    and, without --force, any existing file."""
    for path in inputs:
        if _same_file(out, path) or out.resolve() == path.resolve():
            raise UsageError(f"--annotate {out}: that is the input {path}; choose another name")
    if out.is_dir():
        raise UsageError(f"--annotate {out}: is a folder")
    if (out.exists() or out.is_symlink()) and not force:
        raise UsageError(f"--annotate {out}: file exists (add --force to overwrite it)")


class Annotator:
    """Writes annotated frames: one image for a still, a video otherwise.

    Everything goes to a temporary file beside OUT that `commit()` renames into place, so a
    run that fails or is interrupted leaves OUT as it was and no half file behind."""

    def __init__(self, out: Path, single_image: bool, fps: float) -> None:
        self.out, self.single_image, self.fps = out, single_image, fps
        is_image_name = out.suffix.lower() in IMAGE_SUFFIXES
        if single_image != is_image_name:
            wanted = "an image name (.jpg, .png)" if single_image else "a video name (.mp4)"
            raise UsageError(f"--annotate {out}: the input calls for {wanted}")
        if not out.parent.is_dir():
            raise UsageError(f"--annotate {out}: folder {out.parent} does not exist")
        self._tmp: Path | None = None  # made at the first frame
        self._writer: cv2.VideoWriter | None = None
        self._size = (0, 0)
        self._written = False

    def _temporary(self) -> Path:
        if self._tmp is None:
            out = self.out
            try:  # the suffix stays last: OpenCV picks the format from it
                fd, name = tempfile.mkstemp(
                    dir=out.parent, prefix=f".{out.stem}.", suffix=out.suffix
                )
            except OSError as error:
                raise UsageError(
                    f"--annotate {out}: cannot write here ({error.strerror})"
                ) from None
            os.close(fd)
            self._tmp = Path(name)
        return self._tmp

    def write(self, image: np.ndarray, result: FrameResult) -> None:
        annotated = draw_faces(image.copy(), result.faces)
        if self.single_image:
            if not cv2.imwrite(str(self._temporary()), annotated):
                raise UsageError(f"--annotate {self.out}: cannot write this file")
            self._written = True
            return
        if self._writer is None:
            height, width = annotated.shape[:2]
            self._size = (width, height)
            self._writer = cv2.VideoWriter(
                str(self._temporary()), cv2.VideoWriter.fourcc(*"mp4v"), self.fps, (width, height)
            )
            if not self._writer.isOpened():
                raise UsageError(f"--annotate {self.out}: cannot write a video here")
        if annotated.shape[1::-1] != self._size:  # a folder of stills of mixed sizes
            annotated = cv2.resize(annotated, self._size)
        self._writer.write(annotated)
        self._written = True

    def close(self, *, commit: bool) -> None:
        """Finish the file and rename it to OUT (commit), or throw it away."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self._tmp is None:
            return
        if commit and self._written:
            mask = os.umask(0)
            os.umask(mask)
            os.chmod(self._tmp, 0o666 & ~mask)  # mkstemp's 0600 is not what a user expects
            os.replace(self._tmp, self.out)
        else:
            self._tmp.unlink(missing_ok=True)


def _table_row(result: FrameResult, file: str | None = None, width: int = 0) -> list[str]:
    lead = "" if file is None else f"{file:<{width}}  "
    if not result.faces:
        return [f"{lead}{result.frame:>6} {result.t:>8.2f}  -"]
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
            f"{lead}{result.frame:>6} {result.t:>8.2f} {face.track:>5}  "
            f"{emotion + confidence:<18} {age:>4}  {gender:<7} {box}"
        )
    return rows


def _frames(source: ImageSource | FolderSource | VideoSource) -> Iterator[tuple[str | None, Frame]]:
    """Each frame with the name of its file (folders only). In a folder a bad image is a
    warning and the run goes on; it fails only if no image at all could be read."""
    if not isinstance(source, FolderSource):
        for frame in source.frames():
            yield None, frame
        return
    for path, why in source.skipped:
        warn(f"{path}: skipped, {why}")
    usable = 0
    for path, item in source.stills():
        if isinstance(item, EdgeAgentError):
            warn(str(item))  # the message starts with the path
            continue
        usable += 1
        yield path.name, item
    if not usable:
        folder = source.files[0].parent
        raise BadMediaError(f"{folder}: none of its {len(source.files)} image(s) is readable")


def main(args: argparse.Namespace) -> int:
    config = load_or_default(args.config)
    source = open_path(Path(args.path), max_pixels=config.camera.max_pixels)
    annotator = None
    if args.annotate:
        inputs = source.files if isinstance(source, FolderSource) else [Path(args.path)]
        check_annotate_target(Path(args.annotate), inputs, force=args.force)
        annotator = Annotator(
            Path(args.annotate), isinstance(source, ImageSource), source.fps or 1.0
        )
    pipeline = Pipeline(config)
    out = sys.stdout
    folder = isinstance(source, FolderSource)
    width = 0
    if isinstance(source, FolderSource):
        width = max(len("file"), *(len(p.name) for p in source.files))
    if not args.json:
        print(
            (f"{'file':<{width}}  " if folder else "")
            + f"{'frame':>6} {'t (s)':>8} {'track':>5}  {'emotion':<18} {'age':>4}  "
            f"{'gender':<7} box x,y,w,h",
            file=out,
        )
    frames = faces_seen = 0
    last_t = 0.0
    finished = False
    try:
        # Photos are judged each on its own (the whole detector pyramid, no tracking from
        # one photo to the next); a video's frames are a stream.
        stills = isinstance(source, ImageSource | FolderSource)
        for file, frame in _frames(source):
            result = pipeline.process_still(frame) if stills else pipeline.process(frame)
            frames += 1
            faces_seen += bool(result.faces)
            last_t = frame.t
            if args.json:
                row = result.to_json() if file is None else {"file": file, **result.to_json()}
                out.write(json.dumps(row) + "\n")
            else:
                out.write("\n".join(_table_row(result, file, width)) + "\n")
            out.flush()  # rows and warnings in the order they happened
            if annotator is not None:
                annotator.write(frame.image, result)
        finished = True
    finally:
        source.close()
        if annotator is not None:
            annotator.close(commit=finished)
    pipeline.finish(last_t)
    if not args.json:
        print(f"{frames} frame(s), faces on {faces_seen}", file=sys.stderr)
    return 0
