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
        meta.json          {"names": [...], "labels": [...]} (label null when unknown)
      projection.npy       optional: (d, D) float32 basis that reduces D-dim hypercolumns to d

Exemplar ids are positions in the concatenation of shards in manifest order. Full pixel
descriptors (D = 1472 for VGG-16) are never stored: the exact search recomputes them from f.npy for
the few exemplars a query needs; a bank built with `descriptors` d stores their projection to d
dimensions (manifest key "descriptors": {"dim": d}), which the fast search reads. Arrays are
memory-mapped, so a bank's resident memory is its global descriptors plus what a query touches.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BankError
from ..fileio import write_json

FORMAT = "pixelnn-bank"
VERSION = 1
MANIFEST = "bank.json"
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


def write_shard(root: Path, manifest: dict, shard: Shard) -> dict:
    """Write a shard atomically and return the updated manifest (already written to disk)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    name = f"shard-{len(manifest['shards']):03d}"
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}."))
    try:
        for key, arr in (("f", shard.f), ("y", shard.y), ("x", shard.x), ("global", shard.global_)):
            np.save(tmp / f"{key}.npy", arr)
        if isinstance(shard.desc, Path):
            os.replace(shard.desc, tmp / "desc.npy")
        elif shard.desc is not None:
            np.save(tmp / "desc.npy", shard.desc)
        (tmp / "meta.json").write_text(json.dumps({"names": shard.names, "labels": shard.labels}))
        if (root / name).exists():  # a leftover of an interrupted run that never reached the manifest
            shutil.rmtree(root / name)
        os.replace(tmp, root / name)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    entry = {"name": name, "count": len(shard), "desc": shard.desc is not None}
    manifest = {**manifest, "shards": [*manifest["shards"], entry]}
    manifest["count"] = sum(s["count"] for s in manifest["shards"])
    write_json(root / MANIFEST, manifest)
    return manifest


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
    shard = Shard(arrays["f"], arrays["y"], arrays["x"], arrays["global"], meta["names"], meta["labels"], arrays.get("desc"))
    lengths = [len(a) for a in arrays.values()] + [len(shard.names), len(shard.labels)]
    if any(n != entry["count"] for n in lengths):
        raise BankError(f"bank shard {folder} holds {len(shard)} exemplars, its manifest says {entry['count']}")
    return shard
