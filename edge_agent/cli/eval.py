"""`edge-agent eval LABELS.csv`: the shipped pipeline measured on labelled images.

Each image goes through the pipeline on its own (a fresh tracker, so nothing carries over
from one photo to the next), exactly as `analyze` would see it. The CSV names the image
and any of `emotion`, `age`, `gender` and `boxes` (`x,y,w,h;x,y,w,h` in image pixels); a
`split` column can be filtered with `--split`. Emotion, age and gender are compared with
the largest face found; boxes with every face found.

A row that cannot be used (unknown emotion, malformed box, missing image) is reported with
its line number and skipped; the run fails (exit 65) only if no row is usable.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_agent.capture.files import read_image
from edge_agent.cli import warn
from edge_agent.config import load_or_default
from edge_agent.errors import BadMediaError, EdgeAgentError, InputError
from edge_agent.types import EMOTIONS, GENDERS, UNCERTAIN, Box, FaceResult, Frame
from edge_agent.vision.metrics import NO_FACE, DetectionTally, EmotionTally
from edge_agent.vision.pipeline import Pipeline


@dataclass(frozen=True, slots=True)
class Row:
    line: int
    image: Path
    emotion: str | None
    age: float | None
    gender: str | None
    boxes: list[Box] | None


def _boxes(text: str) -> list[Box]:
    boxes: list[Box] = []
    for part in text.split(";"):
        if not part.strip():
            continue
        values = [float(v) for v in part.split(",")]
        if (
            len(values) != 4
            or values[2] <= 0
            or values[3] <= 0
            or not all(map(math.isfinite, values))
        ):
            raise ValueError(f"box {part.strip()!r} is not x,y,w,h with w, h > 0")
        boxes.append((values[0], values[1], values[2], values[3]))
    return boxes


def read_labels(path: Path, images: Path, split: str | None) -> tuple[list[Row], list[str]]:
    """The usable rows and one warning per unusable one (naming its line)."""
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as error:
        raise InputError(f"{path}: cannot read ({error.strerror or error})") from None
    rows: list[Row] = []
    warnings: list[str] = []
    with handle:
        try:
            reader = csv.DictReader(handle)
            fields = reader.fieldnames or []
            if "image" not in fields:
                raise BadMediaError(f"{path}: the first line must name the columns, one `image`")
            if split is not None and "split" not in fields:
                raise BadMediaError(f"{path}: --split {split}: the file has no `split` column")
            for record in reader:
                line = reader.line_num
                if split is not None and (record.get("split") or "").strip() != split:
                    continue
                try:
                    rows.append(_row(line, record, images))
                except ValueError as error:
                    warnings.append(f"{path}: line {line}: {error}; skipped")
        except (csv.Error, UnicodeDecodeError) as error:
            raise BadMediaError(f"{path}: not a readable CSV file ({error})") from None
    return rows, warnings


def _row(line: int, record: dict[str, Any], images: Path) -> Row:
    name = (record.get("image") or "").strip()
    if not name:
        raise ValueError("no image named")
    image = images / name
    if not image.is_file():
        raise ValueError(f"image {image} does not exist")
    emotion = (record.get("emotion") or "").strip().lower() or None
    if emotion is not None and emotion not in EMOTIONS:
        raise ValueError(f"emotion {emotion!r} is not one of {', '.join(EMOTIONS)}")
    gender = (record.get("gender") or "").strip().lower() or None
    if gender is not None and gender not in GENDERS:
        raise ValueError(f"gender {gender!r} is not one of {', '.join(GENDERS)}")
    age_text = (record.get("age") or "").strip()
    try:
        age = float(age_text) if age_text else None
    except ValueError:
        raise ValueError(f"age {age_text!r} is not a number") from None
    boxes_text = record.get("boxes")
    boxes = _boxes(boxes_text) if boxes_text is not None and boxes_text.strip() else None
    if boxes_text is not None and not boxes_text.strip():
        boxes = []  # an empty cell in a boxes column: the image has no face
    return Row(line, image, emotion, age, gender, boxes)


class Progress:
    """A one-line bar on stderr, drawn only on a terminal and at most ten times a second."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.enabled = sys.stderr.isatty()
        self._drawn_at = 0.0

    def draw(self, done: int) -> None:
        now = time.monotonic()
        final = done == self.total
        if not self.enabled or (not final and now - self._drawn_at < 0.1):
            return
        self._drawn_at = now
        filled = int(30 * done / max(self.total, 1))
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{self.total}")
        sys.stderr.write("\n" if final else "")
        sys.stderr.flush()


def main_face(faces: list[FaceResult]) -> FaceResult | None:
    """The face a labelled photo is about: the largest."""
    return max(faces, key=lambda face: face.box[2] * face.box[3], default=None)


def add_emotion(tally: EmotionTally, label: str, face: FaceResult | None) -> None:
    """One labelled face scored: its top class whether stated or not, NO_FACE if none."""
    if face is None or not face.emotion_scores:
        tally.add(label, NO_FACE, 0.0, False)
        return
    top = max(face.emotion_scores, key=face.emotion_scores.__getitem__)
    tally.add(label, top, face.emotion_scores[top], face.emotion not in (None, UNCERTAIN))


