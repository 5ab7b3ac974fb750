"""BlazeFace: anchors, box and keypoint decoding, and weighted NMS, as mediapipe does it.

The model emits raw regressors for a fixed grid of anchors; mediapipe's graph does the
rest in C++ calculators we do not have, so this module reproduces them (anchor layout,
scale-128 decoding, sigmoid with clipping, score-weighted NMS) from their documented
options.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge_agent.types import Detection
from edge_agent.vision.boxes import iou_many
from edge_agent.vision.runtime import TfliteModel


@dataclass(frozen=True, slots=True)
class AnchorSpec:
    input_size: int
    strides: tuple[int, ...]
    anchors_per_layer: int  # aspect ratio 1.0, plus one interpolated anchor when enabled


# Options from mediapipe's face_detection_short_range_common / full_range_common pbtxt.
SHORT_RANGE = AnchorSpec(input_size=128, strides=(8, 16, 16, 16), anchors_per_layer=2)
FULL_RANGE = AnchorSpec(input_size=192, strides=(4,), anchors_per_layer=1)

NMS_IOU = 0.3
SCORE_CLIP = 100.0
NUM_KEYPOINTS = 6


def make_anchors(spec: AnchorSpec) -> np.ndarray:
    """Anchor centres (N, 2), normalised; sizes are fixed at 1 so only centres matter.

    Consecutive layers with the same stride share one grid, their anchors stacked per cell
    (short range: 16x16x2 + 8x8x6 = 896).
    """
    centres: list[np.ndarray] = []
    layer = 0
    while layer < len(spec.strides):
        stride = spec.strides[layer]
        same = 0
        while layer < len(spec.strides) and spec.strides[layer] == stride:
            same += 1
            layer += 1
        cells = spec.input_size // stride
        grid = (np.arange(cells, dtype=np.float32) + 0.5) / cells
        ys, xs = np.meshgrid(grid, grid, indexing="ij")
        per_cell = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(per_cell, same * spec.anchors_per_layer, axis=0))
    return np.concatenate(centres).astype(np.float32)


def weighted_nms(
    corners: np.ndarray,
    keypoints: np.ndarray,
    scores: np.ndarray,
    iou: float = NMS_IOU,
    *,
    stable: bool = False,
) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Blend each cluster of overlapping boxes by score, keeping the cluster's best score.

    BlazeFace fires several neighbouring anchors per face; averaging them steadies the box
    from frame to frame far better than keeping only the best one. `stable` keeps tied
    scores in anchor order, whatever sort numpy picks for the CPU (the model build wants
    results that do not depend on the build machine).
    """
    order = np.argsort(-scores, kind="stable" if stable else None)
    corners, keypoints, scores = corners[order], keypoints[order], scores[order]
    remaining = np.ones(len(scores), dtype=bool)
    faces = []
    for index in range(len(scores)):
        if not remaining[index]:
            continue
        cluster = remaining & (iou_many(corners[index], corners) > iou)
        cluster[index] = True
        remaining &= ~cluster
        weights = scores[cluster] / scores[cluster].sum()
        box = (corners[cluster] * weights[:, None]).sum(axis=0)
        points = (keypoints[cluster] * weights[:, None, None]).sum(axis=0)
        faces.append((box, points, float(scores[index])))
    return faces


