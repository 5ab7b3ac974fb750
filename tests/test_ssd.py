"""The SSD post-process decoder on a tiny real model with TFLite_Detection_PostProcess.

tests/data/ssd_face_tiny.tflite (built by scripts/build_models.py) returns fixed boxes
whose scores are documented in tests/data/README.md; one score follows image brightness.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_agent.config import Config
from edge_agent.types import Frame
from edge_agent.vision.detect.ssd import SsdDetector, output_layout, split_outputs
from edge_agent.vision.manifest import ModelFile
from edge_agent.vision.pipeline import Pipeline
from edge_agent.vision.runtime import AcceleratorChoice, TfliteModel

TINY = Path(__file__).parent / "data" / "ssd_face_tiny.tflite"


@pytest.fixture(scope="module")
def detector() -> SsdDetector:
    model = TfliteModel(
        ModelFile("ssd_face_tiny", "int8", TINY, {}), AcceleratorChoice.resolve("cpu")
    )
    return SsdDetector(model, score_threshold=0.25)


def test_boxes_come_back_in_frame_pixels_best_first(detector: SsdDetector) -> None:
    frame = np.full((480, 640, 3), 255, np.uint8)  # bright: anchor D scores 0.8
    faces = detector.detect(frame)
    # anchor C (score 0.6) is class 1, not a face, and is left out
    assert [round(f.score, 3) for f in faces] == [0.9, 0.8, 0.3]
    # anchor A: ymin 0.1, xmin 0.2, ymax 0.5, xmax 0.6 -> x 128, y 48, w 256, h 192
    assert faces[0].box == pytest.approx((128.0, 48.0, 256.0, 192.0), abs=1e-3)
    assert faces[0].keypoints is None


def test_count_and_threshold_are_honoured(detector: SsdDetector) -> None:
    dark = np.zeros((100, 200, 3), np.uint8)  # count is 3: anchor D is absent
    assert [round(f.score, 2) for f in detector.detect(dark)] == [0.9, 0.3]
    detector.score_threshold = 0.5
    try:
        assert len(detector.detect(dark)) == 1
    finally:
        detector.score_threshold = 0.25


def test_tf1_and_tf2_output_orders_are_recognised_even_with_one_detection() -> None:
    boxes = np.array([[[0.1, 0.2, 0.5, 0.6]]], np.float32)
    scores, classes, count = np.array([[0.9]]), np.array([[0.0]]), np.array([1.0])
    tf1 = [boxes, classes, scores, count]
    tf2 = [scores, boxes, count, classes]
    for outputs in (tf1, tf2):
        layout = output_layout([o.shape for o in outputs])
        boxes_out, classes_out, scores_out, count_out = split_outputs(outputs, layout)
        assert count_out == 1 and scores_out[0] == pytest.approx(0.9)
        assert classes_out[0] == 0
        assert boxes_out[0] == pytest.approx([0.1, 0.2, 0.5, 0.6])


def test_a_model_of_another_kind_is_refused_when_loaded(tmp_path) -> None:
    from edge_agent.errors import ModelError
    from edge_agent.vision.manifest import resolve

    emotion = resolve("emotion_mini_xception", "float")
    model = TfliteModel(ModelFile("x", "float", emotion.path, {}), AcceleratorChoice.resolve("cpu"))
    with pytest.raises(ModelError, match="not an SSD with the TFLite detection post-process"):
        SsdDetector(model)


def test_an_owner_can_point_the_config_at_an_ssd_file(media) -> None:
    config = Config()
    config.detector.model = str(TINY)
    config.detector.score_threshold = 0.5
    pipeline = Pipeline(config)
    assert isinstance(pipeline.detector, SsdDetector)
    image = np.full((360, 640, 3), 255, np.uint8)
    # two frames of a stream: its faces are classified once confirmed, on the second
    for index in range(2):
        result = pipeline.process(Frame(index, index / 30, image))
    assert [face.box for face in result.faces] == [
        (128.0, 36.0, 256.0, 144.0),
        (64.0, 252.0, 128.0, 72.0),
    ]
    assert all(face.emotion is not None and face.age is not None for face in result.faces)


def test_a_detector_path_that_is_not_there_is_a_model_error(tmp_path: Path) -> None:
    from edge_agent.errors import ModelError

    config = Config()
    config.detector.model = str(tmp_path / "missing.tflite")
    with pytest.raises(ModelError, match=r"detector\.model"):
        Pipeline(config)
