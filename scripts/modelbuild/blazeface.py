"""BlazeFace int8: the upstream float file replayed in TF, calibrated, then its ranges fixed.

Plain min/max calibration leaves BlazeFace's int8 steps far too coarse: the float model
gives values in the thousands on anchors far from any face and on a few background
activations.  So after TensorFlow's calibration two kinds of range are set by hand (see
models/README.md): fixed output ranges for the regressor and logit heads, and the 99.9th
percentile of the calibration values for every internal activation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import log
from .convert import convert
from .faces import BlazeSpec
from .replay import TfliteGraphAsTf
from .tflite import dump, interpreter, load, op_names, run_tflite, set_tensor_names

# The int8 BlazeFace outputs cover these fixed ranges.  Min/max calibration would size them
# from the float model's values on anchors far from any face, which reach thousands (and
# leave ~40 px per int8 step).  On real faces the regressors stay within about [-50, 90] px
# of a 128 px input (box size can reach the input size for a face filling the frame) and
# score logits within [-10, 5]; sigmoid(-10) = 0.00005, so saturating there changes no
# decision.  Values outside the range saturate (a clamp), like any int8 output.
BLAZE_REGRESSOR_RANGE = (-96.0, 160.0)  # pixels of the 128 px input; scaled for 192 px
BLAZE_LOGIT_RANGE = (-10.0, 10.0)
BLAZE_PERCENTILE = 99.9


def output_ranges(spec: BlazeSpec) -> dict[int, tuple[float, float]]:
    """The fixed int8 output ranges, keyed by the output's last dimension (16 or 1)."""
    factor = spec.size / 128.0
    return {
        16: (BLAZE_REGRESSOR_RANGE[0] * factor, BLAZE_REGRESSOR_RANGE[1] * factor),
        1: BLAZE_LOGIT_RANGE,
    }


def set_head_ranges(model_bytes: bytes, ranges: dict[int, tuple[float, float]]) -> bytes:
    """Give each int8 output, and the head tensors feeding it, a fixed real-valued range.

    Outputs are picked by last dimension.  Walking back from an output through
    CONCATENATION, RESHAPE and DEPTH_TO_SPACE reaches the (depthwise) convolution heads;
    every tensor on the way gets the same scale and zero point.  This is sound for int8
    TFLite: convolutions derive their requantisation multiplier from the output tensor's
    scale when the model is prepared, so a new output scale is an exact clamp to the new
    range, and the other three with equal input and output parameters are plain copies.
    """
    model = load(model_bytes)
    graph = model.subgraphs[0]
    producer = {
        int(op.outputs[0]): (name, op)
        for name, op in zip(op_names(model), graph.operators, strict=True)
    }
    for output in graph.outputs:
        low, high = ranges[int(graph.tensors[output].shape[-1])]
        scale = (high - low) / 255.0
        zero = round(-128 - low / scale)
        stack = [int(output)]
        while stack:
            index = stack.pop()
            quant = graph.tensors[index].quantization
            quant.scale = np.array([scale], dtype=np.float32)
            quant.zeroPoint = np.array([zero], dtype=np.int64)
            quant.min = quant.max = None
            name, op = producer[index]
            if name in ("CONCATENATION", "RESHAPE", "DEPTH_TO_SPACE"):
                stack.append(int(op.inputs[0]))
                if name == "CONCATENATION":
                    stack.extend(int(i) for i in op.inputs[1:])
            elif name not in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                raise SystemExit(f"unexpected {name} between a BlazeFace head and its output")
    return dump(model)


