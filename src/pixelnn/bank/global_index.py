"""The bank's global search: k nearest exemplars by cosine similarity of global descriptors.

Two kinds, chosen by bank size when `pixelnn index` finishes (bank/global_index_build.py):

flat
    Exact search straight over the shards' memory-mapped global.npy files: nothing is built or
    copied when a bank opens. Small banks use it, and so does a bank with no saved index.
ivf
    A FAISS index saved in the bank folder (global-*.faiss, described by global-index.json) and
    memory-mapped when the bank opens: the descriptors reduced by PCA, an inverted file of
    nlist k-means cells, 8-bit scalar-quantised codes. The nprobe nearest cells are scanned and the
    best candidates are re-ranked by their exact similarity (rows read from global.npy), so the
    similarities returned are exact, and so is the order of the neighbours found.

global-index.json records the shards (names and counts, in manifest order) the index holds, the
index file's name, size and sha256. Shards added after it (a bank grown by a writer that saved no
index) are searched exactly and merged in, with a warning that `pixelnn index` saves them.
"""

from __future__ import annotations

import json
import logging
import os
import weakref
from pathlib import Path

import faiss
import numpy as np

from ..errors import BankError
from . import store

log = logging.getLogger("pixelnn.bank")

META = "global-index.json"
INDEX_PREFIX = "global-"  # index files are global-<kind>-<count>-<token>.faiss
FLAT_LIMIT = 20_000  # banks up to this many exemplars are searched exactly (docs/benchmarks.md)
EXACT_SUBSET = 20_000  # a restriction to at most this many exemplars is searched exactly
CHUNK = 8192  # rows gathered at once for an exact search over a subset
RERANK_EXTRA = 32  # the IVF index proposes rerank * k + RERANK_EXTRA candidates, re-ranked exactly


