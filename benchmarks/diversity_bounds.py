#!/usr/bin/env python
"""What bounds the diversity of PixelNN's candidates: the neighbours they copy from, or the residuals?

For validation inputs --start .. --start + --limit (keep them apart from the inputs docs/results.md
reports) it synthesizes the candidates of each variant and prints, per variant: the diversity L1 of
each input's candidates, PSNR and edge AP against the photo (Rand-1 / Top-1 / Oracle) and the seconds per
input; then the bank's residual spread (evaluate.metrics.residual_spread), the diversity that copies of
unrelated exemplars would have. Variants:

- paper72: the paper's 72 candidates over the 10 nearest exemplars (the default);
- pruned: the same grid over neighbours pruned of near-duplicates: from the 3K nearest, an exemplar is
  kept when it is more like the query than like every exemplar kept before it (cosine of the global
  descriptors), the rest fill up to K in order;
- ranks3: the paper's grid stretched over ranks 1..30 (every third rank, pools three times as far apart).

The last line is JSON. Example:

    .venv/bin/python benchmarks/diversity_bounds.py --model results/paper_tables/faces-lowres/pixelnn \
        --data ../shared/data/celeba/val --start 250 --limit 20

With --eval EVAL_DIR instead (an evaluation's output folder), it reads the candidates the evaluation
cached and prints each method's diversity L1 at full size and after 4x4 and 8x8 block means: how much of
it lies in the finest details. No synthesis.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from coherence import inputs_and_photos
from pixelnn import pixels
from pixelnn.evaluate import metrics as M
from pixelnn.evaluate.input_metrics import edges_and_taps
from pixelnn.evaluate.run import bank_spread
from pixelnn.features.vgg_hed import pretrained
from pixelnn.regress.precision import describe_cpu
from pixelnn.synth.pipeline import PixelNN

WINDOWS = (1, 3, 5, "whole")
RANKS3 = [(1, r) for r in range(1, 31, 3)] + [(3, r) for r in (1, 7, 13, 19, 25)] + [(5, r) for r in (1, 10, 19)]
VARIANTS = ("paper72", "pruned", "ranks3")
NONE = np.array([], np.int64)


def pruned_search(search, rows):
    """Bank.search that keeps, from the 3k nearest, those more like the query than like any kept one."""

    def search_pruned(xq, k, subset=None):
        sims, ids = search(xq, 3 * k, subset)
        keep = ids[0] >= 0
        s, i = sims[0][keep], ids[0][keep]
        g = rows(i)
        g = g / np.linalg.norm(g, axis=1, keepdims=True)
        like = g @ g.T
        kept, rest = [], []
        for a in range(len(i)):
            (kept if all(like[a, b] < s[a] for b in kept) else rest).append(a)
        order = np.array((kept + rest)[:k], np.int64)
        return s[order][None], i[order][None]

    return search_pruned


def measure(model: PixelNN, variant: str, xs: list, ys: list, vgg, real: list) -> dict:
    """One variant's row; real: the photos' HED edges (S, S), computed once for every variant."""
    search = model.bank.search
    if variant == "pruned":
        model.bank.search = pruned_search(search, model.bank.index.rows)
    grid = ",".join(f"{n}:{r}:{w}" for n, r in RANKS3 for w in WINDOWS) if variant == "ranks3" else None
    diversity, psnr, ap, seconds = [], [], [], 0.0
    try:
        for x, y, real_edges in zip(xs, ys, real):
            t0 = time.perf_counter()
            result = model.synthesize(x, grid=grid)
            seconds += time.perf_counter() - t0
            images = pixels.to_uint8(np.stack([c.image for c in result.candidates]))
            edges, _ = edges_and_taps(vgg, images, NONE)
            diversity.append(M.pairwise_l1(images.astype(np.float64) / 255.0))
            psnr.append(pixels.psnr(images.astype(np.float64) / 255.0, y.astype(np.float64) / 255.0))
            ap.append(M.edge_ap(edges, real_edges))
    finally:
        model.bank.search = search
    rand = [M.rand1_index(0, "pixelnn", i, len(p)) for i, p in enumerate(psnr)]
    top = [0] * len(psnr)  # candidates come best first
    row = {"variant": variant, "diversity_l1": float(np.mean(diversity)), "seconds_per_input": seconds / len(xs)}
    for name, values in (("psnr", psnr), ("edge_ap", ap)):
        sel = M.select(values, rand, "higher", top)
        row[name] = {k: sel[k] for k in ("rand1", "top1", "oracle")}
    return row


def by_scale(folder: Path, factors=(1, 4, 8)) -> dict:
    """{method: {factor: diversity L1 of the candidates after factor x factor block means}}, averaged
    over the inputs cached in an evaluation folder."""
    found: dict = {}
    files = sorted((folder / "cache").glob("cand-*.npz"))
    if not files:
        raise SystemExit(f"{folder} holds no cached candidates (cache/cand-*.npz): run pixelnn evaluate first")
    for path in files:
        with np.load(path) as z:
            for m in ("global", "pixelnn", "pix2pix"):
                if m not in z.files:
                    continue
                images = z[m].astype(np.float32) / 255.0
                n, S = images.shape[:2]
                for k in factors:
                    small = images.reshape(n, S // k, k, S // k, k, 3).mean((2, 4))
                    found.setdefault(m, {}).setdefault(k, []).append(M.pairwise_l1(small))
    return {m: {k: float(np.mean(v)) for k, v in per.items()} for m, per in found.items()}


def print_by_scale(folder: Path) -> None:
    table = by_scale(folder)
    factors = list(next(iter(table.values())))
    print(f"{folder}: diversity L1 of each method's candidates after k x k block means")
    print("| method | " + " | ".join(f"k = {k}" for k in factors) + " |")
    print("|---|" + "---:|" * len(factors))
    for m, per in table.items():
        cells = [
            f"{per[k]:.4f}" + (f" ({per[k] / table['pix2pix'][k]:.2f}x)" if "pix2pix" in table else "") for k in factors
        ]
        print(f"| {m} | " + " | ".join(cells) + " |")
    print(json.dumps(table))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, help="a trained model folder (pixelnn train)")
    p.add_argument("--data", type=Path, help="validation photos, or A|B pair files with --pairs")
    p.add_argument("--eval", type=Path, help="instead: an evaluation folder, its cached candidates by scale")
    p.add_argument("--pairs", action="store_true", help="--data holds edges|photo pair files")
    p.add_argument("--start", type=int, default=250, help="first input (default 250: not the reported 50)")
    p.add_argument("--limit", type=int, default=20, help="inputs from --start")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    args = p.parse_args()
    if args.eval is not None:
        print_by_scale(args.eval)
        return 0
    if args.model is None or args.data is None:
        p.error("give --model and --data (or --eval)")
    variants = args.variants.split(",")
    if any(v not in VARIANTS for v in variants) or args.start < 0 or args.limit < 1:
        p.error(f"--variants must name some of {', '.join(VARIANTS)}; --start >= 0 and --limit >= 1")
    model = PixelNN.load(args.model)
    xs, ys = inputs_and_photos(model, args.data, args.start + args.limit, args.pairs)
    xs, ys = xs[args.start :], ys[args.start :]
    if not xs:
        p.error(f"{args.data} has no input past --start {args.start}")
    vgg = pretrained()
    real = [edges_and_taps(vgg, y[None], NONE)[0][0] for y in ys]
    rows = [measure(model, v, xs, ys, vgg, real) for v in variants]
    spread = bank_spread(model.bank, 0)
    print(f"{args.model}: inputs {args.start}..{args.start + len(xs) - 1} of {args.data}; {describe_cpu()}")
    print("| variant | diversity L1 | PSNR R-1 / T-1 / O | edge AP R-1 / T-1 / O | s / input |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        ps = " / ".join(f"{r['psnr'][k]:.2f}" for k in ("rand1", "top1", "oracle"))
        ap = " / ".join(f"{r['edge_ap'][k]:.3f}" for k in ("rand1", "top1", "oracle"))
        print(f"| {r['variant']} | {r['diversity_l1']:.4f} | {ps} | {ap} | {r['seconds_per_input']:.2f} |")
    n, pairs = spread["exemplars"], spread["pairs"]
    print(f"bank residual spread: {spread['residual_spread']:.4f} ({pairs} pairs of {n} exemplars)")
    print(json.dumps({"rows": rows, "bank": spread}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
