"""Global index by bank size: exact (flat) search against the saved IVF index.

Data: the global descriptors (4,608-d) of a built bank (default: the faces-lowres bank of the paper
tables, 8,000 exemplars). Its last QUERIES rows are held out as queries; the rest form the 8k bank.
Larger banks are padded with made-up rows, each a mix of two real rows plus a little noise
(w*a + (1-w)*b + noise, w in [0.5, 0.9], noise of norm about 0.3, renormalised), written shard by shard
so the raw vectors are never in memory together. Every bank is a real bank folder (tiny f/x/y).

For each bank size and kind a fresh process opens the global index (shards memory-mapped, no
finiteness check), answers the queries one at a time, and reports its resident memory. recall@10 is
against exact search. Prints a table and, last, one JSON line.

    OMP_NUM_THREADS=2 nice -n 19 python benchmarks/global_index.py --work /tmp/gi-bench
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from pixelnn.bank import global_index as gi
from pixelnn.bank import store

SOURCE = Path("results/paper_tables/faces-lowres/pixelnn/bank")
QUERIES = 200
SHARD = 10_000


def status_mb() -> dict[str, float]:
    """VmRSS, RssAnon and RssFile of this process, in MB."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0]) / 1024
    return out


def real_rows(source: Path) -> np.ndarray:
    manifest = store.read_manifest(source)
    return np.concatenate([np.asarray(store.read_shard(source, e).global_) for e in manifest["shards"]])


def padded(pool: np.ndarray, n: int, seed: int, padding: str) -> np.ndarray:
    """n made-up unit rows, each mixing two rows a, b of `pool`, plus a perturbation: 'span' adds
    0.15 (c - d) for two more real rows (it stays in the span of real descriptors), 'noise' adds
    isotropic Gaussian noise of norm about 0.3 (spread evenly over all 4,608 axes, unlike real
    descriptors, 99% of whose variance lies on 256 principal axes)."""
    rng = np.random.default_rng(seed)
    pick = lambda: pool[rng.integers(0, len(pool), n)]  # noqa: E731
    a, b = pick(), pick()
    w = rng.uniform(0.5, 0.9, (n, 1)).astype(np.float32)
    if padding == "span":
        e = 0.15 * (pick() - pick())
    else:
        e = rng.normal(0, 0.3 / np.sqrt(pool.shape[1]), a.shape).astype(np.float32)
    x = w * a + (1 - w) * b + e
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def write_bank(root: Path, pool: np.ndarray, n: int, padding: str) -> None:
    """A bank of n exemplars: the pool's rows, then padded rows; tiny images."""
    if (root / store.MANIFEST).exists() and store.read_manifest(root)["count"] == n:
        return
    manifest = store.new_manifest("bench", "vgg16-hed", 1, "lowres", (1, 1, 3), pool.shape[1])
    for start in range(0, n, SHARD):
        m = min(SHARD, n - start)
        g = pool[start : start + m] if start + m <= len(pool) else None
        if g is None:
            real = pool[start : min(start + m, len(pool))]
            g = np.concatenate([real, padded(pool, m - len(real), start, padding)])
        z = np.zeros((m, 1, 1, 3), np.uint8)
        shard = store.Shard(
            z.astype(np.float16),
            z,
            z,
            g,
            [f"{start + i}" for i in range(m)],
            [None] * m,
            hashes=[f"{start + i}" for i in range(m)],
        )
        manifest = store.write_shard(root, manifest, shard)


def open_index(root: Path) -> gi.GlobalIndex:
    manifest = store.read_manifest(root)
    return gi.open_global_index(root, manifest, [store.read_shard(root, e) for e in manifest["shards"]])


def flat_index(root: Path) -> gi.GlobalIndex:
    """Exact search over the memory-mapped global.npy files, whatever index the bank has saved."""
    manifest = store.read_manifest(root)
    return gi.GlobalIndex([store.read_shard(root, e).global_ for e in manifest["shards"]])


