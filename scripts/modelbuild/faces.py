"""Faces found by a BlazeFace interpreter, for calibration crops and int8-vs-float scores.

Anchors, decoding and weighted NMS are the runtime's (edge_agent.vision.detect.blazeface).
What stays here is the thin wrapper around them that the committed int8 files were
calibrated with, and which the runtime's BlazeFaceDetector does not reproduce bit for bit:
RGB input scaled as x / 127.5 - 1 (the runtime takes BGR and computes x * (2 / 255) - 1),
one nominal letterbox scale (the runtime undoes each axis with its own and clips boxes to
the frame), float64 scores and a stable NMS sort.  Each of these moves the boxes, hence the
face chips, hence the int8 files, by a last bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from edge_agent.types import Detection
from edge_agent.vision.detect.blazeface import (
    FULL_RANGE,
    SHORT_RANGE,
    AnchorSpec,
    decode,
    letterbox_layout,
    weighted_nms,
)

from .tflite import run_tflite


@dataclass(frozen=True)
class BlazeSpec:
    """One BlazeFace model: the runtime's anchor layout and mediapipe's min_score_thresh."""

    anchors: AnchorSpec
    threshold: float

    @property
    def size(self) -> int:
        return self.anchors.input_size


BLAZE_SHORT = BlazeSpec(SHORT_RANGE, 0.5)
BLAZE_FULL = BlazeSpec(FULL_RANGE, 0.6)


@dataclass
class Face:
    """A decoded detection in frame pixels: box (x1, y1, x2, y2), 6 keypoints, score."""

    box: np.ndarray
    keypoints: np.ndarray
    score: float

    def mirrored(self, width: int) -> Face:
        """The same face in the frame flipped left to right."""
        box = self.box.copy()
        box[[0, 2]] = width - self.box[[2, 0]]
        points = self.keypoints.copy()
        points[:, 0] = width - points[:, 0]
        points[[0, 1]] = points[[1, 0]]  # left/right eye swap under a mirror
        return Face(box, points, self.score)

    def detection(self) -> Detection:
        """The runtime's form (x, y, w, h), for edge_agent's face chips."""
        x1, y1, x2, y2 = self.box
        return Detection((x1, y1, x2 - x1, y2 - y1), self.score, self.keypoints)


def blaze_input(pixels: np.ndarray) -> np.ndarray:
    """RGB bytes -> [-1, 1] as x / 127.5 - 1.

    The runtime computes x * (2 / 255) - 1, which differs in the last bit for some bytes;
    the committed int8 files were calibrated on exactly these values, so they stay.
    """
    return pixels.astype(np.float32) / 127.5 - 1.0


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, float, int, int]:
    """RGB uint8 frame -> (size, size, 3) float in [-1, 1], padded with -1 (black).

    The runtime's layout; returns the one nominal scale (the runtime undoes each axis with
    its own) and the padding.
    """
    height, width = image.shape[:2]
    new_w, new_h, pad_x, pad_y = letterbox_layout(height, width, size)
    out = np.full((size, size, 3), -1.0, dtype=np.float32)
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
    out[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = blaze_input(resized)
    return out, size / max(height, width), pad_x, pad_y


def detect_faces(model: Any, frame: np.ndarray, spec: BlazeSpec, anchors: np.ndarray) -> list[Face]:
    """Faces in frame pixels from a BlazeFace interpreter (outputs picked by shape).

    The runtime's decode and weighted NMS, on an interpreter rather than a TfliteModel, with
    float64 scores and a stable sort (so ties do not depend on numpy's SIMD sort), and the
    letterbox above: the calibration crops, hence the int8 files, depend on every bit here.
    """
    x, scale, pad_x, pad_y = letterbox(frame, spec.size)
    outputs = run_tflite(model, x[None])
    regressors = next(o for o in outputs if o.shape[-1] == 16)[0]
    logits = next(o for o in outputs if o.shape[-1] == 1)[0].reshape(-1).astype(np.float64)
    corners, points, scores = decode(regressors, logits, anchors, spec.anchors, spec.threshold)
    offset = np.array([pad_x, pad_y], dtype=np.float32)
    return [
        Face(((box.reshape(2, 2) - offset) / scale).reshape(4), (kps - offset) / scale, score)
        for box, kps, score in weighted_nms(corners, points, scores, stable=True)
    ]
