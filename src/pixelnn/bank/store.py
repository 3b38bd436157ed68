"""The exemplar bank on disk: a versioned folder of shards that grows without retraining stage 1.

Layout (format "pixelnn-bank", version 1)::

    bank/
      bank.json            manifest: format, version, model fingerprint, backbone, size, signal,
                           input shape, global descriptor size, and the list of shards in order
      shard-000/           one shard per `pixelnn index` run, written to a temporary folder and renamed
        f.npy              (n, S, S, 3) float16  stage-1 outputs f(x_n) in [0, 1]
        y.npy              (n, S, S, 3) uint8    target photos y_n
        x.npy              (n, h, w, c) uint8    input signals x_n (for display)
        global.npy         (n, G) float32        global descriptors of f(x_n), unit norm
        desc.npy           (n, S, S, d) float16  optional: reduced pixel descriptors (fast search)
        meta.json          {"names": [...], "labels": [...], "hashes": [...]} (label null when unknown;
                           hashes: sha1 of each exemplar's x and y bytes, absent in older banks)
      projection.npy       optional: (d, D) float32 basis that reduces D-dim hypercolumns to d
      bank.lock            the writers' lock (fcntl.flock): held while a writer commits a shard
      .staging-*/          a running writer's work folder (its owner.lock held while it runs)

Exemplar ids are positions in the concatenation of shards in manifest order. Full pixel
descriptors (D = 1472 for VGG-16) are never stored: the exact search recomputes them from f.npy for
the few exemplars a query needs; a bank built with `descriptors` d stores their projection to d
dimensions (manifest key "descriptors": {"dim": d}), which the fast search reads. Arrays are
memory-mapped, so a bank's resident memory is its global descriptors plus what a query touches.

Writers may run at once: each computes its shard in its own staging folder, then, holding
bank.lock, re-reads the manifest, removes what dead writers left behind, renames its shard in under
the next free name and writes the manifest. Readers need no lock: a shard is listed in the manifest
only once it is complete, and listed shards are never changed.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import BankError
from ..fileio import replace_durably, write_json

FORMAT = "pixelnn-bank"
VERSION = 1
MANIFEST = "bank.json"
LOCK = "bank.lock"
STAGING = ".staging-"
OWNER = "owner.lock"
ARRAYS = ("f", "y", "x", "global")


@dataclass
class Shard:
    f: np.ndarray  # (n, S, S, 3) float16
    y: np.ndarray  # (n, S, S, 3) uint8
    x: np.ndarray  # (n, h, w, c) uint8
    global_: np.ndarray  # (n, G) float32
    names: list[str]
    labels: list[str | None]
    desc: np.ndarray | Path | None = None  # (n, S, S, d) float16, or a finished .npy file to move in
    hashes: list[str] | None = None  # exemplar_hashes(x, y); computed when missing

    def __len__(self) -> int:
        return len(self.y)


def read_manifest(root: Path) -> dict:
    path = Path(root) / MANIFEST
    if not path.exists():
        raise BankError(f"no exemplar bank at {root} (missing {MANIFEST}); build one with `pixelnn index`")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise BankError(f"{path} is not a readable bank manifest ({e})") from None
    if manifest.get("format") != FORMAT:
        raise BankError(f"{path} is not a PixelNN exemplar bank")
    if manifest.get("version") != VERSION:
        raise BankError(f"bank {root} has format version {manifest.get('version')}; this PixelNN reads version {VERSION}")
    return manifest


def new_manifest(fingerprint: str, backbone: str, size: int, signal: str, input_shape: tuple, global_dim: int) -> dict:
    return {
        "format": FORMAT,
        "version": VERSION,
        "model_fingerprint": fingerprint,
        "backbone": backbone,
        "size": size,
        "signal": signal,
        "input_shape": list(input_shape),
        "global_dim": global_dim,
        "descriptors": None,
        "shards": [],
        "count": 0,
    }


def check_compatible(manifest: dict, expected: dict, root: Path) -> None:
    """Refuse a bank whose model, backbone, size or input differs from what it is used with."""
    for key in ("model_fingerprint", "backbone", "size", "signal", "input_shape", "global_dim"):
        if manifest.get(key) != expected.get(key):
            raise BankError(
                f"bank {root} does not match this model: its {key} is {manifest.get(key)!r}, "
                f"the model's is {expected.get(key)!r}. Build a new bank with `pixelnn index` for this model."
            )


def exemplar_hashes(x: np.ndarray, y: np.ndarray) -> list[str]:
    """Content hash of each exemplar: sha1 of its input's and its target's uint8 bytes."""
    out = []
    for xi, yi in zip(x, y):
        h = hashlib.sha1(np.ascontiguousarray(xi, dtype=np.uint8).tobytes())
        h.update(np.ascontiguousarray(yi, dtype=np.uint8).tobytes())
        out.append(h.hexdigest())
    return out


def _lock_file(path: Path, blocking: bool = True) -> int | None:
    """An open descriptor of `path` holding an exclusive flock, or None if another holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except OSError as e:
        os.close(fd)
        raise BankError(f"cannot lock {path} ({e}); the bank's folder must be on a file system with locks") from None
    return fd


