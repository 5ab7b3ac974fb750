"""The one TFLite runtime every model runs on, and the choice of CPU or Coral Edge TPU.

Quantised models are hidden behind float in, float out: callers hand over normalised
floats and get dequantised floats back, so a stage never needs to know which variant or
accelerator it got.
"""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edge_agent.errors import ModelError
from edge_agent.vision.manifest import EDGETPU_SUFFIX, ModelFile

try:  # ai-edge-litert works with numpy 2; tflite-runtime 2.14 is the older fallback.
    from ai_edge_litert.interpreter import Interpreter, load_delegate
except ImportError:  # pragma: no cover - depends on what the Pi has installed
    from tflite_runtime.interpreter import Interpreter, load_delegate

log = logging.getLogger(__name__)

Accelerator = Literal["auto", "cpu", "edgetpu"]
EDGETPU_LIBRARY = "libedgetpu.so.1"


@contextmanager
def _quiet_failed_delegate() -> Iterator[None]:
    """A failed load_delegate leaves a half-built Delegate whose __del__ prints a traceback.

    That noise looks like a crash in the journal although nothing is wrong, so it is
    swallowed while the failed object is collected.
    """
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        if not isinstance(unraisable.exc_value, AttributeError):
            previous(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        gc.collect()
        sys.unraisablehook = previous


class CoralLibraryMissing(ModelError):
    """The Edge TPU runtime is not installed at all: the usual machine, not a fault."""


def open_edgetpu(device: str | None = None) -> Any:
    """Load the Edge TPU delegate or raise ModelError saying why it is not there."""
    options = {"device": device} if device else None
    error: Exception | None = None
    with _quiet_failed_delegate():
        try:
            return load_delegate(EDGETPU_LIBRARY, options)
        except (OSError, ValueError, RuntimeError) as failure:
            error = failure
            failure.__traceback__ = None
    detail = str(error).removeprefix(f"{EDGETPU_LIBRARY}: ")  # the loader names it already
    if "cannot open shared object file" in detail:
        raise CoralLibraryMissing(f"no Coral Edge TPU found ({EDGETPU_LIBRARY} not installed)")
    raise ModelError(f"no Coral Edge TPU available ({EDGETPU_LIBRARY}: {detail})")


@dataclass(slots=True)
class AcceleratorChoice:
    """What `accelerator = ...` resolved to, shared by every model of one pipeline."""

    requested: Accelerator
    in_use: Literal["cpu", "edgetpu"]
    delegate: Any = None

    @classmethod
    def resolve(cls, requested: Accelerator, device: str | None = None) -> AcceleratorChoice:
        if requested == "cpu":
            return cls(requested, "cpu")
        try:
            delegate = open_edgetpu(device)
        except ModelError as error:
            if requested == "edgetpu":
                raise
            # No runtime installed is the normal case for a machine without a Coral; a
            # runtime that finds no device (unplugged, no permission) is worth a warning.
            level = logging.DEBUG if isinstance(error, CoralLibraryMissing) else logging.WARNING
            log.log(level, "%s; using the CPU", error)
            return cls(requested, "cpu")
        log.info("Coral Edge TPU found; models with an _edgetpu build run on it")
        return cls(requested, "edgetpu", delegate)


def file_for(model: ModelFile, accelerator: AcceleratorChoice) -> Path:
    """The Edge TPU build when a Coral is in use and one was compiled, else the model itself.

    Models without an `_edgetpu` build still run, on the CPU, beside those that have one.
    """
    if model.compiled_for_edgetpu:
        return model.path
    edgetpu_file = model.edgetpu_path()
    if accelerator.in_use == "edgetpu" and edgetpu_file.is_file():
        return edgetpu_file
    return model.path


class TfliteModel:
    """One interpreter, its input quantisation, and a reusable input buffer.

    Dynamic-batch models are resized (and their tensors reallocated) only when the number
    of faces changes, not on every frame.
    """

    def __init__(
        self, model: ModelFile, accelerator: AcceleratorChoice, *, num_threads: int = 2
    ) -> None:
        self.model = model
        self.path: Path = file_for(model, accelerator)
        path = self.path
        self.runs_on: str = "edgetpu" if path.name.endswith(EDGETPU_SUFFIX) else "cpu"
        if self.runs_on == "edgetpu" and accelerator.delegate is None:
            raise ModelError(
                f"{path.name} is compiled for the Edge TPU and needs a Coral "
                f"(accelerator = {accelerator.requested!r}, none in use)"
            )
        delegates = [accelerator.delegate] if self.runs_on == "edgetpu" else []
        try:
            self._interpreter = Interpreter(
                model_path=str(path),
                experimental_delegates=delegates or None,
                num_threads=num_threads,
            )
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as error:
            raise ModelError(f"cannot load model {path}: {error}") from None
        (self._input,) = self._interpreter.get_input_details()
        self._outputs = self._interpreter.get_output_details()
        self.input_shape: tuple[int, ...] = tuple(int(v) for v in self._input["shape"])
        self.dynamic_batch = int(self._input["shape_signature"][0]) == -1
        self.quantized = self._input["dtype"] != np.float32
        self._in_scale, self._in_zero = self._input["quantization"]
        self._batch = self.input_shape[0]

    @property
    def input_dtype(self) -> type:
        return self._input["dtype"]

    @property
    def output_shapes(self) -> list[tuple[int, ...]]:
        return [tuple(int(v) for v in detail["shape"]) for detail in self._outputs]

    @property
    def max_batch(self) -> int | None:
        return None if self.dynamic_batch else self.input_shape[0]

    def _ensure_batch(self, batch: int) -> None:
        if batch == self._batch:
            return
        if not self.dynamic_batch:
            raise ValueError(f"{self.path.name} takes batch {self._batch}, got {batch}")
        self._interpreter.resize_tensor_input(self._input["index"], [batch, *self.input_shape[1:]])
        self._interpreter.allocate_tensors()
        self._outputs = self._interpreter.get_output_details()
        self._batch = batch

    def run(self, inputs: np.ndarray, *, views: bool = False) -> list[np.ndarray]:
        """Run on a float batch; outputs come back dequantised, in the model's order.

        An input already in the model's integer type (raw pixel bytes for an SSD) is
        passed through as it is. With `views`, float outputs are views of the interpreter's
        own buffers instead of copies: the caller must drop them before the next run (the
        interpreter refuses to run while they are held).
        """
        self._ensure_batch(inputs.shape[0])
        if self.quantized and inputs.dtype != self._input["dtype"]:
            info = np.iinfo(self._input["dtype"])
            inputs = np.clip(
                np.rint(inputs / self._in_scale + self._in_zero), info.min, info.max
            ).astype(self._input["dtype"])
        self._interpreter.set_tensor(self._input["index"], inputs)
        self._interpreter.invoke()
        results = []
        for detail in self._outputs:
            if views:
                value = self._interpreter.tensor(detail["index"])()
            else:
                value = self._interpreter.get_tensor(detail["index"])
            if value.dtype != np.float32:
                scale, zero = detail["quantization"]
                value = (value.astype(np.float32) - zero) * scale
            results.append(value)
        return results
