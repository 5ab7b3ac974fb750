"""What several test modules share, so that none imports another: `need` and `wait_until`
here, MQTT in `mqtt`, a daemon's config in `daemon`, an HTTP camera in `camera`.

`python -m pytest` puts tests/ on sys.path (it has no __init__.py), so `import helpers`
works in every test module, in conftest.py and in the processes the helpers start.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from edge_agent.demo.mosquitto import find_binary


def need(tool: str) -> str:
    """The path of a Debian tool. Skip where it is missing on a developer's machine, but fail
    in CI, where scripts/install-dev-deps.sh must have installed it: a skipped test proves
    nothing."""
    found = find_binary(tool)
    if found:
        return found
    message = f"{tool} is not installed (scripts/install-dev-deps.sh installs it)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.02) -> bool:
    """Poll `predicate` until true or `timeout` seconds passed; returns the last result."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return bool(predicate())
        time.sleep(interval)


def cli(
    *args: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`edge-agent ARGS...` as a user runs it: a process of its own, output captured; `env`
    adds to (or overrides) this process's environment."""
    return subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **env} if env else None,
    )
