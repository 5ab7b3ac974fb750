"""Test helpers for MQTT: a real mosquitto on a free loopback port, certificates, and a
scene that drives the real tracker so publishers get genuine TrackEvents.

`mosquitto` (the fixture, re-exported by conftest.py) gives a running anonymous broker;
`Mosquitto(...)` builds others (password file, TLS, persistence). Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

HOST = "127.0.0.1"


def _binary(name: str) -> str:
    found = shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/usr/bin") / name) if p.exists()), None)
    if found is None:
        message = f"{name} is not installed (scripts/install-dev-deps.sh installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_until(predicate, timeout: float, interval: float = 0.02) -> bool:  # type: ignore[no-untyped-def]
    """Poll `predicate` until true or `timeout` seconds passed; returns the last result."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return bool(predicate())
        time.sleep(interval)


class Mosquitto:
    """One mosquitto process with its own config, log and persistence in `directory`."""

    def __init__(self, directory: Path, *, port: int | None = None, anonymous: bool = True,
                 password_file: Path | None = None, tls: dict[str, Path] | None = None,
                 persistence: bool = False) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.host = HOST
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = directory / "mosquitto.log"
        lines = [f"listener {self.port} {HOST}",
                 f"allow_anonymous {'true' if anonymous else 'false'}",
                 f"log_dest file {self.log_path}",
                 "log_type error", "log_type warning", "log_type notice",
                 "log_type information", "connection_messages true",
                 "max_queued_messages 100000",
                 f"persistence {'true' if persistence else 'false'}",
                 f"persistence_location {directory}/"]
        if os.geteuid() == 0:
            lines.append("user root")  # else it drops to `mosquitto`, which cannot write here
        if password_file is not None:
            lines.append(f"password_file {password_file}")
        if tls is not None:
            lines += [f"cafile {tls['ca']}", f"certfile {tls['server_cert']}",
                      f"keyfile {tls['server_key']}", "require_certificate true"]
        self.config_path = directory / "mosquitto.conf"
        self.config_path.write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = 5.0) -> Mosquitto:
        binary = _binary("mosquitto")
        self.process = subprocess.Popen([binary, "-c", str(self.config_path)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                error = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"mosquitto exited: {error.strip()} {self.log()[-500:]}")
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), 0.2):
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on {HOST}:{self.port} in {timeout} s")

    def stop(self, timeout: float = 5.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)
        if process.stderr:
            process.stderr.close()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def password_file(path: Path, user: str, password: str) -> Path:
    """A mosquitto password file made by `mosquitto_passwd -b`."""
    subprocess.run([_binary("mosquitto_passwd"), "-c", "-b", str(path), user, password],
                   check=True, capture_output=True, timeout=10)
    return path


def tls_files(directory: Path) -> dict[str, Path]:
    """A throwaway CA, a server certificate for 127.0.0.1/localhost and a client
    certificate, made with the openssl command line."""
    openssl = _binary("openssl")
    directory.mkdir(parents=True, exist_ok=True)
    files = {name: directory / name for name in (
        "ca.crt", "ca.key", "server.crt", "server.key", "client.crt", "client.key")}

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, timeout=30,
                       cwd=directory)

    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=edge-agent test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    server_names = "subjectAltName=IP:127.0.0.1,DNS:localhost"
    for name, usage, extra in (("server", "serverAuth", server_names),
                               ("client", "clientAuth", None)):
        ext = directory / f"{name}.ext"
        ext.write_text(f"basicConstraints=CA:FALSE\nextendedKeyUsage={usage}\n"
                       + (f"{extra}\n" if extra else ""))
        run("req", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN=edge-agent test {name}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", ext.name)
    return {"ca": files["ca.crt"], "server_cert": files["server.crt"],
            "server_key": files["server.key"], "client_cert": files["client.crt"],
            "client_key": files["client.key"]}


@pytest.fixture
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A running anonymous mosquitto on a free 127.0.0.1 port (`.host`, `.port`)."""
    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto")).start()
    try:
        yield broker
    finally:
        broker.stop()


# -- a scene with real tracker events -------------------------------------------------------

# Per 10-frame cycle (0.1 s a frame): a face shows happy, sad, then angry for six frames
# and leaves for four: face_appeared, emotion_changed twice, face_lost (4 events).
_CYCLE = ("happy", "happy", "happy", "sad", "sad", "angry", None, None, None, None)
EVENTS_PER_CYCLE = 4


def scene(frames: int | None = None, *, start: int = 0) -> Iterator[object]:
    """FrameResults from the real Tracker fed with synthetic detections and attributes."""
    from edge_agent.classify import EMOTIONS, FaceAttributes
    from edge_agent.detect import Detection
    from edge_agent.pipeline import FaceResult, FrameResult
    from edge_agent.track import Tracker, TrackerSettings

    tracker = Tracker(TrackerSettings(confirm_hits=2, lost_after_s=0.3, smoothing_s=0.0,
                                      emotion_hold_s=0.0))
    index = start
    while frames is None or index < start + frames:
        t = index * 0.1
        label = _CYCLE[index % len(_CYCLE)]
        detections = [] if label is None else [Detection((100.0, 80.0, 90.0, 90.0), 0.95)]
        tracks = tracker.associate(detections, t)
        for track in tracks:
            scores = np.full(len(EMOTIONS), 0.02, np.float32)
            scores[EMOTIONS.index(label)] = 0.88
            tracker.observe(track, FaceAttributes(scores, 31.0 + index % 7, 0.2), t)
        tracker.confirm(tracks, t)
        yield FrameResult(index, t, [FaceResult.of(track) for track in tracks],
                          tracker.drain_events())
        index += 1
