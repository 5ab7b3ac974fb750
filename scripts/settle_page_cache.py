"""Write freshly installed files to disk and drop them from the page cache, once, after setup.

    python scripts/settle_page_cache.py DIR [DIR ...]

Exit 0 when done, 2 when a DIR is missing (one line on stderr).

Why: where the kernel keeps a file's freshly written pages in large folios (ext4 does since
Linux 6.16; this project's machines run 6.18), a program that maps those files right after they
were written maps whole folios where it touched one page. The first `edge-agent bench`
after a fresh `make setup` then peaked at 178-181 MB RSS instead of 128 MB, the extra
being clean pages of the shared libraries (OpenCV's own library alone 30 MB instead of 7
MB, docs/performance.md). Read back from disk later, the same files are cached in
readahead-sized pieces, as after `echo 1 > /proc/sys/vm/drop_caches` or a reboot. This does
that for the installed files only, without root: flush each one, then tell the kernel its
cached pages are no longer needed. Pages that a running process maps stay where they are.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def settle(folder: Path) -> int:
    """Flush and uncache every regular file under `folder`; return how many."""
    count = 0
    for root, _, names in os.walk(folder):
        for name in names:
            path = Path(root, name)
            if path.is_symlink() or not path.is_file():
                continue
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fdatasync(fd)  # dirty pages cannot be dropped
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
            count += 1
    return count


def main() -> int:
    if len(sys.argv) < 2:
        print("usage: settle_page_cache.py DIR [DIR ...]", file=sys.stderr)
        return 2
    folders = [Path(folder) for folder in sys.argv[1:]]
    for folder in folders:
        if not folder.is_dir():
            print(f"settle_page_cache.py: {folder} is not a directory", file=sys.stderr)
            return 2
    total = sum(settle(folder) for folder in folders)
    print(f"settled the page cache of {total} installed files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
