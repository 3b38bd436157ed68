"""Results kept in memory under server-made ids, their files rendered once into the work folder.

The store keeps the last `keep` results (least recently used dropped first, with their files). File
names come from the code, never from a request; a result's folder is the work folder plus its id,
which the server made (32 hex digits) and checks before any use.
"""

from __future__ import annotations

import re
import secrets
import shutil
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..fileio import atomic_path
from ..synth.pipeline import Result
from .params import RequestError

ID = re.compile(r"[0-9a-f]{32}")
FILE_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9]+)+")


@dataclass
class Entry:
    """One synthesis: the result, the photo it came from when known, and how it was asked for."""

    result: Result
    original: np.ndarray | None = None  # (S, S, 3) uint8
    title: str = ""
    request: dict = field(default_factory=dict)  # grid, labels, ids, like: for the page and for re-runs


class ResultStore:
    def __init__(self, work: Path, keep: int = 12) -> None:
        self.work = Path(work)
        self.keep = max(int(keep), 1)
        self._items: OrderedDict[str, Entry] = OrderedDict()
        self._lock = threading.Lock()
        self.work.mkdir(parents=True, exist_ok=True)
        self._remove_stale()

    def _remove_stale(self) -> None:
        """Folders of an earlier server's results (unreachable now: results live in memory)."""
        for path in self.work.iterdir():
            if path.is_dir() and ID.fullmatch(path.name):
                shutil.rmtree(path, ignore_errors=True)

    def add(self, entry: Entry) -> str:
        rid = secrets.token_hex(16)
        with self._lock:
            self._items[rid] = entry
            while len(self._items) > self.keep:
                old, _ = self._items.popitem(last=False)
                shutil.rmtree(self.work / old, ignore_errors=True)
        return rid

    def get(self, rid: str) -> Entry:
        with self._lock:
            entry = self._items.get(rid) if ID.fullmatch(rid or "") else None
            if entry is None:
                raise RequestError(f"no such result; the server keeps the last {self.keep} results", 404)
            self._items.move_to_end(rid)
            return entry

    def __len__(self) -> int:
        return len(self._items)

    def file(self, rid: str, name: str, render: Callable[[], bytes]) -> Path | bytes:
        """The file `name` (made by the caller's code) of result `rid`: rendered once, then read from disk.

        Returns the path of the cached file, or the bytes themselves when the result was dropped meanwhile.
        """
        if not FILE_NAME.fullmatch(name):
            raise ValueError(f"not a file name the server makes: {name!r}")
        self.get(rid)
        path = self.work / rid / name
        if path.exists():
            return path
        data = render()
        with self._lock:
            if rid not in self._items:
                return data
            with atomic_path(path) as tmp:
                tmp.write_bytes(data)
        return path

    def clear(self) -> None:
        with self._lock:
            for rid in list(self._items):
                shutil.rmtree(self.work / rid, ignore_errors=True)
            self._items.clear()
