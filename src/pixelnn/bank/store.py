"""The exemplar bank on disk: a versioned folder of shards that grows without retraining stage 1.

Layout (format "pixelnn-bank"; version 2 is written, versions 1 and 2 are read)::

    bank/
      bank.json            manifest: format, version, model fingerprint, backbone, size, signal,
                           input shape, global descriptor size, and the list of shards in order
      shard-000/           one shard per chunk of a `pixelnn index` run, written to a temporary folder and renamed
        f.npy              (n, S, S, 3) uint8    stage-1 outputs f(x_n) as round(255 f) (version 1: float16 in [0, 1])
        y.npy              (n, S, S, 3) uint8    target photos y_n
        x.npy              (n, h, w, c) uint8    input signals x_n (for display)
        global.npy         (n, G) float16        global descriptors of f(x_n), unit norm (version 1: float32)
        desc.npy           optional: reduced pixel descriptors for the fast search, (n, L) uint8 codes of
                           bank/codec.py, L = 6 bytes per pixel at 96 x 96 (version 1: (n, S, S, d) float16)
        meta.json          {"names": [...], "labels": [...], "hashes": [...], "sha256": {...}} (label null
                           when unknown; hashes: sha1 of each exemplar's x and y bytes; sha256: of each
                           .npy file, by name, checked by `pixelnn verify`; both absent in older banks)
      projection.npy       optional: (d, D) float32 basis that reduces D-dim hypercolumns to d
      codebook-K.npy       optional (version 2): the centroids of level K of the pixel codec (K = 0, 1, ...),
                           (bytes, 256, d / bytes) float32
      global-index.json    optional: the saved global index (kind, file, shards it holds, nprobe, sha256)
      global-*.faiss       optional: that index, memory-mapped when the bank opens (bank/global_index.py)
      bank.lock            the writers' lock (fcntl.flock): held while a writer commits a shard
      .staging-*/          a running writer's work folder (its owner.lock held while it runs)

Exemplar ids are positions in the concatenation of shards in manifest order. Full pixel
descriptors (D = 1472 for VGG-16) are never stored: the exact search recomputes them from f.npy for
the few exemplars a query needs; a bank built with `descriptors` d stores their projection to d
dimensions, which the fast search reads. Arrays are memory-mapped, so a bank's resident memory is
its global descriptors plus what a query touches.

Version 2 (a compact bank: 129 KB per 96 x 96 exemplar with a one-channel input, 1.26 MB in
version 1) stores f(x_n) in 8 bits, global descriptors in float16 and pixel descriptors as codes of
a residual pyramid of product quantisers (bank/codec.py); manifest key "descriptors": {"dim": d,
"dtype": "pq", "levels": [[4, 16], [2, 16], [1, 1]], "sha256": {file: digest}} gives each level's
block side and bytes, and the sha256 of the projection and codebook files, checked when the bank
opens (they are small). Version 1 ("descriptors": {"dim": d, "dtype": "float16"}) keeps working,
and a version-1 bank grows with version-1 shards; `pixelnn compact` writes a version-2 copy of one.
`Encoding` holds what a bank's version and files say about storing f, global and pixel
descriptors, and converts between stored and float values.

Writers may run at once: each computes its shard in its own staging folder, then, holding
bank.lock, re-reads the manifest, removes what dead writers left behind, renames its shard in under
the next free name and writes the manifest. Readers need no lock: a shard is listed in the manifest
only once it is complete, and listed shards are never changed.

Opening a bank checks the manifest's keys and types, that shard names are plain names inside the
bank, every array file's size, dtype and shape against the manifest, the projection's shape (and
in version 2 the codebooks' shapes and the sha256 of all), and that global descriptors are finite;
the full content check (sha256 per file) is `pixelnn verify`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import BankError
from ..fileio import file_sha256, open_locked, replace_durably, write_json, write_npy
from .codec import PixelCodec, code_length, fit_rotated_codec

log = logging.getLogger(__name__)

FORMAT = "pixelnn-bank"
VERSION = 2  # what new banks are written as
VERSIONS = (1, 2)  # what this PixelNN reads
MANIFEST = "bank.json"
LOCK = "bank.lock"
STAGING = ".staging-"
OWNER = "owner.lock"
ARRAYS = ("f", "y", "x", "global")


@dataclass
class Shard:
    """A shard's arrays as stored (see the format above and Encoding for their dtypes)."""

    f: np.ndarray  # (n, S, S, 3) uint8 (version 1: float16)
    y: np.ndarray  # (n, S, S, 3) uint8
    x: np.ndarray  # (n, h, w, c) uint8
    global_: np.ndarray  # (n, G) float16 (version 1: float32)
    names: list[str]
    labels: list[str | None]
    desc: np.ndarray | Path | None = None  # (n, L) uint8 codes (version 1: (n, S, S, d) float16), or a .npy file
    hashes: list[str] | None = None  # exemplar_hashes(x, y); computed when missing

    def __len__(self) -> int:
        return len(self.y)