def measure(root: Path, kind: str, queries: Path, truth: Path, limit: int) -> dict:
    """In a fresh process: open, answer queries one by one, report time, recall and memory."""
    xq, truth_ids = np.load(queries)[:limit], np.load(truth)[:limit]
    before = status_mb()
    t0 = time.perf_counter()
    index = open_index(root) if kind == "ivf" else flat_index(root)
    load_s = time.perf_counter() - t0
    found, times = [], []
    for q in xq:
        t0 = time.perf_counter()
        found.append(index.search(q[None], 10)[1][0])
        times.append(time.perf_counter() - t0)
    after = status_mb()
    recall = float(np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth_ids, found)]))
    return {
        "load_s": load_s,
        "search_ms": 1000 * float(np.median(times)),
        "recall_at_10": recall,
        "rss_mb": after["VmRSS"] - before["VmRSS"],
        "anon_mb": after["RssAnon"] - before["RssAnon"],
        "file_mb": after["RssFile"] - before["RssFile"],
        "queries": len(xq),
    }


def run_size(work: Path, pool: np.ndarray, xq: np.ndarray, n: int, args) -> list[dict]:
    from pixelnn.bank.global_index_build import save_global_index

    root = work / f"bank-{n}-{args.padding}"
    write_bank(root, pool, n, args.padding)
    np.save(work / "queries.npy", xq)
    _, truth = _exact(root, xq)
    np.save(work / f"truth-{n}.npy", truth)
    for old in [root / gi.META, *root.glob(f"{gi.INDEX_PREFIX}*.faiss")]:
        old.unlink(missing_ok=True)  # timed from scratch
    t0 = time.perf_counter()
    meta = save_global_index(root, flat_limit=0, pca_dim=args.pca)
    build_s = time.perf_counter() - t0
    rows = []
    for kind in ("flat", "ivf"):
        limit = args.flat_queries if kind == "flat" else len(xq)
        cmd = [
            sys.executable,
            __file__,
            "--measure",
            str(root),
            kind,
            str(work / "queries.npy"),
            str(work / f"truth-{n}.npy"),
            str(limit),
        ]
        res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        size_mb = (root / meta["file"]).stat().st_size / 1e6 if kind == "ivf" else n * xq.shape[1] * 4 / 1e6
        rows.append(
            {
                "exemplars": n,
                "kind": "flat" if kind == "flat" else meta["description"],
                "nprobe": meta["nprobe"] if kind == "ivf" else None,
                "rerank": meta["rerank"] if kind == "ivf" else None,
                "build_s": build_s if kind == "ivf" else 0.0,
                "index_mb": size_mb,
                **res,
            }
        )
    return rows


def _exact(root: Path, xq: np.ndarray):
    return flat_index(root).exact(xq, 10)


def _reranked(r: dict) -> str:
    return f"{r['rerank'] * 10 + gi.RERANK_EXTRA}" if r["rerank"] else "-"


def table(rows: list[dict]) -> str:
    head = (
        "| exemplars | index | nprobe | re-ranked | build s | load s | search ms/query | recall@10 "
        "| index file MB | resident MB (anon + file) |"
    )
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        lines.append(
            f"| {r['exemplars']:,} | {r['kind']} | {r['nprobe'] or '-'} | {_reranked(r)} | "
            f"{r['build_s']:.1f} | {r['load_s']:.2f} | "
            f"{r['search_ms']:.1f} | {r['recall_at_10']:.3f} | {r['index_mb']:.0f} | "
            f"{r['rss_mb']:.0f} ({r['anon_mb']:.0f} + {r['file_mb']:.0f}) |"
        )
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--measure":
        root, kind, queries, truth, limit = sys.argv[2:7]
        print(json.dumps(measure(Path(root), kind, Path(queries), Path(truth), int(limit))))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, default=SOURCE, help="a built bank whose global descriptors are the data")
    ap.add_argument("--work", type=Path, required=True, help="folder for the generated banks (several GB at 200k)")
    ap.add_argument("--sizes", default="8000,50000,200000", help="bank sizes; the first at most the source's rows")
    ap.add_argument("--pca", type=int, default=256, help="PCA dimension of the IVF index")
    ap.add_argument("--padding", choices=("span", "noise"), default="span", help="how made-up rows are perturbed")
    ap.add_argument("--flat-queries", type=int, default=50, help="queries timed for exact search (recall is 1)")
    args = ap.parse_args()
    real = real_rows(args.source)
    pool, xq = real[:-QUERIES], real[-QUERIES:]
    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        rows += run_size(args.work, pool, xq, min(n, len(pool)) if n <= len(real) else n, args)
        print(table(rows[-2:]).splitlines()[-2:], flush=True, file=sys.stderr)
    print(table(rows))
    print(json.dumps({"benchmark": "global_index", "pca": args.pca, "padding": args.padding, "rows": rows}))


if __name__ == "__main__":
    main()
