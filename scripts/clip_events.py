"""What a stream says about the faces of real clips: events, coverage and first answers.

    .venv/bin/python scripts/clip_events.py [CLIP ...] [--config FILE]

There is no labelled video here, so this measures steadiness, not accuracy: how many
`emotion_changed` events each clip fires, the share of face frames with a stated emotion
(not "uncertain"), and how long after a face is first seen its first stated emotion comes
(median over its tracks). Without clips it plays the sample clips and the bench's moving
group photo, whose five faces never change expression, so every change there is noise.
Each clip starts a new scene (no face carried over) and runs at full speed, as `bench`
reads a file. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from edge_agent.capture.files import VideoSource
from edge_agent.config import load_or_default
from edge_agent.demo.clips import multiface_clip
from edge_agent.demo.samples import sample
from edge_agent.types import UNCERTAIN
from edge_agent.vision.pipeline import Pipeline

SAMPLE_CLIPS = ("WolfgangLanger_Pexels.mp4", "single_face.mp4", "face_noface.mov")


def measure(pipeline: Pipeline, path: Path) -> dict[str, object]:
    changes = face_frames = stated = 0
    seen: dict[int, float] = {}
    first_stated: dict[int, float] = {}
    source = VideoSource(path)
    try:
        for frame in source.frames():
            result = pipeline.process(frame)
            changes += sum(event.type == "emotion_changed" for event in result.events)
            for face in result.faces:
                face_frames += 1
                seen.setdefault(face.track, frame.t)
                if face.emotion not in (None, UNCERTAIN):
                    stated += 1
                    first_stated.setdefault(face.track, frame.t)
    finally:
        source.close()
    delays = [t - seen[track] for track, t in first_stated.items()]
    return {
        "tracks": len(seen),
        "emotion_changed": changes,
        "stated": round(stated / max(face_frames, 1), 3),
        "first_stated_s": round(statistics.median(delays), 3) if delays else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clips", nargs="*", type=Path)
    parser.add_argument("--config")
    args = parser.parse_args()
    clips = args.clips or [sample(name) for name in SAMPLE_CLIPS] + [multiface_clip()]
    pipeline = Pipeline(load_or_default(args.config))
    report = {}
    for path in clips:
        pipeline.new_scene()
        report[path.name] = measure(pipeline, path)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
