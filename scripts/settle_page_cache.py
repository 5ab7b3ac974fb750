"""Drop freshly installed files from the page cache, once, as `make setup` ends.

    python scripts/settle_page_cache.py DIR [DIR ...]

Exit 0 when done, also when some files could not be settled (each gets one line on stderr:
this only evens out memory figures, it must not fail a setup); 2 when a DIR is not a
directory or none is given.

Why: where the kernel keeps a file's freshly written pages in large folios (ext4 does since
Linux 6.16; this project's machines run 6.18), a program that maps those files right after
they were written maps whole folios where it touched one page. Without this step the first
`edge-agent bench` after a fresh `make setup` peaked at 181 MB RSS instead of 128 MB, the
extra being clean pages of the shared libraries (OpenCV's own library alone 30 MB resident
instead of 7 MB, docs/performance.md). Read back from disk later, the same files are cached
in readahead-sized pieces, as after `echo 1 > /proc/sys/vm/drop_caches` or a reboot. This
does that for the installed files only, without root: write everything out (dirty pages
cannot be dropped), then tell the kernel each file's cached pages are no longer needed.
Pages that a running process maps stay where they are.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from pathlib import Path

# Only regular files are opened (checked first); should one be swapped for a link or a FIFO
# in between, it is neither followed nor waited on.
OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def warn(path: str, error: OSError) -> None:
    print(f"settle_page_cache.py: {path}: {error.strerror}; left cached", file=sys.stderr)


def settle(folder: Path) -> int:
    """Advise the kernel to drop every regular file under `folder`; return how many."""
    count = 0
    for root, _, names in os.walk(folder, onerror=lambda e: warn(str(e.filename), e)):
        for name in names:
            path = os.path.join(root, name)
            try:
                if not stat.S_ISREG(os.lstat(path).st_mode):
                    continue  # links, FIFOs, sockets: not installed file contents
                fd = os.open(path, OPEN_FLAGS)
            except OSError as error:
                warn(path, error)
                continue
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                count += 1
            except OSError as error:
                warn(path, error)
            finally:
                os.close(fd)
    return count


def main() -> int:
    parser = argparse.ArgumentParser(description="Drop installed files from the page cache.")
    parser.add_argument("folders", nargs="+", type=Path, metavar="DIR")
    folders = parser.parse_args().folders
    for folder in folders:
        if not folder.is_dir():
            print(f"settle_page_cache.py: {folder} is not a directory", file=sys.stderr)
            return 2
    os.sync()  # one flush of everything, rather than thousands of per-file waits
    total = sum(settle(folder) for folder in folders)
    print(f"settled the page cache of {total} installed files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
