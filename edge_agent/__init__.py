"""edge-agent: on-device face emotion, age and gender detection for a Raspberry Pi."""

from __future__ import annotations


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
