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
    tracker = Tracker(TrackerSettings(smoothing_s=0.4, emotion_hold_s=0.0, confirm_hits=1))
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
    # first on the frame the face is confirmed (its second), then every third frame
    assert due == [False, True, False, False, True, False, False, True, False, False]


def test_a_face_is_classified_from_the_frame_it_is_confirmed_on() -> None:
    """Its first box (a coarse pass's) is not where it settles, and a flicker that is
    never confirmed costs no classification; a reload raising `confirm_hits` does not stop
    the classification of a face already confirmed."""
    tracker = Tracker(TrackerSettings(confirm_hits=3))
    due = []
    for k in range(4):
        (track,) = tracker.associate([Detection(FACE, 0.9)], k / 30)
        due.append(tracker.due(track, k / 30))
        if due[-1]:
            tracker.observe(track, FaceAttributes(scores("happy")), k / 30)
        tracker.confirm([track], k / 30)
        if k == 0:
            assert track.result().emotion is None and not track.confirmed
    assert due == [False, False, True, True]
    (appeared,) = tracker.drain_events()
    assert appeared.type == "face_appeared" and appeared.face.emotion == "happy"
    tracker.settings.confirm_hits = 10
    (track,) = tracker.associate([Detection(FACE, 0.9)], 4 / 30)
    assert tracker.due(track, 4 / 30)


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


def look(tracker: Tracker, t: float, label: str, confidence: float, reliable: bool = True):  # type: ignore[no-untyped-def]
    (track,) = tracker.associate([Detection(FACE, 0.9)], t)
    attributes = FaceAttributes(scores(label, confidence), emotion_reliable=reliable)
    tracker.observe(track, attributes, t)
    tracker.confirm([track], t)
    return track


def test_weak_evidence_is_uncertain_and_fires_no_change() -> None:
    settings = TrackerSettings(smoothing_s=0.0, emotion_hold_s=0.2, emotion_min_confidence=0.5)
    tracker = Tracker(settings)
    frames = [("happy", 0.9)] * 5 + [("sad", 0.3)] * 5 + [("happy", 0.9)] * 5
    shown = [look(tracker, k / 10, label, p).emotion for k, (label, p) in enumerate(frames)]
    assert shown[:5] == ["happy"] * 5
    assert "uncertain" in shown[5:10]  # a weak sad look is no sad
    assert shown[-1] == "happy"
    changes = [e for e in tracker.drain_events() if e.type == "emotion_changed"]
    assert changes == []  # happy -> uncertain -> happy is no change of emotion


def test_a_new_emotion_after_uncertain_names_the_last_stated_one() -> None:
    settings = TrackerSettings(smoothing_s=0.0, emotion_hold_s=0.0, emotion_min_confidence=0.5)
    tracker = Tracker(settings)
    for k, (label, p) in enumerate([("happy", 0.9)] * 3 + [("sad", 0.3), ("angry", 0.9)]):
        look(tracker, k / 10, label, p)
    changes = [e for e in tracker.drain_events() if e.type == "emotion_changed"]
    assert [(e.previous_emotion, e.face.emotion) for e in changes] == [("happy", "angry")]


def test_unreadable_looks_do_not_move_the_smoothed_scores() -> None:
    settings = TrackerSettings(smoothing_s=0.0, emotion_hold_s=0.0, emotion_min_confidence=0.5)
    tracker = Tracker(settings)
    track = look(tracker, 0.0, "happy", 0.9)
    before = track.emotion_scores.copy()
    for k in range(1, 4):  # turned away or too small: whatever the model says is ignored
        look(tracker, k / 10, "angry", 0.99, reliable=False)
    assert track.emotion == "uncertain"
    assert np.array_equal(track.emotion_scores, before)
    look(tracker, 0.5, "happy", 0.9)
    assert track.emotion == "happy"
    assert not [e for e in tracker.drain_events() if e.type == "emotion_changed"]


def test_a_face_that_appears_uncertain_reports_its_first_emotion() -> None:
    settings = TrackerSettings(smoothing_s=0.0, emotion_hold_s=0.0, emotion_min_confidence=0.5)
    tracker = Tracker(settings)
    for k in range(3):
        look(tracker, k / 10, "sad", 0.3)
    look(tracker, 0.3, "surprise", 0.9)
    events = tracker.drain_events()
    assert [(e.type, e.face.emotion) for e in events] == [
        ("face_appeared", "uncertain"),
        ("emotion_changed", "surprise"),
    ]
    assert events[1].previous_emotion == "uncertain"
