"""Stage-1 normalisation on edge maps: held-out PSNR after a fixed number of steps, per variant.

Trains stage 1 from the same prepared data for each variant (normalisation, last-layer start, learning
rate) for the same number of steps, then measures PSNR on training pairs it never saw (the last
`--held-out` pairs of the training arrays; never a validation split). Steps, not minutes, so other work
on the machine only slows it down. Prints a table and a last JSON line.

    python benchmarks/stage1_norm.py --data results/paper_tables/faces-edges/pixelnn/cache/data-XXXX.npz

The data file is a prepared-data cache (`pixelnn.data.prepare.save_prepared`): x, y uint8 arrays.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from pixelnn.regress.precision import describe_cpu
from pixelnn.regress.train import TrainConfig, evaluate_psnr, train
from pixelnn.regress.unet import Stage1Config

# name -> (Stage1Config overrides, TrainConfig overrides)
VARIANTS = {
    "GroupNorm, zero last layer": ({"norm": "group"}, {}),
    "GroupNorm, zero last layer, lr 5e-4": ({"norm": "group"}, {"lr": 5e-4}),
    "no normalisation, zero last layer": ({"norm": "none"}, {}),
    "BatchNorm, random last layer": ({"norm": "batch", "zero_head": False}, {}),
    "BatchNorm, zero last layer": ({"norm": "batch"}, {}),
}


def run_variant(x, y, held_out: int, overrides: tuple[dict, dict], steps: int, batch: int) -> dict:
    xt, yt, xv, yv = x[:-held_out], y[:-held_out], x[-held_out:], y[-held_out:]
    residual = x.shape[-1] == 3 and x.shape[1] != y.shape[1]
    cfg = Stage1Config(x.shape[-1], x.shape[1], y.shape[1], width=16, levels=4, residual=residual, **overrides[0])
    train_cfg = TrainConfig(steps=steps, minutes=None, batch=batch, precision="fp32", **overrides[1])
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        model = train(xt, yt, Path(tmp), cfg, train_cfg)
    psnr = evaluate_psnr(model, xv, yv, yt.mean(axis=0) / 255.0)
    return {
        "held_out_psnr": psnr["stage1_psnr"],
        "mean_image_psnr": psnr["mean_image_psnr"],
        "seconds": time.monotonic() - t0,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="a prepared-data .npz (x, y)")
    p.add_argument("--steps", type=int, default=250)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--held-out", type=int, default=500, help="last N training pairs kept out of training")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    args = p.parse_args()
    with np.load(args.data) as a:
        x, y = a["x"], a["y"]
    if len(x) <= args.held_out:
        raise SystemExit(f"{args.data} holds {len(x)} pairs: fewer than --held-out {args.held_out} plus training")
    cpu = describe_cpu()
    print(
        f"{len(x) - args.held_out} training pairs, {args.held_out} held out, {args.steps} steps of batch {args.batch};"
        f" CPU: {cpu}"
    )
    rows = {}
    print("| variant | held-out PSNR (dB) | mean image (dB) | s |\n|---|---:|---:|---:|")
    for name in args.variants:
        r = rows[name] = run_variant(x, y, args.held_out, VARIANTS[name], args.steps, args.batch)
        print(f"| {name} | {r['held_out_psnr']:.2f} | {r['mean_image_psnr']:.2f} | {r['seconds']:.0f} |", flush=True)
    print(json.dumps({"steps": args.steps, "batch": args.batch, "cpu": cpu, "variants": rows}))


if __name__ == "__main__":
    main()
