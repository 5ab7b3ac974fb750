"""The SSD test model, tests/data/ssd_face_tiny.tflite: a real TFLite SSD post-process, no weights.

The daemon's SSD adapter (edge_agent.vision.detect.ssd) reads the outputs of the
TFLite_Detection_PostProcess custom op, as Coral's published face detector has them.  Tests
need that op's real behaviour (its NMS, its output order) without a trained model's size or
licence, so this few-KB model feeds it constant boxes and scores, one of them moved by the
image's brightness.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .tflite import set_tensor_names

SSD_ANCHORS = np.array(
    [  # centre-size (ycenter, xcenter, h, w); zero encodings decode to these
        [0.30, 0.40, 0.40, 0.40],  # box 0 -> (ymin, xmin, ymax, xmax) = (0.1, 0.2, 0.5, 0.6)
        [0.80, 0.80, 0.20, 0.20],  # box 1 -> (0.7, 0.7, 0.9, 0.9)
        [0.15, 0.85, 0.10, 0.10],  # box 2 -> (0.1, 0.8, 0.2, 0.9)
        [0.80, 0.20, 0.20, 0.20],  # box 3 -> (0.7, 0.1, 0.9, 0.3)
    ],
    dtype=np.float32,
)
# Per-anchor class scores: column 0 is background, 1 = "face" (label 0), 2 = "other" (label 1).
SSD_SCORES = np.array(
    [
        [0.0, 0.90, 0.05],
        [0.0, 0.30, 0.00],
        [0.0, 0.05, 0.60],
        [0.0, 0.00, 0.00],  # face score of box 3 = 0.8 * mean(input) / 255, added in the graph
    ],
    dtype=np.float32,
)


def ssd_face_tiny(work: Path) -> bytes:
    """A few-KB model whose output is the real TFLite_Detection_PostProcess custom op.

    The op is made the way TensorFlow's object-detection exporter makes it: an empty
    tf.function tagged `experimental_implements` that the MLIR converter replaces with the
    custom op.  Inputs to it are constants, except box 3's face score, which follows the
    image's mean brightness so tests can move one detection across the threshold.
    """
    import tensorflow as tf

    attrs = {
        "max_detections": ("i", 4),
        "max_classes_per_detection": ("i", 1),
        "detections_per_class": ("i", 4),
        "num_classes": ("i", 2),
        "use_regular_nms": ("b", "false"),
        "nms_score_threshold": ("f", 0.25),
        "nms_iou_threshold": ("f", 0.5),
        "y_scale": ("f", 10.0),
        "x_scale": ("f", 10.0),
        "h_scale": ("f", 5.0),
        "w_scale": ("f", 5.0),
    }
    implements = " ".join(
        ['name: "TFLite_Detection_PostProcess"']
        + [
            f'attr {{ key: "{key}" value {{ {kind}: {value} }} }}'
            for key, (kind, value) in attrs.items()
        ]
    )

    @tf.function(experimental_implements=implements)
    def postprocess(boxes: Any, scores: Any, anchors: Any) -> tuple[Any, Any, Any, Any]:
        del boxes, scores, anchors  # replaced by the custom op
        zero = tf.constant(0.0)
        return zero, zero, zero, zero

    class Ssd(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 64, 64, 3], tf.uint8, name="image")])
        def serve(self, image: Any) -> dict[str, Any]:
            brightness = tf.reduce_mean(tf.cast(image, tf.float32)) / 255.0
            extra = tf.reshape(brightness * 0.8, [1, 1, 1])
            mask = np.zeros((1, 4, 3), np.float32)
            mask[0, 3, 1] = 1.0
            scores = tf.constant(SSD_SCORES[None]) + extra * mask
            encodings = tf.zeros([1, 4, 4], tf.float32) + 0.0 * brightness
            out = postprocess(encodings, scores, tf.constant(SSD_ANCHORS))
            return {"boxes": out[0], "classes": out[1], "scores": out[2], "count": out[3]}

    module = Ssd()
    saved = work / "ssd_saved_model"
    tf.saved_model.save(module, str(saved), signatures={"serving_default": module.serve})
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
    converter.allow_custom_ops = True
    # The custom op's own output order is boxes, classes, scores, count; name them the way
    # TF1's export_tflite_ssd_graph did, which SSD decoders often key on.
    return set_tensor_names(
        converter.convert(),
        input_name="normalized_input_image_tensor",
        output_names=[
            "TFLite_Detection_PostProcess",
            "TFLite_Detection_PostProcess:1",
            "TFLite_Detection_PostProcess:2",
            "TFLite_Detection_PostProcess:3",
        ],
    )
