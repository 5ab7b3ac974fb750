"""Per-face classification: emotion (face-api.js's expression net, or mini-XCEPTION), age
and gender (dlib-models nets).

All faces of a frame (and each of their emotion looks) go through each model in one batch
when the model has a dynamic batch dimension; the Edge TPU builds have a fixed batch of
one and are run row by row.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge_agent.types import EMOTIONS, Detection
from edge_agent.vision.classify.crops import EMOTION_MARGIN, aligned_chip
from edge_agent.vision.runtime import TfliteModel

# dlib's age net predicts 81 classes; class 0 stands for babies (0.25 years).
AGE_WEIGHTS = np.array([0.25, *range(1, 81)], dtype=np.float32)
# Channel means (R, G, B) the dlib nets were trained with; inputs are (byte - mean) / 256.
DLIB_MEANS_RGB = np.array([122.781998, 117.000999, 104.297997], dtype=np.float32)
# face-api.js subtracts the same means, to three decimals, and divides by 255.
FACE_API_MEANS_RGB = np.array([122.782, 117.001, 104.298], dtype=np.float32)


def _input_transform(means_rgb: np.ndarray, scale: float) -> np.ndarray:
    """The 3x4 matrix taking a BGR pixel (and 1) to a model's input, (RGB - means) * scale."""
    swap = np.eye(3)[::-1]  # its rows pick R, G and B out of B, G, R
    return (np.hstack([swap, -means_rgb[:, None].astype(np.float64)]) * scale).astype(np.float32)


FACE_API_INPUT = _input_transform(FACE_API_MEANS_RGB, 1 / 255)
DLIB_INPUT = _input_transform(DLIB_MEANS_RGB, 1 / 256)


def to_input(chips: np.ndarray, transform: np.ndarray, out: np.ndarray) -> np.ndarray:
    """`out` (float32, contiguous, the shape of `chips`): `transform` applied to every BGR
    pixel of the uint8 chip or chips.

    One cv2.transform swaps the channels, shifts and scales in place over contiguous
    floats; numpy reading through a channel-reversed view took five to six times as long
    (a 112 px chip: 128 against 23 us; five 64 px dlib chips: 223 against 36 us)."""
    if not out.flags.c_contiguous:  # a reshape would copy, and the transform miss `out`
        raise ValueError("to_input writes into a contiguous buffer only")
    np.copyto(out, chips, casting="unsafe")
    pixels = out.reshape(-1, out.shape[-2], 3)
    cv2.transform(pixels, transform, dst=pixels)
    return out


@dataclass(slots=True)
class FaceAttributes:
    """What the classifiers said about one face in one frame (None: model not run)."""

    emotion_scores: np.ndarray | None = None  # (7,) probabilities in EMOTIONS order
    age: float | None = None
    female_probability: float | None = None
    emotion_reliable: bool = True  # False: too small, turned away or blurred to read one


# Nose-to-ear distances, the nearer over the farther: about 1 for a frontal face, towards 0
# in profile. Below this (roughly 50 degrees of yaw) an expression is not read.
MIN_FRONTALITY = 0.35


def frontality(face: Detection) -> float:
    """How squarely a face looks at the camera, from BlazeFace's nose and ear keypoints
    (1.0 when the detector gives no keypoints: nothing says it is turned away)."""
    if face.keypoints is None or len(face.keypoints) < 6:
        return 1.0
    nose, right_ear, left_ear = face.keypoints[2], face.keypoints[4], face.keypoints[5]
    near, far = sorted((float(np.hypot(*(nose - right_ear))), float(np.hypot(*(nose - left_ear)))))
    return near / far if far > 0 else 1.0


def readable(face: Detection, min_face: float) -> bool:
    """Whether this face's size and pose let an expression be read at all (see
    emotion_reliable; the chip's sharpness is the other condition)."""
    return min(face.box[2], face.box[3]) >= min_face and frontality(face) >= MIN_FRONTALITY


# Sharpness is measured on the chip's grey shrunk to this side, whatever the model's input:
# at 112 px the chip of any face under 112 px is soft from its own upscaling alone.
SHARPNESS_SIDE = 56
# Second differences along rows, columns and both diagonals.
_SECOND_DIFFERENCES = [
    np.array(kernel, np.float32)
    for kernel in (
        [[0, 0, 0], [1, -2, 1], [0, 0, 0]],
        [[0, 1, 0], [0, -2, 0], [0, 1, 0]],
        [[1, 0, 0], [0, -2, 0], [0, 0, 1]],
        [[0, 0, 1], [0, -2, 0], [1, 0, 0]],
    )
]


