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

from edge_agent.errors import ModelError
from edge_agent.types import Detection
from edge_agent.vision.runtime import TfliteModel

FACE_CLASS = 0  # Coral's face model has the one class; other classes are not faces


def output_layout(shapes: list[tuple[int, ...]]) -> tuple[int, int, int, int]:
    """Positions of (boxes, classes, scores, count), told apart by shape and order.

    Boxes are the one [1, N, 4] tensor and count the one rank-1 tensor; TF1 puts boxes
    first (boxes, classes, scores, count), TF2 second (scores, boxes, count, classes).
    """
    boxes = [i for i, shape in enumerate(shapes) if len(shape) == 3 and shape[-1] == 4]
    counts = [i for i, shape in enumerate(shapes) if len(shape) == 1]
    if len(shapes) != 4 or len(boxes) != 1 or len(counts) != 1 or boxes[0] not in (0, 1):
        raise ValueError(f"outputs {shapes} are not boxes, classes, scores and count")
    return (0, 1, 2, 3) if boxes[0] == 0 else (1, 3, 0, 2)


def split_outputs(
    outputs: list[np.ndarray], layout: tuple[int, int, int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(boxes [N,4] ymin,xmin,ymax,xmax normalised; classes [N]; scores [N]; count)."""
    boxes, classes, scores, count = (outputs[i] for i in layout)
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
        self.variant = model.variant
        self.score_threshold = score_threshold
        self.min_face_size = min_face_size
        _, self._height, self._width, _ = model.input_shape
        try:
            self._layout = output_layout(model.output_shapes)
        except ValueError as error:
            raise ModelError(
                f"{model.path.name} is not an SSD with the TFLite detection post-process: {error}"
            ) from None

    def scan(self, image: np.ndarray) -> list[Detection]:
        """One pass has no memory: the same as `detect`."""
        return self.detect(image)

    def forget(self) -> None:
        """Nothing is kept between frames."""

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in a BGR uint8 frame, best first."""
        resized = cv2.resize(image, (self._width, self._height), interpolation=cv2.INTER_AREA)
        rgb = np.ascontiguousarray(resized[None, ..., ::-1])
        # Quantised SSD exports take the pixel bytes as they are (shifted by 128 for int8
        # inputs); float ones take [-1, 1].
        if self.model.input_dtype == np.uint8:
            tensor = rgb
        elif self.model.input_dtype == np.int8:
            tensor = (rgb.astype(np.int16) - 128).astype(np.int8)
        else:
            tensor = rgb * np.float32(2 / 255) - np.float32(1)
        outputs = self.model.run(tensor)
        boxes, classes, scores, count = split_outputs(outputs, self._layout)
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
