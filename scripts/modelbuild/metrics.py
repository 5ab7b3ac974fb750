"""How far each int8 file is from its float twin, on held-out real faces, and how fast each is.

The agreement numbers go into the manifest (and models/README.md), so a reader can judge an
int8 variant without rebuilding; they are measured on the evaluation half of the dataset,
never on calibration inputs.  Latency is printed only: it depends on the build machine.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.vision.boxes import iou_many
from edge_agent.vision.classify import AGE_WEIGHTS
from edge_agent.vision.detect.blazeface import make_anchors

from .faces import BlazeSpec, detect_faces
from .tflite import interpreter, quantise_input

LATENCY_RUNS = 200


def classifier_agreement(kind: str, float_out: np.ndarray, int8_out: np.ndarray) -> dict[str, Any]:
    """Top-1 agreement (emotion, gender), or the age difference in years (age)."""
    result: dict[str, Any] = {
        "samples": len(float_out),
        "max_abs_prob_diff": round(float(np.abs(float_out - int8_out).max()), 4),
    }
    if kind == "age":
        diff = np.abs(float_out @ AGE_WEIGHTS - int8_out @ AGE_WEIGHTS)
        result["age_mean_abs_diff_years"] = round(float(diff.mean()), 3)
        result["age_max_abs_diff_years"] = round(float(diff.max()), 3)
    else:
        agree = float((float_out.argmax(1) == int8_out.argmax(1)).mean())
        result["top1_agreement"] = round(agree, 4)
    return result


def blaze_agreement(
    float_path: Path, int8_path: Path, frames: list[np.ndarray], spec: BlazeSpec
) -> dict[str, Any]:
    """Detections of float vs int8 on held-out real frames: matched (IoU >= 0.5) and IoU."""
    anchors = make_anchors(spec.anchors)
    ref, test = interpreter(float_path), interpreter(int8_path)
    n_float = n_int8 = matched = 0
    ious: list[float] = []
    for frame in frames:
        a = detect_faces(ref, frame, spec, anchors)
        b = detect_faces(test, frame, spec, anchors)
        n_float, n_int8 = n_float + len(a), n_int8 + len(b)
        if not a or not b:
            continue
        boxes_b = np.stack([f.box for f in b])
        used: set[int] = set()
        for face in a:
            overlap = iou_many(face.box, boxes_b)
            best = int(np.argmax(overlap))
            if overlap[best] >= 0.5 and best not in used:
                used.add(best)
                matched += 1
                ious.append(float(overlap[best]))
    return {
        "frames": len(frames),
        "float_detections": n_float,
        "int8_detections": n_int8,
        "matched": matched,
        "mean_iou": round(float(np.mean(ious)), 4) if ious else None,
    }


def latency_ms(path: Path, sample: np.ndarray) -> float:
    """Median single-image latency over LATENCY_RUNS runs (after a short warm-up)."""
    model = interpreter(path)
    inp = model.get_input_details()[0]
    x = quantise_input(inp, sample[None].astype(np.float32))
    if tuple(inp["shape"]) != x.shape:
        model.resize_tensor_input(inp["index"], list(x.shape))
        model.allocate_tensors()
    model.set_tensor(inp["index"], x)
    for _ in range(10):
        model.invoke()
    times = []
    for _ in range(LATENCY_RUNS):
        start = time.perf_counter()
        model.invoke()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000.0)
