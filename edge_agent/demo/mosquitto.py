"""A throwaway MQTT broker on a free 127.0.0.1 port, in a child process of its own: mosquitto
here, the embedded one in `broker.py`. `edge-agent demo` starts one; so do the tests.

`BrokerProcess` holds what every such broker needs once: the port (a free one unless given,
tried again with another if the broker exits at start, kept across restarts), the start
that waits until the port accepts connections, a one-line failure message from the log,
and a stop that cannot hang. Each broker has `.host`, `.port`, `.name` and `.protocol`
(the newest MQTT version it speaks) and is a context manager.

`Mosquitto` writes its own config in `directory`: anonymous or a password file, TLS with
client certificates, persistence. As root it keeps running as root (`user root`), since it
would otherwise drop to the `mosquitto` user, who cannot write to `directory`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Self

from edge_agent.errors import EX_UNAVAILABLE, EdgeAgentError

HOST = "127.0.0.1"
START_S = 5.0  # from the exec to accepting connections
STOP_S = 5.0  # after SIGTERM, before SIGKILL
PORT_TRIES = 3  # a free port may be taken between the probe and the broker's bind


class BrokerError(EdgeAgentError):
    """No MQTT broker could be started."""

    exit_code = EX_UNAVAILABLE


def find_binary(name: str = "mosquitto") -> str | None:
    """`name` on PATH, else in the sbin folders a user's PATH often lacks."""
    found = shutil.which(name)
    if found:
        return found
    for folder in ("/usr/sbin", "/usr/local/sbin"):
        candidate = Path(folder) / name
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def free_port(host: str = HOST) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def listening(port: int, host: str = HOST, pid: int | None = None) -> bool:
    """Whether `host:port` accepts connections (by process `pid`, if given). Read from the
    kernel's table where Linux has one, so that the broker is not sent a connection that
    says nothing (amqtt logs each as an error), and another program's listener on the port
    does not pass for the broker's."""
    try:
        table = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        try:
            with socket.create_connection((host, port), 0.2):
                return True
        except OSError:
            return False
    try:
        ours = _socket_inodes(pid) if pid is not None else None
    except FileNotFoundError:
        return False  # the process is gone
    except OSError:
        ours = None  # not ours to look into: any listener will do
    address = f"{int.from_bytes(socket.inet_aton(host), sys.byteorder):08X}:{port:04X}"
    for line in table:
        fields = line.split()  # sl local_address rem_address st ... uid timeout inode
        if fields[1] == address and fields[3] == "0A" and (ours is None or fields[9] in ours):
            return True
    return False


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    return inodes


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the parent dies without stopping us."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG


class BrokerProcess:
    """A broker process listening on `HOST:port`, its log in `directory`. Subclasses say
    how to run it (`command`, after writing any config for `self.port`)."""

    name = "broker"
    protocol = "5"
    log_name = "broker.log"

    def __init__(self, directory: Path, *, port: int | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.host = HOST
        self.port = port or free_port()
        self._port_kept = bool(port)  # given, or once started: restarts keep it
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.directory / self.log_name
        self.stderr_to_log = True  # else the child writes to our own stderr

    def describe(self) -> str:
        return self.name

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self, timeout: float = START_S) -> Self:
        error = ""
        for attempt in range(1 if self._port_kept else PORT_TRIES):
            if attempt:
                self.port = free_port()
            self.process = self._spawn(self.command())
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.process.poll() is None:
                if listening(self.port, self.host, self.process.pid):
                    self._port_kept = True
                    return self
                time.sleep(0.02)
            exited = self.process.poll() is not None
            error = self._failure(timeout)
            self.stop()
            if not exited:  # alive but deaf: another port will not help
                break
        raise BrokerError(f"{self.describe()} did not start: {error}")

    def _spawn(self, command: list[str]) -> subprocess.Popen[bytes]:
        stderr: IO[bytes] | None = None
        with contextlib.ExitStack() as stack:
            if self.stderr_to_log:
                stderr = stack.enter_context(self.log_path.open("ab"))
            # A session of its own: Ctrl-C in the demo's terminal must reach the daemon,
            # which then still needs the broker to say goodbye.
            return subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    def _failure(self, timeout: float) -> str:
        process = self.process
        if process is None or process.poll() is None:
            return f"not listening on {self.host}:{self.port} after {timeout:g} s"
        lines = [line.strip() for line in self.log().splitlines() if line.strip()]
        if not lines:
            return f"exit code {process.returncode}"
        return re.sub(r"^\d{9,}: ", "", lines[-1])  # mosquitto's time stamp

    def stop(self, timeout: float = STOP_S) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


class Mosquitto(BrokerProcess):
    """mosquitto with its own config, log and persistence in `directory`."""

    name = "mosquitto"
    protocol = "5"
    log_name = "mosquitto.log"

    def __init__(
        self,
        directory: Path,
        *,
        port: int | None = None,
        binary: str | None = None,
        anonymous: bool = True,
        password_file: Path | None = None,
        tls: dict[str, Path] | None = None,
        persistence: bool = False,
        log_types: Sequence[str] = ("error", "warning"),
        connection_messages: bool = False,
        max_queued_messages: int | None = None,
    ) -> None:
        super().__init__(directory, port=port)
        self.binary = binary or find_binary("mosquitto")
        self.config_path = self.directory / "mosquitto.conf"
        self.settings = [
            f"allow_anonymous {'true' if anonymous else 'false'}",
            f"log_dest file {self.log_path}",
            *(f"log_type {kind}" for kind in log_types),
            f"connection_messages {'true' if connection_messages else 'false'}",
            f"persistence {'true' if persistence else 'false'}",
            f"persistence_location {self.directory}/",
        ]
        if max_queued_messages is not None:
            self.settings.append(f"max_queued_messages {max_queued_messages}")
        if os.geteuid() == 0:
            self.settings.append("user root")  # else it drops to `mosquitto`: see above
        if password_file is not None:
            self.settings.append(f"password_file {password_file}")
        if tls is not None:
            self.settings += [
                f"cafile {tls['ca']}",
                f"certfile {tls['server_cert']}",
                f"keyfile {tls['server_key']}",
                "require_certificate true",
            ]

    def describe(self) -> str:
        return f"mosquitto ({self.binary})" if self.binary else "mosquitto"

    def command(self) -> list[str]:
        if self.binary is None:
            raise BrokerError("mosquitto is not installed (sudo apt install mosquitto)")
        lines = [f"listener {self.port} {self.host}", *self.settings]
        self.config_path.write_text("\n".join(lines) + "\n")
        return [self.binary, "-c", str(self.config_path)]
