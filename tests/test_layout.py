"""The direction of imports: sinks and dashboards never load the model runtime or OpenCV."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("cv2", "ai_edge_litert", "edge_agent.vision")


@pytest.mark.parametrize(
    "module",
    [
        "edge_agent.types",
        "edge_agent.display",
        "edge_agent.publish",
        "edge_agent.cli.watch",
        "edge_agent.cli.dashboard",
    ],
)
def test_importing_a_sink_loads_no_model_runtime(module: str) -> None:
    code = f"import sys, {module}; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert loaded.stdout.strip() == "", f"{module} loads {loaded.stdout.strip()}"
