"""The Edge TPU probe, through the real CLI, against fake delegate libraries built here.

No Coral exists on this machine, so the runtime is replaced through EDGE_AGENT_EDGETPU_LIBRARY
by a few lines of C compiled with gcc: a delegate that segfaults in its create function, one
that hangs there, a library without the delegate's symbols, and one that works (its Prepare
claims no node, so TFLite runs the "_edgetpu" files, which are copies of the int8 models
here, on the CPU). The working one writes the options it was given to FAKE_EDGETPU_LOG and
refuses the device "pci:9", as libedgetpu refuses a device it cannot open.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import flatbuffers
import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema
from helpers import cli, need
from helpers.daemon import base_config, write

from edge_agent import config as config_model
from edge_agent.config import Config
from edge_agent.errors import ConfigError
from edge_agent.vision import probe
from edge_agent.vision.manifest import DEFAULT_MODELS_DIR

FAKE_DELEGATE = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int prepare(void *context, void *delegate) { (void)context; (void)delegate; return 0; }

void *tflite_plugin_create_delegate(char **keys, char **values, size_t count,
                                    void (*report_error)(const char *)) {
#if defined(CRASH)
    *(volatile int *)0 = 1;
#elif defined(HANG)
    for (;;) pause();
#endif
    const char *log = getenv("FAKE_EDGETPU_LOG");
    FILE *out = log ? fopen(log, "a") : NULL;
    for (size_t i = 0; i < count; i++) {
        if (out) fprintf(out, "%s=%s\n", keys[i], values[i]);
        if (!strcmp(keys[i], "device") && !strcmp(values[i], "pci:9")) {
            if (out) fclose(out);
            report_error("Failed to open device pci:9");
            return NULL;
        }
    }
    if (out) fclose(out);
    /* TfLiteDelegate: data_, Prepare, three buffer-handle hooks, flags, opaque builder;
       zeroed room to spare for fields a newer TFLite may add. */
    void **delegate = calloc(32, sizeof(void *));
    delegate[1] = (void *)prepare;
    return delegate;
}

void tflite_plugin_destroy_delegate(void *delegate) { free(delegate); }
"""

NOT_A_DELEGATE = "int nothing(void) { return 0; }\n"
CLIP = "single_face.mp4"
PHOTO = "single_face.jpg"
HANG_TIMEOUT_S = 2.0


@pytest.fixture(scope="module")
def fakes(tmp_path_factory) -> dict[str, Path]:
    gcc = need("gcc")
    folder = tmp_path_factory.mktemp("delegates")
    (folder / "delegate.c").write_text(FAKE_DELEGATE)
    (folder / "nothing.c").write_text(NOT_A_DELEGATE)
    libraries = {}
    for name, source, flags in (
        ("works", "delegate.c", []),
        ("crashes", "delegate.c", ["-DCRASH"]),
        ("hangs", "delegate.c", ["-DHANG"]),
        ("no_symbols", "nothing.c", []),
    ):
        library = folder / f"lib{name}.so"
        subprocess.run(
            [gcc, "-shared", "-fPIC", *flags, "-o", str(library), str(folder / source)],
            check=True,
            timeout=60,
        )
        libraries[name] = library
    return libraries


@pytest.fixture
def coral_config(tmp_path, media) -> Config:
    """A device whose two models (short-range detector, emotion) have "Edge TPU builds"."""
    models = tmp_path / "models"
    models.mkdir()
    for file in DEFAULT_MODELS_DIR.iterdir():
        (models / file.name).symlink_to(file)
    for name in ("blazeface_short_range_int8", "emotion_faceapi_int8"):
        (models / f"{name}_edgetpu.tflite").write_bytes((models / f"{name}.tflite").read_bytes())
    config = base_config(tmp_path)
    config.accelerator = "auto"
    config.models.dir = str(models)
    config.models.edgetpu_probe_timeout_s = HANG_TIMEOUT_S
    config.detector.model = "short_range"
    config.classifier.age = config.classifier.gender = False
    config.camera.source = str(media(CLIP))
    config.camera.realtime = False
    (tmp_path / "state").mkdir()
    return config


def edge_agent(tmp_path: Path, config: Config, library: Path, *args: str, **env: str):
    path = write(tmp_path / "config.toml", config)
    return cli(
        *args, "--config", str(path), env={"EDGE_AGENT_EDGETPU_LIBRARY": str(library), **env}
    )


def check_rows(result: subprocess.CompletedProcess[str]) -> dict[str, tuple[str, str]]:
    rows = {}
    for line in result.stdout.splitlines()[1:]:
        if line.strip():
            name, outcome, detail = line.split(None, 2)
            rows[name] = (outcome, detail)
    return rows


