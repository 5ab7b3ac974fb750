"""The real daemon for the tests: a config on the real models, and `edge-agent run` as
systemd runs it (a subprocess, NOTIFY_SOCKET a real datagram socket)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from edge_agent import config as config_model
from edge_agent.config import Config

REPO = Path(__file__).resolve().parent.parent.parent
WATCHDOG_USEC = 600_000  # pings every 0.3 s


def base_config(tmp_path: Path) -> Config:
    """The real models in models/, on the CPU, with MQTT off unless a test turns it on."""
    config = Config()
    config.accelerator = "cpu"
    config.mqtt.enabled = False
    config.state.dir = str(tmp_path / "state")
    return config


def on_a_clip(
    tmp_path: Path, clip: Path, device: str, broker: tuple[str, int], *, stats_interval_s: float
) -> Config:
    """`base_config` looping `clip` and publishing as `device` to the broker (host, port)."""
    config = base_config(tmp_path)
    config.device_id = device
    config.camera.source = str(clip)
    config.camera.loop = True
    config.mqtt.enabled = True
    config.mqtt.host, config.mqtt.port = broker
    config.mqtt.stats_interval_s = stats_interval_s
    return config


def write(path: Path, config: Config) -> Path:
    path.write_text(config_model.render_toml(config))
    return path


class NotifySocket:
    """A datagram socket standing in for systemd's; records (time, message)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(str(path))
        self.socket.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.socket.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode()))

    def lines(self, prefix: str, since: float = 0.0) -> list[str]:
        return [
            line
            for t, message in list(self.messages)
            if t >= since
            for line in message.split("\n")
            if line.startswith(prefix)
        ]

    def wait_for(self, line: str, timeout: float, since: float = 0.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(
                found == line or found.startswith(line)
                for found in self.lines(line.split("=")[0] + "=", since)
            ):
                return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1)
        self.socket.close()


class Daemon:
    """`python -m edge_agent.cli run --config FILE` with its stderr collected."""

    def __init__(
        self,
        config_path: Path,
        notify: NotifySocket | None,
        watchdog_usec: int | None = WATCHDOG_USEC,
    ) -> None:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM")
        }
        env["EDGE_AGENT_LOG"] = "stderr"
        if notify is not None:
            env["NOTIFY_SOCKET"] = str(notify.path)
        if watchdog_usec:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "edge_agent.cli", "run", "--config", str(config_path)],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.log: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line.rstrip("\n"))

    def wait_log(self, text: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.log):
                return True
            time.sleep(0.02)
        return False

    def wait(self, timeout: float) -> int:
        code = self.process.wait(timeout)
        self._reader.join(2)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def output(self) -> str:
        return "\n".join(self.log)
