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
# Resize buffers kept per picture size; a face moving along the frame edge makes new sizes
# all the time, so past this many they are dropped and made again.
MAX_KEPT_SIZES = 32


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


Region = tuple[float, float, float, float]  # x, y, w, h in frame pixels; may overhang it
Candidates = tuple[np.ndarray, np.ndarray, np.ndarray]  # corners, keypoints, scores


def halved(crop: np.ndarray, width: int, height: int) -> tuple[np.ndarray, int, int]:
    """The crop halved by pixel averaging while it is at least twice `width` x `height`,
    and the frame pixels (x, y) the result still spans.

    Averaging keeps a large shrink from aliasing (the int8 detector is sensitive to it),
    and an exact halving is OpenCV's fast area path: one INTER_AREA resize at any other
    ratio cost 0.5-0.9 ms, a quarter of a frame's detection. The last row or column of an
    odd size is left out; the spans say so, so boxes still map back exactly.
    """
    span_w, span_h = crop.shape[1], crop.shape[0]
    factor = 1
    while crop.shape[1] >= 2 * width and crop.shape[0] >= 2 * height:
        even = crop[: crop.shape[0] // 2 * 2, : crop.shape[1] // 2 * 2]
        crop = cv2.resize(
            even, (even.shape[1] // 2, even.shape[0] // 2), interpolation=cv2.INTER_AREA
        )
        factor *= 2
        span_w, span_h = crop.shape[1] * factor, crop.shape[0] * factor
    return crop, span_w, span_h


def no_candidates() -> Candidates:
    return np.zeros((0, 4), np.float32), np.zeros((0, NUM_KEYPOINTS, 2), np.float32), np.zeros(0)


def concatenate(parts: list[Candidates]) -> Candidates:
    if not parts:
        return no_candidates()
    corners, points, scores = zip(*parts, strict=True)
    return np.concatenate(corners), np.concatenate(points), np.concatenate(scores)


def to_detections(
    found: Candidates, width: int, height: int, min_face_size: float, iou: float = NMS_IOU
) -> list[Detection]:
    """Weighted NMS over candidates in frame pixels, clipped to the frame, best first."""
    corners, points, scores = found
    if scores.size == 0:
        return []
    faces: list[Detection] = []
    for box, kps, score in weighted_nms(corners, points, scores, iou):
        x1, y1 = max(0.0, float(box[0])), max(0.0, float(box[1]))
        x2, y2 = min(float(width), float(box[2])), min(float(height), float(box[3]))
        if x2 - x1 <= 0 or y2 - y1 <= 0 or min(x2 - x1, y2 - y1) < min_face_size:
            continue
        faces.append(Detection((x1, y1, x2 - x1, y2 - y1), score, kps))
    return faces


class BlazeFaceDetector:
    """BlazeFace on any frame size, or on any region of it: letterboxed in, padding undone
    on the way out."""

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
        self.variant: str = model.variant  # what runs (an Edge TPU build is int8)
        self.score_threshold = score_threshold  # may change between frames (SIGHUP)
        self.min_face_size = min_face_size
        self.invokes = 0  # model runs so far: what bench and the scan schedule count
        self._anchors = make_anchors(spec)
        size = spec.input_size
        self._input = np.full((1, size, size, 3), -1.0, dtype=np.float32)
        self._placed: tuple[int, int, int, int] | None = None  # where the last picture went
        self._resized: dict[tuple[int, int], np.ndarray] = {}  # reused per picture size

    def _letterbox(self, image: np.ndarray, region: Region) -> tuple[np.ndarray, np.ndarray]:
        """Fill the input with the region, letterboxed; return the (x, y) scale and the
        offset that take input pixels back to frame pixels.

        The region keeps its own scale where it overhangs the frame (that part stays
        padding), so a tile at the edge sees faces at the same size as one inside. Each axis
        keeps its own scale: undoing a rounded resize with one nominal scale would shift
        boxes by pixels at the far edge.
        """
        height, width = image.shape[:2]
        rx, ry, rw, rh = region
        x1, y1 = max(0, round(rx)), max(0, round(ry))
        x2, y2 = min(width, round(rx + rw)), min(height, round(ry + rh))
        size = self.spec.input_size
        new_w, new_h, pad_x, pad_y = letterbox_layout(round(rh), round(rw), size)
        sx, sy = new_w / rw, new_h / rh
        left = min(size - 1, max(0, pad_x + round((x1 - rx) * sx)))
        top = min(size - 1, max(0, pad_y + round((y1 - ry) * sy)))
        cw = max(1, min(size - left, round((x2 - x1) * sx)))
        ch = max(1, min(size - top, round((y2 - y1) * sy)))
        placed = (left, top, cw, ch)
        if placed != self._placed:  # a new picture size or place: reset the padding
            self._input.fill(-1.0)
            self._placed = placed
        resized = self._resized.get((cw, ch))
        if resized is None:
            if len(self._resized) >= MAX_KEPT_SIZES:  # edge tiles and face crops vary
                self._resized.clear()
            resized = self._resized[(cw, ch)] = np.empty((ch, cw, 3), np.uint8)
        level, span_w, span_h = halved(image[y1:y2, x1:x2], cw, ch)
        cv2.resize(level, (cw, ch), dst=resized, interpolation=cv2.INTER_LINEAR)
        target = self._input[0, top : top + ch, left : left + cw]
        # Frames are BGR (OpenCV and picamera2's RGB888 agree on that); the model wants RGB.
        # Swapped in place first, numpy scales contiguous bytes: through a reversed view the
        # scaling took four times as long (96 against 22 us a run here).
        cv2.cvtColor(resized, cv2.COLOR_BGR2RGB, dst=resized)
        np.multiply(resized, np.float32(2.0 / 255.0), out=target, casting="unsafe")
        target -= np.float32(1.0)
        scales = np.array([cw / span_w, ch / span_h], dtype=np.float32)
        return scales, np.array([left - x1 * scales[0], top - y1 * scales[1]], np.float32)

    def candidates(
        self, image: np.ndarray, region: Region | None = None, threshold: float | None = None
    ) -> Candidates:
        """Every anchor scoring at least `threshold` in one run on `region` (default: the
        whole frame), before NMS, in frame pixels."""
        height, width = image.shape[:2]
        if region is None:
            region = (0.0, 0.0, float(width), float(height))
        rx, ry, rw, rh = region
        if min(rx + rw, width) - max(rx, 0) < 2 or min(ry + rh, height) - max(ry, 0) < 2:
            return no_candidates()  # (all but a sliver of the region is outside the frame)
        scales, offset = self._letterbox(image, region)
        # Views of the interpreter's outputs: decode copies out only the anchors it keeps.
        outputs = self.model.run(self._input, views=True)
        self.invokes += 1
        regressors = next(o for o in outputs if o.shape[-1] == 16)[0]
        logits = next(o for o in outputs if o.shape[-1] == 1)[0, :, 0]
        limit = self.score_threshold if threshold is None else threshold
        corners, points, scores = decode(regressors, logits, self._anchors, self.spec, limit)
        del outputs, regressors, logits
        corners[:, :2] = (corners[:, :2] - offset) / scales
        corners[:, 2:] = (corners[:, 2:] - offset) / scales
        return corners, (points - offset) / scales, scores

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in a BGR uint8 frame, best first."""
        height, width = image.shape[:2]
        return to_detections(self.candidates(image), width, height, self.min_face_size)

    def scan(self, image: np.ndarray) -> list[Detection]:
        """A photo on its own: one pass has no memory, so the same as `detect`."""
        return self.detect(image)

    def forget(self) -> None:
        """Nothing is kept between frames."""
