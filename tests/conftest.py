"""Shared fixtures: real sample media (verified, cached outside the repo) and real models."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_agent.demo.samples import sample


@pytest.fixture(scope="session")
def media() -> Callable[[str], Path]:
    """`media("single_face.mp4")`: path of the verified sample, fetched once per machine."""
    return sample


# A running mosquitto on a free 127.0.0.1 port; see tests/mqtt_broker.py.
from mqtt_broker import mosquitto  # noqa: E402, F401


def need(tool: str) -> None:
    """Skip where a Debian tool is missing on a developer's machine, but fail in CI, where
    scripts/install-dev-deps.sh must have installed it: a skipped test proves nothing."""
    if shutil.which(tool):
        return
    message = f"{tool} is not installed (scripts/install-dev-deps.sh installs it)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)
