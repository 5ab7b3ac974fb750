"""`edge-agent dashboard` in a process of its own, a reader of its event stream, and a real
headless Chromium (Debian's `chromium` and `chromium-driver`) driven by selenium: what the
dashboard's tests, the screenshot script and the load benchmark share.

Both binaries are passed in, so the tests can skip (or fail in CI) through `need` while the
scripts report a missing package in one line.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from helpers import wait_until

REPO = Path(__file__).resolve().parents[2]


def chrome(chromium: str, chromedriver: str, *, width: int = 1280, height: int = 900) -> Any:
    """A headless Chromium at a fixed window size and device scale (so screenshots and
    layouts are the same on every machine)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",  # the tests run as root, where Chromium's sandbox cannot start
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--force-device-scale-factor=1",
        "--hide-scrollbars",
        f"--window-size={width},{height}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(chromedriver))


class Dashboard:
    """`python -m edge_agent.cli dashboard ARGS...`, its first stdout line (the URL) awaited."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "edge_agent.cli", "dashboard", *args],
            cwd=REPO,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(self.process.stderr, self.err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: Any, lines: list[str]) -> None:
        for line in stream:
            lines.append(line.rstrip("\n"))

    def url(self, timeout: float = 15.0) -> str:
        """The page's address from the start line; raises with the output if it never came."""
        if not wait_until(lambda: self.out or self.process.poll() is not None, timeout):
            raise RuntimeError(f"the dashboard did not start: {self.output()}")
        if not self.out:
            raise RuntimeError(f"the dashboard exited {self.process.poll()}: {self.output()}")
        return self.out[0].split()[2]

    def stop(self, timeout: float = 10.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(5)
        for reader in self._readers:
            reader.join(2)
        return code

    def output(self) -> str:
        return "\n".join([*self.out, *self.err])

    def __enter__(self) -> Dashboard:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def open_stream(port: int, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    """GET /events on 127.0.0.1:port; the response is the stream (close it when done)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/events", headers=headers or {})
    response = connection.getresponse()
    if response.status != 200:
        raise RuntimeError(f"/events answered {response.status}")
    return response


def read_events(response: http.client.HTTPResponse, count: int) -> list[tuple[str, Any]]:
    """The next `count` events of an SSE stream as (event name, parsed data)."""
    events: list[tuple[str, Any]] = []
    name, data = "message", ""
    while len(events) < count:
        raw = response.readline()  # bounded by the connection's timeout
        if not raw:
            raise EOFError("the dashboard closed the event stream")
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif not line and data:
            events.append((name, json.loads(data)))
            name, data = "message", ""
    return events


class PageDevice:
    """One device as a page holds it: the snapshot's view with the deltas applied."""

    def __init__(self, snapshot: dict[str, Any], device_id: str) -> None:
        self.id = device_id
        views = [d for d in snapshot["devices"] if d["id"] == device_id]
        self.data: dict[str, Any] = views[0] if views else {}
        self.events = [e for e in snapshot["events"] if e["device"] == device_id]

    def apply(self, delta: dict[str, Any]) -> None:
        if delta.get("type") == "device" and delta["id"] == self.id:
            self.data.update(delta["patch"])
            if "event" in delta:
                self.events.append(delta["event"])