def sharpness(chip: np.ndarray) -> float:
    """How much fine detail an emotion chip keeps: the variance of the weakest of four
    directional second differences over the grey level's variance.

    Defocus lowers all four, motion blur the one along the motion, so the weakest catches
    both; dividing by the variance makes it indifferent to lighting and contrast. Measured
    on the labelled photos' chips: sharp faces score 0.02-0.2 (5th to 95th percentile,
    median 0.09), and the same faces blurred to under 0.012 are read wrong more often than
    right even when the model is confident.
    """
    grey = cv2.cvtColor(chip, cv2.COLOR_BGR2GRAY)
    side = (SHARPNESS_SIDE, SHARPNESS_SIDE)
    g = cv2.resize(grey, side, interpolation=cv2.INTER_AREA).astype(np.float32)
    weakest = min(
        float(cv2.meanStdDev(cv2.filter2D(g, -1, kernel)[1:-1, 1:-1])[1][0, 0])
        for kernel in _SECOND_DIFFERENCES
    )
    return weakest**2 / max(float(cv2.meanStdDev(g)[1][0, 0]) ** 2, 1.0)


def even_contrast(chip: np.ndarray) -> None:
    """In place: the chip's brightness spread to mean 128 and standard deviation 64, colour
    kept (on the luma of YCrCb), so a dim or flat face reads like a well-lit one."""
    ycc = cv2.cvtColor(chip, cv2.COLOR_BGR2YCrCb)
    luma = ycc[..., 0].astype(np.float32)
    luma = (luma - luma.mean()) / max(float(luma.std()), 1.0) * 64.0 + 128.0
    ycc[..., 0] = np.clip(luma, 0, 255).astype(np.uint8)
    cv2.cvtColor(ycc, cv2.COLOR_YCrCb2BGR, dst=chip)


def _run_batched(model: TfliteModel, batch: np.ndarray, most: int | None = None) -> np.ndarray:
    """The model's first output for every row of `batch`, `most` rows a run at most (and no
    more than a model with a fixed batch takes)."""
    step = min(n for n in (model.max_batch, most, len(batch)) if n is not None)
    if len(batch) == step:
        return model.run(batch)[0]
    return np.concatenate([model.run(batch[i : i + step])[0] for i in range(0, len(batch), step)])


