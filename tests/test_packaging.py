"""`pip install .` as a user runs it: the wheel carries the models and reports its version.

pyproject.toml maps models/ into the wheel as edge_agent/_models, which `packages.find`
cannot see, so the packages are listed by hand; the first test keeps that list equal to the
tree.  The slow one builds the wheel, installs it into a fresh venv and analyses a photo
from outside the checkout, where nothing can fall back on the repository's models/.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
MODELS_PACKAGE = "edge_agent._models"


def run(*command: str | Path, **kwargs) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(c) for c in command],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        **kwargs,
    )
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done


def test_every_package_of_the_tree_is_listed_for_the_wheel() -> None:
    setuptools = PYPROJECT["tool"]["setuptools"]
    # Every folder is a package, with or without __init__.py (schemas/ holds only JSON).
    folders = [ROOT / "edge_agent", *(ROOT / "edge_agent").rglob("*/")]
    tree = {
        ".".join(folder.relative_to(ROOT).parts)
        for folder in folders
        if folder.is_dir() and "__pycache__" not in folder.parts
    }
    listed = set(setuptools["packages"])
    assert listed - {MODELS_PACKAGE} == tree, (
        "pyproject.toml [tool.setuptools] packages must list every folder of edge_agent/: "
        f"missing {sorted(tree - listed)}, extra {sorted(listed - tree)}"
    )
    assert setuptools["package-dir"] == {MODELS_PACKAGE: "models"}


def test_a_source_tree_reports_the_version_of_pyproject() -> None:
    import edge_agent

    assert edge_agent.__version__ == PYPROJECT["project"]["version"]


@pytest.mark.slow
def test_the_installed_wheel_ships_the_models_and_analyzes_a_photo(tmp_path, media) -> None:
    photo = media("single_face.jpg")
    # Build from a copy, so setuptools' build/ and egg-info folders stay out of the checkout.
    source = tmp_path / "source"
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "*_edgetpu.tflite")
    for folder in ("edge_agent", "models"):
        shutil.copytree(ROOT / folder, source / folder, ignore=skip)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", dist, source)
    (wheel,) = dist.glob("edge_agent-*.whl")

    manifest = json.loads((ROOT / "models" / "manifest.json").read_text())
    files = {v["file"] for m in manifest["models"].values() for v in m["variants"].values()}
    shipped = set(zipfile.ZipFile(wheel).namelist())
    for name in (*files, "manifest.json", "README.md"):
        assert f"edge_agent/_models/{name}" in shipped, name
    assert not any(name.startswith("models/") for name in shipped)
    # The dashboard's page and its vendored chart library, with the library's licence.
    for name in ("index.html", "app.js", "style.css", "uplot/uPlot.iife.min.js", "uplot/LICENSE"):
        assert f"edge_agent/dashboard/static/{name}" in shipped, name

    # A clean venv with just the wheel; its dependencies are borrowed from this test's
    # environment through a .pth file (no download), after the venv's own site-packages.
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    run(sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps", wheel)
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))").stdout)
    borrowed = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
    (Path(site.as_posix().strip()) / "borrowed-deps.pth").write_text("\n".join(borrowed) + "\n")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = run(
        python,
        "-c",
        "import edge_agent, edge_agent.vision.manifest as m; "
        "print(edge_agent.__version__); print(edge_agent.__file__); print(m.DEFAULT_MODELS_DIR)",
        cwd=elsewhere,
        env=env,
    ).stdout.splitlines()
    installed = Path(site.as_posix().strip()) / "edge_agent"
    assert where == [
        PYPROJECT["project"]["version"],
        str(installed / "__init__.py"),
        str(installed / "_models"),
    ]

    done = run(python, "-m", "edge_agent.cli", "analyze", photo, "--json", cwd=elsewhere, env=env)
    (line,) = done.stdout.splitlines()
    (face,) = json.loads(line)["faces"]
    assert face["emotion"] in manifest["models"]["emotion_mini_xception"]["labels"]
    version = run(venv / "bin" / "edge-agent", "--version", cwd=elsewhere, env=env).stdout
    assert version.strip() == f"edge-agent {PYPROJECT['project']['version']}"
