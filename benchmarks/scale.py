"""PixelNN at the paper's bank sizes: bytes on disk, build speed, query speed and memory up to 200,000 exemplars.

    python benchmarks/scale.py --model results/paper_tables/faces-edges/pixelnn \
        --source /tmp/scale/faces-edges-compact --train ../shared/data/celeba/train \
        --val ../shared/data/celeba/val --work /tmp/scale

`--source` is a real compact bank of the model (`pixelnn compact MODEL/bank --out ...`). Measured:

- bytes per exemplar on disk (every file of the bank over its count);
- build exemplars/s of stage 1 + descriptors + shard writing, from prepared arrays (the inputs' own
  preparation, e.g. HED edges, not counted), in one process and with Ray on this machine; the
  time 200,000 exemplars would take on 1, 8 and 64 such machines, from the measured rate, assuming
  each machine builds its share at that rate (what the Ray build does, less the driver's set-up);
- 72-candidate and one-candidate inputs/s, and resident memory, at 8,000, 50,000 and 200,000
  exemplars, each size in a fresh process. Banks above the real one are PADDED: copies of the real
  exemplars, mirrored and/or rolled sideways by a few pixels (f, y and x; the compact pixel
  descriptor codes are copied unchanged), whose global descriptors mix the real one with another
  real one plus a small perturbation (as in benchmarks/global_index.py), so that the global search
  does not meet exact duplicates. The padding is for the latency and memory curve only; its
  synthesis results mean nothing;
- global recall@10 of the saved index against exact search, with the validation inputs' own global
  descriptors as queries;
- pix2pix's 72 forward passes in the same run, as the peer's reference.

Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from pixelnn.bank import store

HERE = Path(__file__).resolve().parent
SIZES = (8_000, 50_000, 200_000)
BASE = 64  # exemplars of the bank the build rounds add to (its encoding fitted once, not timed per round)
VARIANT_SHIFT = 2  # pixels rolled sideways per padding variant
MIX_SEED = 0


# ---------------------------------------------------------------- the machine
def cpu_line() -> str:
    """lscpu's model name and the vector flags that matter here."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "CPU: unknown (lscpu failed)"
    model = re.search(r"Model name:\s*(.+)", text)
    flags = re.search(r"Flags:\s*(.+)", text)
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16")
    have = [f for f in wanted if flags and f in flags.group(1).split()]
    line = f"CPU: {model.group(1).strip() if model else '?'}, {os.cpu_count()} cores; flags: {' '.join(have) or 'none'}"
    return line + f"; {dispatch_line()}"


def dispatch_line() -> str:
    """What the kernels were allowed to use: PyTorch's dispatch, and numba's target where one is forced."""
    import torch

    from pixelnn.regress.precision import AVX2_LIMITS

    forced = {k: os.environ[k] for k in AVX2_LIMITS if k in os.environ}
    limits = ", ".join(f"{k}={v}" for k, v in forced.items()) or "no limits set"
    return f"PyTorch dispatches {torch.backends.cpu.get_cpu_capability()} ({limits})"


