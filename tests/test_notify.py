"""The notify protocol on real datagram sockets (a path and an abstract one) and the journal
handler on a real socket standing in for journald's."""

from __future__ import annotations

import logging
import os
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.daemon import logs
from edge_agent.daemon.notify import Notifier, socket_address


def receive_all(server: socket.socket) -> list[str]:
    server.settimeout(1.0)
    messages = []
    while True:
        try:
            messages.append(server.recv(4096).decode())
        except TimeoutError:
            return messages
        server.settimeout(0.05)


@pytest.fixture
def path_socket(tmp_path):
    path = tmp_path / "notify.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    yield str(path), server
    server.close()


def test_messages_reach_a_path_socket(path_socket):
    address, server = path_socket
    notifier = Notifier({"NOTIFY_SOCKET": address}, use_systemd_python=False)
    assert notifier.ready("3.0 fps\nbroker connected")
    assert notifier.watchdog()
    assert notifier.status("12.0 fps, 1 face\ncamera ok")
    assert notifier.reloading()
    assert notifier.stopping()
    notifier.close()
    messages = receive_all(server)
    assert messages[:3] == [
        "READY=1\nSTATUS=3.0 fps broker connected",
        "WATCHDOG=1",
        "STATUS=12.0 fps, 1 face camera ok",
    ]
    assert messages[3].startswith("RELOADING=1\nMONOTONIC_USEC=")
    assert messages[4] == "STOPPING=1"


def test_messages_reach_an_abstract_socket():
    name = f"edge-agent-test-{os.getpid()}"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(b"\0" + name.encode())
    try:
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name}, use_systemd_python=False)
        assert socket_address("@" + name) == b"\0" + name.encode()
        assert notifier.ready()
        assert receive_all(server) == ["READY=1"]
    finally:
        server.close()


def test_without_notify_socket_everything_is_a_no_op():
    notifier = Notifier({})
    assert not notifier.enabled
    assert not notifier.ready() and not notifier.watchdog()
    assert notifier.watchdog_interval_s is None


def test_watchdog_interval_is_half_the_timeout_and_only_for_our_pid():
    env = {"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "30000000"}
    assert Notifier(env).watchdog_interval_s == 15.0
    assert Notifier({**env, "WATCHDOG_PID": str(os.getpid())}).watchdog_interval_s == 15.0
    assert Notifier({**env, "WATCHDOG_PID": "1"}).watchdog_interval_s is None
    assert Notifier({**env, "WATCHDOG_USEC": "soon"}).watchdog_interval_s is None


def test_a_vanished_socket_warns_once_and_never_raises(tmp_path, caplog):
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")}, use_systemd_python=False)
    with caplog.at_level(logging.WARNING):
        assert not notifier.ready()
        assert not notifier.watchdog()
    assert len([r for r in caplog.records if "cannot notify" in r.message]) == 1


def parse_native(data: bytes) -> dict[str, str]:
    fields, rest = {}, data
    while rest:
        line, _, after = rest.partition(b"\n")
        if b"=" in line:
            key, _, value = line.partition(b"=")
            fields[key.decode()] = value.decode()
            rest = after
        else:  # binary form: KEY \n u64le length, value, \n
            (length,) = struct.unpack("<Q", after[:8])
            fields[line.decode()] = after[8 : 8 + length].decode()
            rest = after[8 + length + 1 :]
    return fields


def test_journal_records_carry_structured_fields(tmp_path):
    path = tmp_path / "journal.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        assert logs.setup("info", target="journal", journal_socket=path) == "journal"
        log = logging.getLogger("edge_agent.test")
        log.info("stats: %d fps", 12, extra={"FPS": 12.5, "camera": "ok"})
        log.warning("two\nlines")
        log.debug("not at info level")
        first, second = (parse_native(server.recv(65536)) for _ in range(2))
    finally:
        for handler in root.handlers[:]:
            root.removeHandler(handler)
            handler.close()
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
        server.close()
    assert first["MESSAGE"] == "stats: 12 fps"
    assert first["PRIORITY"] == "6" and first["SYSLOG_IDENTIFIER"] == "edge-agent"
    assert first["FPS"] == "12.5" and "camera" not in first and "CAMERA" not in first
    assert first["LOGGER"] == "edge_agent.test" and first["CODE_FUNC"]
    assert second["MESSAGE"] == "two\nlines" and second["PRIORITY"] == "4"


def test_stderr_when_journald_is_absent(tmp_path):
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        assert (
            logs.setup("info", target="journal", journal_socket=tmp_path / "absent.sock")
            == "stderr"
        )
        assert logs.setup("info", target="auto") in ("stderr", "journal")
    finally:
        for handler in root.handlers[:]:
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])


@pytest.mark.parametrize(
    ("level", "priority"),
    [
        (logging.CRITICAL, 2),
        (logging.ERROR, 3),
        (logging.WARNING, 4),
        (logging.INFO, 6),
        (logging.DEBUG, 7),
    ],
)
def test_priorities(level, priority):
    assert logs.priority(level) == priority


def test_auto_picks_the_journal_only_when_stderr_is_the_journal(tmp_path):
    """As under systemd: $JOURNAL_STREAM names stderr's device and inode."""
    path = tmp_path / "journal.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.settimeout(5)
    code = (
        "import logging; from edge_agent.daemon import logs; "
        "print(logs.setup('info')); logging.getLogger('x').warning('hello')"
    )
    try:
        for stream_matches in (True, False):
            stderr_path = tmp_path / f"stderr-{stream_matches}"
            with stderr_path.open("w") as stderr:
                stat = os.fstat(stderr.fileno())
                inode = stat.st_ino if stream_matches else stat.st_ino + 1
                env = {
                    **os.environ,
                    "EDGE_AGENT_JOURNAL_SOCKET": str(path),
                    "JOURNAL_STREAM": f"{stat.st_dev}:{inode}",
                }
                env.pop("EDGE_AGENT_LOG", None)
                done = subprocess.run(
                    [sys.executable, "-c", code],
                    stderr=stderr,
                    env=env,
                    stdout=subprocess.PIPE,
                    text=True,
                    timeout=30,
                    check=True,
                )
            if stream_matches:
                assert done.stdout.strip() == "journal"
                assert parse_native(server.recv(65536))["MESSAGE"] == "hello"
            else:
                assert done.stdout.strip() == "stderr"
                assert "hello" in stderr_path.read_text()
    finally:
        server.close()


SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, which sees python3-systemd as on the Pi


def test_systemd_python_carries_the_messages_where_it_is_installed(path_socket):
    """On the Pi the venv sees Debian's python3-systemd (--system-site-packages): the
    notifier must then speak through systemd.daemon.notify, and systemd must hear it."""
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import systemd.daemon"], capture_output=True, check=False
    )
    if probe.returncode != 0:
        message = "python3-systemd is not installed (scripts/install-dev-deps.sh installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    address, server = path_socket
    notify_py = Path(__file__).resolve().parents[1] / "edge_agent" / "daemon" / "notify.py"
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('notify', {str(notify_py)!r})\n"
        "notify = importlib.util.module_from_spec(spec); spec.loader.exec_module(notify)\n"
        "n = notify.Notifier()\n"
        "assert n._library is not None, 'systemd.daemon.notify not picked'\n"
        "assert n.ready('3.0 fps, 1 face')\n"
    )
    done = subprocess.run(
        [SYSTEM_PYTHON, "-c", code],
        env={"NOTIFY_SOCKET": address, "PATH": os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert receive_all(server) == ["READY=1\nSTATUS=3.0 fps, 1 face"]
