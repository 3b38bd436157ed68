"""Stage-1 throughput: training images/s and inference exemplars/s; prints a table and, last, one JSON line.

    .venv/bin/python benchmarks/stage1.py                       # this CPU as it is
    .venv/bin/python benchmarks/stage1.py --both --model runs/celeba-10   # + a trained model's bank pass

Training: one optimizer step of the two stage-1 networks the project trains (CelebA 12x12 -> 96,
width 16, 4 levels; the demo's edges 64 -> 64, width 16, 3 levels), batch 32, for fp32 and bf16
autocast, NCHW and channels_last, 1 and 2 threads; the median of a few steps after a warm-up.
Inference: f(x) of the CelebA network in float32, one image at a time in NCHW (how the bank was
built before) and in channels_last at batch sizes 1 (a query), 8, 16 (the bank's pass now) and
32. With --model, the same on a trained model's prepared training inputs (its cache/), as
`pixelnn index` runs them.

`--isa avx2` (run automatically as a second pass with --both) limits PyTorch, oneDNN and numba to
AVX2 (regress.precision.AVX2_LIMITS): on an AVX-512 machine this shows what a CPU without
native bf16 gets, bf16 emulated included. It is an emulation of the instruction set only: a real
AVX2 CPU also differs in clocks, caches and cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from pixelnn.bank.stage1 import STAGE1_BATCH
from pixelnn.regress.precision import AVX2_LIMITS, Choice, cpu_summary, describe_cpu
from pixelnn.regress.train import TrainConfig, _optimizer, _step
from pixelnn.regress.unet import Stage1Config, UNet, predict

NETWORKS = {
    "celeba 12->96": Stage1Config(3, 12, 96, width=16, levels=4, residual=True),
    "demo edges 64": Stage1Config(1, 64, 64, width=16, levels=3),
}
BATCH = 32


def train_images_per_s(cfg: Stage1Config, choice: Choice, steps: int) -> float:
    torch.manual_seed(0)
    model = UNet(cfg).train().to(memory_format=choice.memory_format)
    opt = _optimizer(model, TrainConfig())
    x = torch.rand(BATCH, cfg.in_channels, cfg.input_size, cfg.input_size)
    y = torch.rand(BATCH, 3, cfg.size, cfg.size)
    _step(model, opt, x, y, choice)  # warm-up
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        _step(model, opt, x, y, choice)
        times.append(time.perf_counter() - t0)
    return BATCH / float(np.median(times))


def inference_per_s(model: UNet, x: np.ndarray, batch: int, channels_last: bool) -> float:
    predict(model, x[: max(batch, 1)], batch=batch, channels_last=channels_last)  # warm-up
    t0 = time.perf_counter()
    for i in range(0, len(x), batch):  # as stage1_outputs does, with the layout made explicit
        predict(model, x[i : i + batch], batch=batch, channels_last=channels_last).permute(0, 2, 3, 1).numpy().astype(
            np.float16
        )
    return len(x) / (time.perf_counter() - t0)


def training_rows(steps: int) -> list[dict]:
    rows = []
    native = cpu_summary()["native_bf16"]
    for name, cfg in NETWORKS.items():
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for precision in ("fp32", "bf16"):
                for cl in (False, True):
                    n = steps if precision == "fp32" or native else 2  # emulated bf16 is slow: fewer steps
                    ips = train_images_per_s(cfg, Choice(precision, cl, ""), n)
                    rows.append(
                        {
                            "network": name,
                            "threads": threads,
                            "precision": precision,
                            "channels_last": cl,
                            "train_images_per_s": round(ips, 1),
                        }
                    )
                    print(
                        f"  {name:14} {threads} thr  {precision}  {'channels_last' if cl else 'NCHW':13} "
                        f"{ips:7.1f} images/s",
                        flush=True,
                    )
    torch.set_num_threads(2)
    return rows


INFERENCE = [(1, False), (1, True), (8, True), (STAGE1_BATCH, True), (32, True)]  # (1, NCHW): the bank's pass before


def inference_rows(model: UNet, x: np.ndarray, label: str) -> list[dict]:
    rows = []
    for batch, cl in INFERENCE:
        eps = inference_per_s(model, x, batch, cl)
        rows.append(
            {"what": label, "batch": batch, "channels_last": cl, "images": len(x), "exemplars_per_s": round(eps, 1)}
        )
        print(
            f"  {label:38} batch {batch:2} {'channels_last' if cl else 'NCHW':13}: {eps:7.1f} exemplars/s "
            f"({len(x)} images)",
            flush=True,
        )
    return rows


def trained_inputs(model_dir: Path, n: int) -> tuple[UNet, np.ndarray]:
    from pixelnn.data.prepare import load_prepared
    from pixelnn.regress import checkpoint

    caches = sorted((model_dir / "cache").glob("data-*.npz"), key=lambda p: p.stat().st_size)
    if not caches:
        sys.exit(f"{model_dir}/cache has no prepared data: run `pixelnn train` on it first")
    x = load_prepared(caches[-1]).x[:n]  # the largest: the training set
    return checkpoint.load_model(model_dir / checkpoint.FILENAME), x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=4, help="timed training steps per setting (default 4)")
    ap.add_argument("--model", type=Path, help="a trained model folder: also time its bank stage-1 pass")
    ap.add_argument("--bank-images", type=int, default=2000, help="images for that pass (default 2000)")
    ap.add_argument("--isa", choices=["native", "avx2"], default="native", help="limit PyTorch/oneDNN to AVX2")
    ap.add_argument("--both", action="store_true", help="run natively, then again limited to AVX2")
    args = ap.parse_args()
    if args.isa == "avx2" and os.environ.get("ONEDNN_MAX_CPU_ISA") != "AVX2":
        env = {**os.environ, **AVX2_LIMITS}
        sys.exit(subprocess.call([sys.executable, *sys.argv], env=env))
    torch.set_num_threads(2)
    label = "limited to AVX2" if args.isa == "avx2" else "native"
    print(f"\nstage-1 throughput, {label}: {describe_cpu()}")
    print("training, batch 32 (one optimizer step):")
    result = {"cpu": cpu_summary(), "isa": args.isa, "training": training_rows(args.steps)}
    print("inference, f(x) as the bank's stage-1 pass computes it:")
    rng = np.random.default_rng(0)
    cfg = NETWORKS["celeba 12->96"]
    torch.manual_seed(0)
    untrained = UNet(cfg).eval()
    result["inference"] = inference_rows(
        untrained, rng.integers(0, 256, (512, 12, 12, 3), dtype=np.uint8), "celeba 12->96, random inputs"
    )
    if args.model:
        model, x = trained_inputs(args.model, args.bank_images)
        result["inference"] += inference_rows(model, x, f"{args.model.name}, its training inputs")
    print(json.dumps(result))
    if args.both:
        sys.stdout.flush()
        subprocess.call(
            [sys.executable, __file__, "--isa", "avx2", "--steps", str(args.steps)]
            + (["--model", str(args.model), "--bank-images", str(args.bank_images)] if args.model else [])
        )


if __name__ == "__main__":
    main()