def status_gb() -> dict[str, float]:
    """VmRSS, VmHWM, RssAnon and RssFile of this process, in GB."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0]) / 2**20
    return out


# ---------------------------------------------------------------- bytes
def bank_bytes(root: Path) -> tuple[int, int]:
    """(bytes of every file of the bank, exemplars)."""
    total = sum(p.stat().st_size for p in Path(root).rglob("*") if p.is_file())
    return total, store.read_manifest(root)["count"]


# ---------------------------------------------------------------- padding
def _mix(pool: np.ndarray, rows: np.ndarray, seed: int) -> np.ndarray:
    """Each row mixed with another row of the pool, plus 0.15 (c - d) for two more, renormalised."""
    rng = np.random.default_rng(seed)
    pick = lambda: pool[rng.integers(0, len(pool), len(rows))].astype(np.float32)  # noqa: E731
    w = rng.uniform(0.5, 0.9, (len(rows), 1)).astype(np.float32)
    out = w * rows.astype(np.float32) + (1 - w) * pick() + 0.15 * (pick() - pick())
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def _variant(arr: np.ndarray, v: int, size: int) -> np.ndarray:
    """Variant v of an (n, h, w, c) image-like array: mirrored when v is odd, rolled v // 2 steps."""
    out = arr[:, :, ::-1] if v % 2 else arr
    shift = round((v // 2) * VARIANT_SHIFT * arr.shape[2] / size)
    return np.ascontiguousarray(np.roll(out, shift, axis=2))


def _padded_shard(folder: Path, real: Path, pool: np.ndarray, v: int, size: int, rows: int) -> int:
    """Write into `folder` variant v of the first `rows` exemplars of the real shard `real`; returns the count."""
    folder.mkdir()
    meta = json.loads((real / "meta.json").read_text())
    arrays = {}
    for path in sorted(real.glob("*.npy")):
        arr = np.load(path, mmap_mode="r")[:rows]
        if path.stem == "global":
            new = _mix(pool, np.asarray(arr), seed=MIX_SEED + v).astype(arr.dtype)
        elif arr.ndim == 4:  # f, y, x (and version-1 descriptor maps)
            new = _variant(arr, v, size)
        else:  # a compact bank's pixel descriptor codes (n, L): copied as they are
            new = np.asarray(arr)
        np.save(folder / path.name, new)
        arrays[path.stem] = new
    hashes = store.exemplar_hashes(arrays["x"], arrays["y"])
    meta = {
        "names": [f"{n}~pad{v}" for n in meta["names"][:rows]],
        "labels": meta["labels"][:rows],
        "hashes": hashes,
        store.SUMS: store.array_sums(folder),
    }
    (folder / "meta.json").write_text(json.dumps(meta))
    return len(hashes)


def _link_bank(source: Path, dest: Path) -> None:
    """dest: a new bank folder whose files are hard links to the source bank's (no copy)."""
    for path in sorted(source.rglob("*")):
        target = dest / path.relative_to(source)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif path.name != store.LOCK and not path.name.startswith("global-"):
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, target)


def padded_bank(source: Path, dest: Path, n: int, log=print) -> Path:
    """Grow the bank `dest` (made of hard links to the source bank's files at first) to n exemplars with
    padded variants of the source's shards, a shard at a time; its global index is then rebuilt."""
    from pixelnn.bank.global_index_build import save_global_index

    manifest = store.read_manifest(source)
    if not (dest / store.MANIFEST).exists():
        _link_bank(source, dest)
    real = [source / e["name"] for e in manifest["shards"]]
    pool = np.concatenate([np.load(r / "global.npy", mmap_mode="r")[:2000] for r in real]).astype(np.float32)
    count = store.read_manifest(dest)["count"]
    v = 1 + (count - manifest["count"]) // manifest["count"]  # the next variant not in dest yet
    while count < n:
        for r, entry in zip(real, manifest["shards"]):
            if count >= n:
                break
            t0 = time.perf_counter()
            with store.staging_folder(dest) as staging:
                m = _padded_shard(staging / "shard", r, pool, v, manifest["size"], min(entry["count"], n - count))
                template = {k: manifest[k] for k in manifest if k not in ("shards", "count", "descriptors")}
                encoding = store.read_encoding(dest, manifest)
                count = store.commit_staged(dest, template, staging / "shard", m, encoding)["count"]
            log(f"  padded {dest.name}: {count} exemplars ({time.perf_counter() - t0:.0f} s for {m})")
        v += 1
    save_global_index(dest)
    return dest


# ---------------------------------------------------------------- queries (run in a fresh process per bank)
def val_inputs(model, folder: Path, n: int) -> list[np.ndarray]:
    from pixelnn.data.images import IMAGE_SUFFIXES, load_rgb

    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[:n]
    return [model.input_from_photo(load_rgb(p)) for p in files]


def _per_input(model, inputs, grid: str) -> float:
    """Seconds per input, after one warm-up input."""
    model.synthesize(inputs[0], grid=grid)
    t0 = time.perf_counter()
    for x in inputs:
        model.synthesize(x, grid=grid)
    return (time.perf_counter() - t0) / len(inputs)


def query_worker(args) -> dict:
    """Open the bank, time both grids, and report memory; the global descriptors of the inputs and
    the index's answers go to --answers for the recall (computed by the parent)."""
    import torch

    from pixelnn.synth.pipeline import PixelNN

    torch.set_num_threads(os.cpu_count() or 1)
    before = status_gb()
    t0 = time.perf_counter()
    model = PixelNN.load(args.model, bank=args.bank, search="fast")
    load_s = time.perf_counter() - t0
    inputs = val_inputs(model, args.val, args.inputs)
    per72 = _per_input(model, inputs, "paper72")
    per1 = _per_input(model, inputs, "5:1:5")
    after = status_gb()
    queries = np.concatenate([model.describe_query(model.stage1(x))[1].numpy() for x in inputs])
    found = np.concatenate([model.bank.search(q[None], 10)[1] for q in queries])
    np.savez(args.answers, queries=queries, found=found)
    return {
        "exemplars": len(model.bank),
        "load_s": load_s,
        "grid72_inputs_per_s": 1 / per72,
        "single_inputs_per_s": 1 / per1,
        "rss_gb": after["VmRSS"],
        "rss_anon_gb": after["RssAnon"],
        "rss_file_gb": after["RssFile"],
        "peak_rss_gb": after["VmHWM"],
        "rss_before_load_gb": before["VmRSS"],
    }


def exact_top10(bank: Path, queries: np.ndarray) -> np.ndarray:
    """Exact inner-product top 10 over the bank's global descriptors, read shard by shard."""
    manifest = store.read_manifest(bank)
    best_s = np.full((len(queries), 0), -np.inf, np.float32)
    best_i = np.zeros((len(queries), 0), np.int64)
    start = 0
    for entry in manifest["shards"]:
        g = np.load(bank / entry["name"] / "global.npy", mmap_mode="r")
        for lo in range(0, len(g), 20_000):
            part = np.asarray(g[lo : lo + 20_000], np.float32)
            s = queries @ part.T
            best_s = np.concatenate([best_s, s], axis=1)
            ids = np.broadcast_to(np.arange(start + lo, start + lo + len(part)), s.shape)
            best_i = np.concatenate([best_i, ids], axis=1)
            keep = np.argsort(-best_s, axis=1)[:, :10]
            best_s, best_i = np.take_along_axis(best_s, keep, 1), np.take_along_axis(best_i, keep, 1)
        start += len(g)
    return best_i


def measure_bank(args, bank: Path) -> dict:
    answers = Path(args.work) / f"answers-{bank.name}.npz"
    cmd = [sys.executable, __file__, "query", "--model", str(args.model), "--bank", str(bank)]
    cmd += ["--val", str(args.val), "--inputs", str(args.inputs), "--answers", str(answers)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"query run on {bank} failed:\n{out.stderr[-3000:]}")
    row = json.loads(out.stdout.strip().splitlines()[-1])
    got = np.load(answers)
    truth = exact_top10(bank, got["queries"])
    row["recall_at_10"] = float(np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, got["found"])]))
    return row


