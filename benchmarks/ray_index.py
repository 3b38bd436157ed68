"""Exemplars per second of `pixelnn index` in one process against `--ray` on this machine, interleaved.

    python benchmarks/ray_index.py results/paper_tables/faces-edges/pixelnn ../shared/data/celeba/train \
        --signal edges --limit 400 --rounds 2 --scratch /tmp/ray-bench

Each round builds a new bank (with 64-d descriptors) of the same images once in this process (torch's
threads on every core) and once with Ray tasks (a local cluster of as many 1-thread workers as cores,
started once before the first round; its workers' start is in the first Ray round), then deletes both.
Ray's workers run at nice 0 here (RAY_worker_niceness), as this process does, so that a machine shared
with other work treats both alike. Prints one line per build and a last JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

from pixelnn.data.options import DataOptions
from pixelnn.model_folder import ModelFolder
from pixelnn.regress.precision import describe_cpu
from pixelnn.workflow import index_samples


def samples(model: Path, data: Path, signal: str | None, limit: int):
    from pixelnn.commands import _samples

    opts = DataOptions(data=data, signal=signal, limit=limit)
    config = ModelFolder(model).config()
    opts = opts.for_model(config, config.get("size", 96))
    kind = None if opts.kind in ("pairs", "folders") else opts.kind
    return _samples(opts, data, None)[:limit], opts.size, kind, opts.factor


def build(model: Path, found, bank: Path, ray: str | None, descriptors: int) -> float:
    """Seconds to index the samples into the new bank `bank`."""
    items, size, signal, factor = found
    t0 = time.perf_counter()
    index_samples(model, items, size, signal, factor, bank=bank, descriptors=descriptors, progress=False, ray=ray)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", type=Path)
    p.add_argument("data", type=Path)
    p.add_argument("--signal", help="input made from photos (default: the model's)")
    p.add_argument("--limit", type=int, default=400)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--descriptors", type=int, default=64)
    p.add_argument("--scratch", type=Path, default=Path("/tmp/ray-bench"))
    args = p.parse_args()
    os.environ.setdefault("RAY_worker_niceness", "0")
    import ray

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="WARNING")
    found = samples(args.model, args.data, args.signal, args.limit)
    n = len(found[0])
    times: dict[str, list[float]] = {"one process": [], "ray": []}
    for r in range(args.rounds):
        for name, address in (("one process", None), ("ray", "auto")):
            bank = args.scratch / f"bank-{r}-{address or 'local'}"
            shutil.rmtree(bank, ignore_errors=True)
            seconds = build(args.model, found, bank, address, args.descriptors)
            shutil.rmtree(bank, ignore_errors=True)
            times[name].append(seconds)
            print(f"round {r + 1} {name:>11}: {n} exemplars in {seconds:.1f} s ({n / seconds:.1f} exemplars/s)")
    best = {k: min(v) for k, v in times.items()}
    print(f"Ray / one process, best of {args.rounds}: {best['ray'] / best['one process']:.3f}; CPU: {describe_cpu()}")
    print(json.dumps({"exemplars": n, "seconds": times, "cpus": os.cpu_count()}))


if __name__ == "__main__":
    main()
