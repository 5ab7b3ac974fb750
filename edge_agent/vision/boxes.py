"""Box overlap, the one measure the tracker, the detectors' NMS and `eval` all use."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge_agent.types import Box


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two x, y, w, h boxes."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = min(ax + aw, bx + bw) - max(ax, bx)
    h = min(ay + ah, by + bh) - max(ay, by)
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / (aw * ah + bw * bh - inter)


def iou_many(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of one (x1, y1, x2, y2) box against many, vectorised for NMS."""
    x1 = np.maximum(box[0], others[:, 0])
    y1 = np.maximum(box[1], others[:, 1])
    x2 = np.minimum(box[2], others[:, 2])
    y2 = np.minimum(box[3], others[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def match(a: Sequence[Box], b: Sequence[Box], threshold: float) -> dict[int, int]:
    """Greedy one-to-one matching by overlap, best pairs first: index in `b` -> index in
    `a`, for pairs overlapping at least `threshold`. A handful of faces needs nothing
    heavier than this (the tracker's association, eval's detection scoring)."""
    pairs = sorted(
        ((iou(x, y), i, j) for i, x in enumerate(a) for j, y in enumerate(b)), reverse=True
    )
    matched: dict[int, int] = {}
    used: set[int] = set()
    for overlap, i, j in pairs:
        if overlap < threshold:
            break
        if i not in used and j not in matched:
            used.add(i)
            matched[j] = i
    return matched