def pix2pix_72_per_s(pix2pix: Path, inputs: list[np.ndarray], repeats: int = 3) -> float:
    """Inputs/s of the trained pix2pix making 72 samples per input (dropout active), as the evaluation does."""
    from pixelnn.baselines.pix2pix.checkpoint import load_generator
    from pixelnn.baselines.pix2pix.sample import sample

    gen = load_generator(Path(pix2pix) / "pix2pix.pt")
    sample(gen, inputs[0], 72)
    t0 = time.perf_counter()
    for x in inputs[:repeats]:
        sample(gen, x, 72)
    return min(repeats, len(inputs)) / (time.perf_counter() - t0)


# ---------------------------------------------------------------- build speed
def build_rates(args) -> dict:
    """Exemplars/s of index_arrays on prepared arrays: one process against Ray, interleaved, best of rounds."""
    import shutil

    from pixelnn.data.prepare import load_prepared
    from pixelnn.workflow import index_arrays

    data = load_prepared(args.prepared)
    n = min(args.build, len(data.y) - BASE)
    rows = slice(BASE, BASE + n)
    x, y, names, labels = data.x[rows], data.y[rows], data.names[rows], data.labels[rows]
    base = Path(args.work) / "build-base"
    shutil.rmtree(base, ignore_errors=True)
    t0 = time.perf_counter()  # a new bank: its encoding (projection and codec) is fitted once, here
    index_arrays(
        args.model,
        data.x[:BASE],
        data.y[:BASE],
        data.names[:BASE],
        data.labels[:BASE],
        bank=base,
        descriptors=64,
        progress=False,
    )
    fit_s = time.perf_counter() - t0
    print(f"  new bank of {BASE} exemplars (the encoding's fit included): {fit_s:.1f} s", flush=True)
    ray_on = _start_ray()
    times: dict[str, list[float]] = {"one process": [], "ray": []}
    for r in range(args.rounds):
        for name, address in (("one process", None), ("ray", "auto")):
            if address and not ray_on:
                continue
            bank = Path(args.work) / f"build-{r}-{name.replace(' ', '-')}"
            shutil.rmtree(bank, ignore_errors=True)
            _link_bank(base, bank)
            t0 = time.perf_counter()
            index_arrays(args.model, x, y, names, labels, bank=bank, progress=False, ray=address)
            times[name].append(time.perf_counter() - t0)
            shutil.rmtree(bank, ignore_errors=True)
            print(f"  build round {r + 1}, {name}: {n} exemplars added in {times[name][-1]:.1f} s", flush=True)
    if ray_on:  # its daemons and idle workers would otherwise share the cores with the query timings
        import ray

        ray.shutdown()
    rate = {k: n / min(v) for k, v in times.items() if v}
    return {"exemplars": n, "seconds": times, "rate": rate, "new_bank_s": fit_s}


