"""TensorFlow -> TFLite, float and full int8, for the emotion and age/gender models.

Both variants come from the same frozen concrete function through TensorFlow's own
converter: the float file with a dynamic batch (the runtime batches all faces of a frame),
the int8 file with batch 1 (the Edge TPU compiler needs static shapes) and int8 input and
outputs, calibrated on real face chips.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .tflite import set_tensor_names


def representative(samples: np.ndarray, limit: int = 300) -> Callable[[], Iterator[list]]:
    """A deterministic representative dataset: an even spread of at most `limit` samples."""
    picks = np.linspace(0, len(samples) - 1, num=min(limit, len(samples))).round().astype(int)

    def generate() -> Iterator[list]:
        for index in picks:
            yield [samples[index][None].astype(np.float32)]

    return generate


def convert(concrete: Any, trackable: Any, calib: np.ndarray | None) -> bytes:
    """TFLite bytes from one concrete function: float, or full int8 when calib is given."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    # Freeze first: left as resource variables, Keras weights become READ_VARIABLE ops that
    # the int8 calibrator cannot run.
    frozen = convert_variables_to_constants_v2(concrete)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen], trackable)
    if calib is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative(calib)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


def _float_and_int8(
    call: Callable[[Any], Any], trackable: Any, shape: list[int], calib: np.ndarray
) -> tuple[bytes, bytes]:
    """Convert `call` twice: batch -1 float and batch 1 int8, inputs named "input"."""
    import tensorflow as tf

    trackable.float_fn = tf.function(
        call, input_signature=[tf.TensorSpec([None, *shape], tf.float32, name="input")]
    )
    trackable.int8_fn = tf.function(
        call, input_signature=[tf.TensorSpec([1, *shape], tf.float32, name="input")]
    )
    float_bytes = convert(trackable.float_fn.get_concrete_function(), trackable, None)
    int8_bytes = convert(trackable.int8_fn.get_concrete_function(), trackable, calib)
    return float_bytes, int8_bytes


def emotion_models(hdf5: Path, calib: np.ndarray) -> tuple[bytes, bytes]:
    """mini-XCEPTION from fer's Keras hdf5: float with dynamic batch, int8 with batch 1."""
    import keras
    import tensorflow as tf

    model = keras.models.load_model(str(hdf5), compile=False)
    module = tf.Module()
    module.model = model
    float_bytes, int8_bytes = _float_and_int8(
        lambda x: model(x, training=False), module, [64, 64, 1], calib
    )
    names = {"input_name": "input", "output_names": ["probabilities"]}
    return set_tensor_names(float_bytes, **names), set_tensor_names(int8_bytes, **names)


def onnx_models(onnx_path: Path, size: int, calib: np.ndarray, work: Path) -> tuple[bytes, bytes]:
    """An age/gender ONNX net via onnx2tf (NCHW -> NHWC SavedModel), then our converter."""
    import tensorflow as tf

    folder = work / f"onnx2tf_{onnx_path.stem}"
    folder.mkdir(parents=True, exist_ok=True)
    # onnx2tf fetches this sample at start-up when it is missing; we are offline and do not
    # use its quantiser, so any array of the right shape will do.
    np.save(
        folder / "calibration_image_sample_data_20x128x128x3_float32.npy",
        np.zeros((20, 128, 128, 3), np.float32),
    )
    subprocess.run(
        [sys.executable, "-m", "onnx2tf", "-i", str(onnx_path), "-o", "saved_model", "-osd", "-n"],
        check=True,
        cwd=folder,
        stdout=subprocess.DEVNULL,
    )
    loaded = tf.saved_model.load(str(folder / "saved_model"))
    serve = loaded.signatures["serving_default"]
    (input_key,) = serve.structured_input_signature[1]
    (output_key,) = serve.structured_outputs
    module = tf.Module()
    module.loaded = loaded
    float_bytes, int8_bytes = _float_and_int8(
        lambda x: serve(**{input_key: x})[output_key], module, [size, size, 3], calib
    )
    names = {"input_name": "images", "output_names": ["probabilities"]}
    return set_tensor_names(float_bytes, **names), set_tensor_names(int8_bytes, **names)


def onnx_reference(onnx_path: Path, nhwc: np.ndarray) -> np.ndarray:
    """ONNX Runtime's answer for NHWC inputs (the ONNX graph itself takes NCHW)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return session.run(None, {name: np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2))})[0]
