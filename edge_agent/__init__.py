"""edge-agent: on-device face emotion, age and gender detection for a Raspberry Pi."""

from __future__ import annotations

import os as _os

# OpenCV and its FFmpeg speak on stderr by themselves ("[ WARN:0@0.1] global cap.cpp...",
# "moov atom not found", "[tcp @ ...] Connection refused") before our own one line says
# what went wrong. Their log levels are read from the environment (OPENCV_LOG_LEVEL when cv2
# is imported, so it is set here, before any part of the package imports it); whoever
# debugs a camera can still set them in the environment: only defaults are set.
_os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
_os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET


def _version() -> str:
    """The version pyproject.toml declares, read from the installed package's metadata.

    pyproject.toml is the one place the number is written.  A source tree that was never
    installed has no metadata (the model build imports the package that way), so there
    the file beside the package is read instead.
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("edge-agent")
    except PackageNotFoundError:
        import tomllib
        from pathlib import Path

        pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
        try:
            return str(tomllib.loads(pyproject.read_text())["project"]["version"])
        except (OSError, ValueError, KeyError):
            return "0+unknown"


def __getattr__(name: str) -> str:
    # Looked up on first use, so that importing any other part of the package (the display
    # and the dashboards import edge_agent.types alone) does not also pay for loading
    # importlib.metadata, about a quarter of the time numpy takes to import.
    if name == "__version__":
        value = globals()["__version__"] = _version()
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