def _merge(parts: list[tuple[np.ndarray, np.ndarray]], nq: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best k of several (sims, ids) result sets, by descending similarity; -1 ids pad a short result."""
    sims = np.full((nq, k), np.finfo(np.float32).min, np.float32)
    ids = np.full((nq, k), -1, np.int64)
    parts = [(d, i) for d, i in parts if d.shape[1]]
    if not parts:
        return sims, ids
    d_all = np.concatenate([d for d, _ in parts], axis=1)
    i_all = np.concatenate([i for _, i in parts], axis=1)
    d_all = np.where(i_all >= 0, d_all, -np.inf)
    order = np.argsort(-d_all, axis=1, kind="stable")[:, :k]
    d_top = np.take_along_axis(d_all, order, axis=1)
    i_top = np.take_along_axis(i_all, order, axis=1)
    found = np.isfinite(d_top)
    n = order.shape[1]
    sims[:, :n] = np.where(found, d_top, sims[:, :n])
    ids[:, :n] = np.where(found, i_top, -1)
    return sims, ids


def _open_file(block: np.ndarray) -> tuple[int, int, str] | None:
    """(descriptor, data offset, path) of the .npy file a memory-mapped block maps, opened now so that
    rows are read from the same file even if the bank's folder is renamed or replaced later;
    None for an array in memory."""
    if isinstance(block, np.memmap) and block.filename and block.flags["C_CONTIGUOUS"]:
        return os.open(block.filename, os.O_RDONLY), int(block.offset), str(block.filename)
    return None


def _close_files(files: list[tuple[int, int, str] | None]) -> None:
    for entry in files:
        if entry is not None:
            os.close(entry[0])


def _pread_rows(file: tuple[int, int, str], rowbytes: int, local: np.ndarray, out: np.ndarray) -> None:
    """Read rows `local` of a .npy file into `out` with plain reads: mapping them instead would
    leave every touched page (and its neighbours, read ahead) counted in the process's memory, and
    a few thousand re-rankings would bring a whole 3.7 GB global.npy in."""
    fd, offset, path = file
    for j, i in enumerate(local):
        if os.preadv(fd, [memoryview(out[j]).cast("B")], offset + int(i) * rowbytes) != rowbytes:
            raise BankError(f"bank file {path} is shorter than its header says; rebuild the bank with `pixelnn index`")


def _knn(xq: np.ndarray, rows: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product k-NN of xq among `rows` (whose exemplar ids are `ids`)."""
    kk = min(k, len(rows))
    if kk == 0:
        return np.zeros((len(xq), 0), np.float32), np.zeros((len(xq), 0), np.int64)
    D, pos = faiss.knn(xq, np.ascontiguousarray(rows, dtype=np.float32), kk, faiss.METRIC_INNER_PRODUCT)
    return D, np.where(pos >= 0, ids[np.maximum(pos, 0)], -1)


class GlobalIndex:
    """Global k-NN over the bank's shards: `blocks` are their (n_i, G) global descriptors in id
    order (memory-mapped); `index`, when given, is a saved FAISS index holding the first
    `covered` exemplars, searched with `nprobe` cells, its rerank * k + RERANK_EXTRA best
    candidates re-ranked exactly."""

    def __init__(
        self,
        blocks: list[np.ndarray],
        index: faiss.Index | None = None,
        covered: int = 0,
        nprobe: int = 1,
        rerank: int = 4,
        path: Path | None = None,
    ) -> None:
        self.blocks = blocks
        self.offsets = np.cumsum([0] + [len(b) for b in blocks])
        self.index = index
        self.covered = covered if index is not None else 0
        self.nprobe = nprobe
        self.rerank = rerank
        self.path = path
        self.files = [_open_file(b) for b in blocks]
        weakref.finalize(self, _close_files, self.files)
        self._float32: dict[int, np.ndarray] = {}  # float32 copies of float16 shards, for a flat search

    def _block32(self, s: int) -> np.ndarray | None:
        """Shard s's descriptors as float32 when a flat search reads them all at every query: a float16
        shard (version 2) of a bank of at most FLAT_LIMIT exemplars is converted once and kept (at most
        370 MB), rather than at every query; None where the shard is read as it is, or in chunks."""
        block = self.blocks[s]
        if block.dtype == np.float32 or len(self) > FLAT_LIMIT:
            return None
        if s not in self._float32:
            self._float32[s] = np.asarray(block, dtype=np.float32)
        return self._float32[s]

    @property
    def kind(self) -> str:
        return "flat" if self.index is None else "ivf"

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def ntotal(self) -> int:
        """Exemplars searched, named as FAISS names it (the bank's index was a FAISS index before)."""
        return len(self)

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """Global descriptors of the given exemplar ids (any order), read from the shards, as float32."""
        ids = np.asarray(ids, dtype=np.int64)
        out = np.empty((len(ids), self.blocks[0].shape[1] if self.blocks else 0), np.float32)
        shard = np.searchsorted(self.offsets, ids, side="right") - 1
        for s in np.unique(shard):
            at = np.flatnonzero(shard == s)
            local = ids[at] - self.offsets[s]
            order = np.argsort(local)  # rows read in file order
            if self.files[s] is None:
                out[at[order]] = self.blocks[s][local[order]]
                continue
            rows = np.empty((len(local), out.shape[1]), self.blocks[s].dtype)  # float32, or float16 (version 2)
            _pread_rows(self.files[s], rows.shape[1] * rows.itemsize, local[order], rows)
            out[at[order]] = rows
        return out

    def exact(self, xq: np.ndarray, k: int, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Exact k-NN among exemplars start..len-1, shard by shard (float16 shards CHUNK rows at a time,
        so that their float32 copy stays small)."""
        parts = []
        for s, block in enumerate(self.blocks):
            lo, hi = int(self.offsets[s]), int(self.offsets[s + 1])
            f32 = self._block32(s)
            block = block if f32 is None else f32
            step = hi - lo if block.dtype == np.float32 else CHUNK
            for a in range(max(lo, start), hi, max(step, 1)):
                b = min(a + step, hi)
                parts.append(_knn(xq, block[a - lo : b - lo], np.arange(a, b, dtype=np.int64), k))
                parts = [_merge(parts, len(xq), k)]
        return _merge(parts, len(xq), k)

    def exact_subset(self, xq: np.ndarray, k: int, subset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact k-NN among the given exemplar ids, gathered CHUNK rows at a time."""
        ids = np.unique(np.asarray(subset, dtype=np.int64))
        parts = []
        for i in range(0, len(ids), CHUNK):
            chunk = ids[i : i + CHUNK]
            parts.append(_knn(xq, self.rows(chunk), chunk, k))
            parts = [_merge(parts, len(xq), k)]
        return _merge(parts, len(xq), k)

    def _params(self, nprobe: int, selector=None) -> tuple:
        """Search parameters for the saved index, and the IVF ones inside them (SWIG keeps no
        reference from the outer to the inner: the caller holds both until the search is done)."""
        ivf = faiss.SearchParametersIVF(nprobe=nprobe)
        if selector is not None:
            ivf.sel = selector
        if isinstance(self.index, faiss.IndexPreTransform):
            return faiss.SearchParametersPreTransform(index_params=ivf), ivf
        return ivf, ivf

    def _approximate(self, xq: np.ndarray, k: int, subset: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Candidates from the saved index among its exemplars, re-ranked by exact similarity."""
        nprobe, selector = self.nprobe, None
        if subset is not None:
            inside = np.asarray(subset, dtype=np.int64)
            inside = np.ascontiguousarray(inside[inside < self.covered])
            if not len(inside):
                return _merge([], len(xq), k)
            selector = faiss.IDSelectorBatch(inside)  # SWIG keeps no reference: it must outlive the search
            nprobe = int(min(self.index_nlist, np.ceil(nprobe * self.covered / len(inside))))
        params, _keep = self._params(nprobe, selector)
        _, cand = self.index.search(xq, min(self.rerank * k + RERANK_EXTRA, self.covered), params=params)
        return self.best_of(xq, cand, k)

    @property
    def index_nlist(self) -> int:
        return int(faiss.extract_index_ivf(self.index).nlist)

    def best_of(self, xq: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k best of each query's candidate ids (-1: none) by exact cosine similarity."""
        valid = cand >= 0
        ids, where = np.unique(cand[valid], return_inverse=True)
        sims = np.full(cand.shape, -np.inf, np.float32)
        sims[valid] = (self.rows(ids) @ xq.T)[where, np.nonzero(valid)[0]]
        return _merge([(sims, np.where(valid, cand, -1))], len(xq), k)

    def search(self, xq: np.ndarray, k: int, subset: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """xq (Q, G) unit-norm float32 -> D (Q, k) cosine similarities, I (Q, k) exemplar ids, best
        first; restricted to `subset` ids when given. Fewer than k exemplars give -1 ids."""
        if self.index is None or (subset is not None and len(subset) <= EXACT_SUBSET):
            return self.exact(xq, k) if subset is None else self.exact_subset(xq, k, subset)
        parts = [self._approximate(xq, k, subset)]
        if self.covered < len(self):  # shards added after the index was saved
            if subset is None:
                parts.append(self.exact(xq, k, start=self.covered))
            else:
                rest = np.asarray(subset, dtype=np.int64)
                parts.append(self.exact_subset(xq, k, rest[rest >= self.covered]))
        return _merge(parts, len(xq), k)


def read_meta(root: Path) -> dict | None:
    """The bank's global-index.json, None when it has none; BankError when it cannot be read."""
    path = Path(root) / META
    if not path.exists():
        return None
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise _damaged(path, str(e)) from None
    keys = {"kind": str, "file": str, "shards": list, "count": int, "nprobe": int, "bytes": int}
    if not isinstance(meta, dict) or any(not isinstance(meta.get(k), t) for k, t in keys.items()):
        raise _damaged(path, f"it must hold {', '.join(keys)}")
    if not store.is_plain_name(meta["file"]) or not meta["file"].startswith(INDEX_PREFIX):
        raise _damaged(path, f"its index file name {meta['file']!r} is not a global-*.faiss file in the bank")
    return meta


def _damaged(path: Path, problem: str) -> BankError:
    return BankError(
        f"the bank's global index {path} is damaged ({problem}); "
        "rerun `pixelnn index` on the bank (with no new data it rebuilds the index)"
    )


def covered_count(meta: dict, manifest: dict, path: Path) -> int:
    """How many exemplars the index holds: its shards must be the manifest's first shards."""
    listed = [(s.get("name"), s.get("count")) for s in manifest["shards"]]
    mine = [(s.get("name"), s.get("count")) for s in meta["shards"] if isinstance(s, dict)]
    if len(mine) != len(meta["shards"]) or listed[: len(mine)] != mine:
        raise _damaged(path, "the shards it lists are not the first shards of bank.json")
    if sum(c for _, c in mine) != meta["count"]:
        raise _damaged(path, f"its count {meta['count']} is not the sum of its shards' counts")
    return meta["count"]


def read_index(path: Path, count: int, dim: int, mmap: bool = True) -> faiss.Index:
    """A saved index file, memory-mapped (read-only) unless `mmap` is False; BankError when it is
    missing, unreadable, or not an index of `count` vectors of `dim` dimensions."""
    if not path.is_file():
        raise _damaged(path, "the file is missing")
    flags = faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY if mmap else 0
    try:
        index = faiss.read_index(str(path), flags)
    except RuntimeError as e:
        raise _damaged(path, str(e).strip().splitlines()[-1] if str(e).strip() else "unreadable") from None
    if index.ntotal != count or index.d != dim:
        raise _damaged(path, f"it holds {index.ntotal} vectors of {index.d} dimensions, not {count} of {dim}")
    try:
        faiss.extract_index_ivf(index)
    except RuntimeError:
        raise _damaged(path, f"it holds a {type(index).__name__}, not an IVF index") from None
    return index


def open_global_index(root: Path, manifest: dict, shards: list[store.Shard]) -> GlobalIndex:
    """The bank's global search: its saved index memory-mapped, or exact search when it has none."""
    root = Path(root)
    blocks = [s.global_ for s in shards]
    meta = read_meta(root)
    if meta is None:
        if manifest["count"] > FLAT_LIMIT:
            log.warning(
                "bank %s: %d exemplars and no saved global index, so every query scans them all; "
                "`pixelnn index` on the bank saves one",
                root,
                manifest["count"],
            )
        return GlobalIndex(blocks)
    try:
        index, covered = _open_saved(root, meta, manifest)
    except BankError:
        newer = read_meta(root)  # a writer may have replaced the index (and removed its file) meanwhile
        if newer is None or newer["file"] == meta["file"]:
            raise
        meta = newer
        index, covered = _open_saved(root, meta, manifest)
    if covered < manifest["count"]:
        log.warning(
            "bank %s: its global index holds %d of %d exemplars, the rest are searched exactly; "
            "`pixelnn index` on the bank brings it up to date",
            root,
            covered,
            manifest["count"],
        )
    return GlobalIndex(blocks, index, covered, meta["nprobe"], meta.get("rerank", 4), root / meta["file"])


def _open_saved(root: Path, meta: dict, manifest: dict) -> tuple[faiss.Index, int]:
    """The index file global-index.json names, memory-mapped, and how many exemplars it holds."""
    path = root / meta["file"]
    covered = covered_count(meta, manifest, root / META)
    if path.is_file() and (size := os.path.getsize(path)) != meta["bytes"]:
        raise _damaged(path, f"its size is {size} bytes, {META} says {meta['bytes']}")
    return read_index(path, covered, manifest["global_dim"]), covered


def verify_index(root: Path) -> list[str]:
    """Problems with the bank's saved global index file (its sha256 against global-index.json), one
    line each; none when it has no index. For `pixelnn verify`."""
    try:
        meta = read_meta(root)
    except BankError as e:
        return [str(e)]
    if meta is None:
        return []
    path = Path(root) / meta["file"]
    if not path.is_file():
        return [f"{path}: named by {META} but missing; rerun `pixelnn index` on the bank"]
    if meta.get("sha256") and (actual := store.file_sha256(path)) != meta["sha256"]:
        return [
            f"{path}: sha256 is {actual[:16]}..., {META} recorded {meta['sha256'][:16]}...; "
            "rerun `pixelnn index` on the bank to rebuild it"
        ]
    return []
