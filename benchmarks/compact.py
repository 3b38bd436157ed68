"""A version-1 bank against its compact (version-2) copy: size, similarity loss, Table-1 metrics, speed.

    pixelnn compact results/paper_tables/edges2shoes/pixelnn/bank --out /tmp/shoes-v2
    python benchmarks/compact.py --model results/paper_tables/edges2shoes/pixelnn --old-bank \
results/paper_tables/edges2shoes/pixelnn/bank --new-bank /tmp/shoes-v2 \
--val ../shared/data/edges2shoes/val --pairs BtoA

Measured, each on the first validation inputs:

- bytes per exemplar on disk: every file of the bank folder (shards and shared files) / exemplars;
- similarity loss (--queries inputs, K=5 neighbours of the old bank, windows 1, 3, 5 and whole):
  per query pixel and neighbour, the best cosine of the exhaustive search on the stored 64-d
  float16 descriptors (the query described as for the version-1 bank) minus the same cosine of
  the pixel a search picked. Rows: the version-1 fast search (coarse-to-fine in whole windows),
  the compact search as PixelNN runs it (the query coded like the exemplars), and the compact
  search with the exact query (asymmetric), for comparison;
- Table 1 (--table inputs): Rand-1 and Oracle edge AP and PSNR of the 72 candidates with each bank,
  and the paired bootstrap interval of the difference (compact - old, positive = compact better);
- query speed: 72-candidate inputs per second, the two banks timed alternately (A, B, A, B).

Prints tables and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pixelnn.commands import load_data
from pixelnn.data.options import DataOptions
from pixelnn.evaluate import metrics as M
from pixelnn.evaluate.candidates import candidates
from pixelnn.evaluate.input_metrics import edges_and_taps
from pixelnn.features.projection import project_taps
from pixelnn.features.vgg_hed import pretrained
from pixelnn.pixels import psnr
from pixelnn.search.fast_match import match_all, match_local_blocks
from pixelnn.search.pixel_match import WHOLE
from pixelnn.synth.pipeline import FLOAT16_TIE, PixelNN

WINDOWS = (1, 3, 5, WHOLE)
K = 5


def folder_kb_per_exemplar(root: Path, count: int) -> float:
    return sum(p.stat().st_size for p in Path(root).rglob("*") if p.is_file()) / count / 1024


def exhaustive_best(q: torch.Tensor, E: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """Best cosine over the whole image: q (S, S, d), E (K, S, S, d) unit -> (K, S*S)."""
    qf, ef = q.reshape(-1, q.shape[-1]), E.reshape(len(E), -1, E.shape[-1])
    return torch.stack(
        [torch.cat([(qf[i : i + chunk] @ e.T).max(1).values for i in range(0, len(qf), chunk)]) for e in ef]
    )


def picked_sims(q: torch.Tensor, E: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    """Cosine of each query pixel with the exemplar pixel j (K, S, S) picked for it: (K, S*S)."""
    qf, ef = q.reshape(-1, q.shape[-1]), E.reshape(len(E), -1, E.shape[-1])
    return torch.stack([(qf * ef[k][j[k].reshape(-1)]).sum(-1) for k in range(len(E))])


def similarity_loss(old: PixelNN, new: PixelNN, inputs: list[np.ndarray]) -> dict[str, dict]:
    """Mean similarity loss per search and window (see the module docstring)."""
    losses: dict[str, dict] = {}
    for x in inputs:
        fq_old, fq_new = old.stage1(x), new.stage1(x)
        q_old, g = old.describe_query(fq_old)
        q_new, _ = new.describe_query(fq_new)
        image = torch.from_numpy(fq_new).permute(2, 0, 1)[None]
        with torch.no_grad():
            q_asym = project_taps(new.backbone(image), new.basis, image.shape[-2:])[0]  # exact, not coded
        _, ids = old.bank.search(g.numpy(), K)
        ids = ids[0][ids[0] >= 0]
        e_old = F.normalize(old.bank.descriptors(ids), dim=-1)
        e_new = F.normalize(new.bank.descriptors(ids), dim=-1)
        best = {w: s.reshape(len(ids), -1) for w, (s, _) in match_local_blocks(q_old, e_old, [1, 3, 5]).items()}
        best[WHOLE] = exhaustive_best(q_old, e_old)
        searches = {
            "version 1, float16": match_all(q_old, e_old, list(WINDOWS), tie=FLOAT16_TIE),
            "compact (query coded)": match_all(q_new, e_new, list(WINDOWS), tie=FLOAT16_TIE),
            "compact, exact query": match_all(q_asym, e_new, list(WINDOWS), tie=FLOAT16_TIE),
        }
        for name, found in searches.items():
            for w in WINDOWS:
                loss = (best[w] - picked_sims(q_old, e_old, found[w][1])).mean().item()
                losses.setdefault(name, {}).setdefault(w, []).append(loss)
    return {name: {w: float(np.mean(v)) for w, v in per.items()} for name, per in losses.items()}


def table1(model: PixelNN, x: np.ndarray, y: np.ndarray, vgg) -> dict[str, np.ndarray]:
    """Per input the Rand-1 and Oracle edge AP and PSNR of PixelNN's 72 candidates."""
    out: dict[str, list] = {}
    for i in range(len(x)):
        images = candidates(model, x[i], i)["pixelnn"]  # (72, S, S, 3) uint8, best ranked first
        edges, _ = edges_and_taps(vgg, np.concatenate([y[i][None], images]), np.zeros(0, np.int64))
        values = {
            "edge_ap": M.edge_ap(edges[1:], edges[0]),
            "psnr": psnr(images.astype(np.float64) / 255.0, y[i].astype(np.float64) / 255.0),
        }
        r = M.rand1_index(0, "pixelnn", i, len(images))
        for metric, v in values.items():
            out.setdefault(f"rand1 {metric}", []).append(v[r])
            out.setdefault(f"oracle {metric}", []).append(np.nanmax(v))
    return {k: np.array(v) for k, v in out.items()}


