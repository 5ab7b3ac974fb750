"""Faces across frames: ids, smoothing, hysteresis and the events a dashboard sees.

Everything here runs on frame timestamps, never the wall clock, so a file replayed at any
speed yields the same tracks and events, and tests can assert them exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edge_agent.types import (
    EMOTIONS,
    GENDERS,
    UNCERTAIN,
    Detection,
    FaceResult,
    TrackEvent,
    emotion_dict,
)
from edge_agent.vision.boxes import match
from edge_agent.vision.classify import FaceAttributes


@dataclass(slots=True)
class TrackerSettings:
    """Tunables; all may change on a config reload without losing the tracks."""

    match_iou: float = 0.3
    confirm_hits: int = 2
    lost_after_s: float = 1.0
    smoothing_s: float = 0.4
    emotion_hold_s: float = 0.6
    emotion_min_confidence: float = 0.0  # smoothed top probability below: "uncertain"
    classify_interval_s: float = 0.0
    attribute_samples: int = 30


@dataclass(slots=True)
class Track:
    id: int
    box: tuple[float, float, float, float]
    score: float
    first_seen: float
    last_seen: float
    hits: int = 1
    confirmed: bool = False
    emotion: str | None = None  # one of EMOTIONS, UNCERTAIN, or None before classification
    emotion_scores: np.ndarray | None = None
    last_stated: str | None = None  # the last emotion of EMOTIONS it showed
    age: float | None = None
    female_probability: float | None = None
    last_classified: float | None = None
    _samples: int = 0
    _candidate: str | None = None
    _candidate_since: float = 0.0

    @property
    def times_classified(self) -> int:
        """How often the classifiers have read this face (its next emotion look)."""
        return self._samples

    @property
    def gender(self) -> str | None:
        if self.female_probability is None:
            return None
        female, male = GENDERS
        return female if self.female_probability >= 0.5 else male

    @property
    def gender_score(self) -> float | None:
        if self.female_probability is None:
            return None
        return max(self.female_probability, 1.0 - self.female_probability)

    def result(self) -> FaceResult:
        """The track as reported, rounded once here for every output format."""
        return FaceResult(
            self.id,
            tuple(round(v, 1) for v in self.box),  # type: ignore[arg-type]
            round(self.score, 3),
            self.emotion,
            emotion_dict(self.emotion_scores),
            None if self.age is None else round(self.age, 1),
            self.gender,
            None if self.gender_score is None else round(self.gender_score, 3),
            self.confirmed,
        )


class Tracker:
    """Greedy IoU association: a handful of faces per frame needs nothing heavier."""

    def __init__(self, settings: TrackerSettings | None = None) -> None:
        self.settings = settings or TrackerSettings()
        self.tracks: list[Track] = []
        self._next_id = 1
        self._events: list[TrackEvent] = []

    def associate(self, detections: list[Detection], t: float) -> list[Track]:
        """Give each detection its track (new or continued); retire tracks unseen too long.

        Retiring comes first, so a face that returns after a gap longer than `lost_after_s`
        is a new track with its own face_appeared, not the old one resumed.
        """
        self._retire(t)
        pairs = match(
            [t.box for t in self.tracks], [d.box for d in detections], self.settings.match_iou
        )
        assigned: dict[int, Track] = {di: self.tracks[ti] for di, ti in pairs.items()}
        for di, det in enumerate(detections):
            track = assigned.get(di)
            if track is None:
                track = Track(self._next_id, det.box, det.score, first_seen=t, last_seen=t)
                self._next_id += 1
                self.tracks.append(track)
                assigned[di] = track
            else:
                track.box, track.score, track.last_seen = det.box, det.score, t
                track.hits += 1
        return [assigned[di] for di in range(len(detections))]

    def _retire(self, t: float) -> None:
        alive = []
        for track in self.tracks:
            if t - track.last_seen > self.settings.lost_after_s:
                if track.confirmed:
                    self._events.append(
                        TrackEvent(
                            "face_lost",
                            track.last_seen,
                            track.result(),
                            duration_s=track.last_seen - track.first_seen,
                        )
                    )
            else:
                alive.append(track)
        self.tracks = alive

    def due(self, track: Track, t: float) -> bool:
        """Whether this track's classifiers should run on this frame: from the frame its
        face is confirmed on, then every `classify_interval_s`.

        A new face's first box is not where its box settles: the multi-scale detector
        finds it in a coarse pass (on the labelled photos held still, 4.5 % wider and 3 %
        of its width off centre, in the median) and re-finds it from the next frame on
        (then 0.1 % and 1.1 %, and under 0.2 % and 0.7 % after). Its first reading starts
        the smoothing and the first shown emotion, so read from that first box it made 43
        of 492 still photos (with sensor noise) change emotion within 2 s, and read from
        the second frame 31 (scripts/still_streams.py --noise 2). A flicker that is never
        confirmed is never classified either.
        """
        if not (track.confirmed or track.hits >= self.settings.confirm_hits):
            return False
        last = track.last_classified
        # A millisecond of slack: at 30 fps, 10 Hz must mean every third frame, and
        # 9/30 - 6/30 is a hair under 0.1 in floating point.
        return last is None or t - last >= self.settings.classify_interval_s - 1e-3

    def observe(self, track: Track, attributes: FaceAttributes, t: float) -> None:
        """Fold one frame's classification into the track's smoothed state."""
        settings = self.settings
        dt = 0.0 if track.last_classified is None else t - track.last_classified
        track.last_classified = t
        track._samples += 1
        weight = max(1.0 / track._samples, 1.0 / settings.attribute_samples)
        if attributes.age is not None:
            track.age = (
                attributes.age
                if track.age is None
                else (track.age + weight * (attributes.age - track.age))
            )
        if attributes.female_probability is not None:
            p = attributes.female_probability
            track.female_probability = (
                p
                if track.female_probability is None
                else (track.female_probability + weight * (p - track.female_probability))
            )
        if attributes.emotion_scores is not None:
            reliable = attributes.emotion_reliable
            self._observe_emotion(track, attributes.emotion_scores, reliable, dt, t)

    def _observe_emotion(
        self, track: Track, scores: np.ndarray, reliable: bool, dt: float, t: float
    ) -> None:
        """Smooth the scores, then move the shown emotion with hysteresis.

        A look the classifier flags as unreliable (too small, turned away) does not enter
        the smoothing; it makes the leader "uncertain" instead, as does a smoothed top
        probability under `emotion_min_confidence`. Going to or through "uncertain" never
        fires emotion_changed: only a new stated emotion, different from the last stated
        one, does, and its `previous_emotion` is that last stated one ("uncertain" for a
        face that appeared uncertain).
        """
        settings = self.settings
        if track.emotion_scores is None:
            track.emotion_scores = scores.astype(np.float32).copy()
        elif reliable:
            alpha = 1.0 if settings.smoothing_s <= 0 else 1.0 - math.exp(-dt / settings.smoothing_s)
            track.emotion_scores += np.float32(alpha) * (scores - track.emotion_scores)
        top = int(np.argmax(track.emotion_scores))
        confident = track.emotion_scores[top] >= settings.emotion_min_confidence
        leader = EMOTIONS[top] if reliable and confident else UNCERTAIN
        if track.emotion is None:
            self._show(track, leader, t)
        elif leader == track.emotion:
            track._candidate = None
        elif leader != track._candidate:
            track._candidate, track._candidate_since = leader, t
        if track._candidate is not None and t - track._candidate_since >= settings.emotion_hold_s:
            leader, track._candidate = track._candidate, None
            self._show(track, leader, t)

    def _show(self, track: Track, emotion: str, t: float) -> None:
        track.emotion = emotion
        if emotion == UNCERTAIN:
            return
        previous, track.last_stated = track.last_stated, emotion
        if track.confirmed and previous != emotion:
            # (no stated emotion before: the face appeared "uncertain" and now shows one)
            self._events.append(
                TrackEvent("emotion_changed", t, track.result(), previous or UNCERTAIN)
            )

    def confirm(self, tracks: list[Track], t: float) -> None:
        """Announce tracks that have been seen often enough to not be a flicker."""
        for track in tracks:
            if not track.confirmed and track.hits >= self.settings.confirm_hits:
                track.confirmed = True
                self._events.append(TrackEvent("face_appeared", t, track.result()))

    def drain_events(self) -> list[TrackEvent]:
        events, self._events = self._events, []
        return events

    def finish(self, t: float) -> list[TrackEvent]:
        """End of a finite source: every track still open is lost now."""
        for track in self.tracks:
            if track.confirmed:
                self._events.append(
                    TrackEvent(
                        "face_lost",
                        t,
                        track.result(),
                        duration_s=track.last_seen - track.first_seen,
                    )
                )
        self.tracks = []
        return self.drain_events()