def warnings_of(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "WARNING" in line]


# -- a runtime that crashes ------------------------------------------------------------------


def test_check_under_auto_says_why_the_cpu_runs_after_a_crash(tmp_path, coral_config, fakes):
    result = edge_agent(tmp_path, coral_config, fakes["crashes"], "check")
    rows = check_rows(result)
    assert result.returncode == 0, result.stdout + result.stderr  # a warning, not a failure
    outcome, detail = rows["accelerator"]
    assert outcome == "warn"
    assert detail.startswith("CPU, because the Edge TPU runtime ")
    assert "crashed (SIGSEGV) while loading the delegate in a test process" in detail
    assert "ms on cpu" in rows["runtime"][1]
    assert "Traceback" not in result.stderr


def test_edgetpu_requested_with_a_crashing_runtime_is_one_line_and_exit_69(
    tmp_path, coral_config, fakes, media
):
    coral_config.accelerator = "edgetpu"
    result = edge_agent(tmp_path, coral_config, fakes["crashes"], "analyze", str(media(PHOTO)))
    assert result.returncode == 69
    assert result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("edge-agent: error: the Edge TPU runtime ")
    assert "crashed (SIGSEGV)" in line


def test_the_daemon_under_auto_logs_one_line_and_runs_on_the_cpu(tmp_path, coral_config, fakes):
    result = edge_agent(tmp_path, coral_config, fakes["crashes"], "run")
    assert result.returncode == 0, result.stderr
    (warning,) = warnings_of(result.stderr)
    assert "crashed (SIGSEGV) while loading the delegate" in warning
    assert warning.endswith("; using the CPU")
    assert "models loaded in" in result.stderr and "on cpu" in result.stderr
    assert "source ended after" in result.stderr  # it processed the clip to its end


# -- a runtime that hangs ------------------------------------------------------------------


@pytest.mark.slow
def test_a_hanging_runtime_is_given_up_on_after_the_timeout(tmp_path, coral_config, fakes, media):
    started = time.monotonic()
    result = edge_agent(tmp_path, coral_config, fakes["hangs"], "analyze", str(media(PHOTO)))
    took = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    (warning,) = warnings_of(result.stderr)
    assert "hung while loading the delegate in a test process" in warning
    assert f"(no answer within {HANG_TIMEOUT_S:g} s)" in warning
    assert "happy" in result.stdout  # the photo was analysed, on the CPU
    assert took < 30  # the hung child was killed, not waited for

    coral_config.accelerator = "edgetpu"
    result = edge_agent(tmp_path, coral_config, fakes["hangs"], "run")
    assert result.returncode == 69
    assert result.stderr.strip().splitlines()[-1].startswith("edge-agent: error: the Edge TPU")


# -- libraries that are not a delegate ---------------------------------------------------------


def test_a_library_without_the_delegate_symbols_fails_the_check_under_edgetpu(
    tmp_path, coral_config, fakes
):
    coral_config.accelerator = "edgetpu"
    result = edge_agent(tmp_path, coral_config, fakes["no_symbols"], "check")
    rows = check_rows(result)
    assert result.returncode == 1
    assert rows["accelerator"] == (
        "FAIL",
        f"no Coral Edge TPU available ({fakes['no_symbols']} is not a TFLite delegate: it "
        "lacks tflite_plugin_create_delegate)",
    )
    assert rows["runtime"][0] == "skip"


def test_a_file_that_is_no_library_and_a_missing_one(tmp_path, coral_config, media):
    broken = tmp_path / "libedgetpu.so.1"
    broken.write_text("not an ELF file\n" * 64)
    result = edge_agent(tmp_path, coral_config, broken, "analyze", str(media(PHOTO)))
    assert result.returncode == 0, result.stderr
    (warning,) = warnings_of(result.stderr)
    assert f"no Coral Edge TPU available ({broken}: " in warning and "invalid ELF header" in warning

    # Not installed at all: the plain words of a machine without a Coral.
    coral_config.accelerator = "edgetpu"
    absent = tmp_path / "absent.so"
    result = edge_agent(tmp_path, coral_config, absent, "analyze", str(media(PHOTO)))
    assert result.returncode == 69
    assert result.stderr.strip() == (
        f"edge-agent: error: no Coral Edge TPU found ({absent} not installed)"
    )


# -- a runtime that works, or gives wrong answers ------------------------------------------------


