"""`edge-agent check`: is this device ready to run? One row per part, exit 1 if any fails.

It tests, in order: the config file, every model file the config needs against its
checksum, the runtime (the models load and run a frame), the accelerator, the camera (one
real frame), the broker (connect and authenticate, publishing nothing), the display (open
the panel) and the state folder. A part that cannot be tested because an earlier one
failed is shown as skipped.

The camera and the panel can be held by one process only: stop the service before
checking them (`systemctl stop edge-agent`).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.config import BLAZEFACE_MODELS, Config, load_or_default, resolve_path
from edge_agent.errors import ConfigError, EdgeAgentError

OK, WARN, FAIL, SKIP = "ok", "warn", "FAIL", "skip"
CAMERA_TIMEOUT_S = 15.0
BROKER_TIMEOUT_S = 5.0


@dataclass(slots=True)
class Row:
    check: str
    result: str
    detail: str


def check_models(config: Config) -> Row:
    from edge_agent.vision.manifest import models_dir, resolve
    from edge_agent.vision.pipeline import models_needed

    folder = models_dir(config.models.dir)
    found, edgetpu = [], 0
    for name in models_needed(config):
        model = resolve(name, config.models.variant, folder)  # raises ModelError
        found.append(name)
        edgetpu += model.edgetpu_path().is_file()
    if config.detector.model not in BLAZEFACE_MODELS:
        path = Path(config.detector.model)
        if not path.is_file():
            return Row("models", FAIL, f"detector.model = {config.detector.model!r}: no such file")
        found.append(path.name)
    detail = f"{len(found)} {config.models.variant} file(s) match their checksums in {folder}"
    if edgetpu:
        detail += f"; {edgetpu} with an Edge TPU build"
    return Row("models", OK, detail)


def check_accelerator(config: Config) -> Row:
    from edge_agent.vision.runtime import AcceleratorChoice

    choice = AcceleratorChoice.resolve(config.accelerator)  # raises ModelError for "edgetpu"
    if choice.in_use == "edgetpu":
        return Row("accelerator", OK, "Coral Edge TPU")
    if config.accelerator == "auto":
        return Row("accelerator", OK, "CPU (no Coral Edge TPU found)")
    return Row("accelerator", OK, 'CPU (accelerator = "cpu")')


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def check_runtime(config: Config, pipelines: list[Any]) -> Row:
    from edge_agent.vision.pipeline import Pipeline

    started = time.perf_counter()
    pipeline = Pipeline(config)
    loaded = time.perf_counter() - started
    pipelines.append(pipeline)
    from edge_agent.types import Frame

    image = np.zeros((config.camera.height, config.camera.width, 3), np.uint8)
    started = time.perf_counter()
    pipeline.process(Frame(0, 0.0, image))
    ran = (time.perf_counter() - started) * 1e3
    runtime = "ai-edge-litert " + _version("ai-edge-litert")
    if runtime.endswith("?"):
        runtime = "tflite-runtime " + _version("tflite-runtime")
    return Row(
        "runtime",
        OK,
        f"Python {sys.version.split()[0]}, {runtime}, OpenCV "
        f"{_version('opencv-python-headless')}; models load in {loaded:.1f} s, an "
        f"empty frame takes {ran:.0f} ms on {pipeline.accelerator.in_use}",
    )


def check_camera(config: Config) -> Row:
    from edge_agent.capture.camera import Capture

    capture = Capture(config.camera)
    described = capture.spec.describe()
    if capture.spec.kind == "v4l2" and not os.path.exists(capture.spec.target):
        return Row("camera", FAIL, f"{described}: no such device (is the camera plugged in?)")
    started = time.monotonic()
    capture.start()
    try:
        frame = capture.take(timeout=CAMERA_TIMEOUT_S)
        while frame is None and not capture.ended and time.monotonic() - started < CAMERA_TIMEOUT_S:
            frame = capture.take(timeout=0.5)
    finally:
        capture.stop(timeout=1.0)
    if frame is None:
        why = capture.error or f"no frame within {CAMERA_TIMEOUT_S:.0f} s"
        if not capture.spec.live or capture.spec.kind == "stream":
            hint = ""
        else:
            hint = " (is the service running? stop it first: one process at a time)"
        return Row("camera", FAIL, f"{described}: {why}{hint}")
    height, width = frame.image.shape[:2]
    return Row(
        "camera", OK, f"{described}: a {width}x{height} frame in {time.monotonic() - started:.1f} s"
    )


def check_broker(config: Config) -> Row:
    if not config.mqtt.enabled:
        return Row("broker", SKIP, "mqtt.enabled = false")
    from edge_agent.publish.mqtt import MqttPublisher

    try:  # its files were checked with the config; one that changed since still gets a row
        ok, message = MqttPublisher(config).check(timeout_s=BROKER_TIMEOUT_S)
    except EdgeAgentError as error:
        return Row("broker", FAIL, str(error))
    return Row("broker", OK if ok else FAIL, message)


def check_display(config: Config) -> Row:
    if config.display.kind == "none":
        return Row("display", SKIP, 'display.kind = "none"')
    from edge_agent.display import open_display

    display = open_display(config.display)
    if display is None:
        return Row("display", SKIP, "no panel")
    try:
        width, height = display.size
    finally:
        display.stop()
    return Row("display", OK, f"{config.display.kind} {width}x{height} opened")


def check_state(config: Config) -> Row:
    path = Path(config.state.dir)
    if not path.exists():
        return Row(
            "state",
            WARN,
            f"{path} does not exist yet (systemd's StateDirectory creates it for the service)",
        )
    disk = os.statvfs(path)
    if disk.f_flag & os.ST_RDONLY:  # (root may write anywhere else; not here)
        return Row(
            "state", FAIL, f"{path}: read-only file system: the agent cannot start or store events"
        )
    if not os.access(path, os.W_OK | os.X_OK):
        return Row(
            "state", WARN, f"{path} is not writable by this user (the service's user owns it)"
        )
    if disk.f_bavail * disk.f_frsize < MIN_FREE_BYTES:
        free = disk.f_bavail * disk.f_frsize // 1024
        return Row("state", FAIL, f"{path}: disk full ({free} KB free): new events are not stored")
    from edge_agent.publish.mqtt import OUTBOX_FILE

    problem = _outbox_problem(path / OUTBOX_FILE)
    if problem:
        return Row("state", WARN, f"{path / OUTBOX_FILE}: {problem}")
    return Row("state", OK, f"{path} is writable")


MIN_FREE_BYTES = 1_000_000


def _outbox_problem(file: Path) -> str | None:
    """Why the outbox file is unusable, in plain words; None if it is fine or absent."""
    import sqlite3

    from edge_agent.publish.outbox import storage_problem

    if not file.exists():
        return None
    try:
        db = sqlite3.connect(f"{file.as_uri()}?mode=ro", uri=True, timeout=2.0)
        try:
            (result,) = db.execute("PRAGMA quick_check").fetchone()
        finally:
            db.close()
    except sqlite3.Error as error:
        problem = storage_problem(error)
        if problem == "database corrupt":
            return (
                "database corrupt (the daemon moves it aside and starts a new one; "
                "its unsent events are lost)"
            )
        return problem
    return None if result == "ok" else f"database corrupt ({result})"


def run_checks(config_arg: str | None) -> list[Row]:
    rows: list[Row] = []
    source = resolve_path(config_arg)
    try:
        config = load_or_default(config_arg)
    except ConfigError as error:
        rows.append(Row("config", FAIL, str(error)))
        rows += [
            Row(name, SKIP, "needs a valid config")
            for name in ("models", "accelerator", "runtime", "camera", "broker", "display", "state")
        ]
        return rows
    rows.append(Row("config", OK, str(source) if source else "no file: built-in defaults"))

    pipelines: list[Any] = []
    steps: list[tuple[str, Callable[[], Row]]] = [
        ("models", lambda: check_models(config)),
        ("accelerator", lambda: check_accelerator(config)),
        ("runtime", lambda: check_runtime(config, pipelines)),
        ("camera", lambda: check_camera(config)),
        ("broker", lambda: check_broker(config)),
        ("display", lambda: check_display(config)),
        ("state", lambda: check_state(config)),
    ]
    for name, step in steps:
        if name == "runtime" and FAIL in (rows[-1].result, rows[-2].result):
            rows.append(Row(name, SKIP, "needs the model files and the accelerator"))
            continue
        try:
            rows.append(step())
        except EdgeAgentError as error:
            rows.append(Row(name, FAIL, str(error)))
        except Exception as error:  # a check must report, never crash the table
            rows.append(Row(name, FAIL, f"{type(error).__name__}: {error}"))
    return rows


def format_table(rows: list[Row]) -> str:
    width = max(len(row.check) for row in rows)
    lines = [f"{'CHECK':<{width}}  RESULT  DETAIL"]
    lines += [f"{row.check:<{width}}  {row.result:<6}  {row.detail}" for row in rows]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    # The table reports the accelerator; the runtime's own warning would say it twice.
    logging.getLogger("edge_agent.vision.runtime").setLevel(logging.ERROR)
    rows = run_checks(getattr(args, "config", None))
    print(format_table(rows))
    failed = [row.check for row in rows if row.result == FAIL]
    if failed:
        print(f"\n{len(failed)} check(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
