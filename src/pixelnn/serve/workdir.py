"""The temporary work folder of `pixelnn serve`, and the removal of ones a killed server left behind.

A server holds an exclusive flock on LOCK inside its folder for as long as it runs; the kernel
drops the lock when the process dies however it dies (SIGKILL included). The next server removes
every `pixelnn-serve-*` folder of the temp folder whose lock it can take: no live server owns it.
A folder without a lock file (one being made right now, or an older version's) is left alone.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path

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
    fd = _lock(folder)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        os.close(fd)


def _lock(folder: Path) -> int:
    """Open and flock folder/LOCK; the descriptor stays open (and the lock held) until closed."""
    fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


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
        fd = os.open(folder / LOCK, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:  # no lock file (yet): not ours to judge
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False  # a live server owns it
    try:
        shutil.rmtree(folder, ignore_errors=True)  # removed while we hold its lock
    finally:
        os.close(fd)
    return not folder.exists()
