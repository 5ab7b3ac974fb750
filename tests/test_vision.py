"""The vision core on real clips with the real models: detection, tracking, events."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_agent.capture.files import open_path
from edge_agent.config import Config
from edge_agent.types import Frame, FrameResult, TrackEvent
from edge_agent.vision.classify import (
    DLIB_INPUT,
    DLIB_MEANS_RGB,
    FACE_API_INPUT,
    FACE_API_MEANS_RGB,
    to_input,
)
from edge_agent.vision.detect.multiscale import MultiScaleDetector, pyramid
from edge_agent.vision.pipeline import Pipeline

Run = tuple[list[FrameResult], list[TrackEvent]]


def run_clip(path: Path, config: Config | None = None) -> Run:
    pipeline = Pipeline(config or Config())
    source = open_path(path)
    results: list[FrameResult] = []
    events: list[TrackEvent] = []
    for frame in source.frames():
        result = pipeline.process(frame)
        results.append(result)
        events.extend(result.events)
    source.close()
    events.extend(pipeline.finish(results[-1].t))
    return results, events


@pytest.fixture(scope="module")
def pexels(media: Callable[[str], Path]) -> Run:
    return run_clip(media("WolfgangLanger_Pexels.mp4"))


def face_rate(results: list[FrameResult]) -> float:
    return sum(bool(r.faces) for r in results) / len(results)


@pytest.mark.slow
def test_face_found_on_nearly_every_frame_of_the_pexels_clip(pexels) -> None:
    results, _ = pexels
    assert len(results) == 472
    assert face_rate(results) >= 0.95


@pytest.mark.slow
def test_one_face_keeps_one_track_id_through_the_pexels_clip(pexels) -> None:
    results, events = pexels
    ids = {face.track for result in results for face in result.faces}
    assert ids == {1}
    assert [e.type for e in events if e.type != "emotion_changed"] == ["face_appeared", "face_lost"]


@pytest.mark.slow
def test_every_face_carries_emotion_age_and_gender(pexels) -> None:
    results, _ = pexels
    face = next(r.faces[0] for r in results if r.faces and r.faces[0].confirmed)
    assert face.emotion in face.emotion_scores
    assert sum(face.emotion_scores.values()) == pytest.approx(1.0, abs=0.01)
    assert 1.0 <= face.age <= 80.0
    assert face.gender in ("female", "male")
    assert 0.5 <= face.gender_score <= 1.0


@pytest.mark.slow
def test_emotion_changes_are_rare_thanks_to_smoothing_and_hysteresis(media, pexels) -> None:
    _, events = pexels
    changes = [e for e in events if e.type == "emotion_changed"]
    raw = Config()
    raw.tracker.smoothing_s = 0.0
    raw.tracker.emotion_hold_s = 0.0
    raw.tracker.emotion_min_confidence = 0.0  # every frame's top label, however unsure
    _, raw_events = run_clip(media("WolfgangLanger_Pexels.mp4"), raw)
    raw_changes = [e for e in raw_events if e.type == "emotion_changed"]
    # The clip moves from a sad to a happy expression: at least one change, and several
    # times fewer than the frame-by-frame labels would announce.
    assert 1 <= len(changes) <= 8
    assert len(raw_changes) >= 3 * len(changes)
    assert all(e.previous_emotion != e.face.emotion for e in changes)


def test_face_found_on_nearly_every_frame_of_single_face(media) -> None:
    results, _ = run_clip(media("single_face.mp4"))
    assert face_rate(results) >= 0.95


def test_almost_no_faces_in_no_face(media) -> None:
    results, events = run_clip(media("no_face.mp4"))
    assert face_rate(results) <= 0.02
    assert not [e for e in events if e.type == "face_appeared"]


# Frame where the face cut happens, found by looking at the clips: face_noface.mov cuts to
# a cartoon at frame 72 (2.400 s by the stream's timestamps), noface_face.mov cuts from it
# to the face at frame 96 (3.945 s). Both clips have a variable frame rate.
@pytest.mark.slow
def test_face_lost_within_a_second_of_leaving(media) -> None:
    results, events = run_clip(media("face_noface.mov"))
    last_face = max(r.t for r in results if r.faces)
    assert abs(last_face - 2.400) <= 1.0
    lost = [e for e in events if e.type == "face_lost"]
    assert len(lost) == 1 and abs(lost[0].t - 2.400) <= 1.0


@pytest.mark.slow
def test_face_appears_within_a_second_of_entering(media) -> None:
    results, events = run_clip(media("noface_face.mov"))
    first_face = min(r.t for r in results if r.faces)
    assert abs(first_face - 3.945) <= 1.0
    appeared = [e for e in events if e.type == "face_appeared"]
    assert len(appeared) == 1 and abs(appeared[0].t - 3.945) <= 1.0


def test_results_do_not_depend_on_processing_speed(media) -> None:
    """Tracks and events run on frame time: two runs give identical output."""
    clip = media("single_face.mp4")
    first, _ = run_clip(clip)
    second, _ = run_clip(clip)
    assert [r.to_json() for r in first] == [r.to_json() for r in second]


def test_full_range_model_finds_the_five_faces_of_a_group_photo(media) -> None:
    config = Config()
    config.detector.model = "full_range"
    config.detector.score_threshold = 0.6
    results, _ = run_clip(media("multi_face.jpg"), config)
    assert len(results[0].faces) == 5
    assert len({face.track for face in results[0].faces}) == 5


@pytest.mark.parametrize(
    ("top", "left", "bottom", "right"), [(0, 300, 0, 0), (250, 0, 0, 0), (40, 120, 400, 10)]
)
def test_boxes_and_keypoints_follow_the_face_in_any_frame_shape(
    media, top, left, bottom, right
) -> None:
    """Padding the photo moves the face; the boxes must move by exactly that much, whatever
    the frame's aspect (the letterbox is undone per axis)."""
    import cv2

    config = Config()
    config.detector.model = "short_range"  # one letterboxed pass, the thing under test
    pipeline = Pipeline(config)
    image = cv2.imread(str(media("single_face.jpg")))
    padded = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT)
    base = pipeline.detector.detect(image)[0]
    moved = pipeline.detector.detect(padded)[0]
    x, y, w, _ = base.box
    scale = max(padded.shape[:2]) / max(image.shape[:2])  # the detector sees a coarser face
    tolerance = 0.04 * w * scale
    assert moved.box[0] == pytest.approx(x + left, abs=tolerance)
    assert moved.box[1] == pytest.approx(y + top, abs=tolerance)
    assert moved.box[2] == pytest.approx(w, abs=tolerance)
    shift = np.array([left, top])
    assert np.abs(moved.keypoints[:4] - (base.keypoints[:4] + shift)).max() < tolerance