@contextmanager
def bank_lock(root: Path) -> Iterator[None]:
    """Hold the bank's writer lock (created with the folder if needed) for the block."""
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BankError(f"cannot create the bank folder {root} ({e})") from None
    fd = _lock_file(root / LOCK)
    try:
        yield
    finally:
        os.close(fd)  # closing releases the flock


@contextmanager
def staging_folder(root: Path) -> Iterator[Path]:
    """A work folder inside the bank, marked as this writer's by a flock on its owner.lock while the
    block runs (a crash releases it); removed afterwards."""
    with bank_lock(root):  # a cleaner holding the lock never sees a folder without its owner lock
        folder = Path(tempfile.mkdtemp(dir=root, prefix=STAGING))
        fd = _lock_file(folder / OWNER)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        os.close(fd)


def _staging_is_dead(folder: Path) -> bool:
    if not (folder / OWNER).exists():
        return True
    fd = _lock_file(folder / OWNER, blocking=False)
    if fd is None:
        return False  # a live writer holds it
    os.close(fd)
    return True


def _is_leftover(path: Path, listed: set[str]) -> bool:
    name = path.name
    if name.startswith(STAGING):
        return path.is_dir() and _staging_is_dead(path)
    if name.startswith(".shard-"):  # shard folders of older versions were made as .shard-NNN.*
        return True
    if name.startswith((f".{MANIFEST}.", ".projection.npy.")) and name.endswith(".tmp"):
        return True
    return name.startswith("shard-") and path.is_dir() and name not in listed  # renamed in, never listed


def remove_leftovers(root: Path, manifest: dict | None) -> list[str]:
    """Remove what interrupted writers left in the bank; call it holding bank_lock. Returns the names."""
    listed = {s.get("name") for s in manifest["shards"]} if manifest else set()
    removed = []
    for path in sorted(Path(root).iterdir()):
        if _is_leftover(path, listed):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed


def stage_shard(folder: Path, shard: Shard) -> None:
    """Write a shard's files into `folder` (made if needed), replacing what is there."""
    folder.mkdir(exist_ok=True)
    for key, arr in (("f", shard.f), ("y", shard.y), ("x", shard.x), ("global", shard.global_)):
        np.save(folder / f"{key}.npy", arr)
    (folder / "desc.npy").unlink(missing_ok=True)
    if isinstance(shard.desc, Path):
        os.replace(shard.desc, folder / "desc.npy")
    elif shard.desc is not None:
        np.save(folder / "desc.npy", shard.desc)
    hashes = shard.hashes if shard.hashes is not None else exemplar_hashes(shard.x, shard.y)
    meta = {"names": list(shard.names), "labels": list(shard.labels), "hashes": list(hashes)}
    (folder / "meta.json").write_text(json.dumps(meta))


class ProjectionChanged(Exception):
    """The bank's reduced-descriptor projection is not the one the staged shard was made with
    (another writer created the bank meanwhile): redo the descriptors with `basis` and commit again."""

    def __init__(self, basis: np.ndarray | None) -> None:
        super().__init__("the bank's projection differs from the staged shard's")
        self.basis = basis


def _descriptor_setting(basis: np.ndarray | None) -> dict | None:
    return None if basis is None else {"dim": int(basis.shape[0]), "dtype": "float16"}


def _check_projection(root: Path, current: dict, staged: Path, basis: np.ndarray | None) -> None:
    """Make the staged shard's descriptors agree with the bank's, or raise ProjectionChanged."""
    if not current.get("descriptors"):
        (staged / "desc.npy").unlink(missing_ok=True)  # the bank stores none: drop ours
        return
    theirs = read_projection(root)
    if basis is None or not np.array_equal(theirs, basis):
        raise ProjectionChanged(theirs)


def _next_name(manifest: dict) -> str:
    listed = {s["name"] for s in manifest["shards"]}
    i = len(listed)
    while f"shard-{i:03d}" in listed:
        i += 1
    return f"shard-{i:03d}"


def _drop_rows(staged: Path, keep: np.ndarray) -> None:
    """Keep only rows `keep` of every array and list of the shard staged in folder `staged`."""
    for path in sorted(staged.glob("*.npy")):
        np.save(path, np.load(path)[keep])
    meta = json.loads((staged / "meta.json").read_text())
    (staged / "meta.json").write_text(json.dumps({k: [v[i] for i in np.flatnonzero(keep)] for k, v in meta.items()}))