def speed(models: dict[str, PixelNN], inputs: list[np.ndarray], rounds: int = 2) -> dict[str, float]:
    """72-candidate inputs per second of each model, timed alternately."""
    for m in models.values():
        m.synthesize(inputs[0])  # warm-up
    seconds = {name: 0.0 for name in models}
    for _ in range(rounds):
        for name, m in models.items():
            t0 = time.perf_counter()
            for x in inputs:
                m.synthesize(x)
            seconds[name] += time.perf_counter() - t0
    return {name: rounds * len(inputs) / s for name, s in seconds.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--old-bank", type=Path, required=True, help="a version-1 bank of the model")
    ap.add_argument("--new-bank", type=Path, required=True, help="its compact copy (pixelnn compact)")
    ap.add_argument("--val", type=Path, required=True, help="validation data")
    ap.add_argument("--pairs", help="AtoB | BtoA for pair files")
    ap.add_argument("--signal", help="lowres | edges for a folder of photos")
    ap.add_argument("--queries", type=int, default=20, help="inputs for the similarity loss (0: skip)")
    ap.add_argument("--table", type=int, default=50, help="inputs for the Table-1 metrics (0: skip)")
    ap.add_argument("--speed", type=int, default=5, help="inputs timed per round (0: skip)")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/pixelnn-benchmark-cache"), help="prepared data cache")
    args = ap.parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 1)

    old = PixelNN.load(args.model, bank=args.old_bank, search="fast")
    new = PixelNN.load(args.model, bank=args.new_bank, search="fast")
    versions = (old.bank.manifest["version"], new.bank.manifest["version"])
    opts = DataOptions(pairs=args.pairs, signal=args.signal, limit=max(args.queries, args.table, args.speed))
    data = load_data(opts.for_model(old.config, old.model.cfg.size), args.val, None, args.cache)
    n = len(old.bank)
    result: dict = {"model": str(args.model), "exemplars": n, "versions": versions}

    sizes = {"old": folder_kb_per_exemplar(args.old_bank, n), "new": folder_kb_per_exemplar(args.new_bank, n)}
    result["kb_per_exemplar"] = sizes
    print(
        f"\nbank of {n} exemplars: {sizes['old']:.1f} KB per exemplar (version {versions[0]}), "
        f"{sizes['new']:.1f} KB (version {versions[1]}), {sizes['old'] / sizes['new']:.1f}x smaller"
    )

    if args.queries:
        t0 = time.perf_counter()
        losses = similarity_loss(old, new, list(data.x[: args.queries]))
        result["similarity_loss"] = {
            k: {("whole" if w == WHOLE else str(w)): v for w, v in d.items()} for k, d in losses.items()
        }
        print(
            f"\nmean similarity loss against the exhaustive 64-d float16 search ({args.queries} inputs, K={K}, "
            f"{time.perf_counter() - t0:.0f} s)\n"
        )
        print("| search | window 1 | 3 | 5 | whole | mean |\n|---|---:|---:|---:|---:|---:|")
        for name, d in losses.items():
            cells = " | ".join(f"{d[w]:.4f}" for w in WINDOWS)
            print(f"| {name} | {cells} | {np.mean(list(d.values())):.4f} |")

    if args.table:
        t0 = time.perf_counter()
        vgg = pretrained()
        x, y = data.x[: args.table], data.y[: args.table]
        per = {"old": table1(old, x, y, vgg), "new": table1(new, x, y, vgg)}
        rows = {}
        print(f"\nTable 1, PixelNN's 72 candidates on {len(x)} inputs ({time.perf_counter() - t0:.0f} s)\n")
        print("| metric | old bank | compact | compact - old (95% bootstrap) |\n|---|---:|---:|---|")
        for key in per["old"]:
            diff = M.paired_interval(per["new"][key], per["old"][key], "higher")
            a, b = float(np.nanmean(per["old"][key])), float(np.nanmean(per["new"][key]))
            rows[key] = {"old": a, "new": b, "difference": diff}
            print(f"| {key} | {a:.4f} | {b:.4f} | {diff['mean']:+.4f} [{diff['low']:+.4f}, {diff['high']:+.4f}] |")
        result["table1"] = rows

    if args.speed:
        rates = speed({"old": old, "new": new}, list(data.x[: args.speed]))
        result["inputs_per_s"] = rates
        print(
            f"\n72 candidates: {rates['old']:.2f} inputs/s with the old bank, {rates['new']:.2f} with the compact "
            f"one ({rates['new'] / rates['old']:.2f}x; {args.speed} inputs, alternately, 2 rounds)"
        )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