def read_manifest(root: Path) -> dict:
    path = Path(root) / MANIFEST
    if not path.exists():
        raise BankError(f"no exemplar bank at {root} (missing {MANIFEST}); build one with `pixelnn index`")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BankError(f"{path} is not a readable bank manifest ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BankError(f"{path} is not a PixelNN exemplar bank")
    if manifest.get("version") not in VERSIONS:
        raise BankError(
            f"bank {root} has format version {manifest.get('version')}; "
            f"this PixelNN reads versions {', '.join(map(str, VERSIONS))}"
        )
    check_manifest(path, manifest)
    return manifest


# Keys every manifest holds, with their JSON types (bool is refused where an integer is expected).
MANIFEST_KEYS = {
    "model_fingerprint": str,
    "backbone": str,
    "size": int,
    "signal": str,
    "input_shape": list,
    "global_dim": int,
    "shards": list,
    "count": int,
}


def _is_int(value, least: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _damaged(path: Path, problem: str) -> BankError:
    return BankError(f"{path} is damaged: {problem}; rebuild the bank with `pixelnn index`")


def is_plain_name(name) -> bool:
    """A file or folder name inside the bank's folder: no path separators, not '.' or '..'."""
    return isinstance(name, str) and name not in ("", ".", "..") and not any(c in name for c in "/\\\0")


def check_manifest(path: Path, manifest: dict) -> None:
    """Refuse a manifest that lacks a key, has one of the wrong type, or lists shards badly."""
    for key, kind in MANIFEST_KEYS.items():
        if key not in manifest:
            raise _damaged(path, f"it lacks the key {key!r}")
        value = manifest[key]
        if not isinstance(value, kind) or (kind is int and not _is_int(value)):
            raise _damaged(
                path, f"{key} must be a {'non-negative integer' if kind is int else kind.__name__}, not {value!r}"
            )
    for key in ("size", "global_dim"):
        if not _is_int(manifest[key], 1):
            raise _damaged(path, f"{key} must be at least 1, not {manifest[key]!r}")
    shape = manifest["input_shape"]
    if len(shape) != 3 or not all(_is_int(n, 1) for n in shape):
        raise _damaged(path, f"input_shape must be 3 positive integers (h, w, c), not {shape!r}")
    _check_descriptor_setting(path, manifest.get("descriptors"), manifest["version"])
    names = [_check_entry(path, entry, bool(manifest.get("descriptors"))) for entry in manifest["shards"]]
    if len(set(names)) != len(names):
        raise _damaged(path, "it lists a shard twice")
    total = sum(entry["count"] for entry in manifest["shards"])
    if manifest["count"] != total:
        raise _damaged(path, f"its count is {manifest['count']}, its shards hold {total} exemplars")


def _check_descriptor_setting(path: Path, setting, version: int) -> None:
    if setting is None:
        return
    if not isinstance(setting, dict) or not _is_int(setting.get("dim"), 1):
        raise _damaged(path, f'descriptors must be null or {{"dim": d, ...}} with d at least 1, not {setting!r}')
    if version == 1:
        return
    if "pixel_bytes" in setting and "levels" not in setting:  # the first compact layout: 5-byte codes
        raise BankError(
            f"{path.parent} was written in the first compact layout (5-byte pixel codes, pixel codes before "
            "block codes), which this version of PixelNN does not read. Rebuild it with `pixelnn index` into a "
            "new bank folder, or run `pixelnn compact` on the version-1 bank it was made from."
        )
    levels = setting.get("levels")
    if setting.get("dtype") != "pq" or not isinstance(levels, list) or not levels:
        raise _damaged(path, f"descriptors must name dtype 'pq' and a list of levels, not {setting!r}")
    for level in levels:
        if not (isinstance(level, list) and len(level) == 2 and all(_is_int(v, 1) for v in level)):
            raise _damaged(path, f"a level of the descriptors must be [block side, bytes], not {level!r}")
        if setting["dim"] % level[1]:
            raise _damaged(path, f"descriptors: a level's {level[1]} bytes do not divide dim {setting['dim']}")
    sums, files = setting.get(SUMS), encoding_files({"version": version, "descriptors": setting})
    if not isinstance(sums, dict) or set(sums) != set(files) or not all(isinstance(v, str) for v in sums.values()):
        raise _damaged(path, f"descriptors must record the sha256 of {', '.join(files)}")


def _check_entry(path: Path, entry, with_desc: bool) -> str:
    """The shard name of a manifest entry, refused unless a plain name inside the bank with a count."""
    if not isinstance(entry, dict) or not {"name", "count"} <= entry.keys():
        raise BankError(f"{path}: a shard entry lacks its name or count")
    if not is_plain_name(entry["name"]):
        raise _damaged(path, f"shard name {entry['name']!r} is not a plain folder name inside the bank")
    if not _is_int(entry["count"]):
        raise _damaged(path, f"shard {entry['name']}'s count must be a non-negative integer, not {entry['count']!r}")
    if bool(entry.get("desc")) != with_desc:
        stored = "stores" if with_desc else "does not store"
        raise _damaged(
            path,
            f"the bank {stored} reduced descriptors but shard {entry['name']}'s desc flag is {entry.get('desc')!r}",
        )
    return entry["name"]


def new_manifest(
    fingerprint: str, backbone: str, size: int, signal: str, input_shape: tuple, global_dim: int, version: int = VERSION
) -> dict:
    return {
        "format": FORMAT,
        "version": version,
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


@dataclass(frozen=True, eq=False)
class Encoding:
    """How a bank stores f(x_n), global and pixel descriptors: its version, and with reduced
    descriptors their projection basis and (version 2) codec. Fixed when the bank is created; every
    shard of the bank is written with it, and queries are rounded by it (see PixelNN)."""

    version: int = VERSION
    basis: np.ndarray | None = None  # (d, D) float32; None: no reduced pixel descriptors
    codec: PixelCodec | None = None  # version 2 with descriptors

    @classmethod
    def trained(cls, basis: np.ndarray, maps: np.ndarray) -> Encoding:
        """A version-2 encoding for descriptors reduced by `basis`, trained on some of their maps
        (n, S, S, d): a codec and a rotation that balances its sub-vectors (codec.fit_rotated_codec),
        folded into the basis (cosines do not change)."""
        rotation, codec = fit_rotated_codec(maps)
        return cls(2, (rotation @ basis).astype(np.float32), codec)

    @property
    def f_dtype(self) -> np.dtype:
        return np.dtype(np.float16 if self.version == 1 else np.uint8)

    @property
    def global_dtype(self) -> np.dtype:
        return np.dtype(np.float32 if self.version == 1 else np.float16)

    def store_f(self, f: np.ndarray) -> np.ndarray:
        """Stage-1 outputs (N, S, S, 3) in [0, 1] as stored: float16, or (version 2) round(255 f) in uint8."""
        if self.version == 1:
            return np.asarray(f).astype(np.float16)
        return np.rint(np.clip(np.asarray(f, np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)

    def f_values(self, stored: np.ndarray) -> np.ndarray:
        """Stored stage-1 outputs as float32 in [0, 1]."""
        if self.version == 1:
            return np.asarray(stored, dtype=np.float32)
        return np.asarray(stored, dtype=np.float32) / 255.0

    def store_desc(self, desc: torch.Tensor) -> np.ndarray:
        """Reduced descriptors (N, S, S, d) as stored: float16, or (version 2) (N, L) uint8 codes."""
        if self.version == 1:
            return desc.cpu().numpy().astype(np.float16)
        return self.codec.encode(desc.cpu()).numpy()

    def desc_values(self, stored: np.ndarray, size: int) -> torch.Tensor:
        """Stored reduced descriptors as float32 (N, S, S, d), not normalised."""
        if self.version == 1:
            return torch.from_numpy(np.asarray(stored, dtype=np.float32))
        return self.codec.decode(torch.from_numpy(np.ascontiguousarray(stored)), size)

    def desc_array(self, n: int, size: int) -> tuple[tuple, np.dtype]:
        """(shape, dtype) of the stored descriptors of n exemplars of size x size."""
        if self.version == 1:
            return (n, size, size, self.basis.shape[0]), np.dtype(np.float16)
        return (n, self.codec.code_length(size)), np.dtype(np.uint8)

    def same_as(self, other: Encoding | None) -> bool:
        if other is None or self.version != other.version or (self.basis is None) != (other.basis is None):
            return False
        if self.basis is None:
            return True
        return np.array_equal(self.basis, other.basis) and (self.codec is None or self.codec.same_as(other.codec))

    def setting(self) -> dict | None:
        """The manifest's "descriptors" entry, without the sha256 of the files (write_encoding adds them)."""
        if self.basis is None:
            return None
        if self.version == 1:
            return {"dim": int(self.basis.shape[0]), "dtype": "float16"}
        return {"dim": self.codec.dim, "dtype": "pq", "levels": [list(level) for level in self.codec.levels]}


def encoding_files(manifest: dict) -> list[str]:
    """The files of the bank folder (beside its shards) that its encoding reads."""
    setting = manifest.get("descriptors")
    if not setting:
        return []
    if manifest["version"] == 1:
        return ["projection.npy"]
    return ["projection.npy", *(f"codebook-{k}.npy" for k in range(len(setting["levels"])))]


def write_encoding(root: Path, encoding: Encoding) -> dict | None:
    """Write the encoding's files into the bank folder (atomically); returns the manifest's
    "descriptors" entry, with their sha256 in version 2."""
    setting = encoding.setting()
    if setting is None:
        return None
    write_projection(root, encoding.basis)
    if encoding.version == 1:
        return setting
    for k, centroids in enumerate(encoding.codec.centroids):
        write_npy(Path(root) / f"codebook-{k}.npy", centroids.astype(np.float32))
    files = encoding_files({"version": encoding.version, "descriptors": setting})
    return {**setting, SUMS: {name: file_sha256(Path(root) / name) for name in files}}


def read_encoding(root: Path, manifest: dict) -> Encoding:
    """The bank's Encoding, its files checked: shapes, finite values and (version 2) sha256."""
    setting = manifest.get("descriptors")
    version = manifest["version"]
    if not setting:
        return Encoding(version)
    basis = read_projection(root, setting["dim"])
    if version == 1:
        return Encoding(version, basis)
    d, root = setting["dim"], Path(root)
    centroids = tuple(
        _read_centroids(root / f"codebook-{k}.npy", (m, 256, d // m)) for k, (_, m) in enumerate(setting["levels"])
    )
    _check_sums(root, setting[SUMS])  # after the shape checks, whose messages say more
    return Encoding(version, basis, PixelCodec(tuple(side for side, _ in setting["levels"]), centroids))


def _check_sums(root: Path, sums: dict[str, str]) -> None:
    for name, digest in sums.items():
        path = root / name
        if not path.is_file():
            raise BankError(f"bank {root} stores coded pixel descriptors but its {name} is missing")
        if file_sha256(path) != digest:
            raise _damaged(path, f"its sha256 differs from the one {MANIFEST} recorded when the bank was made")


def _read_centroids(path: Path, shape: tuple) -> np.ndarray:
    arr = np.array(open_array(path, f"bank file {path} is missing or corrupt"))
    if arr.dtype != np.float32 or arr.shape != shape:
        raise _damaged(path, f"it holds {arr.dtype} {arr.shape}, not float32 {shape} as {MANIFEST} says")
    if not np.isfinite(arr).all():
        raise _damaged(path, "it holds NaN or infinite values")
    return arr


def exemplar_hashes(x: np.ndarray, y: np.ndarray) -> list[str]:
    """Content hash of each exemplar: sha1 of its input's and its target's uint8 bytes."""
    out = []
    for xi, yi in zip(x, y):
        h = hashlib.sha1(np.ascontiguousarray(xi, dtype=np.uint8).tobytes())
        h.update(np.ascontiguousarray(yi, dtype=np.uint8).tobytes())
        out.append(h.hexdigest())
    return out


def _lock_file(path: Path, blocking: bool = True) -> int | None:
    """fileio.open_locked, with a bank's message when the file system cannot lock."""
    try:
        return open_locked(path, blocking=blocking)
    except OSError as e:
        raise BankError(f"cannot lock {path} ({e}); the bank's folder must be on a file system with locks") from None


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
    if name.startswith((f".{MANIFEST}.", ".projection.npy.", ".codebook-", ".global-")) and name.endswith(".tmp"):
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
    (folder / "meta.json").write_text(json.dumps({**meta, SUMS: array_sums(folder)}))


SUMS = "sha256"  # meta.json key: {"f.npy": hexdigest, ...} of the shard's array files (absent in older banks)


def array_sums(folder: Path) -> dict[str, str]:
    """sha256 of every .npy file of a shard folder, by file name."""
    return {path.name: file_sha256(path) for path in sorted(Path(folder).glob("*.npy"))}


class ProjectionChanged(Exception):
    """The bank's encoding (version, projection, codec) is not the one the staged shard was made
    with (another writer created the bank meanwhile): redo the shard with `encoding` and commit again."""

    def __init__(self, encoding: Encoding) -> None:
        super().__init__("the bank's encoding differs from the staged shard's")
        self.encoding = encoding


def _check_encoding(root: Path, current: dict, staged: Path, encoding: Encoding) -> None:
    """Make the staged shard agree with the bank's encoding, or raise ProjectionChanged."""
    theirs = read_encoding(root, current)
    if theirs.version != encoding.version or (theirs.basis is not None and not theirs.same_as(encoding)):
        raise ProjectionChanged(theirs)
    if theirs.basis is None and (staged / "desc.npy").exists():  # the bank stores none: drop ours, and its sum
        (staged / "desc.npy").unlink()
        meta = json.loads((staged / "meta.json").read_text())
        meta.get(SUMS, {}).pop("desc.npy", None)
        (staged / "meta.json").write_text(json.dumps(meta))


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
    rows = {k: [v[i] for i in np.flatnonzero(keep)] for k, v in meta.items() if k != SUMS}
    (staged / "meta.json").write_text(json.dumps({**rows, SUMS: array_sums(staged)}))


def _skip_added_meanwhile(root: Path, current: dict, staged: Path, seen: set[str]) -> int:
    """Drop staged exemplars that shards listed since the writer's check (those not in `seen`)
    already hold; returns how many remain."""
    hashes = json.loads((staged / "meta.json").read_text())["hashes"]
    known = bank_hashes(root, {**current, "shards": [s for s in current["shards"] if s["name"] not in seen]})
    keep = np.array([h not in known for h in hashes], dtype=bool)
    if not keep.all():
        log.info(
            "index: skipped %d exemplars that another run added to the bank %s meanwhile", int((~keep).sum()), root
        )
        _drop_rows(staged, keep)
    return int(keep.sum())


def commit_staged(
    root: Path,
    template: dict,
    staged: Path,
    count: int,
    encoding: Encoding | None = None,
    checked: set[str] | None = None,
) -> dict:
    """Under the bank lock: append the shard staged in folder `staged` (written with `encoding`,
    default: the current version without pixel descriptors) to the bank as it is now (creating the
    bank from `template` and `encoding` if there is none yet); returns the new manifest.

    With `checked` (the names of the shards the staged exemplars were already deduplicated
    against), exemplars that shards listed since then hold are dropped first."""
    return commit_staged_many(root, template, [(staged, count)], encoding, checked)


def commit_staged_many(
    root: Path,
    template: dict,
    staged: list[tuple[Path, int]],
    encoding: Encoding | None = None,
    checked: set[str] | None = None,
) -> dict:
    """commit_staged for several staged shards (folder, count) at once: under one hold of the bank
    lock they are renamed in, in order, and listed by ONE manifest write, so the bank gains all of
    them or none (a crash before that write leaves shard folders that no manifest lists, which the
    next writer removes as leftovers). Exemplars that an earlier shard of the same call holds are
    dropped too when `checked` is given."""
    root = Path(root)
    encoding = encoding or Encoding()
    with bank_lock(root):
        current = read_manifest(root) if (root / MANIFEST).exists() else None
        remove_leftovers(root, current)
        if current is None:
            setting = write_encoding(root, encoding)
            current = {**template, "version": encoding.version, "descriptors": setting, "shards": [], "count": 0}
        else:
            check_compatible(current, template, root)
            for folder, _ in staged:
                _check_encoding(root, current, folder, encoding)
        shards = list(current["shards"])
        for folder, count in staged:
            if checked is not None and shards:
                count = _skip_added_meanwhile(root, {**current, "shards": shards}, folder, checked)
            if count == 0:
                continue
            name = _next_name({"shards": shards})
            replace_durably(folder, root / name)
            shards.append({"name": name, "count": count, "desc": (root / name / "desc.npy").exists()})
        if len(shards) == len(current["shards"]):
            return current
        manifest = {**current, "shards": shards, "count": sum(s["count"] for s in shards)}
        write_json(root / MANIFEST, manifest)
        return manifest


def write_shard(root: Path, manifest: dict, shard: Shard, encoding: Encoding | None = None) -> dict:
    """Append a shard (arrays as `encoding` stores them) to the bank at `root` (created from
    `manifest` if missing) atomically and durably; returns the updated manifest (already on disk).
    Safe with concurrent writers."""
    with staging_folder(root) as folder:
        stage_shard(folder / "shard", shard)
        return commit_staged(root, manifest, folder / "shard", len(shard), encoding)


def write_projection(root: Path, basis: np.ndarray) -> None:
    write_npy(Path(root) / "projection.npy", basis.astype(np.float32))


def read_projection(root: Path, dim: int | None = None) -> np.ndarray:
    """The bank's (d, D) float32 projection basis, refused unless finite and (with `dim`) d == dim."""
    path = Path(root) / "projection.npy"
    basis = np.array(
        open_array(path, f"bank {root} lists reduced descriptors but its projection.npy is missing or corrupt")
    )
    if basis.ndim != 2 or basis.dtype != np.float32:
        raise BankError(f"{path} holds a {basis.dtype} array of shape {basis.shape}, not a (d, D) float32 projection")
    if dim is not None and basis.shape[0] != dim:
        raise BankError(f"{path} projects to {basis.shape[0]} dimensions, but {MANIFEST} says descriptors.dim is {dim}")
    if not np.isfinite(basis).all():
        raise BankError(f"{path} holds NaN or infinite values")
    return basis


def _read_header(fh) -> tuple[tuple, np.dtype]:
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
    else:
        raise ValueError(f".npy format version {version} is not one PixelNN writes")
    return shape, dtype


def open_array(path: Path, what: str | None = None) -> np.ndarray:
    """Memory-map an .npy file, refusing (BankError naming it) one that is missing, not an .npy
    file, holds objects, or whose size differs from what its header says."""
    what = what or f"bank file {path} is missing or corrupt"
    try:
        with open(path, "rb") as fh:
            shape, dtype = _read_header(fh)
            if dtype.hasobject:
                raise ValueError("it holds Python objects")
            expected = fh.tell() + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            actual = os.fstat(fh.fileno()).st_size
        if actual != expected:
            raise ValueError(f"its header says {shape} {dtype}, {expected} bytes in all; the file has {actual}")
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (
        OSError,
        ValueError,
        EOFError,
        SyntaxError,
        TypeError,
    ) as e:  # read_magic/header raise ValueError or EOFError
        raise BankError(f"{what} ({e})") from None


def expected_arrays(manifest: dict, count: int) -> dict[str, tuple[tuple, np.dtype]]:
    """(shape, dtype) of each array file of a shard of `count` exemplars, by key."""
    S, n, v1 = manifest["size"], count, manifest["version"] == 1
    out = {
        "f": ((n, S, S, 3), np.dtype(np.float16 if v1 else np.uint8)),
        "y": ((n, S, S, 3), np.dtype(np.uint8)),
        "x": ((n, *manifest["input_shape"]), np.dtype(np.uint8)),
        "global": ((n, manifest["global_dim"]), np.dtype(np.float32 if v1 else np.float16)),
    }
    setting = manifest.get("descriptors")
    if setting and v1:
        out["desc"] = ((n, S, S, setting["dim"]), np.dtype(np.float16))
    elif setting:
        length = code_length(S, tuple(tuple(level) for level in setting["levels"]))
        out["desc"] = ((n, length), np.dtype(np.uint8))
    return out


def bytes_per_exemplar(manifest: dict) -> int:
    """Bytes of array data one exemplar takes in a bank of this manifest (f, y, x, global and
    descriptors; not counting .npy headers, meta.json or the bank's shared files)."""
    arrays = expected_arrays(manifest, 1).values()
    return sum(int(np.prod(shape)) * dtype.itemsize for shape, dtype in arrays)


def _read_meta(folder: Path) -> dict:
    path = folder / "meta.json"
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise BankError(f"bank file {path} is missing or corrupt ({e})") from None
    if not isinstance(meta, dict) or not {"names", "labels"} <= meta.keys():
        raise BankError(f"bank shard {folder}: meta.json lacks names or labels")
    for key, kinds in (("names", str), ("labels", (str, type(None))), ("hashes", str)):
        if meta.get(key) is not None and not (
            isinstance(meta[key], list) and all(isinstance(v, kinds) for v in meta[key])
        ):
            raise BankError(
                f"bank file {path}: {key} must be a list of {'strings or nulls' if key == 'labels' else 'strings'}"
            )
    sums = meta.get(SUMS)
    if sums is not None and not (isinstance(sums, dict) and all(isinstance(v, str) for v in sums.values())):
        raise BankError(f"bank file {path}: {SUMS} must map file names to hex digests")
    return meta


def _check_lengths(folder: Path, count: int, lengths: dict[str, int]) -> None:
    """Every array and list of a shard has `count` rows; the message names what differs."""
    if all(n == count for n in lengths.values()):
        return
    if len(set(lengths.values())) == 1:
        raise BankError(
            f"bank shard {folder} holds {next(iter(lengths.values()))} exemplars, its manifest says {count}"
        )
    what, n = next((k, n) for k, n in lengths.items() if n != count)
    raise BankError(f"bank shard {folder}: {what} holds {n} rows, but its manifest says {count} exemplars")


def _check_array(path: Path, arr: np.ndarray, shape: tuple, dtype: np.dtype) -> None:
    if arr.dtype != dtype:
        raise BankError(f"bank file {path} holds {arr.dtype} data, the bank stores {dtype}")
    if arr.shape != shape:
        raise BankError(f"bank file {path} has shape {arr.shape}; {MANIFEST} asks for {shape}")


FINITE_CHECK_ROWS = 2048  # rows read at once by _check_finite


def _check_finite(path: Path, arr: np.ndarray) -> None:
    """Refuse an array with a NaN or infinite value, naming the rows.

    A memory-mapped array is read from its file in chunks with plain reads rather than through its
    mapping, so that opening a bank does not leave its whole global descriptors (3.7 GB at 200,000
    exemplars) counted in the process's resident memory.
    """
    offset = getattr(arr, "offset", None)
    if offset is None:
        bad = ~np.isfinite(np.asarray(arr)).reshape(len(arr), -1).all(axis=1)
    else:
        row = int(np.prod(arr.shape[1:], dtype=np.int64))
        parts = []
        with open(path, "rb", buffering=0) as fh:
            fh.seek(offset)
            for start in range(0, len(arr), FINITE_CHECK_ROWS):
                n = min(FINITE_CHECK_ROWS, len(arr) - start)
                chunk = np.frombuffer(fh.read(n * row * arr.dtype.itemsize), dtype=arr.dtype).reshape(n, row)
                parts.append(~np.isfinite(chunk).all(axis=1))
        bad = np.concatenate(parts) if parts else np.zeros(0, bool)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise BankError(f"bank file {path} holds NaN or infinite values in {len(rows)} row(s) (first: {rows[0]})")


def read_shard(root: Path, entry: dict, manifest: dict | None = None) -> Shard:
    """Open a listed shard (arrays memory-mapped). With the bank's manifest, every array's dtype and
    shape is checked against it and the global descriptors must be finite."""
    if not isinstance(entry, dict) or not {"name", "count"} <= entry.keys():
        raise BankError(f"bank {root}: a shard entry of {MANIFEST} lacks its name or count")
    if not is_plain_name(entry["name"]):
        raise BankError(
            f"bank {root}: shard name {entry['name']!r} in {MANIFEST} is not a plain folder name inside the bank"
        )
    folder = Path(root) / entry["name"]
    keys = [*ARRAYS, "desc"] if entry.get("desc") else list(ARRAYS)
    arrays = {k: open_array(folder / f"{k}.npy") for k in keys}
    meta = _read_meta(folder)
    hashes = meta.get("hashes")
    lengths = {f"{k}.npy": len(a) if a.ndim else 0 for k, a in arrays.items()}
    lengths.update({f"meta.json {k}": len(meta[k]) for k in ("names", "labels", "hashes") if meta.get(k) is not None})
    _check_lengths(folder, entry["count"], lengths)
    if manifest is not None:
        for key, (shape, dtype) in expected_arrays(manifest, entry["count"]).items():
            if key in arrays:
                _check_array(folder / f"{key}.npy", arrays[key], shape, dtype)
        _check_finite(folder / "global.npy", arrays["global"])
    return Shard(
        arrays["f"],
        arrays["y"],
        arrays["x"],
        arrays["global"],
        meta["names"],
        meta["labels"],
        arrays.get("desc"),
        hashes,
    )


def verify_bank(root: Path, manifest: dict) -> tuple[list[str], list[str]]:
    """Recompute the sha256 of every shard array file and of the projection and codebooks of a
    version-2 bank: (mismatches, one line each naming the file; names of shards written before sums
    were stored)."""
    problems, unhashed = [], []
    for name, digest in ((manifest.get("descriptors") or {}).get(SUMS) or {}).items():
        path = Path(root) / name
        if not path.is_file():
            problems.append(f"{path}: recorded in {MANIFEST} but missing")
        elif (actual := file_sha256(path)) != digest:
            problems.append(f"{path}: sha256 is {actual[:16]}..., {MANIFEST} recorded {digest[:16]}...")
    for entry in manifest["shards"]:
        folder = Path(root) / entry["name"]
        sums = _read_meta(folder).get(SUMS)
        if not sums:
            unhashed.append(entry["name"])
            continue
        for path in sorted(folder.glob("*.npy")):
            if path.name not in sums:
                problems.append(f"{path}: no sha256 recorded for it")
        for name, digest in sorted(sums.items()):
            path = folder / name
            if not is_plain_name(name) or not path.is_file():
                problems.append(f"{path}: recorded in meta.json but missing")
            elif (actual := file_sha256(path)) != digest:
                problems.append(
                    f"{path}: sha256 is {actual[:16]}..., "
                    f"meta.json recorded {digest[:16]}... when the shard was written"
                )
    return problems, unhashed


def bank_hashes(root: Path, manifest: dict) -> set[str]:
    """Content hashes of every exemplar in the bank (computed from x.npy and y.npy for shards
    written before hashes were stored)."""
    out: set[str] = set()
    for entry in manifest["shards"]:
        shard = read_shard(root, entry, manifest)
        out.update(shard.hashes if shard.hashes is not None else exemplar_hashes(shard.x, shard.y))
    return out
