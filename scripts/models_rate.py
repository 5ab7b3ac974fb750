"""The rate of a config's models alone, to hold `edge-agent bench`'s fps against.

    .venv/bin/python scripts/models_rate.py [--config FILE] [--faces N] [--seconds S]

Each model the config loads is invoked back to back on a fixed input, as often and with
the batch that one frame of a stream with N faces needs (the multi-scale detector: its
pyramid jobs and one re-find per face; each classifier once per face, the emotion net
taking one look a frame), on the config's threads and CPU. Nothing else runs: no decode,
crops, decoding of boxes, tracking or Python around the calls. bench's fps over this
rate is the share of the machine the pipeline leaves to its models; run the two back to
back, as this machine's speed drifts.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from edge_agent.config import Config, load_or_default
from edge_agent.vision.pipeline import model_files


def frame_plan(config: Config, faces: int) -> list[tuple[str, int, int]]:
    """(model file, batch, invokes) for one frame of a stream with `faces` faces."""
    files = model_files(config)
    detector = config.detector
    runs = detector.scans_per_frame + faces if detector.model == "multiscale" else 1
    # the classifiers read each face once a frame (a stream takes one emotion look)
    return [(str(files[0].path), 1, runs)] + [(str(f.path), faces, 1) for f in files[1:]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config")
    parser.add_argument("--faces", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    config = load_or_default(args.config)
    runs = []
    for path, batch, invokes in frame_plan(config, args.faces):
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
