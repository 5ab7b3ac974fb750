"""The one TFLite runtime every model runs on, and the choice of CPU or Coral Edge TPU.

Quantised models are hidden behind float in, float out: callers hand over normalised
floats and get dequantised floats back, so a stage never needs to know which variant or
accelerator it got.

The Edge TPU is trusted only after a test process has loaded its runtime and run the
`_edgetpu` models (`probe.py`): a runtime that crashes, hangs or computes garbage costs the
Coral, never the daemon.
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
from ai_edge_litert.interpreter import Interpreter, load_delegate

from edge_agent.errors import ModelError
from edge_agent.vision import probe
from edge_agent.vision.manifest import EDGETPU_SUFFIX, ModelFile

log = logging.getLogger(__name__)

Accelerator = Literal["auto", "cpu", "edgetpu"]
EDGETPU_LIBRARY = "libedgetpu.so.1"
# A runtime somewhere the loader does not look (built by hand; the tests' fake delegates).
LIBRARY_ENV = "EDGE_AGENT_EDGETPU_LIBRARY"
PROBE_TIMEOUT_S = 30.0


def edgetpu_library() -> str:
    """The delegate library to load: $EDGE_AGENT_EDGETPU_LIBRARY, else libedgetpu.so.1."""
    return os.environ.get(LIBRARY_ENV) or EDGETPU_LIBRARY


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


@cache
def _loader_cache() -> frozenset[str] | None:
    """The library names the dynamic loader's cache knows (`ldconfig -p`); None if unknown."""
    ldconfig = shutil.which("ldconfig") or next(
        (p for p in ("/sbin/ldconfig", "/usr/sbin/ldconfig") if os.access(p, os.X_OK)), None
    )
    if ldconfig is None:
        return None
    try:
        listing = subprocess.run(
            [ldconfig, "-p"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return frozenset(line.split()[0] for line in listing.splitlines()[1:] if line.strip())


def library_installed(library: str) -> bool:
    """Whether the loader would find `library`, asked without loading it: the usual machine
    has no Coral runtime, and a test process to find that out would cost a second."""
    if "/" in library:
        return Path(library).is_file()
    folders = [f for f in os.environ.get("LD_LIBRARY_PATH", "").split(":") if f]
    if any((Path(folder) / library).exists() for folder in folders):
        return True
    known = _loader_cache()
    return known is None or library in known


def _not_installed(library: str) -> CoralLibraryMissing:
    return CoralLibraryMissing(f"no Coral Edge TPU found ({library} not installed)")


def open_edgetpu(device: str | None = None, library: str | None = None) -> Any:
    """Load the Edge TPU delegate or raise ModelError saying why it is not there.

    This runs the runtime's own code in this process: outside the probe's child, only after
    the probe said it is safe.
    """
    library = library or edgetpu_library()
    options = {"device": device} if device else None
    error: Exception | None = None
    with _quiet_failed_delegate():
        try:
            return load_delegate(library, options)
        except AttributeError as failure:  # ctypes: the library lacks the delegate's symbols
            failure.__traceback__ = None
            raise ModelError(
                f"no Coral Edge TPU available ({library} is not a TFLite delegate: it lacks "
                "tflite_plugin_create_delegate)"
            ) from None
        except (OSError, ValueError, RuntimeError) as failure:
            error = failure
            failure.__traceback__ = None
    detail = str(error).removeprefix(f"{library}: ")  # the loader names it already
    detail = detail.removeprefix(f"Failed to load delegate from {library}\n").strip()
    if "cannot open shared object file" in detail:
        raise _not_installed(library)
    raise ModelError(f"no Coral Edge TPU available ({library}: {detail or 'no reason given'})")


def probe_pairs(models: Iterable[ModelFile | None]) -> list[tuple[Path, Path | None]]:
    """(Edge TPU build, the int8 file it was compiled from) of each model that has a build.

    A file given already compiled (an SSD `..._edgetpu.tflite`) has no CPU twin to compare
    with: the probe checks only that it runs and gives finite numbers.
    """
    pairs: list[tuple[Path, Path | None]] = []
    for model in models:
        if model is None:
            continue
        build = model.edgetpu_path()
        if not build.is_file():
            continue
        if model.compiled_for_edgetpu:
            pairs.append((build, None))
            continue
        source = build.with_name(build.name.removesuffix(EDGETPU_SUFFIX) + ".tflite")
        pairs.append((build, source if source.is_file() else None))
    return pairs


@dataclass(slots=True)
class AcceleratorChoice:
    """What `accelerator = ...` resolved to, shared by every model of one pipeline.

    `reason` says why the CPU runs although an Edge TPU runtime is installed (empty when
    there is none: nothing to explain); `probed` counts the Edge TPU builds that passed.
    """

    requested: Accelerator
    in_use: Literal["cpu", "edgetpu"]
    delegate: Any = None
    reason: str = ""
    probed: int = 0

    @classmethod
    def resolve(
        cls,
        requested: Accelerator,
        device: str = "",
        models: Iterable[ModelFile | None] = (),
        timeout_s: float = PROBE_TIMEOUT_S,
    ) -> AcceleratorChoice:
        if requested == "cpu":
            return cls(requested, "cpu")
        library = edgetpu_library()
        try:
            if not library_installed(library):
                raise _not_installed(library)
            verdict = probe.probe(library, device, probe_pairs(models), timeout_s)
            if verdict.result == "missing":
                raise CoralLibraryMissing(verdict.detail)
            if verdict.result != "ok":
                raise ModelError(verdict.detail)
            delegate = open_edgetpu(device or None, library)
        except ModelError as error:
            if requested == "edgetpu":
                raise
            # No runtime installed is the normal case for a machine without a Coral; a
            # runtime that finds no device, crashes or computes garbage is worth a warning.
            missing = isinstance(error, CoralLibraryMissing)
            log.log(logging.DEBUG if missing else logging.WARNING, "%s; using the CPU", error)
            return cls(requested, "cpu", reason="" if missing else str(error))
        log.info("Coral Edge TPU found; models with an _edgetpu build run on it")
        return cls(requested, "edgetpu", delegate, probed=verdict.models)


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
        # The build that runs, which is not always the one the config asked for: an Edge
        # TPU file is int8 even under `variant = "float"`.
        self.variant = "int8" if self.quantized else "float"
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