def decode(
    regressors: np.ndarray,
    logits: np.ndarray,
    anchors: np.ndarray,
    spec: AnchorSpec,
    threshold: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The anchors scoring at least `threshold`, decoded in pixels of the model input.

    Returns corners (N, 4) as x1, y1, x2, y2, keypoints (N, 6, 2) and scores (N,), the
    scores in the dtype of `logits`.
    """
    # Compare logits, not scores: the sigmoid then runs only on the few anchors kept.
    with np.errstate(divide="ignore"):
        min_logit = np.log(threshold) - np.log1p(-threshold)
    keep = np.flatnonzero(logits >= min_logit)
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits[keep], -SCORE_CLIP, SCORE_CLIP)))
    size = float(spec.input_size)
    raw = regressors[keep]
    centres = anchors[keep]
    # Offsets are in pixels of the 128 (or 192) input.
    cx = raw[:, 0] + centres[:, 0] * size
    cy = raw[:, 1] + centres[:, 1] * size
    half_w, half_h = raw[:, 2] / 2, raw[:, 3] / 2
    corners = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)
    points = raw[:, 4 : 4 + 2 * NUM_KEYPOINTS].reshape(-1, NUM_KEYPOINTS, 2)
    points = points + centres[:, None, :] * size
    return corners, points, scores


def letterbox_layout(height: int, width: int, size: int) -> tuple[int, int, int, int]:
    """(new_w, new_h, pad_x, pad_y) of a height x width frame letterboxed into size x size."""
    scale = size / max(height, width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    return new_w, new_h, (size - new_w) // 2, (size - new_h) // 2


class BlazeFaceDetector:
    """BlazeFace on any frame size: letterboxed in, padding undone on the way out."""

    def __init__(
        self,
        model: TfliteModel,
        spec: AnchorSpec,
        *,
        score_threshold: float = 0.65,
        min_face_size: float = 0.0,
    ) -> None:
        self.model = model
        self.spec = spec
        self.runs_on = model.runs_on
        self.variant: str = model.model.variant
        self.score_threshold = score_threshold  # may change between frames (SIGHUP)
        self.min_face_size = min_face_size
        self._anchors = make_anchors(spec)
        size = spec.input_size
        self._input = np.full((1, size, size, 3), -1.0, dtype=np.float32)
        self._layout: tuple[int, int, int, int, int, int] | None = None
        self._resized = np.empty((0, 0, 3), np.uint8)

    def _letterbox(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fill the input tensor; return the (x, y) scale and offset to undo it.

        Each axis keeps its own scale: the resized size is rounded to whole pixels, and
        undoing it with one nominal scale would shift boxes by pixels at the far edge.
        """
        height, width = image.shape[:2]
        new_w, new_h, pad_x, pad_y = letterbox_layout(height, width, self.spec.input_size)
        layout = (height, width, new_w, new_h, pad_x, pad_y)
        if layout != self._layout:  # a new frame size: reset the padding once
            self._input.fill(-1.0)
            self._resized = np.empty((new_h, new_w, 3), np.uint8)
            self._layout = layout
        resized = cv2.resize(image, (new_w, new_h), dst=self._resized, interpolation=cv2.INTER_AREA)
        target = self._input[0, pad_y : pad_y + new_h, pad_x : pad_x + new_w]
        # Frames are BGR (OpenCV and picamera2's RGB888 agree on that); the model wants RGB.
        np.multiply(resized[..., ::-1], np.float32(2.0 / 255.0), out=target, casting="unsafe")
        target -= np.float32(1.0)
        scales = np.array([new_w / width, new_h / height], dtype=np.float32)
        return scales, np.array([pad_x, pad_y], dtype=np.float32)

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in a BGR uint8 frame, best first."""
        scales, offset = self._letterbox(image)
        # Views of the interpreter's outputs: decode copies out only the anchors it keeps.
        outputs = self.model.run(self._input, views=True)
        regressors = next(o for o in outputs if o.shape[-1] == 16)[0]
        logits = next(o for o in outputs if o.shape[-1] == 1)[0, :, 0]
        corners, points, scores = decode(
            regressors, logits, self._anchors, self.spec, self.score_threshold
        )
        del outputs, regressors, logits
        if scores.size == 0:
            return []
        height, width = image.shape[:2]
        faces: list[Detection] = []
        for box, kps, score in weighted_nms(corners, points, scores):
            x1, y1 = (box[:2] - offset) / scales
            x2, y2 = (box[2:] - offset) / scales
            x1, y1 = max(0.0, float(x1)), max(0.0, float(y1))
            x2, y2 = min(float(width), float(x2)), min(float(height), float(y2))
            if x2 - x1 <= 0 or y2 - y1 <= 0 or min(x2 - x1, y2 - y1) < self.min_face_size:
                continue
            keypoints = (kps - offset) / scales
            faces.append(Detection((x1, y1, x2 - x1, y2 - y1), score, keypoints))
        return faces