def _skip_added_meanwhile(root: Path, current: dict, staged: Path, seen: set[str]) -> int:
    """Drop staged exemplars that shards listed since the writer's check (those not in `seen`)
    already hold; returns how many remain."""
    hashes = json.loads((staged / "meta.json").read_text())["hashes"]
    known = bank_hashes(root, {"shards": [s for s in current["shards"] if s["name"] not in seen]})
    keep = np.array([h not in known for h in hashes], dtype=bool)
    if not keep.all():
        print(f"index: skipped {int((~keep).sum())} exemplars that another run added to the bank {root} meanwhile")
        _drop_rows(staged, keep)
    return int(keep.sum())


def commit_staged(root: Path, template: dict, staged: Path, count: int, basis: np.ndarray | None = None,
                  checked: set[str] | None = None) -> dict:
    """Under the bank lock: append the shard staged in folder `staged` to the bank as it is now
    (creating the bank from `template` and `basis` if there is none yet); returns the new manifest.

    With `checked` (the names of the shards the staged exemplars were already deduplicated
    against), exemplars that shards listed since then hold are dropped first."""
    root = Path(root)
    with bank_lock(root):
        current = read_manifest(root) if (root / MANIFEST).exists() else None
        remove_leftovers(root, current)
        if current is None:
            current = {**template, "descriptors": _descriptor_setting(basis), "shards": [], "count": 0}
            if basis is not None:
                write_projection(root, basis)
        else:
            check_compatible(current, template, root)
            _check_projection(root, current, staged, basis)
            if checked is not None:
                count = _skip_added_meanwhile(root, current, staged, checked)
                if count == 0:
                    return current
        name = _next_name(current)
        replace_durably(staged, root / name)
        entry = {"name": name, "count": count, "desc": (root / name / "desc.npy").exists()}
        manifest = {**current, "shards": [*current["shards"], entry]}
        manifest["count"] = sum(s["count"] for s in manifest["shards"])
        write_json(root / MANIFEST, manifest)
        return manifest


def write_shard(root: Path, manifest: dict, shard: Shard, basis: np.ndarray | None = None) -> dict:
    """Append a shard to the bank at `root` (created from `manifest` if missing) atomically and
    durably; returns the updated manifest (already on disk). Safe with concurrent writers."""
    with staging_folder(root) as folder:
        stage_shard(folder / "shard", shard)
        return commit_staged(root, manifest, folder / "shard", len(shard), basis)


def write_projection(root: Path, basis: np.ndarray) -> None:
    from ..fileio import write_npy

    write_npy(Path(root) / "projection.npy", basis.astype(np.float32))


def read_projection(root: Path) -> np.ndarray:
    try:
        return np.load(Path(root) / "projection.npy")
    except (OSError, ValueError, EOFError) as e:
        raise BankError(f"bank {root} lists reduced descriptors but its projection.npy is unreadable ({e})") from None


def read_shard(root: Path, entry: dict) -> Shard:
    if not isinstance(entry, dict) or not {"name", "count"} <= entry.keys():
        raise BankError(f"bank {root}: a shard entry of {MANIFEST} lacks its name or count")
    folder = Path(root) / entry["name"]
    try:
        arrays = {k: np.load(folder / f"{k}.npy", mmap_mode="r") for k in ARRAYS}
        if entry.get("desc"):
            arrays["desc"] = np.load(folder / "desc.npy", mmap_mode="r")
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError, EOFError) as e:  # np.load raises EOFError on an empty file
        raise BankError(f"bank shard {folder} is missing or corrupt ({e})") from None
    if not isinstance(meta, dict) or not {"names", "labels"} <= meta.keys():
        raise BankError(f"bank shard {folder}: meta.json lacks names or labels")
    hashes = meta.get("hashes")
    shard = Shard(arrays["f"], arrays["y"], arrays["x"], arrays["global"], meta["names"], meta["labels"], arrays.get("desc"), hashes)
    lengths = [len(a) for a in arrays.values()] + [len(shard.names), len(shard.labels)] + ([len(hashes)] if hashes is not None else [])
    if any(n != entry["count"] for n in lengths):
        raise BankError(f"bank shard {folder} holds {len(shard)} exemplars, its manifest says {entry['count']}")
    return shard


def bank_hashes(root: Path, manifest: dict) -> set[str]:
    """Content hashes of every exemplar in the bank (computed from x.npy and y.npy for shards
    written before hashes were stored)."""
    out: set[str] = set()
    for entry in manifest["shards"]:
        shard = read_shard(root, entry)
        out.update(shard.hashes if shard.hashes is not None else exemplar_hashes(shard.x, shard.y))
    return out