def evaluate(pipeline: Pipeline, rows: list[Row], progress: Progress) -> dict[str, Any]:
    emotions = EmotionTally()
    detection = DetectionTally()
    age_errors: list[float] = []
    gender_hits: list[bool] = []
    found = unreadable = 0
    for done, row in enumerate(rows, start=1):
        try:
            image = read_image(row.image)
        except EdgeAgentError as error:
            warn(f"line {row.line}: {error}; skipped")
            unreadable += 1
            progress.draw(done)
            continue
        faces = pipeline.process_still(Frame(0, 0.0, image)).faces
        found += bool(faces)
        face = main_face(faces)
        if row.boxes is not None:
            detection.add(row.boxes, [f.box for f in faces])
        if row.emotion is not None:
            add_emotion(emotions, row.emotion, face)
        if face is not None and row.age is not None and face.age is not None:
            age_errors.append(abs(face.age - row.age))
        if face is not None and row.gender is not None and face.gender is not None:
            gender_hits.append(face.gender == row.gender)
        progress.draw(done)
    images = len(rows) - unreadable
    summary: dict[str, Any] = {"images": images, "faces_found": found}
    summary["faces_found_rate"] = round(found / images, 4) if images else 0.0
    if emotions.true:
        summary.update(
            emotion_images=len(emotions.true),
            accuracy=emotions.accuracy(),
            balanced_accuracy=emotions.balanced_accuracy(),
            per_class=emotions.per_class(),
            confusion=emotions.confusion(),
            calibration=emotions.calibration(),
            ece=emotions.ece(),
            uncertain_rate=emotions.uncertain_rate(),
            stated_accuracy=emotions.stated_accuracy(),
        )
    if detection.labelled or detection.found:
        summary["detection"] = {
            "iou": detection.threshold,
            "faces": detection.labelled,
            "found": detection.found,
            "recall": detection.recall(),
            "precision": detection.precision(),
            "recall_by_size": {
                bucket: round(hit / total, 4)
                for bucket, (hit, total) in sorted(detection.by_size.items())
            },
        }
    if age_errors:
        summary["age_mae"] = round(sum(age_errors) / len(age_errors), 2)
    if gender_hits:
        summary["gender_accuracy"] = round(sum(gender_hits) / len(gender_hits), 4)
    return summary


def print_summary(summary: dict[str, Any]) -> None:
    lines = [
        f"images       {summary['images']}, a face found on {summary['faces_found']} "
        f"({summary['faces_found_rate']:.1%})"
    ]
    if "balanced_accuracy" in summary:
        lines += [
            f"emotion      balanced accuracy {summary['balanced_accuracy']:.3f}, "
            f"accuracy {summary['accuracy']:.3f} over {summary['emotion_images']} images",
            f"             stated {1 - summary['uncertain_rate']:.1%} of faces, right "
            f"{summary['stated_accuracy']:.1%} of those; ECE {summary['ece']:.3f}",
            "per class    "
            + ", ".join(f"{label} {value:.2f}" for label, value in summary["per_class"].items()),
        ]
        confusion = summary["confusion"]
        columns = [*EMOTIONS, NO_FACE]
        lines.append("confusion    " + " ".join(f"{c[:7]:>7}" for c in columns) + "  (said)")
        for label, row in confusion.items():
            lines.append(f"  {label:<10} " + " ".join(f"{row[c]:>7}" for c in columns))
    if "detection" in summary:
        detection = summary["detection"]
        lines.append(
            f"detection    recall {detection['recall']:.3f}, precision "
            f"{detection['precision']:.3f} at IoU >= {detection['iou']} "
            f"({detection['faces']} faces, {detection['found']} boxes)"
        )
        lines.append(
            "  by width   "
            + ", ".join(f"{b} {v:.2f}" for b, v in detection["recall_by_size"].items())
        )
    if "age_mae" in summary:
        lines.append(f"age          mean absolute error {summary['age_mae']} years")
    if "gender_accuracy" in summary:
        lines.append(f"gender       accuracy {summary['gender_accuracy']:.3f}")
    print("\n".join(lines))


def main(args: argparse.Namespace) -> int:
    labels = Path(args.labels)
    images = Path(args.images) if args.images else default_images(labels)
    if not images.is_dir():
        raise InputError(f"--images {images}: not a folder")
    rows, warnings = read_labels(labels, images, args.split)
    for warning in warnings:
        warn(warning)
    if not rows:
        raise BadMediaError(f"{labels}: no usable row")
    config = load_or_default(args.config)
    pipeline = Pipeline(config)
    summary = evaluate(pipeline, rows, Progress(len(rows)))
    if not summary["images"]:
        raise BadMediaError(f"{labels}: none of its images could be read")
    summary["skipped_rows"] = len(warnings)
    print_summary(summary)
    if args.report:
        from edge_agent.cli.eval_report import write_report

        written = write_report(Path(args.report), summary, labels)
        print(f"report       {written}")
    if args.json:
        print(json.dumps(summary))
    return 0


def default_images(labels: Path) -> Path:
    """`images/` beside the CSV if there is one, else the CSV's own folder."""
    beside = labels.parent / "images"
    return beside if beside.is_dir() else labels.parent
