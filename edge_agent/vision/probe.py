"""The Edge TPU probe: try the Coral runtime in a throwaway process before trusting it.

A libedgetpu built against another TensorFlow than our LiteRT does not raise an exception:
it segfaults or hangs inside the C++ runtime (google-coral/edgetpu#812), which would take
the daemon down before `accelerator = "auto"` could fall back, and systemd would restart it
into the same crash forever. So a child process (`python -m edge_agent.vision.probe`) loads
the delegate and runs one inference on each `_edgetpu` model the config uses, and compares
it with the CPU running the int8 model it was compiled from. The parent only reads the
child's verdict, its exit signal or its silence past a timeout, and stays alive whatever the
runtime does.

The child writes one JSON object a line on stdout: `{"stage": ...}` before each step (so a
hang can be said to happen "while loading the delegate" or "while running X"), then one
`{"result": ...}`. Results are cached per process: `check` and the pipeline it builds probe
once.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# How close the Edge TPU must come to the CPU on the same input, in quantisation steps of
# each output. Both run the same int8 graph, but the Edge TPU rounds its requantisations in
# hardware, a step either way per layer, so a few steps of drift by the last layer are
# normal. A runtime that does not match our LiteRT returns garbage, zeros or another
# tensor's data: most values off by tens of steps. 95 % of the values within 4 steps and
# none past a quarter of the int8 range (64 steps) tells the two apart with a wide margin on
# both sides (a healthy run sits at 0-2, a broken one at 30 and more).
TYPICAL_STEPS = 4.0
TYPICAL_SHARE = 95.0
WORST_STEPS = 64.0
KILL_WAIT_S = 5.0  # after SIGKILL; a child stuck in the USB driver may take a moment


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """The child's verdict: "ok", "missing" (no runtime installed), or "failed" and why."""

    result: str
    detail: str = ""
    models: int = 0  # Edge TPU builds that ran and agreed with the CPU


_CACHE: dict[tuple[Any, ...], ProbeResult] = {}


def probe(
    library: str, device: str, models: list[tuple[Path, Path | None]], timeout_s: float
) -> ProbeResult:
    """Run the probe for (Edge TPU file, the int8 file it was compiled from or None)."""
    key = (
        library,
        device,
        timeout_s,
        tuple((str(path), _stamp(path), str(ref), _stamp(ref)) for path, ref in models),
    )
    if key not in _CACHE:
        _CACHE[key] = _run_child(library, device, models, timeout_s)
    return _CACHE[key]


def _stamp(path: Path | None) -> tuple[int, int] | None:
    if path is None:
        return None
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def _run_child(
    library: str, device: str, models: list[tuple[Path, Path | None]], timeout_s: float
) -> ProbeResult:
    spec = {
        "library": library,
        "device": device,
        "models": [[str(path), str(ref) if ref else None] for path, ref in models],
    }
    package_parent = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    try:
        child = subprocess.Popen(
            [sys.executable, "-m", "edge_agent.vision.probe"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
    except OSError as error:
        return ProbeResult("failed", f"cannot start the Edge TPU probe ({error})")
    try:
        out, err = child.communicate(json.dumps(spec), timeout=timeout_s)
    except subprocess.TimeoutExpired:
        child.kill()
        try:
            out, err = child.communicate(timeout=KILL_WAIT_S)
        except subprocess.TimeoutExpired:  # stuck in the kernel: leave it, say so
            out, err = "", ""
        stage = _last(out, "stage") or "starting"
        return ProbeResult(
            "failed",
            f"the Edge TPU runtime {library} hung while {stage} in a test process "
            f"(no answer within {timeout_s:g} s)",
        )
    stage = _last(out, "stage") or "starting"
    if child.returncode < 0:
        name = _signal_name(-child.returncode)
        return ProbeResult(
            "failed",
            f"the Edge TPU runtime {library} crashed ({name}) while {stage} in a test "
            f"process (most likely it was built for another TensorFlow Lite than "
            f"ai-edge-litert {_litert_version()}: see the README's Coral section)",
        )
    verdict = _last(out, "result")
    if child.returncode != 0 or verdict is None:
        tail = err.strip().splitlines()[-1:] or [f"exit status {child.returncode}"]
        return ProbeResult(
            "failed", f"the Edge TPU probe failed while {stage}: {tail[0].strip()[:200]}"
        )
    return ProbeResult(verdict["result"], verdict.get("detail", ""), verdict.get("models", 0))


def _litert_version() -> str:
    try:
        return importlib.metadata.version("ai-edge-litert")
    except importlib.metadata.PackageNotFoundError:
        return "(version unknown)"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _last(out: str, key: str) -> Any:
    """The value of `key` in the child's last line that has it."""
    found = None
    for line in out.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # the runtime's own chatter on stdout
        if isinstance(record, dict) and key in record:
            found = record if key == "result" else record[key]
    return found


# --- the child ----------------------------------------------------------------------------


def _say(**record: Any) -> None:
    print(json.dumps(record), flush=True)


def _input_for(detail: dict[str, Any]) -> np.ndarray:
    """A fixed pseudo-random input over the tensor's whole range: every weight matters, so a
    runtime that computes the wrong thing cannot agree by chance (zeros could)."""
    rng = np.random.default_rng(0)
    shape, dtype = tuple(int(v) for v in detail["shape"]), detail["dtype"]
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, int(info.max) + 1, size=shape, dtype=dtype)
    return rng.uniform(-1.0, 1.0, size=shape).astype(dtype)


def _as_real(raw: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    scale, zero = detail["quantization"]
    if raw.dtype == np.float32 or not scale:
        return raw.astype(np.float64)
    return (raw.astype(np.float64) - zero) * scale


def _invoke(interpreter: Any, real_input: np.ndarray | None) -> tuple[np.ndarray, list[Any]]:
    """Run once; the input given in real units (quantised to this model's own scale), or the
    fixed pseudo-random one. Returns that input in real units and the outputs."""
    interpreter.allocate_tensors()
    (detail,) = interpreter.get_input_details()
    if real_input is None:
        raw = _input_for(detail)
    elif np.issubdtype(detail["dtype"], np.integer):
        scale, zero = detail["quantization"]
        info = np.iinfo(detail["dtype"])
        raw = np.clip(np.rint(real_input / scale + zero), info.min, info.max)
        raw = raw.astype(detail["dtype"])
    else:
        raw = real_input.astype(detail["dtype"])
    if tuple(raw.shape) != tuple(detail["shape"]):
        interpreter.resize_tensor_input(detail["index"], list(raw.shape))
        interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], raw)
    interpreter.invoke()
    outputs = [(interpreter.get_tensor(d["index"]), d) for d in interpreter.get_output_details()]
    return _as_real(raw, detail), outputs