def _group_in_a_room(media, scale: float):  # type: ignore[no-untyped-def]
    """The group photo shrunk onto a grey 640x480 frame: its five faces ~scale x 100 px."""
    import cv2

    photo = cv2.imread(str(media("multi_face.jpg")))
    small = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    frame = np.full((480, 640, 3), 96, np.uint8)
    h, w = small.shape[:2]
    frame[40 : 40 + h, 20 : 20 + w] = small[: 480 - 40, : 640 - 20]
    return frame


def _apart(faces) -> bool:  # type: ignore[no-untyped-def]
    """No two boxes overlap: none spans two people."""
    from edge_agent.vision.boxes import iou

    return all(iou(a.box, b.box) == 0 for i, a in enumerate(faces) for b in faces[i + 1 :])


@pytest.mark.parametrize("scale", [1.0, 0.6, 0.35])
def test_the_default_detector_finds_every_face_of_a_group_at_room_distances(media, scale) -> None:
    """One pass of short range sees none of them at 35 px; the pyramid sees all five."""
    import cv2

    image = cv2.imread(str(media("multi_face.jpg"))) if scale == 1.0 else None
    frame = image if image is not None else _group_in_a_room(media, scale)
    faces = Pipeline(Config()).detector.scan(frame)
    assert len(faces) == 5 and _apart(faces)
    if scale == 0.35:
        single = Config()
        single.detector.model = "short_range"
        assert Pipeline(single).detector.scan(frame) == []


