"""Tracker rules on frame time: ids, confirmation, smoothing, hysteresis, loss, throttling."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.types import EMOTIONS, Detection
from edge_agent.vision.classify import FaceAttributes
from edge_agent.vision.track import Tracker, TrackerSettings


def scores(label: str, confidence: float = 0.9) -> np.ndarray:
    values = np.full(len(EMOTIONS), (1 - confidence) / (len(EMOTIONS) - 1), np.float32)
    values[EMOTIONS.index(label)] = confidence
    return values


def step(
    tracker: Tracker,
    t: float,
    boxes: list[tuple[float, float, float, float]],
    labels: list[str] | None = None,
) -> list:
    detections = [Detection(box, 0.9) for box in boxes]
    tracks = tracker.associate(detections, t)
    for i, track in enumerate(tracks):
        if labels and tracker.due(track, t):
            tracker.observe(track, FaceAttributes(scores(labels[i]), 30.0, 0.8), t)
    tracker.confirm(tracks, t)
    return tracks


FACE = (100.0, 100.0, 80.0, 80.0)


def test_ids_follow_moving_faces_and_new_faces_get_new_ids() -> None:
    tracker = Tracker()
    a = step(tracker, 0.0, [FACE])
    b = step(tracker, 0.1, [(110.0, 105.0, 80.0, 80.0), (400.0, 100.0, 60.0, 60.0)])
    assert [t.id for t in a] == [1]
    assert [t.id for t in b] == [1, 2]


def test_a_one_frame_flicker_is_never_announced() -> None:
    tracker = Tracker(TrackerSettings(confirm_hits=2, lost_after_s=0.5))
    step(tracker, 0.0, [FACE], ["happy"])
    step(tracker, 0.1, [], None)
    step(tracker, 1.0, [], None)
    assert tracker.drain_events() == []


def test_appear_then_lost_after_the_configured_time_unseen() -> None:
    tracker = Tracker(TrackerSettings(confirm_hits=2, lost_after_s=1.0))
    step(tracker, 0.0, [FACE], ["happy"])
    step(tracker, 0.1, [FACE], ["happy"])
    assert [e.type for e in tracker.drain_events()] == ["face_appeared"]
    step(tracker, 1.0, [])
    assert tracker.drain_events() == []  # unseen 0.9 s: still there
    step(tracker, 1.2, [])
    (lost,) = tracker.drain_events()
    assert lost.type == "face_lost" and lost.t == pytest.approx(0.1)
    assert lost.duration_s == pytest.approx(0.1) and lost.face.emotion == "happy"


def test_emotion_changes_only_after_the_new_label_leads_for_the_hold_time() -> None:
    tracker = Tracker(TrackerSettings(smoothing_s=0.0, emotion_hold_s=0.5))
    t = 0.0
    for _ in range(3):
        step(tracker, t, [FACE], ["sad"])
        t += 0.1
    tracker.drain_events()
    step(tracker, t, [FACE], ["happy"])  # a blip of happy...
    step(tracker, t + 0.1, [FACE], ["sad"])  # ...that does not last
    assert tracker.tracks[0].emotion == "sad" and tracker.drain_events() == []
    start = t + 0.2
    for k in range(7):
        step(tracker, start + 0.1 * k, [FACE], ["happy"])
    (change,) = tracker.drain_events()
    assert change.type == "emotion_changed"
    assert (change.previous_emotion, change.face.emotion) == ("sad", "happy")
    assert change.t == pytest.approx(start + 0.5)


def test_event_snapshot_does_not_follow_later_changes() -> None:
    tracker = Tracker(TrackerSettings(smoothing_s=0.0, emotion_hold_s=0.0, confirm_hits=1))
    step(tracker, 0.0, [FACE], ["sad"])
    (appeared,) = tracker.drain_events()
    step(tracker, 0.1, [FACE], ["happy"])
    assert appeared.face.emotion == "sad"
    assert tracker.tracks[0].emotion == "happy"


def test_smoothing_needs_several_frames_to_flip_the_leader() -> None:
    tracker = Tracker(TrackerSettings(smoothing_s=0.4, emotion_hold_s=0.0))
    step(tracker, 0.0, [FACE], ["sad"])
    step(tracker, 1 / 30, [FACE], ["happy"])
    assert tracker.tracks[0].emotion == "sad"  # one frame of happy moves the mean little
    for k in range(2, 30):
        step(tracker, k / 30, [FACE], ["happy"])
    assert tracker.tracks[0].emotion == "happy"


def test_classification_rate_per_track_is_throttled_on_frame_time() -> None:
    tracker = Tracker(TrackerSettings(classify_interval_s=0.1))
    due = []
    for k in range(10):  # 30 fps for a third of a second
        (track,) = tracker.associate([Detection(FACE, 0.9)], k / 30)
        due.append(tracker.due(track, k / 30))
        if due[-1]:
            tracker.observe(track, FaceAttributes(scores("happy")), k / 30)
    assert due == [True, False, False, True, False, False, True, False, False, True]


def test_age_and_gender_average_over_samples() -> None:
    tracker = Tracker()
    (track,) = tracker.associate([Detection(FACE, 0.9)], 0.0)
    for t, (age, female) in enumerate([(20.0, 0.9), (40.0, 0.3)]):
        tracker.observe(track, FaceAttributes(None, age, female), float(t))
    assert track.age == pytest.approx(30.0)
    assert track.female_probability == pytest.approx(0.6)
    assert (track.gender, track.gender_score) == ("female", pytest.approx(0.6))


def test_finish_loses_every_confirmed_track() -> None:
    tracker = Tracker(TrackerSettings(confirm_hits=1))
    step(tracker, 0.0, [FACE, (300.0, 100.0, 80.0, 80.0)], ["happy", "sad"])
    tracker.drain_events()
    assert [e.type for e in tracker.finish(0.5)] == ["face_lost", "face_lost"]
    assert tracker.tracks == []


def test_a_face_back_after_a_long_gap_is_a_new_track() -> None:
    tracker = Tracker(TrackerSettings(confirm_hits=1, lost_after_s=1.0))
    (first,) = step(tracker, 0.0, [FACE], ["happy"])
    tracker.drain_events()
    (second,) = step(tracker, 30.0, [FACE], ["happy"])
    assert second.id != first.id
    assert [e.type for e in tracker.drain_events()] == ["face_lost", "face_appeared"]
