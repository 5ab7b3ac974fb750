"""The vision pipeline: detect → track → classify, one frame at a time.

`analyze`, `run`, `bench` and the demo all drive this one class, so what the benchmark
measures is exactly what the appliance runs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from edge_agent.config import BLAZEFACE_MODELS, Config
from edge_agent.errors import ModelError
from edge_agent.types import Frame, FrameResult, TrackEvent
from edge_agent.vision.classify import FaceClassifier
from edge_agent.vision.detect import Detector
from edge_agent.vision.detect.blazeface import FULL_RANGE, SHORT_RANGE, BlazeFaceDetector
from edge_agent.vision.detect.multiscale import MultiScaleDetector
from edge_agent.vision.detect.ssd import SsdDetector
from edge_agent.vision.manifest import ModelFile, models_dir, resolve
from edge_agent.vision.runtime import AcceleratorChoice, TfliteModel
from edge_agent.vision.track import Tracker, TrackerSettings

# detector.model name -> (manifest name, anchors and input size)
# (the multi-scale detector runs the short-range model as a pyramid)
BLAZEFACE = {
    name: (file, spec)
    for name, file, spec in zip(
        BLAZEFACE_MODELS,
        ("blazeface_short_range", "blazeface_short_range", "blazeface_full_range"),
        (SHORT_RANGE, SHORT_RANGE, FULL_RANGE),
        strict=True,
    )
}
EMOTION_MODELS = {"faceapi": "emotion_faceapi", "mini_xception": "emotion_mini_xception"}
CLASSIFIER_TASKS = ("emotion", "age", "gender")


def classifier_models(config: Config) -> dict[str, str]:
    """Task -> manifest name of each classifier the config switches on."""
    names = {
        "emotion": EMOTION_MODELS[config.classifier.emotion_model],
        "age": "age_v1",
        "gender": "gender_v1",
    }
    return {task: names[task] for task in CLASSIFIER_TASKS if getattr(config.classifier, task)}


def models_needed(config: Config) -> list[str]:
    """Manifest names of the models a config loads (an SSD file is not in the manifest)."""
    detector = [BLAZEFACE[config.detector.model][0]] if config.detector.model in BLAZEFACE else []
    return detector + list(classifier_models(config).values())


def model_files(config: Config) -> list[ModelFile]:
    """Every model file a config loads, checked against the manifest, detector first; an
    SSD detector's file is not in the manifest and is only checked to exist."""
    folder = models_dir(config.models.dir)
    files = [resolve(name, config.models.variant, folder) for name in models_needed(config)]
    if config.detector.model not in BLAZEFACE:
        path = Path(config.detector.model)
        if not path.is_file():
            raise ModelError(f"detector.model = {config.detector.model!r}: no such file")
        files.insert(0, ModelFile(path.stem, "int8", path, {}))
    return files


def choose_accelerator(config: Config, files: list[ModelFile]) -> AcceleratorChoice:
    """The config's accelerator, its Edge TPU probed on the `_edgetpu` builds of `files`."""
    return AcceleratorChoice.resolve(
        config.accelerator,
        device=config.models.edgetpu_device,
        models=files,
        timeout_s=config.models.edgetpu_probe_timeout_s,
    )


def tracker_settings(config: Config) -> TrackerSettings:
    tracker, rate = config.tracker, config.classifier.rate_hz
    return TrackerSettings(
        match_iou=tracker.match_iou,
        confirm_hits=tracker.confirm_hits,
        lost_after_s=tracker.lost_after_s,
        smoothing_s=tracker.smoothing_s,
        emotion_hold_s=tracker.emotion_hold_s,
        emotion_min_confidence=tracker.emotion_min_confidence,
        classify_interval_s=0.0 if rate <= 0 else 1.0 / rate,
    )