def disagreement(tpu: list[Any], cpu: list[Any]) -> str | None:
    """Why the Edge TPU's outputs cannot be the CPU's (None if they agree); each output is
    (raw tensor, its details) as the interpreter gives them."""
    if len(tpu) != len(cpu):
        return f"{len(tpu)} outputs, the CPU model has {len(cpu)}"
    for (tpu_raw, tpu_detail), (cpu_raw, cpu_detail) in zip(tpu, cpu, strict=True):
        if tpu_raw.shape != cpu_raw.shape:
            return f"output shape {tpu_raw.shape}, the CPU model's is {cpu_raw.shape}"
        got, want = _as_real(tpu_raw, tpu_detail), _as_real(cpu_raw, cpu_detail)
        if not np.all(np.isfinite(got)):
            return "outputs that are not finite numbers"
        scale = cpu_detail["quantization"][0]
        if not scale:
            # A float output comes from an op the Edge TPU cannot run (an SSD's detection
            # post-process): computed on the CPU both times, and ranked, so one box nudged
            # reorders the rest. Finite is all it must be.
            continue
        steps = np.abs(got - want) / scale
        typical, worst = float(np.percentile(steps, TYPICAL_SHARE)), float(steps.max())
        if typical > TYPICAL_STEPS or worst > WORST_STEPS:
            return (
                f"outputs unlike the CPU's: {TYPICAL_SHARE:g} % within {typical:.0f} "
                f"quantisation steps (at most {TYPICAL_STEPS:g} allowed), worst {worst:.0f} "
                f"(at most {WORST_STEPS:g})"
            )
    return None


def _output_problem(outputs: list[Any]) -> str | None:
    """What a model without a CPU twin can still be checked for."""
    for raw, detail in outputs:
        if not np.all(np.isfinite(_as_real(raw, detail))):
            return "outputs that are not finite numbers"
    return None


def _child() -> int:
    from edge_agent.errors import ModelError
    from edge_agent.vision.runtime import CoralLibraryMissing, Interpreter, open_edgetpu

    spec = json.loads(sys.stdin.read())
    _say(stage="loading the delegate")
    try:
        delegate = open_edgetpu(spec["device"] or None, spec["library"])
    except CoralLibraryMissing as error:
        _say(result="missing", detail=str(error))
        return 0
    except ModelError as error:
        _say(result="failed", detail=str(error))
        return 0
    for path, reference in spec["models"]:
        name = Path(path).name
        _say(stage=f"running {name}")
        try:
            on_tpu = Interpreter(model_path=path, experimental_delegates=[delegate])
            real_input, outputs = _invoke(on_tpu, None)
        except (ValueError, RuntimeError) as error:
            detail = str(error).strip().splitlines()[-1:] or ["no reason given"]
            _say(result="failed", detail=f"the Edge TPU cannot run {name}: {detail[0]}")
            return 0
        problem = _output_problem(outputs)
        if problem is None and reference is not None:
            _say(stage=f"running {Path(reference).name} on the CPU")
            _, expected = _invoke(Interpreter(model_path=reference), real_input)
            problem = disagreement(outputs, expected)
        if problem is not None:
            _say(result="failed", detail=f"the Edge TPU gave wrong results for {name}: {problem}")
            return 0
    _say(result="ok", models=len(spec["models"]))
    return 0


if __name__ == "__main__":
    sys.exit(_child())
