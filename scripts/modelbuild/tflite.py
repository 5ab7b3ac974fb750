"""Running and editing .tflite files.

Models are run with ai_edge_litert, the runtime the daemon uses, so what the build measures
is what the device computes.  Files are edited through TensorFlow's flatbuffer_utils (the
object API of the TFLite schema): names, output order and quantisation parameters.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

THREADS = 2  # what the latency figures in models/README.md were measured with


def interpreter(model: Path | bytes, *, threads: int = THREADS, **kwargs: Any) -> Any:
    from ai_edge_litert.interpreter import Interpreter

    if isinstance(model, Path):
        result = Interpreter(model_path=str(model), num_threads=threads, **kwargs)
    else:
        result = Interpreter(model_content=model, num_threads=threads, **kwargs)
    result.allocate_tensors()
    return result


def quantise_input(detail: dict[str, Any], x: np.ndarray) -> np.ndarray:
    """Float input -> the model's int8/uint8 input (unchanged for a float input)."""
    if detail["dtype"] not in (np.int8, np.uint8):
        return x
    scale, zero = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(detail["dtype"])


def run_tflite(model: Any, batch: np.ndarray) -> list[np.ndarray]:
    """Run one image or a batch through an interpreter, (de)quantising like the runtime does.

    Images are fed one at a time so static-batch (int8) and dynamic-batch (float) files are
    treated the same; outputs are stacked back into a batch, in get_output_details() order.
    """
    inp = model.get_input_details()[0]
    outs = model.get_output_details()
    results: list[list[np.ndarray]] = [[] for _ in outs]
    for image in batch:
        x = quantise_input(inp, image[None].astype(np.float32))
        if tuple(model.get_input_details()[0]["shape"]) != x.shape:
            model.resize_tensor_input(inp["index"], list(x.shape))
            model.allocate_tensors()
        model.set_tensor(inp["index"], x)
        model.invoke()
        for slot, detail in zip(results, model.get_output_details(), strict=True):
            y = model.get_tensor(detail["index"]).astype(np.float32)
            if detail["dtype"] in (np.int8, np.uint8):
                scale, zero = detail["quantization"]
                y = (y - zero) * scale
            slot.append(y[0])
    return [np.stack(slot) for slot in results]


def io_details(path: Path) -> dict[str, Any]:
    """Input and outputs (in get_output_details() order) as the manifest records them."""
    model = interpreter(path, threads=1)

    def describe(detail: dict[str, Any]) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "name": detail["name"],
            "shape": [int(v) for v in detail["shape_signature"]],
            "dtype": np.dtype(detail["dtype"]).name,
        }
        scale, zero = detail["quantization"]
        if scale:
            entry["quantization"] = {"scale": float(scale), "zero_point": int(zero)}
        return entry

    return {
        "input": describe(model.get_input_details()[0]),
        "outputs": [describe(d) for d in model.get_output_details()],
    }


def load(model_bytes: bytes) -> Any:
    """The mutable object form of a .tflite file (write it back with `dump`)."""
    from tensorflow.lite.tools import flatbuffer_utils

    return flatbuffer_utils.convert_bytearray_to_object(bytearray(model_bytes))


def dump(model: Any) -> bytes:
    from tensorflow.lite.tools import flatbuffer_utils

    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


@cache
def _builtin_names() -> dict[int, str]:
    from tensorflow.lite.python import schema_py_generated as schema

    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def op_names(model: Any) -> list[str]:
    """The builtin operator name (CONV_2D, ...) of each operator of the main graph."""
    names = _builtin_names()
    result = []
    for op in model.subgraphs[0].operators:
        code = model.operatorCodes[op.opcodeIndex]
        result.append(names[max(code.builtinCode, code.deprecatedBuiltinCode)])
    return result


def set_tensor_names(
    model_bytes: bytes,
    input_name: str,
    output_names: list[str],
    output_last_dims: list[int] | None = None,
) -> bytes:
    """Name (and, if asked, reorder) the graph's input and outputs in the flatbuffer.

    The converter names outputs after the TF function (`StatefulPartitionedCall:0`...) and
    may emit them in another order than the function returned them.  Giving every file the
    upstream names and order keeps float and int8 variants interchangeable, whether the
    runtime picks outputs by position, by name or by shape.  `output_last_dims` identifies
    each wanted output by its last dimension when the order must be restored.
    """
    model = load(model_bytes)
    graph = model.subgraphs[0]
    outputs = [int(i) for i in graph.outputs]
    if output_last_dims is not None:
        by_dim = {int(graph.tensors[i].shape[-1]): i for i in outputs}
        if sorted(by_dim) != sorted(output_last_dims) or len(by_dim) != len(outputs):
            raise SystemExit(f"cannot match outputs {by_dim} to {output_last_dims}")
        outputs = [by_dim[dim] for dim in output_last_dims]
        graph.outputs = np.array(outputs, dtype=np.int32)
    if len(outputs) != len(output_names):
        raise SystemExit(f"expected {len(output_names)} outputs, the model has {len(outputs)}")
    graph.tensors[int(graph.inputs[0])].name = input_name.encode()
    for index, name in zip(outputs, output_names, strict=True):
        graph.tensors[index].name = name.encode()
    return dump(model)


def check_all_int8(model_bytes: bytes) -> None:
    """Fail if any op of an int8 file still computes in float (Edge TPU would split there)."""
    model = interpreter(model_bytes, threads=1)
    dtypes = {d["index"]: d["dtype"] for d in model.get_tensor_details()}
    for op in model._get_ops_details():  # the only op listing litert's Python API offers
        for index in op["inputs"]:
            if index >= 0 and dtypes.get(index) == np.float32:
                raise SystemExit(f"int8 model has a float32 tensor at op {op['op_name']}")
