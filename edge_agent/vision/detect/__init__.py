"""Face detection: a frame in, face boxes in frame pixels out.

Two adapters share this interface: BlazeFace (mediapipe's anchors and raw regressors) and
SSD models with the TFLite detection post-process (Coral's published face model).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from edge_agent.types import Detection

__all__ = ["Detection", "Detector"]


class Detector(Protocol):
    runs_on: str
    variant: str
    score_threshold: float
    min_face_size: float

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in a BGR uint8 frame (OpenCV order) of a stream, best first; a detector
        may remember earlier frames of the stream."""
        ...

    def scan(self, image: np.ndarray) -> list[Detection]:
        """Every face of one picture on its own, with no memory of earlier frames."""
        ...

    def forget(self) -> None:
        """Drop what `detect` remembers of the stream: the next frame starts a new scene."""
        ...
