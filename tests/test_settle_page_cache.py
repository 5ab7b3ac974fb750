"""scripts/settle_page_cache.py, which `make setup` runs last: it must leave the files it was
given out of the page cache (so the first run after setup maps them as any later run does),
pass over links, FIFOs and sockets without waiting on them, name a file it cannot settle
without failing the setup, and refuse a folder that is not there.

The files are written in the checkout's venv, on the filesystem the script is for; a tmpfs
keeps its pages whatever the advice, so there the first test skips.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from helpers import need

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "settle_page_cache.py"


def settle(*folders: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, folders)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def resident_bytes(fincore: str, *files: Path) -> int:
    out = subprocess.run(
        [fincore, "--bytes", "--noheadings", "--output", "RES", *map(str, files)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sum(int(line) for line in out.split())


def test_written_files_leave_the_page_cache_and_nothing_else_is_touched() -> None:
    fincore = need("fincore")
    beside = ROOT / ".venv" if (ROOT / ".venv").is_dir() else ROOT
    kind = subprocess.run(["stat", "-f", "-c", "%T", str(beside)], capture_output=True, text=True)
    if kind.stdout.strip() == "tmpfs":
        pytest.skip(f"{beside} is on a tmpfs, which has no disk to drop pages to")
    with tempfile.TemporaryDirectory(dir=beside, prefix="settle-test-") as folder:
        top = Path(folder, "lib.so")
        nested = Path(folder, "site-packages", "pkg", "data.bin")
        nested.parent.mkdir(parents=True)
        top.write_bytes(b"\x7f" * (4 << 20))
        nested.write_bytes(b"\x01" * (1 << 20))
        Path(folder, "link").symlink_to(top)
        Path(folder, "dangling").symlink_to(Path(folder, "gone"))
        os.mkfifo(Path(folder, "fifo"))  # opened blocking, this would hang the setup
        with socket.socket(socket.AF_UNIX) as listening:
            listening.bind(str(Path(folder, "socket")))
            assert resident_bytes(fincore, top, nested) >= 5 << 20, "just written, cached"

            done = settle(Path(folder))

        assert done.returncode == 0, done.stderr
        assert done.stderr == ""
        assert done.stdout.strip() == "settled the page cache of 2 installed files"
        assert resident_bytes(fincore, top, nested) == 0


def test_an_unreadable_file_is_named_and_the_rest_still_settled() -> None:
    """Run as an unprivileged user where the suite runs as root (root reads a file of mode
    000 all the same): a copy of the script in /tmp, by Debian's own python3, since that
    user may not reach the checkout or this venv's interpreter."""
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="settle-test-") as outer:
        Path(outer).chmod(0o755)
        script = Path(outer, SCRIPT.name)
        script.write_bytes(SCRIPT.read_bytes())
        script.chmod(0o644)
        command = [sys.executable, str(script)]
        if os.geteuid() == 0:
            setpriv = need("setpriv")
            command = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
            command += ["/usr/bin/python3", str(script)]
        folder = Path(outer, "venv")
        folder.mkdir(mode=0o755)
        locked = folder / "locked.bin"
        locked.write_bytes(b"x")
        locked.chmod(0)
        (folder / "open.bin").write_bytes(b"y")
        (folder / "open.bin").chmod(0o644)
        done = subprocess.run(
            [*command, str(folder)], capture_output=True, text=True, timeout=60, check=False
        )
    assert done.returncode == 0, done.stderr
    assert done.stderr == f"settle_page_cache.py: {locked}: Permission denied; left cached\n"
    assert done.stdout.strip() == "settled the page cache of 1 installed files"


def test_a_missing_folder_is_one_line_and_exit_2(tmp_path: Path) -> None:
    missing = tmp_path / "no-venv"
    done = settle(tmp_path, missing)
    assert done.returncode == 2
    assert done.stderr == f"settle_page_cache.py: {missing} is not a directory\n"
    assert done.stdout == ""