def test_the_default_detector_on_a_stream_finds_far_faces_within_a_cycle_and_keeps_them(
    media,
) -> None:
    from edge_agent.vision.detect.multiscale import pyramid

    frame = _group_in_a_room(media, 0.35)
    detector = Pipeline(Config()).detector
    cycle = len(pyramid(640, 480))
    counts = [len(detector.detect(frame)) for _ in range(cycle + 10)]
    assert counts[0] < 5  # one pyramid pass a frame: far faces come in over the cycle
    assert counts[cycle:] == [5] * 10
    assert _apart(detector.detect(frame))


def test_a_photo_scan_runs_each_pyramid_job_once_with_the_enlarged_tiles() -> None:
    """On an empty frame (no box needs a second look) `scan` costs exactly its jobs: the
    whole frame near and from afar, 6 tiles of 320, 35 of 128 and 99 of 80 px, none repeated."""
    detector = Pipeline(Config()).detector
    assert isinstance(detector, MultiScaleDetector)
    before = detector.single.invokes
    assert detector.scan(np.full((480, 640, 3), 96, np.uint8)) == []
    assert detector.single.invokes - before == len(set(pyramid(640, 480, photo=True))) == 142
    assert set(pyramid(640, 480)) == set(pyramid(640, 480, photo=True))  # a stream, over its cycle


def test_a_box_holding_two_faces_goes_and_so_does_an_eye_read_as_a_face() -> None:
    """A whole-frame box too big for the second look can cover a few small faces at once
    (seen over three pasted heads in sky): it goes, they stay. A box inside a face the size
    of an eye (read as a face on close-ups) goes, the face stays."""
    from edge_agent.types import Detection
    from edge_agent.vision.detect.multiscale import _without_nested

    big = Detection((100.0, 100.0, 230.0, 230.0), 0.8, None)
    smalls = [Detection((120.0 + 60 * i, 150.0, 20.0, 20.0), 0.9, None) for i in range(2)]
    assert _without_nested([big, *smalls]) == smalls
    # one far face under a large box: either may be false, so both stay until a second
    assert _without_nested([big, smalls[0]]) == [big, smalls[0]]
    eye = Detection((130.0, 150.0, 50.0, 50.0), 0.9, None)  # 0.22 of the face's width
    apart = Detection((400.0, 100.0, 20.0, 20.0), 0.9, None)
    assert _without_nested([apart, big, eye]) == [apart, big]
    # two boxes of one eye are one part: the face stays, both go; a face more than half
    # as wide is not held, nor is a box whose centre is outside the face
    twice = [eye, Detection((132.0, 151.0, 50.0, 50.0), 0.7, None)]
    assert _without_nested([big, *twice]) == [big]
    wide = Detection((105.0, 105.0, 120.0, 120.0), 0.9, None)
    assert _without_nested([big, wide]) == [big, wide]
    beside = Detection((320.0, 150.0, 50.0, 50.0), 0.9, None)
    assert _without_nested([big, beside]) == [big, beside]


