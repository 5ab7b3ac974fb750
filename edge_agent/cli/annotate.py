"""Boxes and labels drawn onto frames, for `analyze --annotate`."""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np

from edge_agent.display.labels import EMOTION_COLOURS, label
from edge_agent.types import FaceResult


def draw_faces(image: np.ndarray, faces: Iterable[FaceResult]) -> np.ndarray:
    """Draw in place on a BGR image and return it."""
    scale = max(0.4, min(image.shape[:2]) / 720)
    thickness = max(1, round(2 * scale))
    for face in faces:
        x, y, w, h = (round(v) for v in face.box)
        colour = EMOTION_COLOURS.get(face.emotion, EMOTION_COLOURS[None])
        cv2.rectangle(image, (x, y), (x + w, y + h), colour, thickness)
        text = label(face)
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, thickness)
        top = max(0, y - th - base - 4)
        cv2.rectangle(image, (x, top), (x + tw + 4, top + th + base + 4), colour, -1)
        cv2.putText(
            image,
            text,
            (x + 2, top + th + 2),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.6 * scale,
            (0, 0, 0),
            thickness,
            cv2.LINE_AA,
        )
    return image