class FaceClassifier:
    """Emotion, age and gender for a list of faces; any of the three may be switched off."""

    def __init__(
        self,
        emotion: TfliteModel | None,
        age: TfliteModel | None,
        gender: TfliteModel | None,
        *,
        level_faces: bool = True,
        emotion_min_face: float = 0.0,
        emotion_min_sharpness: float = 0.0,
        emotion_flip: bool = False,
    ) -> None:
        self.emotion, self.age, self.gender = emotion, age, gender
        # The model's own label order (its manifest entry) taken to EMOTIONS order.
        labels = EMOTIONS if emotion is None else emotion.model.entry["labels"]
        self._emotion_order = np.array([labels.index(label) for label in EMOTIONS])
        spec = {} if emotion is None else emotion.model.entry["input"]
        # Each view is one chip of the face (margin, contrast evening) the model reads; with
        # several, their probabilities are averaged (a test-time multi-crop).
        views = spec.get("views") or [spec]
        self._views = [
            (float(v.get("crop_margin", EMOTION_MARGIN)), v.get("contrast") == "std") for v in views
        ]
        _, self._emotion_size, _, channels = spec.get("shape", (1, 64, 64, 1))
        self._emotion_rgb = channels == 3
        self.level_faces = level_faces
        # These two may change between frames (SIGHUP).
        self.emotion_min_face = emotion_min_face
        self.emotion_min_sharpness = emotion_min_sharpness
        self.emotion_flip = emotion_flip
        # Chips and model inputs are written into buffers kept by name, so a steady scene
        # allocates no image-sized arrays per frame (see _buffer).
        self._buffers: dict[str, np.ndarray] = {}

    def _buffer(self, name: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
        """The first `shape[0]` rows of the one buffer kept under `name`, grown when a
        frame needs more rows (one per row count would keep every count a scene has had)."""
        buffer = self._buffers.get(name)
        if buffer is None or len(buffer) < shape[0]:
            buffer = self._buffers[name] = np.empty(shape, dtype)
        return buffer[: shape[0]]

    def _dlib_chips(self, image: np.ndarray, faces: list[Detection], size: int) -> np.ndarray:
        chips = self._buffer(f"dlib{size}", (len(faces), size, size, 3), np.uint8)
        for chip, face in zip(chips, faces, strict=True):
            aligned_chip(image, face, size, "dlib", self.level_faces, chip)
        return chips

    def looks(self) -> list[tuple[int, bool]]:
        """Every way the emotion model reads a face: each view, and with `emotion_flip`
        each view's mirror too (a face and its mirror show the same expression, and the
        model's errors on the two are partly independent). Their mean is the answer."""
        mirrors = (False, True) if self.emotion_flip else (False,)
        return [(view, mirrored) for mirrored in mirrors for view in range(len(self._views))]

    def _emotion_input(
        self, image: np.ndarray, faces: list[Detection], rows: list[tuple[int, int, bool]]
    ) -> tuple[np.ndarray, dict[tuple[int, int], np.ndarray]]:
        """One model input row per (face, view, mirrored), as the emotion model was trained,
        read from its manifest entry: face-api's 112x112 RGB less the channel means, / 255;
        or mini-XCEPTION's grey 64x64 in [-1, 1], as fer prepares FER-2013 faces. Each
        view's chip of a face is cut (and evened) once, whatever looks use it; the chips,
        keyed by (face, view), come back beside the batch."""
        size = self._emotion_size
        chips: dict[tuple[int, int], np.ndarray] = {}
        for face, view, _ in rows:
            if (face, view) not in chips:
                margin, even = self._views[view]
                buffer = self._buffer(
                    f"emotion{size}_{view}", (len(faces), size, size, 3), np.uint8
                )
                chip = aligned_chip(
                    image, faces[face], size, "emotion", self.level_faces, buffer[face], margin
                )
                if even:
                    even_contrast(chip)
                chips[face, view] = chip
        if self._emotion_rgb:
            batch = self._buffer("emotion_rgb_in", (len(rows), size, size, 3), np.float32)
            for out, (face, view, mirrored) in zip(batch, rows, strict=True):
                to_input(chips[face, view], FACE_API_INPUT, out)
                if mirrored:
                    cv2.flip(out, 1, dst=out)
            return batch, chips
        grey = self._buffer("grey", (1, size, size), np.uint8)[0]
        batch = self._buffer("emotion_in", (len(rows), size, size, 1), np.float32)
        for out, (face, view, mirrored) in zip(batch, rows, strict=True):
            cv2.cvtColor(chips[face, view], cv2.COLOR_BGR2GRAY, dst=grey)
            if mirrored:  # flipped in place, as the colour chips: numpy reads it contiguously
                cv2.flip(grey, 1, dst=grey)
            np.multiply(grey[..., None], np.float32(2.0 / 255.0), out=out, casting="unsafe")
        batch -= np.float32(1.0)
        return batch, chips

    def _sharp_enough(self, chips: dict[tuple[int, int], np.ndarray], face: int) -> bool:
        """Whether the chips of `face` read in this call keep detail enough (their mean
        sharpness); not measured with the check off (0), as nothing else uses it."""
        if self.emotion_min_sharpness <= 0:
            return True
        detail = np.mean([sharpness(chip) for (f, _), chip in chips.items() if f == face])
        return float(detail) >= self.emotion_min_sharpness

    def _dlib_input(self, image: np.ndarray, faces: list[Detection], size: int) -> np.ndarray:
        """RGB, mean-subtracted, /256: the dlib nets' input (from the BGR chips)."""
        chips = self._dlib_chips(image, faces, size)
        return to_input(chips, DLIB_INPUT, self._buffer(f"dlib{size}_in", chips.shape, np.float32))

    def classify(
        self, image: np.ndarray, faces: list[Detection], *, looks: list[int] | None = None
    ) -> list[FaceAttributes]:
        """Attributes for each face of a BGR frame, in the order of `faces`.

        Without `looks` each face's emotion is the mean of all its `looks()` at once (a
        photo). A stream gives each face the number of its next look instead (the track's
        count of classifications). Its first reading (number 0) takes every look at once,
        as a photo does, because the tracker starts the face's smoothing and its first
        shown emotion from it: one look alone differs from the mean of all often enough
        that a face held still would change its emotion within a second. After that a
        face gets one look per frame, in turn, and the tracker's smoothing
        (`tracker.smoothing_s`, 0.4 s) averages the looks of consecutive frames, for the
        cost of one.
        """
        results = [FaceAttributes() for _ in faces]
        if not faces:
            return results
        if self.emotion is not None:
            every = self.looks()
            numbers = [0] * len(faces) if looks is None else looks
            rows = [
                (face, *look)
                for face, n in enumerate(numbers)
                for look in (every if n == 0 else [every[n % len(every)]])
            ]
            batch, chips = self._emotion_input(image, faces, rows)
            # A stream runs the net as many rows at a time as there are faces, so a new
            # face's three extra looks do not size the interpreter for a larger batch (as
            # one batch of every row they kept 13 MB more on the multi-face clip).
            raw = _run_batched(self.emotion, batch, None if looks is None else len(faces))
            sums = np.zeros((len(faces), raw.shape[-1]), np.float32)
            np.add.at(sums, [face for face, _, _ in rows], raw)
            counts = np.bincount([face for face, _, _ in rows], minlength=len(faces))
            probabilities = (sums / counts[:, None])[:, self._emotion_order]
            for index, (result, face) in enumerate(zip(results, faces, strict=True)):
                result.emotion_scores = probabilities[index]
                # Sharpness (50 us a chip) only for a face that size and pose let be read.
                legible = readable(face, self.emotion_min_face)
                result.emotion_reliable = legible and self._sharp_enough(chips, index)
        if self.age is not None:
            batch = self._dlib_input(image, faces, 64)
            for result, row in zip(results, _run_batched(self.age, batch), strict=True):
                result.age = float(row @ AGE_WEIGHTS / max(float(row.sum()), 1e-6))
        if self.gender is not None:
            batch = self._dlib_input(image, faces, 32)
            for result, row in zip(results, _run_batched(self.gender, batch), strict=True):
                result.female_probability = float(row[0] / max(float(row.sum()), 1e-6))
        return results