def test_a_working_runtime_gets_the_device_option_and_runs_the_edgetpu_builds(
    tmp_path, coral_config, fakes
):
    coral_config.accelerator = "edgetpu"
    coral_config.models.edgetpu_device = "usb:1"
    log = tmp_path / "options.log"
    result = edge_agent(tmp_path, coral_config, fakes["works"], "check", FAKE_EDGETPU_LOG=str(log))
    rows = check_rows(result)
    assert result.returncode == 0, result.stdout + result.stderr
    assert rows["accelerator"] == (
        "ok",
        "Coral Edge TPU: 2 _edgetpu model(s) ran in a test process and agree with the CPU",
    )
    assert "ms on edgetpu" in rows["runtime"][1]
    # In the probe's process, then in check's own for the accelerator row and for the
    # pipeline of the runtime row (the probe's verdict is reused, not run again).
    assert log.read_text() == "device=usb:1\n" * 3


def test_a_device_the_runtime_cannot_open_is_named(tmp_path, coral_config, fakes, media):
    coral_config.accelerator = "edgetpu"
    coral_config.models.edgetpu_device = "pci:9"
    result = edge_agent(tmp_path, coral_config, fakes["works"], "analyze", str(media(PHOTO)))
    assert result.returncode == 69
    assert result.stderr.strip() == (
        f"edge-agent: error: no Coral Edge TPU available ({fakes['works']}: Failed to open "
        "device pci:9)"
    )


def reverse_largest_weights(path: Path) -> None:
    """The same graph with its biggest weight buffer reversed: runs fine, computes nonsense."""
    model = schema.ModelT.InitFromPackedBuf(path.read_bytes(), 0)
    largest = max(model.buffers, key=lambda b: 0 if b.data is None else len(b.data))
    largest.data = largest.data[::-1].copy()
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(bytes(builder.Output()))


def test_wrong_results_mean_the_cpu_under_auto(tmp_path, coral_config, fakes, media):
    build = Path(coral_config.models.dir) / "emotion_faceapi_int8_edgetpu.tflite"
    reverse_largest_weights(build)
    photo = str(media(PHOTO))
    result = edge_agent(tmp_path, coral_config, fakes["works"], "analyze", "--json", photo)
    assert result.returncode == 0, result.stderr
    (warning,) = warnings_of(result.stderr)
    assert "the Edge TPU gave wrong results for emotion_faceapi_int8_edgetpu.tflite" in warning
    coral_config.accelerator = "cpu"
    on_cpu = edge_agent(tmp_path, coral_config, fakes["works"], "analyze", "--json", photo)
    assert result.stdout == on_cpu.stdout  # what the fallback computed is the CPU's answer


# -- the pieces ------------------------------------------------------------------------------


def outputs(values: np.ndarray, scale: float = 1 / 256, zero: int = -128) -> list:
    return [(values.astype(np.int8), {"quantization": (scale, zero)})]


def test_agreement_allows_rounding_drift_and_refuses_garbage():
    rng = np.random.default_rng(1)
    cpu = rng.integers(-128, 100, size=(1, 896, 16))
    drift = np.clip(cpu + rng.integers(-2, 3, size=cpu.shape), -128, 127)
    assert probe.disagreement(outputs(drift), outputs(cpu)) is None
    garbage = rng.integers(-128, 128, size=cpu.shape)
    assert "outputs unlike the CPU's" in probe.disagreement(outputs(garbage), outputs(cpu))
    one_wild = cpu.copy()
    one_wild[0, 0, 0] = 127 if cpu[0, 0, 0] < 0 else -128
    assert "worst" in probe.disagreement(outputs(one_wild), outputs(cpu))
    assert "shape" in probe.disagreement(outputs(cpu[:, :10]), outputs(cpu))
    boxes = np.linspace(0, 1, 40, dtype=np.float32).reshape(1, 10, 4)
    reordered = [(boxes[:, ::-1].copy(), {"quantization": (0.0, 0)})]
    assert probe.disagreement(reordered, [(boxes, {"quantization": (0.0, 0)})]) is None
    broken = [(np.full_like(boxes, np.nan), {"quantization": (0.0, 0)})]
    assert "not finite" in probe.disagreement(broken, [(boxes, {"quantization": (0.0, 0)})])


@pytest.mark.parametrize("device", ["", "usb", "pci", "usb:0", "pci:12", ":1"])
def test_edgetpu_device_accepts_libedgetpus_names(device):
    config = config_model.parse(f'[models]\nedgetpu_device = "{device}"\n')
    assert config.models.edgetpu_device == device


@pytest.mark.parametrize("device", ["USB", "usb:", "usb:x", "/dev/apex_0", "pcie", "1", ":"])
def test_edgetpu_device_refuses_anything_else(device):
    with pytest.raises(ConfigError, match=r"models\.edgetpu_device = .*must be \"usb\""):
        config_model.parse(f'[models]\nedgetpu_device = "{device}"\n')
