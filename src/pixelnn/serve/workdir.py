"""The temporary work folder of `pixelnn serve`, and the removal of ones a killed server left behind.

A server holds an exclusive flock on LOCK inside its folder for as long as it runs; the kernel
drops the lock when the process dies however it dies (SIGKILL included). The next server removes
every `pixelnn-serve-*` folder of the temp folder whose lock it can take: no live server owns it.
A folder without a lock file (one being made right now, or an older version's) is left alone.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path

from ..fileio import open_locked

PREFIX = "pixelnn-serve-"
LOCK = ".owner.lock"
_NAME = re.compile(re.escape(PREFIX) + r"[A-Za-z0-9_]+")


@contextmanager
def work_folder(root: str | Path | None = None):
    """A new locked folder pixelnn-serve-* in `root` (default: the system temp folder), after
    removing stale ones; removed on exit. Yields its Path."""
    root = Path(root or tempfile.gettempdir())
    remove_stale(root)
    folder = Path(tempfile.mkdtemp(prefix=PREFIX, dir=root))
    fd = open_locked(folder / LOCK)  # a new file: taken at once, held until the folder is removed
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        os.close(fd)


def remove_stale(root: str | Path) -> list[Path]:
    """Remove the pixelnn-serve-* folders in `root` that belong to this user and no live server;
    returns them. Anything else (other users' folders, links, locked folders) is left alone."""
    removed = []
    for folder in sorted(Path(root).glob(PREFIX + "*")):
        if _is_ours(folder) and _stale(folder):
            removed.append(folder)
    return removed


def _is_ours(folder: Path) -> bool:
    try:
        info = folder.lstat()
    except OSError:
        return False
    return bool(_NAME.fullmatch(folder.name)) and stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid()


def _stale(folder: Path) -> bool:
    """Remove `folder` if its lock can be taken; True if removed."""
    try:
        fd = open_locked(folder / LOCK, blocking=False, create=False)
    except OSError:  # a link, or unreadable: not ours to judge
        return False
    if fd is None:  # no lock file (yet), or a live server owns it
        return False
    try:
        shutil.rmtree(folder, ignore_errors=True)  # removed while we hold its lock
    finally:
        os.close(fd)
    return not folder.exists()
