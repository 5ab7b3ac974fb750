"""SSD detectors with TFLite's detection post-process (boxes, classes, scores, count).

This is the output of Coral's published face model
(`ssd_mobilenet_v2_face_quant_postprocess_edgetpu.tflite`), so an owner with a Coral can
drop that file in as `detector.model`. Only class 0 (face) is kept. TF1 exports list the
outputs as boxes, classes, scores, count; TF2 exports as scores, boxes, count, classes. The
count tensor's position tells them apart.
"""

from __future__ import annotations

import cv2
import numpy as np

from edge_agent.detect import Detection
from edge_agent.inference import TfliteModel

FACE_CLASS = 0  # Coral's face model has the one class; other classes are not faces


def split_outputs(
    outputs: list[np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(boxes [N,4] ymin,xmin,ymax,xmax normalised; classes [N]; scores [N]; count), from
    either export's output order."""
    if len(outputs) != 4:
        raise ValueError(f"an SSD post-process model has 4 outputs, this one has {len(outputs)}")
    if outputs[3].size == 1:  # TF1: boxes, classes, scores, count
        boxes, classes, scores, count = outputs
    else:  # TF2: scores, boxes, count, classes
        scores, boxes, count, classes = outputs
    scores = scores.reshape(-1)
    count_value = min(int(count.reshape(-1)[0]), len(scores))
    return boxes.reshape(-1, 4), classes.reshape(-1), scores, count_value


class SsdDetector:
    """Resizes the frame to the model's input (no letterbox: SSD face models are trained
    on stretched frames) and maps normalised boxes back to frame pixels."""

    def __init__(
        self, model: TfliteModel, *, score_threshold: float = 0.5, min_face_size: float = 0.0
    ) -> None:
        self.model = model
        self.runs_on = model.runs_on
        self.variant = "int8" if model.quantized else "float"
        self.score_threshold = score_threshold
        self.min_face_size = min_face_size
        _, self._height, self._width, _ = model.input_shape

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in a BGR uint8 frame, best first."""
        resized = cv2.resize(image, (self._width, self._height), interpolation=cv2.INTER_AREA)
        rgb = np.ascontiguousarray(resized[None, ..., ::-1])
        # Quantised SSD exports take the pixel bytes as they are; float ones take [-1, 1].
        tensor = rgb if self.model.quantized else rgb * np.float32(2 / 255) - np.float32(1)
        boxes, classes, scores, count = split_outputs(self.model.run(tensor))
        height, width = image.shape[:2]
        faces = []
        for index in range(count):
            score = float(scores[index])
            if score < self.score_threshold or int(classes[index]) != FACE_CLASS:
                continue
            ymin, xmin, ymax, xmax = np.clip(boxes[index], 0.0, 1.0)
            x, y = float(xmin) * width, float(ymin) * height
            w, h = float(xmax - xmin) * width, float(ymax - ymin) * height
            if w <= 0 or h <= 0 or min(w, h) < self.min_face_size:
                continue
            faces.append(Detection((x, y, w, h), score))
        faces.sort(key=lambda face: -face.score)
        return faces
