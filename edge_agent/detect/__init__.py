"""Face detection: a frame in, face boxes in frame pixels out.

Two adapters share this interface: BlazeFace (mediapipe's anchors and raw regressors) and
SSD models with the TFLite detection post-process (Coral's published face model).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(slots=True)
class Detection:
    """One face in frame pixels.

    `keypoints` is (6, 2) for BlazeFace, in its order: right eye, left eye, nose tip, mouth,
    right ear tragion, left ear tragion (the subject's right, so the image's left). SSD
    models give none, and classifiers then crop the box without levelling it.
    """

    box: tuple[float, float, float, float]  # x, y, w, h
    score: float
    keypoints: np.ndarray | None = None


class Detector(Protocol):
    runs_on: str
    variant: str
    score_threshold: float
    min_face_size: float

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in a BGR uint8 frame (OpenCV order), best first."""
        ...