def _start_ray() -> bool:
    """A local Ray cluster with a worker per core (False when Ray is not installed)."""
    try:
        import ray
    except ImportError:
        print("  Ray is not installed: the Ray build is not measured")
        return False
    os.environ.setdefault("RAY_worker_niceness", "0")  # Ray's workers compete with this process on equal terms
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="WARNING")
    return True


# ---------------------------------------------------------------- report
def fmt_hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["query"]:  # internal: time queries on one bank in this process
        q = argparse.ArgumentParser(prog="scale.py query")
        for a in ("--model", "--bank", "--val", "--answers"):
            q.add_argument(a, type=Path, required=True)
        q.add_argument("--inputs", type=int, default=10)
        print(json.dumps(query_worker(q.parse_args(argv[1:]))))
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="trained model folder")
    ap.add_argument("--source", type=Path, required=True, help="a real compact bank of that model")
    ap.add_argument("--prepared", type=Path, required=True, help="prepared training arrays (data-*.npz)")
    ap.add_argument("--val", type=Path, required=True, help="validation photos (queries)")
    ap.add_argument("--pix2pix", type=Path, help="trained pix2pix folder, for the peer's 72 samples")
    ap.add_argument("--work", type=Path, default=Path("/tmp/scale"))
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)))
    ap.add_argument("--inputs", type=int, default=10, help="query inputs timed per bank size")
    ap.add_argument("--build", type=int, default=400, help="exemplars built per build round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--keep", action="store_true", help="keep the padded banks")
    return run(ap.parse_args(argv))