def test_emotion_flip_averages_each_face_with_its_mirror(media) -> None:
    """On by default: the scores move (the mirror is a second opinion) and stay a
    probability vector; off reads the views without their mirrors."""
    source = open_path(media("multi_face.jpg"))
    frame = next(iter(source.frames()))
    source.close()
    pipeline = Pipeline(Config())
    assert pipeline.classifier.emotion_flip
    faces = pipeline.detector.scan(frame.image)
    assert len(faces) == 5
    both = [a.emotion_scores for a in pipeline.classifier.classify(frame.image, faces)]
    pipeline.classifier.emotion_flip = False
    single = [a.emotion_scores for a in pipeline.classifier.classify(frame.image, faces)]
    moved = []
    for flipped, plain in zip(both, single, strict=True):
        assert flipped is not None and plain is not None
        assert float(flipped.sum()) == pytest.approx(1.0, abs=1e-3)
        moved.append(float(np.abs(flipped - plain).max()))
    assert max(moved) > 0.02  # (five broad smiles: most are sure either way)


def test_emotion_views_of_the_manifest_are_averaged(media) -> None:
    """The face-api model reads each face as two chips (margin, contrast) from its manifest
    entry; the scores are the mean of what each chip alone gives, and the two differ."""
    import copy
    import dataclasses

    from edge_agent.vision.classify import FaceClassifier
    from edge_agent.vision.manifest import resolve
    from edge_agent.vision.runtime import AcceleratorChoice, TfliteModel

    source = open_path(media("multi_face.jpg"))
    image = next(iter(source.frames())).image
    source.close()
    faces = Pipeline(Config()).detector.scan(image)
    model = resolve("emotion_faceapi", "float")
    views = model.entry["input"]["views"]
    assert len(views) == 2

    def scores(chosen: list[dict]) -> np.ndarray:
        entry = copy.deepcopy(model.entry)
        entry["input"]["views"] = chosen
        emotion = TfliteModel(
            dataclasses.replace(model, entry=entry), AcceleratorChoice("cpu", "cpu")
        )
        classifier = FaceClassifier(emotion, None, None, emotion_flip=True)
        return np.array([a.emotion_scores for a in classifier.classify(image, faces)])

    first, second = scores(views[:1]), scores(views[1:])
    assert np.abs(first - second).max() > 0.02
    np.testing.assert_allclose(scores(views), (first + second) / 2, atol=1e-5)


def test_model_inputs_are_the_chips_in_rgb_less_the_means_and_scaled() -> None:
    """What each net was trained on: RGB from the BGR chips, less the channel means, over
    255 (face-api) or 256 (dlib), one chip or a batch of them alike; a buffer it cannot
    write in place is refused, not silently left unconverted."""
    rng = np.random.default_rng(0)
    for shape in ((112, 112, 3), (5, 64, 64, 3), (2, 32, 32, 3)):
        chips = rng.integers(0, 256, shape, dtype=np.uint8)
        for transform, means, scale in (
            (FACE_API_INPUT, FACE_API_MEANS_RGB, 255),
            (DLIB_INPUT, DLIB_MEANS_RGB, 256),
        ):
            out = to_input(chips, transform, np.empty(shape, np.float32))
            expected = (chips[..., ::-1].astype(np.float32) - means) / scale
            np.testing.assert_allclose(out, expected, atol=1e-6)
    strided = np.empty((4, 32, 32, 3), np.float32)[::2]  # a reshape would copy it
    with pytest.raises(ValueError, match="contiguous"):
        to_input(chips, DLIB_INPUT, strided)


@pytest.mark.parametrize("model", ["faceapi", "mini_xception"])
def test_a_mirrored_look_reads_the_same_chip_flipped(media, model: str) -> None:
    """The mirrored look is the same chip, left for right, in the model's input."""
    image = cv2.imread(str(media("single_face.jpg")))
    config = Config()
    config.classifier.emotion_model = model  # type: ignore[assignment]
    pipeline = Pipeline(config)
    faces = pipeline.detector.scan(image)
    rows = [(0, 0, False), (0, 0, True)]
    batch, _ = pipeline.classifier._emotion_input(image, faces, rows)
    np.testing.assert_array_equal(batch[1], batch[0][:, ::-1])