class Pipeline:
    """Loads every model once and turns frames into tracked, classified faces."""

    def __init__(self, config: Config) -> None:
        self.config = config
        files = model_files(config)
        self.accelerator = choose_accelerator(config, files)
        by_name = {model.name: model for model in files}
        threads = config.models.num_threads

        def load(name: str) -> TfliteModel:
            return TfliteModel(by_name[name], self.accelerator, num_threads=threads)

        self.detector: Detector = self._detector(config, load, files[0])
        classifier = config.classifier
        names = classifier_models(config)
        models = {task: load(names[task]) if task in names else None for task in CLASSIFIER_TASKS}
        self.classifier = FaceClassifier(
            **models,
            level_faces=classifier.level_faces,
            emotion_min_face=classifier.emotion_min_face,
            emotion_min_sharpness=classifier.emotion_min_sharpness,
            emotion_flip=classifier.emotion_flip,
        )
        self.tracker = Tracker(tracker_settings(config))

    def _detector(self, config: Config, load: Any, file: ModelFile) -> Detector:
        detector = config.detector
        if detector.model in BLAZEFACE:
            name, spec = BLAZEFACE[detector.model]
            single = BlazeFaceDetector(
                load(name),
                spec,
                score_threshold=detector.score_threshold,
                min_face_size=detector.min_face_size,
            )
            if detector.model != "multiscale":
                return single
            return MultiScaleDetector(single, scans_per_frame=detector.scans_per_frame)
        model = TfliteModel(file, self.accelerator, num_threads=config.models.num_threads)
        return SsdDetector(
            model, score_threshold=detector.score_threshold, min_face_size=detector.min_face_size
        )

    def describe_models(self) -> dict[str, str]:
        """Task -> which file runs it and where, for bench and check."""
        detector = self.detector
        models = {
            "detector": f"{self.config.detector.model} ({detector.variant}, {detector.runs_on})"
        }
        for task in CLASSIFIER_TASKS:
            model = getattr(self.classifier, task)
            if model is not None:
                models[task] = f"{model.path.name} ({model.runs_on})"
        return models

    def apply_tunables(self, config: Config) -> None:
        """Take new thresholds and rates from a reloaded config without reloading models."""
        self.config = config
        self.tracker.settings = tracker_settings(config)
        self.detector.score_threshold = config.detector.score_threshold
        self.detector.min_face_size = config.detector.min_face_size
        self.classifier.emotion_min_face = config.classifier.emotion_min_face
        self.classifier.emotion_min_sharpness = config.classifier.emotion_min_sharpness

    def process(self, frame: Frame, *, still: bool = False) -> FrameResult:
        """One frame of a stream, or with `still` a picture scanned whole on its own."""
        clock = time.perf_counter
        start = clock()
        image = frame.image
        detections = self.detector.scan(image) if still else self.detector.detect(image)
        detected = clock()
        tracks = self.tracker.associate(detections, frame.t)
        # A photo reads every face it finds; a stream's tracker says which are due.
        due = [i for i, track in enumerate(tracks) if still or self.tracker.due(track, frame.t)]
        tracked = clock()
        # A photo gets every emotion look at once; a stream's face the next of its own.
        looks = None if still else [tracks[i].times_classified for i in due]
        attributes = self.classifier.classify(
            frame.image, [detections[i] for i in due], looks=looks
        )
        classified = clock()
        for index, attrs in zip(due, attributes, strict=True):
            self.tracker.observe(tracks[index], attrs, frame.t)
        self.tracker.confirm(tracks, frame.t)
        events = self.tracker.drain_events()
        faces = [track.result() for track in tracks]
        done = clock()
        stages = {
            "detect": (detected - start) * 1e3,
            "classify": (classified - tracked) * 1e3,
            "track": ((tracked - detected) + (done - classified)) * 1e3,
        }
        return FrameResult(frame.index, frame.t, faces, events, stages)

    def process_still(self, frame: Frame) -> FrameResult:
        """One photo judged on its own: a fresh tracker, so no track, smoothing or id
        carries over from the previous photo (eval, folders of unrelated images)."""
        running = self.tracker
        self.tracker = Tracker(running.settings)
        try:
            return self.process(frame, still=True)
        finally:
            self.tracker = running

    def new_scene(self) -> None:
        """Forget every face: no track, smoothing or known box carries over to the next
        frame (unrelated clips or photos played one after another as streams)."""
        self.tracker = Tracker(self.tracker.settings)
        self.detector.forget()

    def expire(self, t: float) -> list[TrackEvent]:
        """Retire faces unseen for too long while no frame arrives (a lost camera)."""
        self.tracker.associate([], t)
        return self.tracker.drain_events()

    def finish(self, t: float) -> list[TrackEvent]:
        return self.tracker.finish(t)
