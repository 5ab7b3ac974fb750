"""scripts/compile_edgetpu.sh against a stand-in edgetpu_compiler.

Coral's compiler is an x86-64 binary from Coral's own apt repository, which this machine
cannot reach, so a few lines of shell play it: they print the compiler's "-s" report (the
lines the script reads) and write NAME_edgetpu.tflite, except that they abort on the
full-range detector (as compiler 15 did on its DEPTH_TO_SPACE) and leave 5 of gender's 12
operations on the CPU (its TRANSPOSE and what follows, were the compiler to refuse it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "compile_edgetpu.sh"

FAKE_COMPILER = r"""#!/usr/bin/env bash
set -euo pipefail
[ "$1" = -s ] && [ "$2" = -o ] || { echo "unexpected arguments: $*"; exit 2; }
out="$3"
shift 3
echo "Edge TPU Compiler version 16.0.384591198 (stand-in)"
echo "$*" >>"$CALLS"
for model in "$@"; do
    name="$(basename "$model" .tflite)"
    case "$name" in
        blazeface_full_range_int8)
            echo "ERROR: Didn't find op for builtin opcode 'DEPTH_TO_SPACE' version '2'"
            echo "Internal compiler error. Aborting!"
            exit 1 ;;
    esac
done
for model in "$@"; do
    name="$(basename "$model" .tflite)"
    cp "$model" "$out/${name}_edgetpu.tflite"
    printf 'joint=%s\n' "$#" >>"$out/${name}_edgetpu.tflite"
    echo "Input model: $model"
    case "$name" in
        gender_v1_int8)
            echo "Total number of operations: 12"
            echo "Number of operations that will run on Edge TPU: 7"
            echo "Number of operations that will run on CPU: 5" ;;
        *)
            echo "Total number of operations: 40" ;;
    esac
done
echo "Compilation succeeded!"
"""


@pytest.fixture
def compiler(tmp_path) -> dict[str, str]:
    folder = tmp_path / "bin"
    folder.mkdir()
    fake = folder / "edgetpu_compiler"
    fake.write_text(FAKE_COMPILER)
    fake.chmod(0o755)
    return {"PATH": f"{folder}:{os.environ['PATH']}", "CALLS": str(tmp_path / "calls")}


@pytest.fixture
def models(tmp_path) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    for model in sorted((REPO / "models").glob("*_int8.tflite")):
        shutil.copy(model, folder / model.name)
    return folder


def compile_models(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
        check=False,
    )


def test_each_model_compiles_on_its_own_and_a_bad_one_blocks_none(models, compiler, tmp_path):
    stale = models / "blazeface_full_range_int8_edgetpu.tflite"
    stale.write_bytes(b"from an earlier compiler")
    result = compile_models(str(models), env=compiler)
    assert result.returncode == 1, result.stdout + result.stderr
    built = sorted(p.name for p in models.glob("*_edgetpu.tflite"))
    assert built == [
        "age_v1_int8_edgetpu.tflite",
        "blazeface_short_range_int8_edgetpu.tflite",
        "emotion_faceapi_int8_edgetpu.tflite",
        "emotion_mini_xception_int8_edgetpu.tflite",
    ]  # not the full-range detector (aborted) nor gender (7 of 12 ops mapped)
    assert not stale.exists()  # a failed model keeps no old build
    # Every model's report is kept, the failed one's too.
    log = (models / "blazeface_full_range_int8_edgetpu.log").read_text()
    assert "Internal compiler error. Aborting!" in log
    assert (
        "Number of operations that will run on CPU: 5"
        in (models / "gender_v1_int8_edgetpu.log").read_text()
    )
    assert "blazeface_full_range_int8.tflite: FAILED to compile" in result.stdout
    assert "gender_v1_int8.tflite: REFUSED, 7/12 ops (58 %) on the Edge TPU" in result.stdout
    assert "only 7 of 12 operations (58 %) map to the Edge TPU" in result.stderr
    # Six separate runs, then one joint run of the four that passed, whose files are kept.
    calls = (tmp_path / "calls").read_text().splitlines()
    assert len(calls) == 7 and all(len(call.split()) == 1 for call in calls[:6])
    assert len(calls[6].split()) == 4
    assert (models / "age_v1_int8_edgetpu.tflite").read_bytes().endswith(b"joint=4\n")


def test_the_threshold_is_an_option(models, compiler):
    for model in models.glob("blazeface_full_range*"):
        model.unlink()
    result = compile_models("--min-mapped", "50", str(models), env=compiler)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "gender_v1_int8.tflite: ok, 7/12 ops (58 %) on the Edge TPU" in result.stdout
    assert (models / "gender_v1_int8_edgetpu.tflite").is_file()
    bad = compile_models("--min-mapped", "lots", str(models), env=compiler)
    assert bad.returncode == 64 and "whole percentage" in bad.stderr


def test_without_the_compiler_it_says_what_to_install(models):
    result = compile_models(str(models), env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 1
    assert "edgetpu_compiler not found" in result.stderr
    assert not list(models.glob("*_edgetpu*"))
