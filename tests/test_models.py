"""Model files: checksums refuse altered files; the Edge TPU falls back to the CPU clearly."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from edge_agent.errors import ModelError
from edge_agent.vision.manifest import DEFAULT_MODELS_DIR, ModelFile, load_manifest, resolve
from edge_agent.vision.runtime import AcceleratorChoice, TfliteModel, file_for

MODELS = (
    "blazeface_short_range",
    "blazeface_full_range",
    "emotion_mini_xception",
    "age_v1",
    "gender_v1",
)


def test_every_shipped_model_verifies_and_loads() -> None:
    manifest = load_manifest()
    assert set(MODELS) <= set(manifest["models"])
    cpu = AcceleratorChoice.resolve("cpu")
    for name in MODELS:
        for variant in manifest["models"][name]["variants"]:
            model = TfliteModel(resolve(name, variant), cpu)
            assert model.runs_on == "cpu"
            assert (model.quantized, variant == "int8") in {(True, True), (False, False)}


def test_every_model_has_provenance_and_a_licence() -> None:
    for name in MODELS:
        entry = load_manifest()["models"][name]
        assert entry["source"]["package"] and entry["source"]["version"]
        assert len(entry["source"]["upstream_sha256"]) == 64
        assert entry["license"] in {"Apache-2.0", "MIT", "CC0-1.0"}
    assert "Apache" in (DEFAULT_MODELS_DIR / "README.md").read_text()


@pytest.fixture
def models_copy(tmp_path: Path) -> Path:
    shutil.copytree(DEFAULT_MODELS_DIR, tmp_path / "models")
    return tmp_path / "models"


def test_a_truncated_model_is_refused_by_name(models_copy: Path) -> None:
    path = models_copy / "emotion_mini_xception.tflite"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ModelError, match=r"emotion_mini_xception.tflite fails its checksum"):
        resolve("emotion_mini_xception", "float", models_copy)


def test_an_altered_model_is_refused(models_copy: Path) -> None:
    path = models_copy / "gender_v1.tflite"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="truncated or altered"):
        resolve("gender_v1", "float", models_copy)


def test_missing_model_file_and_unknown_variant(models_copy: Path) -> None:
    (models_copy / "age_v1.tflite").unlink()
    with pytest.raises(ModelError, match="model file missing"):
        resolve("age_v1", "float", models_copy)
    manifest = json.loads((models_copy / "manifest.json").read_text())
    manifest["models"]["age_v1"]["variants"].pop("int8", None)
    (models_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="no int8 variant"):
        resolve("age_v1", "int8", models_copy)


def test_auto_falls_back_to_cpu_with_one_clear_line(caplog) -> None:
    # No Coral exists on this machine: libedgetpu.so.1 cannot be loaded.
    # Having no Edge TPU runtime at all is the usual machine: said at debug level only, once,
    # and without the loader's doubled "libedgetpu.so.1: libedgetpu.so.1: ..." prefix.
    with caplog.at_level(logging.DEBUG, logger="edge_agent.vision.runtime"):
        choice = AcceleratorChoice.resolve("auto")
    assert choice.in_use == "cpu"
    records = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert records == [
        (
            logging.DEBUG,
            "no Coral Edge TPU found (libedgetpu.so.1 not installed); using the CPU",
        )
    ]


def test_edgetpu_requested_without_one_is_an_error() -> None:
    with pytest.raises(ModelError, match=r"^no Coral Edge TPU found \(libedgetpu.so.1 not"):
        AcceleratorChoice.resolve("edgetpu")


def test_edgetpu_build_is_chosen_only_with_a_coral_and_a_compiled_file(models_copy) -> None:
    int8 = resolve("gender_v1", "int8", models_copy)
    shutil.copy(int8.path, int8.edgetpu_path())  # stands in for edgetpu_compiler's output
    with_tpu = AcceleratorChoice("edgetpu", "edgetpu", delegate=object())
    cpu = AcceleratorChoice("auto", "cpu")
    assert file_for(int8, with_tpu).name == "gender_v1_int8_edgetpu.tflite"
    assert file_for(int8, cpu) == int8.path
    age = resolve("age_v1", "int8", models_copy)  # no _edgetpu build: stays on the CPU
    assert file_for(age, with_tpu) == age.path
    # The default float variant also runs on the Coral, through the compiled int8 build.
    gender_float = resolve("gender_v1", "float", models_copy)
    assert file_for(gender_float, with_tpu).name == "gender_v1_int8_edgetpu.tflite"
    assert file_for(gender_float, cpu) == gender_float.path


def test_a_compiled_edgetpu_file_without_a_coral_is_a_clear_error(tmp_path) -> None:
    compiled = tmp_path / "ssd_mobilenet_v2_face_quant_postprocess_edgetpu.tflite"
    shutil.copy(Path(__file__).parent / "data" / "ssd_face_tiny.tflite", compiled)
    model = ModelFile(compiled.stem, "int8", compiled, {})
    assert file_for(model, AcceleratorChoice("edgetpu", "edgetpu", delegate=object())) == compiled
    with pytest.raises(ModelError, match="compiled for the Edge TPU and needs a Coral"):
        TfliteModel(model, AcceleratorChoice("auto", "cpu"))


def test_a_model_build_keeps_the_entries_of_models_it_does_not_make(tmp_path: Path) -> None:
    """`make models` rebuilds every model but face-api's emotion net, which
    `emotion_head.py` builds on its own; the manifest it writes must keep that entry, or the
    daemon's default emotion model would no longer load after a rebuild."""
    from scripts.modelbuild.manifest import keep_other_models, make_manifest

    shipped = load_manifest()
    built = make_manifest(DEFAULT_MODELS_DIR, {})
    assert "emotion_faceapi" not in built["models"]
    folder = tmp_path / "models"
    shutil.copytree(DEFAULT_MODELS_DIR, folder)
    merged = keep_other_models(built, folder)
    assert merged["models"]["emotion_faceapi"] == shipped["models"]["emotion_faceapi"]
    for name, entry in built["models"].items():  # what the build made, from the build
        assert merged["models"][name] is entry
        assert entry["variants"] == shipped["models"][name]["variants"]
    (folder / "manifest.json").write_text(json.dumps(merged))
    for variant in ("float", "int8"):
        TfliteModel(resolve("emotion_faceapi", variant, folder), AcceleratorChoice("cpu", "cpu"))
