"""Atomic, durable writes: every artefact is written to a temporary file in the same folder, flushed
to disk (fsync), renamed, and the rename itself flushed (fsync of the folder). Files and folders get
the modes the user's umask gives (tempfile's private 0600 and 0700 would make a model folder copied
to a shared disk unreadable by anyone else)."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def open_locked(path: str | os.PathLike, *, blocking: bool = True, create: bool = True) -> int | None:
    """An open descriptor of `path` holding an exclusive flock, which the kernel releases when it is
    closed or its process dies (SIGKILL included); None when another process holds the lock
    (blocking=False) or the file does not exist (create=False). Links are not followed."""
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_CREAT if create else 0)
    try:
        fd = os.open(path, flags, 0o666)  # less the umask
    except FileNotFoundError:
        if create:
            raise
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except OSError:
        os.close(fd)
        raise
    return fd


def umask() -> int:
    """The process's umask, read without changing it where /proc tells it (os.umask can only set it,
    and setting it back and forth races with other threads creating files)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def user_mode(path: str | os.PathLike) -> None:
    """Give a file made by tempfile (0600) or a folder (0700) the mode of one made by open or mkdir."""
    os.chmod(path, (0o777 if os.path.isdir(path) else 0o666) & ~umask())


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a file's data, or a folder's list of entries, to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_durably(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Rename `src` (a file, or a folder of files) onto `dst` once its data is on disk, then make
    the rename durable: after a power cut `dst` is either the old one or the complete new one."""
    src = Path(src)
    if src.is_dir():
        for p in sorted(src.iterdir()):
            if p.is_file():
                fsync_path(p)
    fsync_path(src)
    os.replace(src, dst)
    fsync_path(Path(dst).parent)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        user_mode(tmp)  # after the block: some writers (safetensors) replace the file they are given
        replace_durably(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def fsync_tree(folder: str | os.PathLike) -> None:
    """Flush every file and folder under `folder` (and the folder itself) to disk."""
    for here, _, files in os.walk(folder, topdown=False):
        for name in files:
            fsync_path(os.path.join(here, name))
        fsync_path(here)


@contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a new empty folder next to `path`, renamed onto `path` (with everything in it on disk) only if
    the block succeeds; it is removed otherwise. `path` must not exist, or be an empty folder, when the
    block ends: a folder with files in it is never replaced (FileExistsError)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        user_mode(tmp)
        yield tmp
        fsync_tree(tmp)
        try:
            os.rename(tmp, path)  # replaces an empty folder only; never a file or a folder with files
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                raise FileExistsError(errno.EEXIST, "exists and is not an empty folder", str(path)) from None
            raise
        fsync_path(path.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an (H, W), (H, W, 1) or (H, W, 3) uint8 array as PNG."""
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(image)).save(tmp, format="PNG")


def write_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)


def write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 hex digest of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
