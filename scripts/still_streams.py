"""A stream's emotion accuracy on labelled photos, each held still in front of the camera.

    .venv/bin/python scripts/still_streams.py LABELS.csv [--images DIR] [--split eval]
        [--seconds 2] [--noise 0] [--config FILE]

`edge-agent eval` measures the photo path: every look of a face at once. A camera reads a
face one look a frame and smooths them, and shows its first emotion from its first frames.
Here each photo is played as a 30 fps stream of itself into a fresh detector and tracker (a
face walking into an empty room), and the face is scored as `eval` scores it at 2 frames
(its first reading: a face is classified once it is confirmed), 10 and 30 frames and at
the end, together with how many photos fired `emotion_changed` although nothing in them
moved. Prints one JSON object.

`--noise SIGMA` adds sensor noise to every frame (grey levels, seeded per photo), as a camera
would. Repeated exactly, a photo lets the re-found box fall into a cycle of a few frames
(2 frames on 140 of the 492 photos), which pins each emotion look to one box of it; the
noise breaks those cycles.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from edge_agent.capture.files import read_image
from edge_agent.cli.eval import add_emotion, default_images, main_face, read_labels
from edge_agent.config import load_or_default
from edge_agent.types import Frame
from edge_agent.vision.metrics import NO_FACE, EmotionTally
from edge_agent.vision.pipeline import Pipeline

FPS = 30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("labels", type=Path)
    parser.add_argument("--images", type=Path)
    parser.add_argument("--split")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--noise", type=float, default=0.0)
    parser.add_argument("--config")
    args = parser.parse_args()
    rows, _ = read_labels(args.labels, args.images or default_images(args.labels), args.split)
    pipeline = Pipeline(load_or_default(args.config))
    frames = max(1, round(args.seconds * FPS))
    marks = sorted({m for m in (2, 10, 30, frames) if m <= frames})
    tallies = {mark: EmotionTally() for mark in marks}
    changed = 0
    for row in rows:
        if row.emotion is None:
            continue
        image = read_image(row.image)
        pipeline.new_scene()
        fired = False
        rng = np.random.default_rng(0)
        for index in range(frames):
            frame = image
            if args.noise > 0:
                noisy = image + rng.normal(0.0, args.noise, image.shape)
                frame = np.clip(noisy, 0, 255).astype(np.uint8)
            result = pipeline.process(Frame(index, index / FPS, frame))
            fired |= any(event.type == "emotion_changed" for event in result.events)
            if index + 1 in tallies:
                add_emotion(tallies[index + 1], row.emotion, main_face(result.faces))
        changed += fired
    report: dict[str, object] = {
        f"frame_{mark}": {
            "faces_found": sum(guess != NO_FACE for guess in tally.guess),
            "balanced_accuracy": tally.balanced_accuracy(),
            "accuracy": tally.accuracy(),
            "uncertain_rate": tally.uncertain_rate(),
            "stated_accuracy": tally.stated_accuracy(),
        }
        for mark, tally in tallies.items()
    }
    report["photos"] = len(tallies[marks[-1]].true)
    report["photos_with_emotion_changed"] = changed
    print(json.dumps(report))


if __name__ == "__main__":
    main()
