"""Per-face classification: emotion (mini-XCEPTION), age and gender (dlib-models nets).

All faces of a frame go through each model in one batch when the model has a dynamic
batch dimension; the Edge TPU builds have a fixed batch of one and are run face by face.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_agent.classify.crops import ChipStyle, aligned_chip
from edge_agent.detect import Detection
from edge_agent.inference import TfliteModel

EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
GENDERS: tuple[str, str] = ("female", "male")
# dlib's age net predicts 81 classes; class 0 stands for babies (0.25 years).
AGE_WEIGHTS = np.array([0.25, *range(1, 81)], dtype=np.float32)
# Channel means (R, G, B) the dlib nets were trained with; inputs are (byte - mean) / 256.
DLIB_MEANS_RGB = np.array([122.781998, 117.000999, 104.297997], dtype=np.float32)
GREY_WEIGHTS_BGR = np.array([0.114, 0.587, 0.299], dtype=np.float32)


@dataclass(slots=True)
class FaceAttributes:
    """What the classifiers said about one face in one frame (None: model not run)."""

    emotion_scores: np.ndarray | None = None  # (7,) probabilities in EMOTIONS order
    age: float | None = None
    female_probability: float | None = None


def _dlib_input(chips_bgr: np.ndarray) -> np.ndarray:
    """BGR chips to the RGB, mean-subtracted, /256 input the dlib nets expect."""
    rgb = chips_bgr[..., ::-1].astype(np.float32)
    return (rgb - DLIB_MEANS_RGB) * np.float32(1 / 256)


def _run_batched(model: TfliteModel, batch: np.ndarray) -> np.ndarray:
    if model.max_batch is None or len(batch) <= model.max_batch:
        return model.run(batch)[0]
    return np.concatenate([model.run(batch[i:i + 1])[0] for i in range(len(batch))])


class FaceClassifier:
    """Emotion, age and gender for a list of faces; any of the three may be switched off."""

    def __init__(
        self, emotion: TfliteModel | None, age: TfliteModel | None, gender: TfliteModel | None,
        *, level_faces: bool = True,
    ) -> None:
        self.emotion, self.age, self.gender = emotion, age, gender
        self.level_faces = level_faces

    def _chips(
        self, image: np.ndarray, faces: list[Detection], size: int, style: ChipStyle
    ) -> np.ndarray:
        return np.stack([aligned_chip(image, face, size, style, self.level_faces)
                         for face in faces])

    def classify(self, image: np.ndarray, faces: list[Detection]) -> list[FaceAttributes]:
        """Attributes for each face of a BGR frame, in the order of `faces`."""
        results = [FaceAttributes() for _ in faces]
        if not faces:
            return results
        if self.emotion is not None:
            chips = self._chips(image, faces, 64, "emotion")
            grey = np.einsum("nhwc,c->nhw", chips.astype(np.float32), GREY_WEIGHTS_BGR)
            batch = (grey * np.float32(2.0 / 255.0) - np.float32(1.0))[..., None]
            for result, scores in zip(results, _run_batched(self.emotion, batch), strict=True):
                result.emotion_scores = scores
        if self.age is not None:
            batch = _dlib_input(self._chips(image, faces, 64, "dlib"))
            for result, row in zip(results, _run_batched(self.age, batch), strict=True):
                result.age = float(row @ AGE_WEIGHTS / max(float(row.sum()), 1e-6))
        if self.gender is not None:
            batch = _dlib_input(self._chips(image, faces, 32, "dlib"))
            for result, row in zip(results, _run_batched(self.gender, batch), strict=True):
                result.female_probability = float(row[0] / max(float(row.sum()), 1e-6))
        return results
