"""A float .tflite graph replayed as TensorFlow ops, so TensorFlow's converter can quantise it.

mediapipe ships BlazeFace only as .tflite (fp16 weights).  TensorFlow's converter needs a TF
graph to calibrate, so the file's operators are replayed with the equivalent TF ops; the
constants (after the file's own DEQUANTIZE/DENSIFY ops) are taken from an interpreter run,
which avoids re-implementing fp16 and sparse decoding.  Only the operators the two BlazeFace
files use are supported; anything else is an error, never a guess.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .tflite import interpreter, op_names


class TfliteGraphAsTf:
    """Re-express a float .tflite graph as TensorFlow ops, weights read from the file itself."""

    def __init__(self, path: Path) -> None:
        from ai_edge_litert.interpreter import OpResolverType
        from tensorflow.lite.tools import flatbuffer_utils

        self.model = flatbuffer_utils.read_model(str(path))
        self.graph = self.model.subgraphs[0]
        self.ops = list(zip(op_names(self.model), self.graph.operators, strict=True))
        # No XNNPACK: a delegated DEQUANTIZE never writes its output tensor for us to read.
        runner = interpreter(
            path,
            threads=1,
            experimental_preserve_all_tensors=True,
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
        shape = runner.get_input_details()[0]["shape"]
        runner.set_tensor(runner.get_input_details()[0]["index"], np.zeros(shape, np.float32))
        runner.invoke()
        self.input_shape = [int(v) for v in shape]
        self.consts: dict[int, np.ndarray] = {}
        for index, tensor in enumerate(self.graph.tensors):
            buffer = self.model.buffers[tensor.buffer]
            if buffer.data is not None and len(buffer.data) and tensor.sparsity is None:
                self.consts[index] = np.array(runner.get_tensor(index))
        for name, op in self.ops:
            if name in ("DEQUANTIZE", "DENSIFY"):
                self.consts[int(op.outputs[0])] = np.array(
                    runner.get_tensor(int(op.outputs[0]))
                ).astype(np.float32)
        self.output_names = [self.graph.tensors[i].name.decode() for i in self.graph.outputs]
        self.input_name = self.graph.tensors[self.graph.inputs[0]].name.decode()

    def __call__(self, x: Any) -> list[Any]:
        import tensorflow as tf

        activation = {0: lambda t: t, 1: tf.nn.relu, 3: tf.nn.relu6}
        padding = {0: "SAME", 1: "VALID"}
        values: dict[int, Any] = {int(self.graph.inputs[0]): x}

        def get(index: int) -> Any:
            if index in values:
                return values[index]
            return tf.constant(self.consts[index])

        for name, op in self.ops:
            ins, out, opt = [int(i) for i in op.inputs], int(op.outputs[0]), op.builtinOptions
            if name in ("DEQUANTIZE", "DENSIFY"):
                continue
            if name == "CONV_2D":
                kernel = np.transpose(self.consts[ins[1]], (1, 2, 3, 0))
                y = tf.nn.conv2d(
                    get(ins[0]),
                    kernel,
                    [1, opt.strideH, opt.strideW, 1],
                    padding[opt.padding],
                    dilations=[1, opt.dilationHFactor, opt.dilationWFactor, 1],
                )
                y = activation[opt.fusedActivationFunction](y + self.consts[ins[2]])
            elif name == "DEPTHWISE_CONV_2D":
                w = self.consts[ins[1]][0]
                channels = int(get(ins[0]).shape[-1])
                kernel = w.reshape(w.shape[0], w.shape[1], channels, opt.depthMultiplier)
                y = tf.nn.depthwise_conv2d(
                    get(ins[0]),
                    kernel,
                    [1, opt.strideH, opt.strideW, 1],
                    padding[opt.padding],
                    dilations=[opt.dilationHFactor, opt.dilationWFactor],
                )
                y = activation[opt.fusedActivationFunction](y + self.consts[ins[2]])
            elif name == "ADD":
                y = activation[opt.fusedActivationFunction](get(ins[0]) + get(ins[1]))
            elif name == "RELU":
                y = tf.nn.relu(get(ins[0]))
            elif name == "PAD":
                y = tf.pad(get(ins[0]), self.consts[ins[1]])
            elif name == "MAX_POOL_2D":
                y = tf.nn.max_pool2d(
                    get(ins[0]),
                    [opt.filterHeight, opt.filterWidth],
                    [opt.strideH, opt.strideW],
                    padding[opt.padding],
                )
                y = activation[opt.fusedActivationFunction](y)
            elif name == "RESHAPE":
                shape = self.consts[ins[1]] if len(ins) > 1 else opt.newShape
                y = tf.reshape(get(ins[0]), [int(v) for v in shape])
            elif name == "CONCATENATION":
                y = tf.concat([get(i) for i in ins], axis=opt.axis)
                y = activation[opt.fusedActivationFunction](y)
            elif name == "RESIZE_BILINEAR":
                y = tf.raw_ops.ResizeBilinear(
                    images=get(ins[0]),
                    size=self.consts[ins[1]],
                    align_corners=opt.alignCorners,
                    half_pixel_centers=opt.halfPixelCenters,
                )
            elif name == "DEPTH_TO_SPACE":
                y = tf.nn.depth_to_space(get(ins[0]), opt.blockSize)
            else:
                raise SystemExit(f"unsupported TFLite operator {name} in the BlazeFace graph")
            values[out] = y
        return [values[int(i)] for i in self.graph.outputs]
