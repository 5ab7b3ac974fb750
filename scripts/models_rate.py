"""The rate of a config's models alone, to hold `edge-agent bench`'s fps against.

    .venv/bin/python scripts/models_rate.py [--config FILE] [--faces N] [--seconds S]

Each model the config loads is invoked back to back on a fixed input, as often and with
the batch that one frame with N faces needs (the multi-scale detector: one pyramid job and
one re-find per face; the emotion net each view of each face, and its mirror), on the
config's threads and CPU. Nothing else runs: no decode, crops, decoding of boxes, tracking
or Python around the calls. bench's fps over this rate is the share of the machine the
pipeline leaves to its models; run the two back to back, as this machine's speed drifts.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from edge_agent.config import load_or_default
from edge_agent.vision.pipeline import model_files


def frame_plan(config_path: str | None, faces: int) -> list[tuple[str, int, int]]:
    """(model file, batch, invokes) for one frame with `faces` faces."""
    config = load_or_default(config_path)
    files = model_files(config)
    detector_runs = 1 + faces if config.detector.model == "multiscale" else 1
    plan = [(str(files[0].path), 1, detector_runs)]
    for model in files[1:]:
        batch = faces
        if model.entry["task"] == "emotion":  # each view of a face, and with the flip its mirror
            batch *= len(model.entry["input"].get("views") or [None])
            batch *= 2 if config.classifier.emotion_flip else 1
        plan.append((str(model.path), batch, 1))
    return plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config")
    parser.add_argument("--faces", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    config = load_or_default(args.config)
    runs = []
    for path, batch, invokes in frame_plan(args.config, args.faces):
        interpreter = Interpreter(model_path=path, num_threads=config.models.num_threads)
        (detail,) = interpreter.get_input_details()
        shape = [batch, *detail["shape"][1:]]
        dynamic = int(detail["shape_signature"][0]) == -1
        if dynamic:
            interpreter.resize_tensor_input(detail["index"], shape)
        else:  # a fixed batch (the detector, Edge TPU builds) runs once per input
            invokes *= batch
            shape[0] = int(detail["shape"][0])
        interpreter.allocate_tensors()
        sample = np.random.default_rng(0).random(shape)
        interpreter.set_tensor(detail["index"], sample.astype(detail["dtype"]))
        runs += [interpreter.invoke] * invokes
    for invoke in runs:  # warm up: first runs pack weights
        invoke()
    frames, start = 0, time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        for invoke in runs:
            invoke()
        frames += 1
    elapsed = time.perf_counter() - start
    print(json.dumps({"models_fps": round(frames / elapsed, 1), "invokes_per_frame": len(runs)}))


if __name__ == "__main__":
    main()