def run(args) -> int:
    import shutil

    args.work.mkdir(parents=True, exist_ok=True)
    print(cpu_line(), flush=True)
    print("build:", flush=True)
    build = build_rates(args)
    source_bytes, source_n = bank_bytes(args.source)
    rows = []
    padded = args.work / "bank-padded"
    shutil.rmtree(padded, ignore_errors=True)
    for n in (int(s) for s in args.sizes.split(",")):
        bank = args.source if n <= source_n else padded_bank(args.source, padded, n)
        row = measure_bank(args, bank)
        row["disk_gb"] = bank_bytes(bank)[0] / 2**30
        rows.append(row)
        print(f"  {row['exemplars']} exemplars: {json.dumps({k: round(v, 3) for k, v in row.items()})}", flush=True)
    if not args.keep:
        shutil.rmtree(padded, ignore_errors=True)
    peer = None
    if args.pix2pix:
        from pixelnn.synth.pipeline import PixelNN

        model = PixelNN.load(args.model, bank=args.source, search="fast")
        peer = pix2pix_72_per_s(args.pix2pix, val_inputs(model, args.val, 3))
    report(args, build, source_bytes / source_n, rows, peer)
    return 0


def report(args, build: dict, per_exemplar: float, rows: list[dict], peer: float | None) -> None:
    one = build["rate"]["one process"]
    print(f"\n{cpu_line()}\n")
    print(f"new bank of {BASE} exemplars, with the fit of its encoding: {build['new_bank_s']:.1f} s (once per bank)")
    print("| adding to a bank (stage 1 + descriptors + shard writes, prepared arrays) | exemplars/s |\n|---|---:|")
    for name, rate in build["rate"].items():
        print(f"| {name} ({build['exemplars']} exemplars, best of {args.rounds}) | {rate:.1f} |")
    if "ray" in build["rate"]:
        print(f"| Ray / one process, time | {one / build['rate']['ray']:.3f} |")
    print("\n| 200,000 exemplars, expected build time | 1 machine | 8 machines | 64 machines |\n|---|---:|---:|---:|")
    print("| at the measured one-process rate | " + " | ".join(fmt_hours(2e5 / one / m) for m in (1, 8, 64)) + " |")
    print(f"\nbytes per exemplar on disk (the real bank, all its files over its count): {per_exemplar:,.0f}")
    print(
        "\n| exemplars | disk GB | open s | 72 candidates, inputs/s | 1 candidate, inputs/s | resident GB "
        "(anon + file) | peak GB | global recall@10 |\n|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    for r in rows:
        print(
            f"| {r['exemplars']:,} | {r['disk_gb']:.1f} | {r['load_s']:.1f} | {r['grid72_inputs_per_s']:.2f} | "
            f"{r['single_inputs_per_s']:.2f} | {r['rss_gb']:.2f} ({r['rss_anon_gb']:.2f} + {r['rss_file_gb']:.2f}) | "
            f"{r['peak_rss_gb']:.2f} | {r['recall_at_10']:.3f} |"
        )
    big = rows[-1]
    if peer:
        print(
            f"\npix2pix, 72 samples per input: {peer:.2f} inputs/s; PixelNN's 72 candidates at "
            f"{big['exemplars']:,} exemplars: {big['grid72_inputs_per_s'] / peer:.2f}x that"
        )
    summary = {
        "cpu": cpu_line(),
        "bytes_per_exemplar": round(per_exemplar),
        "build_exemplars_per_s": round(one, 2),
        "build_exemplars_per_s_ray": round(build["rate"].get("ray", float("nan")), 2),
        "grid72_inputs_per_s_200k": round(big["grid72_inputs_per_s"], 3),
        "single_inputs_per_s_200k": round(big["single_inputs_per_s"], 3),
        "rss_gb_200k": round(big["rss_gb"], 3),
        "disk_gb_200k": round(big["disk_gb"], 2),
        "global_recall_at_10": round(min(r["recall_at_10"] for r in rows), 4),
        "exemplars_largest": big["exemplars"],
        "pix2pix72_inputs_per_s": None if peer is None else round(peer, 3),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    sys.exit(main())