def test_a_detector_that_forgets_answers_as_a_new_one(media) -> None:
    """After `forget` (a new scene) the multi-scale detector gives the next frames the
    boxes a new detector gives them; remembering the face, it would re-find it in a crop
    around its old box instead, a slightly different box."""
    source = open_path(media("WolfgangLanger_Pexels.mp4"))
    frames = [frame.image for _, frame in zip(range(12), source.frames(), strict=False)]
    source.close()
    detector = Pipeline(Config()).detector
    assert isinstance(detector, MultiScaleDetector)
    for image in frames[:6]:
        assert detector.detect(image)
    detector.forget()
    fresh = MultiScaleDetector(detector.single, scans_per_frame=detector.scans_per_frame)
    for image in frames[6:]:
        assert [f.box for f in detector.detect(image)] == [f.box for f in fresh.detect(image)]


def test_a_blurred_face_reads_uncertain_and_the_check_can_be_turned_off(media) -> None:
    """A face smeared by motion (along a row or a column) or out of focus still gets
    confident scores, mostly wrong ones (docs/accuracy.md), so it shows "uncertain", in a
    photo and in a stream; a dim but sharp copy is no blur. `emotion_min_sharpness = 0`,
    reloaded, turns the check off."""
    image = cv2.imread(str(media("0-f15-hao-ph.jpg")))
    config = Config()
    pipeline = Pipeline(config)

    def shown(picture: np.ndarray) -> str:
        (face,) = pipeline.process_still(Frame(0, 0.0, picture)).faces
        assert sum(face.emotion_scores.values()) == pytest.approx(1.0, abs=0.01)
        return face.emotion

    assert shown(image) == "happy"
    assert shown((image * 0.35).astype(np.uint8)) == "happy"
    (face,) = pipeline.process_still(Frame(0, 0.0, image)).faces
    length = int(0.15 * face.box[2]) | 1  # the face moved 15 % of its width in a frame
    row = np.zeros((length, length), np.float32)
    row[length // 2] = 1.0 / length
    blurred = [
        cv2.filter2D(image, -1, row),
        cv2.filter2D(image, -1, row.T),
        cv2.GaussianBlur(image, (0, 0), 0.03 * face.box[2]),
    ]
    assert [shown(picture) for picture in blurred] == ["uncertain"] * 3
    stream = Pipeline(Config())  # a second of the smeared face: every look of it is flagged
    results = [stream.process(Frame(i, i / 30, blurred[0])) for i in range(30)]
    shown_in_stream = {face.emotion for result in results for face in result.faces}
    assert shown_in_stream == {None, "uncertain"}  # None: the first frame, before confirmed
    assert "emotion_changed" not in [event.type for result in results for event in result.events]
    config.classifier.emotion_min_sharpness = 0.0
    pipeline.apply_tunables(config)
    assert "happy" in [shown(picture) for picture in blurred]


def test_a_new_scene_starts_every_face_afresh(media) -> None:
    """After `new_scene` the same face is a new one: unread until it is confirmed again,
    then announced again; nothing is said of the forgotten one."""
    image = cv2.imread(str(media("single_face.jpg")))
    pipeline = Pipeline(Config())
    (before,) = [pipeline.process(Frame(i, i / 30, image)) for i in range(3)][-1].faces
    assert before.emotion is not None
    pipeline.new_scene()
    again = [pipeline.process(Frame(3 + i, (3 + i) / 30, image)) for i in range(2)]
    assert again[0].faces[0].emotion is None and again[1].faces[0].emotion is not None
    assert [event.type for result in again for event in result.events] == ["face_appeared"]


def test_a_stream_spreads_the_looks_over_its_frames(media) -> None:
    """A photo is read with every look at once, and so is a stream's face the first time
    (reading number 0: its smoothing and first shown emotion start from the photo's
    answer); after that one look a frame, its next each time, so one cycle of frames
    averages to the photo's answer at a quarter of the cost per frame. Faces go through
    the looks each at their own pace."""
    source = open_path(media("multi_face.jpg"))
    image = next(iter(source.frames())).image
    source.close()
    pipeline = Pipeline(Config())
    faces = pipeline.detector.scan(image)
    classifier = pipeline.classifier
    looks = classifier.looks()
    assert len(looks) == 4  # two views of the manifest, each also mirrored
    every = np.array([a.emotion_scores for a in classifier.classify(image, faces)])

    def read(numbers: list[int]) -> np.ndarray:
        return np.array(
            [a.emotion_scores for a in classifier.classify(image, faces, looks=numbers)]
        )

    np.testing.assert_allclose(read([0] * len(faces)), every, atol=1e-5)
    # later readings: look 0 again at number 4, then 1, 2, 3
    cycle = [read([n] * len(faces)) for n in range(len(looks), 2 * len(looks))]
    assert all(np.abs(cycle[0] - other).max() > 0.005 for other in cycle[1:])  # four looks
    assert all(np.abs(every - one).max() > 0.005 for one in cycle)
    np.testing.assert_allclose(np.mean(cycle, axis=0), every, atol=1e-5)
    # each face its own point in one batch: the same as reading it alone, first ones whole
    numbers = list(range(len(faces)))
    staggered = read(numbers)
    np.testing.assert_allclose(staggered[0], every[0], atol=1e-5)
    for index in numbers[1:]:
        np.testing.assert_allclose(staggered[index], cycle[index % len(looks)][index], atol=1e-5)


def test_each_face_of_a_stream_goes_through_the_looks_at_its_own_pace(media) -> None:
    """Faces found on different frames each get look 0, 1, 2, 3, ... in turn (a count
    shared by all faces would give a face read only on every other frame, as at a low
    `classifier.rate_hz`, only the looks of the frames it falls on)."""
    pipeline = Pipeline(Config())
    pending: list[int] = []
    by_track: dict[int, list[int]] = {}
    calls: list[list[int]] = []
    classify, observe = pipeline.classifier.classify, pipeline.tracker.observe

    def classify_spy(image, faces, *, looks=None):  # type: ignore[no-untyped-def]
        pending.extend(looks or [])
        calls.append(list(looks or []))
        return classify(image, faces, looks=looks)

    def observe_spy(track, attributes, t):  # type: ignore[no-untyped-def]
        by_track.setdefault(track.id, []).append(pending.pop(0))
        observe(track, attributes, t)

    pipeline.classifier.classify = classify_spy  # type: ignore[method-assign]
    pipeline.tracker.observe = observe_spy  # type: ignore[method-assign]
    source = open_path(media("multi_face.jpg"))
    image = next(iter(source.frames())).image
    source.close()
    for index in range(90):  # the pyramid finds the five faces over its first frames
        pipeline.process(Frame(index, index / 30, image))
    read = [looks for looks in by_track.values() if len(looks) >= 4]
    assert len(read) >= 4
    assert all(looks == list(range(len(looks))) for looks in read)
    # faces found on different frames are at different points of the cycle in one batch
    assert any(len(set(looks)) > 1 for looks in calls)


def test_halving_keeps_boxes_on_the_frame(media) -> None:
    """The detector shrinks by exact halvings before its last resize; an odd edge left out
    must not shift what it finds: a face found on a frame is found at twice the place on
    the frame enlarged 2x (one more halving), to within a pixel and a half."""
    from edge_agent.vision.detect.blazeface import halved

    crop, span_w, span_h = halved(np.zeros((481, 641, 3), np.uint8), 128, 72)
    assert crop.shape[:2] == (120, 160) and (span_w, span_h) == (640, 480)
    single = Pipeline(Config()).detector.single
    source = open_path(media("single_face.jpg"))
    image = next(iter(source.frames())).image
    source.close()
    (face,) = single.detect(image)
    big = cv2.resize(image, (image.shape[1] * 2 + 1, image.shape[0] * 2 + 1))
    (again,) = single.detect(big)
    assert np.abs(np.array(again.box) - 2 * np.array(face.box)).max() < 1.5 * 2
