"""Build and save a bank's global index (`pixelnn index` calls save_global_index when it is done).

A bank of at most FLAT_LIMIT exemplars saves nothing: exact search over its memory-mapped
global.npy files is fast enough. A larger one gets an IVF index: descriptors reduced by PCA
(trained on up to PCA_SAMPLE rows), nlist k-means cells (trained on up to TRAIN_SAMPLE reduced
rows), 8-bit scalar-quantised codes, vectors added CHUNK rows at a time, so the raw descriptors never
sit in memory together. nprobe and the re-ranking depth are then the cheapest of NPROBES x RERANKS
whose recall@10 against exact search, measured on CALIBRATION bank rows used as queries (each left
out of its own answer), reaches TARGET_RECALL. An index that holds a prefix of the bank is extended
with the new shards, unless the bank has grown to more than RETRAIN times what its cells were
trained on.

The file is written atomically under a fresh name, then global-index.json (atomically) names it;
older index files are removed after. Readers that opened the old file keep their mapping.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import faiss
import numpy as np

from ..errors import BankError
from ..fileio import atomic_path, write_json
from . import global_index as gi
from . import store

log = logging.getLogger("pixelnn.bank")

PCA_DIM = 256
PCA_SAMPLE = 10_000
TRAIN_SAMPLE = 100_000
CHUNK = 10_000
NPROBES = (8, 16, 32, 64, 128, 256)
RERANKS = (4, 8, 16, 32, 64, 128)  # candidates re-ranked: rerank * k + global_index.RERANK_EXTRA
CALIBRATION = 200
TARGET_RECALL = 0.97  # a margin over the 0.95 promised for held-out queries
RETRAIN = 4


def nlist_for(n: int) -> int:
    """A power of two near 4 sqrt(n), with at least 39 training rows per cell."""
    want = 2 ** int(round(np.log2(max(4 * np.sqrt(n), 1))))
    return int(max(1, min(want, 2 ** int(np.log2(max(n // 39, 1))))))


def _sample(n: int, m: int, seed: int) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).choice(n, size=min(n, m), replace=False))


def fit_pca(x: np.ndarray, dim: int, iters: int = 2, seed: int = 0) -> faiss.LinearTransform:
    """y = A (x - mean): the top `dim` principal axes of the rows x, by a randomized range finder
    (seconds where faiss.PCAMatrix's full eigendecomposition of a 4,608-d covariance takes minutes,
    and stores only the (dim, D) matrix it needs)."""
    mean = x.mean(axis=0)
    xc = x - mean
    y = xc @ np.random.default_rng(seed).standard_normal((x.shape[1], min(dim + 16, *x.shape))).astype(np.float32)
    for _ in range(iters):  # power iterations sharpen the leading axes
        y = xc @ (xc.T @ np.linalg.qr(y)[0])
    q = np.linalg.qr(y)[0]
    a = np.linalg.svd(q.T @ xc, full_matrices=False)[2][:dim].astype(np.float32)
    lt = faiss.LinearTransform(x.shape[1], dim, True)
    faiss.copy_array_to_vector(a.ravel(), lt.A)
    faiss.copy_array_to_vector((-a @ mean).astype(np.float32), lt.b)
    lt.is_trained = True
    return lt


def train_index(gx: gi.GlobalIndex, pca_dim: int = PCA_DIM) -> faiss.Index:
    """An empty trained IVF index for the bank's global descriptors (PCA first when G > pca_dim;
    never to more dimensions than PCA_SAMPLE rows give). Training rows are read CHUNK at a time and
    reduced before k-means sees them."""
    n, dim = len(gx), gx.blocks[0].shape[1]
    pca = None
    if dim > pca_dim:
        sample = gx.rows(_sample(n, PCA_SAMPLE, 1))
        pca = fit_pca(sample, min(pca_dim, len(sample)))
        del sample
    reduce = pca.apply if pca is not None else (lambda rows: rows)
    # L2 on unit vectors ranks as cosine does, and stays meaningful after PCA centres them
    ivf = faiss.index_factory(pca.d_out if pca else dim, f"IVF{nlist_for(n)},SQ8", faiss.METRIC_L2)
    ids = _sample(n, TRAIN_SAMPLE, 2)
    ivf.train(np.concatenate([reduce(gx.rows(ids[i : i + CHUNK])) for i in range(0, len(ids), CHUNK)]))
    if pca is None:
        return ivf
    return faiss.IndexPreTransform(pca, ivf)  # the Python wrapper keeps `pca` and `ivf` alive


def add_rows(index: faiss.Index, gx: gi.GlobalIndex, start: int) -> None:
    """Add exemplars start..len-1 to the index, CHUNK rows at a time."""
    for i in range(start, len(gx), CHUNK):
        index.add(gx.rows(np.arange(i, min(i + CHUNK, len(gx)))))


def recall_at(gx: gi.GlobalIndex, ids: np.ndarray, truth: np.ndarray, k: int = 10) -> float:
    """Mean recall@k of gx's search against `truth` (exact top k+1) for bank rows `ids` as queries,
    each left out of its own answer."""
    _, found = gx.search(gx.rows(ids), k + 1)
    hits = [len((set(t) - {i}) & (set(f) - {i})) / k for i, t, f in zip(ids, truth, found)]
    return float(np.mean(hits))


def calibrate(gx: gi.GlobalIndex, k: int = 10) -> tuple[int, int, float]:
    """The cheapest (nprobe of NPROBES, rerank of RERANKS) reaching TARGET_RECALL, and its recall@10.
    When even every cell and the deepest re-ranking fall short, those, with a warning."""
    nlist = gx.index_nlist
    ids = _sample(len(gx), CALIBRATION, 3)
    _, truth = gx.exact(gx.rows(ids), k + 1)

    def recall(nprobe: int, rerank: int) -> float:
        gx.nprobe, gx.rerank = nprobe, rerank
        return recall_at(gx, ids, truth, k)

    best = recall(nlist, RERANKS[-1])
    if best < TARGET_RECALL:
        log.warning(
            "global index: recall@10 is only %.3f with every cell scanned and %d candidates re-ranked; "
            "exact search (a bank without global-index.json) finds every neighbour",
            best,
            gx.rerank * k,
        )
        return nlist, RERANKS[-1], best
    for nprobe, rerank in _by_cost(len(gx), nlist, gx.blocks[0].shape[1], k):
        if (found := recall(nprobe, rerank)) >= TARGET_RECALL:
            return nprobe, rerank, found
    return nlist, RERANKS[-1], best


def _by_cost(n: int, nlist: int, dim: int, k: int) -> list[tuple[int, int]]:
    """(nprobe, rerank) pairs, cheapest first: bytes of codes scanned in the mapped index (PCA_DIM
    per exemplar in the cells probed) plus bytes of descriptor rows read to re-rank, counted 4 times
    over (one file read per row)."""
    pairs = [(p, r) for p in [p for p in NPROBES if p < nlist] + [nlist] for r in RERANKS]
    return sorted(pairs, key=lambda pr: pr[0] * n / nlist * PCA_DIM + 4 * (pr[1] * k + gi.RERANK_EXTRA) * dim * 4)


def _reusable(root: Path, manifest: dict, shards: list) -> tuple[faiss.Index, int] | None:
    """The saved index read into memory, to extend, with how many exemplars it holds; None when
    there is none, it is damaged, or the bank outgrew the cells it was trained for."""
    try:
        meta = gi.read_meta(root)
        if meta is None:
            return None
        covered = gi.covered_count(meta, manifest, root / gi.META)
        if manifest["count"] > RETRAIN * meta.get("trained_on", covered):
            return None
        return gi.read_index(root / meta["file"], covered, manifest["global_dim"], mmap=False), covered
    except BankError as e:
        log.warning("%s; building a new one", e)
        return None


def _write(root: Path, index: faiss.Index, meta: dict) -> dict:
    """Under the bank lock: save the index file and global-index.json, then remove older index
    files. Skipped when another writer has meanwhile saved an index holding more exemplars."""
    with store.bank_lock(root):
        try:
            current = gi.read_meta(root)
        except BankError:
            current = None
        if current is not None and current["count"] > meta["count"]:
            return current
        name = f"{gi.INDEX_PREFIX}{meta['kind']}-{meta['count']}-{uuid.uuid4().hex[:8]}.faiss"
        with atomic_path(root / name) as tmp:
            faiss.write_index(index, str(tmp))
            meta = {**meta, "file": name, "bytes": tmp.stat().st_size, "sha256": store.file_sha256(tmp)}
        write_json(root / gi.META, meta)
        for old in root.glob(f"{gi.INDEX_PREFIX}*.faiss"):
            if old.name != name:
                old.unlink(missing_ok=True)
    return meta


def save_global_index(root: Path, flat_limit: int | None = None, pca_dim: int = PCA_DIM) -> dict | None:
    """Bring the bank's saved global index up to date; returns its global-index.json content, or
    None for a bank of at most `flat_limit` (default global_index.FLAT_LIMIT) exemplars, small
    enough for exact search (nothing saved)."""
    root = Path(root)
    flat_limit = gi.FLAT_LIMIT if flat_limit is None else flat_limit
    manifest = store.read_manifest(root)
    if manifest["count"] <= flat_limit:
        return None
    try:
        meta = gi.read_meta(root)
        if meta is not None and gi.covered_count(meta, manifest, root / gi.META) == manifest["count"]:
            gi.read_index(root / meta["file"], meta["count"], manifest["global_dim"])
            return meta
    except BankError:
        pass  # rebuilt below
    shards = [store.read_shard(root, entry, manifest) for entry in manifest["shards"]]
    gx = gi.GlobalIndex([s.global_ for s in shards])
    reused = _reusable(root, manifest, shards)
    index, start = reused if reused else (train_index(gx, pca_dim), 0)
    trained_on = (gi.read_meta(root) or {}).get("trained_on", start) if reused else len(gx)
    add_rows(index, gx, start)
    gx = gi.GlobalIndex(gx.blocks, index, len(gx))
    nprobe, rerank, recall = calibrate(gx)
    meta = {
        "kind": "ivf",
        "description": _describe(index),
        "nprobe": nprobe,
        "rerank": rerank,
        "recall_at_10": round(recall, 4),
        "trained_on": trained_on,
        "shards": [{"name": s["name"], "count": s["count"]} for s in manifest["shards"]],
        "count": manifest["count"],
    }
    meta = _write(root, index, meta)
    log.info(
        "bank %s: saved its global index (%s, nprobe %d, rerank %d, recall@10 %.3f)",
        root,
        meta["description"],
        nprobe,
        rerank,
        recall,
    )
    return meta


def _describe(index: faiss.Index) -> str:
    ivf = faiss.extract_index_ivf(index)
    pca = f"PCA{ivf.d}," if isinstance(index, faiss.IndexPreTransform) else ""
    return f"{pca}IVF{ivf.nlist},SQ8"
