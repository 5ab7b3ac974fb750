"""The model manifest: which file serves which model, and proof that it is the file we built.

Every load checks the file's sha256 against `models/manifest.json`, so a truncated copy on an
SD card or a hand-edited model fails loudly instead of producing quietly wrong emotions.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

from edge_agent.errors import ModelError

Variant = Literal["float", "int8"]


def _default_models_dir() -> Path:
    """Where the models are: inside the package in an installed wheel, else beside it.

    A wheel carries them as edge_agent/_models (pyproject.toml maps models/ there); a source
    checkout, an editable install and scripts/install.sh's copy have models/ beside the
    package.  The wheel's place is tried first: a site-packages/models folder could be
    anyone's.
    """
    package = Path(__file__).resolve().parents[1]
    shipped = package / "_models"
    return shipped if shipped.is_dir() else package.parent / "models"


DEFAULT_MODELS_DIR = _default_models_dir()
MANIFEST_NAME = "manifest.json"
EDGETPU_SUFFIX = "_edgetpu.tflite"


def models_dir(configured: str) -> Path:
    """Where the model files are: `models.dir`, or when it is empty the models/ folder
    beside the package."""
    return Path(configured) if configured else DEFAULT_MODELS_DIR


@dataclass(frozen=True, slots=True)
class ModelFile:
    """One verified file of one model, with the manifest entry that describes it."""

    name: str
    variant: Variant
    path: Path
    entry: dict[str, Any]

    @property
    def compiled_for_edgetpu(self) -> bool:
        return self.path.name.endswith(EDGETPU_SUFFIX)

    def edgetpu_path(self) -> Path:
        """Where `scripts/compile_edgetpu.sh` writes this model's Edge TPU build.

        The Edge TPU runs only int8 models, so the build is the int8 variant compiled,
        whichever variant the config asks for; a file given already compiled is its own.
        """
        if self.compiled_for_edgetpu:
            return self.path
        int8_file = self.entry.get("variants", {}).get("int8", {}).get("file")
        base = self.path.with_name(int8_file) if int8_file else self.path
        return base.with_name(base.stem + EDGETPU_SUFFIX)


@cache
def _sha256(path: Path, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """sha256 of a file, cached per (size, mtime) so SIGHUP reloads do not re-hash."""
    stat = path.stat()
    return _sha256(path, stat.st_size, stat.st_mtime_ns)


def load_manifest(models_dir: Path = DEFAULT_MODELS_DIR) -> dict[str, Any]:
    path = models_dir / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"model manifest not found: {path}") from None
    except (OSError, ValueError) as error:
        raise ModelError(f"model manifest {path} is unreadable: {error}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("models"), dict):
        raise ModelError(f"model manifest {path} has no 'models' table")
    return manifest


def resolve(name: str, variant: Variant, models_dir: Path = DEFAULT_MODELS_DIR) -> ModelFile:
    """Find a model file and verify its checksum; raise ModelError naming what is wrong."""
    entry = load_manifest(models_dir)["models"].get(name)
    if entry is None:
        raise ModelError(f"model {name!r} is not in {models_dir / MANIFEST_NAME}")
    file_entry = entry.get("variants", {}).get(variant)
    if file_entry is None:
        have = ", ".join(sorted(entry.get("variants", {}))) or "none"
        raise ModelError(f"model {name!r} has no {variant} variant (available: {have})")
    path = models_dir / file_entry["file"]
    if not path.is_file():
        raise ModelError(f"model file missing: {path}")
    actual = file_sha256(path)
    if actual != file_entry["sha256"]:
        raise ModelError(
            f"model file {path} fails its checksum (sha256 {actual[:12]}…, manifest says "
            f"{file_entry['sha256'][:12]}…): it is truncated or altered; restore it from the "
            "repository or rebuild with `make models`"
        )
    return ModelFile(name=name, variant=variant, path=path, entry=entry)