def tighten_ranges(
    int8_bytes: bytes, float_bytes: bytes, calib: np.ndarray, percentile: float
) -> bytes:
    """Re-size activation ranges to a percentile of the calibration values, not min..max.

    TensorFlow's calibrator takes each tensor's min and max.  In BlazeFace's 8x8 branch a few
    activations on backgrounds reach +-1700 while nearly all stay within +-100, so min..max
    leaves ~10 per int8 step and the face scores drown in rounding noise.  Here each
    convolution/ADD output whose percentile range is narrower gets that range (values
    beyond it saturate), the int32 biases of the convolutions reading it are rescaled to
    match (bias scale = input scale x weight scale), and the outputs of data-moving ops (PAD,
    MAX_POOL_2D, RESHAPE, DEPTH_TO_SPACE, RESIZE_BILINEAR) inherit their input's parameters,
    as those int8 kernels expect.  The float twin converted from the same graph names its
    tensors identically, which is how values are matched.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    runner = Interpreter(
        model_content=float_bytes,
        experimental_preserve_all_tensors=True,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    runner.allocate_tensors()
    by_name = {d["name"]: d["index"] for d in runner.get_tensor_details()}
    model = load(int8_bytes)
    graph = model.subgraphs[0]
    names = op_names(model)
    wanted = {
        int(op.outputs[0])
        for name, op in zip(names, graph.operators, strict=True)
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D", "ADD")
    }
    wanted = {i for i in wanted if graph.tensors[i].name.decode() in by_name}
    values: dict[int, list[np.ndarray]] = {i: [] for i in wanted}
    for sample in calib:
        runner.set_tensor(runner.get_input_details()[0]["index"], sample[None])
        runner.invoke()
        for index in wanted:
            values[index].append(
                runner.get_tensor(by_name[graph.tensors[index].name.decode()]).ravel()
            )
    old_scale = {
        i: float(t.quantization.scale[0])
        for i, t in enumerate(graph.tensors)
        if t.quantization is not None
        and t.quantization.scale is not None
        and len(t.quantization.scale) == 1
    }
    changed = 0
    for index in sorted(wanted):
        flat = np.concatenate(values[index])
        low = min(0.0, float(np.percentile(flat, 100 - percentile)))
        high = max(0.0, float(np.percentile(flat, percentile)))
        scale = (high - low) / 255.0
        quant = graph.tensors[index].quantization
        if scale >= quant.scale[0] or scale <= 0:
            continue
        quant.scale = np.array([scale], dtype=np.float32)
        quant.zeroPoint = np.array([round(-128 - low / scale)], dtype=np.int64)
        changed += 1
    for name, op in zip(names, graph.operators, strict=True):
        ins = [int(i) for i in op.inputs]
        if name in ("PAD", "MAX_POOL_2D", "RESHAPE", "DEPTH_TO_SPACE", "RESIZE_BILINEAR"):
            source, target = (
                graph.tensors[ins[0]].quantization,
                graph.tensors[int(op.outputs[0])].quantization,
            )
            target.scale, target.zeroPoint = source.scale.copy(), source.zeroPoint.copy()
        elif name in ("CONV_2D", "DEPTHWISE_CONV_2D") and len(ins) > 2 and ins[2] >= 0:
            ratio = old_scale[ins[0]] / float(graph.tensors[ins[0]].quantization.scale[0])
            if ratio == 1.0:
                continue
            bias = graph.tensors[ins[2]]
            data = np.frombuffer(bytes(model.buffers[bias.buffer].data), dtype=np.int32)
            data = np.clip(np.round(data.astype(np.float64) * ratio), -(2**31), 2**31 - 1)
            model.buffers[bias.buffer].data = np.frombuffer(
                data.astype(np.int32).tobytes(), dtype=np.uint8
            )
            bias.quantization.scale = (bias.quantization.scale / ratio).astype(np.float32)
    log(
        f"int8 ranges: {changed} of {len(wanted)} activations tightened to the "
        f"{percentile} percentile"
    )
    return dump(model)


def blazeface_int8(path: Path, spec: BlazeSpec, calib: np.ndarray) -> bytes:
    """Full-int8 BlazeFace rebuilt from the upstream float file (same outputs, same order)."""
    import tensorflow as tf

    graph = TfliteGraphAsTf(path)
    module = tf.Module()
    module.fn = tf.function(
        lambda x: graph(x), input_signature=[tf.TensorSpec(graph.input_shape, tf.float32)]
    )
    # The replayed graph must be the upstream graph: compare on real frames before using it.
    upstream = interpreter(path, threads=1)
    worst = 0.0
    for sample in calib[:: max(1, len(calib) // 24)]:
        theirs = run_tflite(upstream, sample[None])
        ours = module.fn(tf.constant(sample[None]))
        for a, b in zip(ours, theirs, strict=True):
            # Relative to 1 + |value|: the raw outputs reach thousands on empty anchors.
            worst = max(worst, float(np.max(np.abs(a.numpy() - b) / (1 + np.abs(b)))))
    log(f"{path.name}: TF replay vs upstream max |diff|/(1+|x|) = {worst:.1e}")
    if worst > 1e-3:
        raise SystemExit(f"TF replay of {path.name} does not match the upstream file")
    concrete = module.fn.get_concrete_function()
    data = convert(concrete, module, calib)
    data = tighten_ranges(data, convert(concrete, module, None), calib, BLAZE_PERCENTILE)
    data = set_tensor_names(
        data, input_name=graph.input_name, output_names=graph.output_names, output_last_dims=[16, 1]
    )
    return set_head_ranges(data, output_ranges(spec))
