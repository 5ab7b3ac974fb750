"""scripts/settle_page_cache.py, which `make setup` runs last: it must leave the files it was
given out of the page cache (so the first run after setup maps them as any later run does)
and refuse a folder that is not there rather than settle nothing in silence.

The files are written beside the checkout, on the filesystem the venv is on: a tmpfs keeps
its pages whatever the advice, and /tmp may be one.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from helpers import need

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "settle_page_cache.py"


def resident_bytes(fincore: str, *files: Path) -> int:
    out = subprocess.run(
        [fincore, "--bytes", "--noheadings", "--output", "RES", *map(str, files)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sum(int(line) for line in out.split())


def test_written_files_leave_the_page_cache_and_links_are_not_followed() -> None:
    fincore = need("fincore")
    with tempfile.TemporaryDirectory(dir=ROOT, prefix=".settle-test-") as folder:
        top = Path(folder, "lib.so")
        nested = Path(folder, "site-packages", "pkg", "data.bin")
        nested.parent.mkdir(parents=True)
        top.write_bytes(b"\x7f" * (4 << 20))
        nested.write_bytes(b"\x01" * (1 << 20))
        Path(folder, "link").symlink_to(top)
        Path(folder, "dangling").symlink_to(Path(folder, "gone"))
        assert resident_bytes(fincore, top, nested) >= 5 << 20, "just written, still cached"

        done = subprocess.run(
            [sys.executable, str(SCRIPT), folder], capture_output=True, text=True, check=False
        )

        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "settled the page cache of 2 installed files"
        assert resident_bytes(fincore, top, nested) == 0


def test_a_missing_folder_is_one_line_and_exit_2(tmp_path: Path) -> None:
    missing = tmp_path / "no-venv"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path), str(missing)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr == f"settle_page_cache.py: {missing} is not a directory\n"
    assert done.stdout == ""
