"""Bank build throughput: exemplars/s of stage 1 plus descriptors, per stage; prints tables and, last, one JSON line.

    .venv/bin/python benchmarks/build_speed.py --model results/paper_tables/faces-edges/pixelnn
    .venv/bin/python benchmarks/build_speed.py --model results/paper_tables/faces-edges/pixelnn --both

First the cost of one exemplar: FLOPs of the stage-1 U-Net and of the backbone (counted by
torch.utils.flop_counter on one image), of the per-layer projection to d dimensions (counted by
hand: the matrix products, the normalisations and the bilinear upsampling), and the bytes the pass
writes. Then the model's own training inputs (its cache/) go through the pass the way `pixelnn
index` runs it, one stage at a time in each batch, timed per stage:

- "before": the code before this benchmark existed (commit 5ae75e7), kept below in `before_*`:
  VGG-16 on NCHW input under no_grad, projection through F.normalize copies and einsum on NCHW,
  float16 conversion in numpy;
- "after": the package's functions as `describe_exemplars` calls them (channels_last input, the
  precision features/inference.py picks: float32 for a pass this short);
- "after, bf16": the same with bf16 autocast forced, only where the CPU has native bf16.

Variants alternate round by round (A, B, A, B ...) and each stage keeps its fastest round, so a
busy machine penalises them alike; the load average is printed with the results. The agreement
lines compare each variant's float16 descriptors and global descriptors with "before".
`--isa avx2` (a second pass with --both) limits PyTorch, oneDNN and numba to AVX2
(regress.precision.AVX2_LIMITS): the instruction set of a CPU without AVX-512 or native bf16, not its clocks or
caches.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from pixelnn.bank import store
from pixelnn.bank.build import fit_bank_projection, reduced_descriptors
from pixelnn.bank.stage1 import stage1_outputs
from pixelnn.features.backbones import load_backbone
from pixelnn.features.hypercolumn import global_descriptor, pixel_descriptors
from pixelnn.features.inference import pass_arithmetic, probe, run_backbone
from pixelnn.features.projection import sample_pixels
from pixelnn.regress import checkpoint
from pixelnn.regress.precision import AVX2_LIMITS, Choice, cpu_summary, describe_cpu
from pixelnn.regress.unet import UNet, predict

STAGES = ("stage 1", "backbone", "projection + global", "float16 + write")
FIT_IMAGES = 256  # what fit_bank_projection uses in a build
AGREEMENT_EXEMPLARS = 64  # the descriptors compared between variants
BANK_SIZE = 8000  # the fit's cost is shown spread over a bank of this size


# ---- the code before (5ae75e7), for the comparison ----


def before_stage1(model: UNet, x: np.ndarray) -> np.ndarray:
    return predict(model, x, batch=len(x)).permute(0, 2, 3, 1).numpy().astype(np.float16)


def before_backbone(backbone, f: np.ndarray) -> list[torch.Tensor]:
    imgs = torch.from_numpy(np.asarray(f, dtype=np.float32)).permute(0, 3, 1, 2)  # channels_last strides already
    with torch.no_grad():
        return backbone(imgs)


def before_project(taps: list[torch.Tensor], basis: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    blocks = basis.split([t.shape[1] for t in taps], dim=1)
    acc = None
    for t, P in zip(taps, blocks):
        r = torch.einsum("bchw,dc->bdhw", F.normalize(t, dim=1), P)
        if r.shape[-2:] != size:
            r = F.interpolate(r, size=size, mode="bilinear", align_corners=False)
        acc = r if acc is None else acc + r
    return F.normalize(acc, dim=1).permute(0, 2, 3, 1).contiguous()


def before_fit(backbone, f: np.ndarray, dim: int, n_images: int) -> np.ndarray:
    from pixelnn.features.projection import fit_projection

    gen = torch.Generator().manual_seed(0)
    samples = []
    for i in range(0, min(len(f), n_images), 16):
        imgs = torch.from_numpy(np.asarray(f[i : i + 16], dtype=np.float32)).permute(0, 3, 1, 2)
        with torch.no_grad():
            pix = pixel_descriptors(backbone(imgs), imgs.shape[-2:], normalize_first=True)
        samples.append(sample_pixels(pix, 128, gen))
    return fit_projection(torch.cat(samples), dim).numpy()


# ---- the pass, one stage at a time ----


@dataclass(frozen=True)
class Variant:
    """One way of running the pass: its batch size and one function per stage."""

    name: str
    batch: int
    stage1: Callable  # x uint8 (B, h, w, c) -> f(x) float16 (B, S, S, 3)
    backbone: Callable  # f(x) -> taps
    project: Callable  # taps, size -> (reduced descriptors, global descriptors)
    to_f16: Callable  # reduced descriptors -> float16 numpy (B, S, S, d)


def before_variant(model, backbone, basis) -> Variant:
    return Variant(
        "before",
        16,
        lambda x: before_stage1(model, x),
        lambda f: before_backbone(backbone, f),
        lambda taps, size: (before_project(taps, basis, size), global_descriptor(taps)),
        lambda d: d.numpy().astype(np.float16),
    )


def after_variant(name: str, model, backbone, basis, batch: int, choice: Choice) -> Variant:
    def descriptors(taps, size):  # float16 already: the conversion is timed with the projection here
        with torch.inference_mode():
            return reduced_descriptors(taps, basis, size), global_descriptor(taps)

    return Variant(
        name,
        batch,
        lambda x: stage1_outputs(model, x, progress=False),
        lambda f: run_backbone(backbone, torch.from_numpy(np.asarray(f, dtype=np.float32)).permute(0, 3, 1, 2), choice),
        descriptors,
        lambda d: d,
    )


def run_pass(v: Variant, x: np.ndarray, out: np.ndarray, clock) -> tuple[dict[str, float], np.ndarray]:
    """Seconds per stage over all of x, writing descriptors into `out`; returns them and the global descriptors."""
    seconds = dict.fromkeys(STAGES, 0.0)
    glob = []
    for i in range(0, len(x), v.batch):
        t0 = clock()
        f = v.stage1(x[i : i + v.batch])
        t1 = clock()
        taps = v.backbone(f)
        t2 = clock()
        desc, g = v.project(taps, f.shape[1:3])
        t3 = clock()
        out[i : i + v.batch] = v.to_f16(desc)
        t4 = clock()
        glob.append(g.numpy())
        for stage, dt in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            seconds[stage] += dt
    return seconds, np.concatenate(glob)


# ---- cost per exemplar ----


def flops(fn: Callable[[], object]) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def projection_flops(channels: list[int], sides: list[int], size: int, d: int) -> int:
    """Per image: per layer, the (h w, C) x (C, d) product, the norm and the division (3 C h w), bilinear
    upsampling of d channels to size x size (about 7 flops per output) and the sum; then the final norm."""
    total = 0
    for c, s in zip(channels, sides):
        total += 2 * s * s * c * d + 3 * s * s * c + s * s * d
        if s != size:
            total += 7 * size * size * d
        total += size * size * d  # the sum over layers
    return total + 3 * size * size * d


def cost(model: UNet, backbone, x: np.ndarray, d: int, global_dim: int) -> dict:
    S = model.cfg.size
    with torch.inference_mode():
        unet = flops(lambda: model(torch.rand(1, model.cfg.in_channels, model.cfg.input_size, model.cfg.input_size)))
        img = torch.rand(1, 3, S, S)
        vgg = flops(lambda: backbone(img))
        taps = backbone(img)
    proj = projection_flops([t.shape[1] for t in taps], [t.shape[-1] for t in taps], S, d)
    return {
        "stage1_gflop": unet / 1e9,
        "backbone_gflop": vgg / 1e9,
        "projection_gflop": proj / 1e9,
        "hypercolumn_channels": sum(t.shape[1] for t in taps),
        "backbone_input": f"{S}x{S} (f(x) as stored, not upsampled)",
        "bytes_desc": S * S * d * 2,
        "bytes_global": global_dim * 4,
        "bytes_f": S * S * 3 * 2,
        "bytes_x_y": int(np.prod(x.shape[1:])) + S * S * 3,
    }


def print_cost(c: dict) -> None:
    total = c["stage1_gflop"] + c["backbone_gflop"] + c["projection_gflop"]
    print(f"  stage-1 U-Net forward     {c['stage1_gflop']:7.3f} GFLOP")
    print(f"  backbone to the last tap  {c['backbone_gflop']:7.3f} GFLOP   input {c['backbone_input']}")
    print(f"  projection to d + global  {c['projection_gflop']:7.3f} GFLOP   ({c['hypercolumn_channels']} channels)")
    print(f"  total                     {total:7.3f} GFLOP")
    print(
        f"  written: descriptors {c['bytes_desc'] / 1e6:.2f} MB (float16), global {c['bytes_global'] / 1e3:.1f} kB, "
        f"f(x) {c['bytes_f'] / 1e3:.1f} kB, x and y {c['bytes_x_y'] / 1e3:.1f} kB per exemplar"
    )


# ---- inputs ----


def training_inputs(model_dir: Path, n: int) -> np.ndarray:
    from pixelnn.data.prepare import load_prepared

    caches = sorted((model_dir / "cache").glob("data-*.npz"), key=lambda p: p.stat().st_size)
    if not caches:
        sys.exit(f"{model_dir}/cache has no prepared data: run `pixelnn train` on it first")
    return load_prepared(caches[-1]).x[:n]  # the largest: the training set


def bank_basis(model_dir: Path, backbone, x: np.ndarray, model: UNet, d: int) -> np.ndarray:
    """The model's bank projection if it has one with d dimensions, else one fitted on these inputs."""
    bank = model_dir / "bank"
    if (bank / "projection.npy").exists():
        basis = store.read_projection(bank)
        if basis.shape[0] == d:
            return basis
    return fit_bank_projection(backbone, stage1_outputs(model, x[:64], progress=False), d)


# ---- measuring ----


def agreement(desc: np.ndarray, ref: np.ndarray, glob: np.ndarray, gref: np.ndarray) -> dict:
    a, b = torch.from_numpy(desc).float(), torch.from_numpy(ref).float()
    cos = F.cosine_similarity(a, b, dim=-1).flatten()
    gcos = F.cosine_similarity(torch.from_numpy(glob), torch.from_numpy(gref), dim=-1)
    return {
        "pixel_cos_mean": round(cos.double().mean().item(), 7),
        "pixel_cos_min": round(cos.min().item(), 7),
        "max_abs_diff": float((a - b).abs().max()),
        "float16_equal": float((a == b).double().mean()),
        "global_cos_min": round(gcos.min().item(), 7),
    }


def fit_seconds(fit: Callable[[], object], clock) -> float:
    t0 = clock()
    fit()
    return clock() - t0


def measure(variants: list[Variant], x: np.ndarray, d: int, rounds: int, scratch: Path, clock) -> tuple[dict, dict]:
    S = None
    best: dict[str, dict[str, float]] = {}
    outputs = {}
    for r in range(rounds):
        for v in variants:
            if S is None:
                S = v.stage1(x[:1]).shape[1]
            out = np.lib.format.open_memmap(scratch / f"{r}-{v.name}.npy", mode="w+", dtype=np.float16,
                                            shape=(len(x), S, S, d))  # fmt: skip
            seconds, glob = run_pass(v, x, out, clock)
            out.flush()
            best[v.name] = {k: min(best.get(v.name, {}).get(k, float("inf")), s) for k, s in seconds.items()}
            outputs[v.name] = (np.array(out[:AGREEMENT_EXEMPLARS]), glob)
            del out
            (scratch / f"{r}-{v.name}.npy").unlink()
            total = sum(seconds.values())
            print(f"    round {r + 1} {v.name:14} {len(x) / total:6.1f} exemplars/s  (load {load()})", flush=True)
    return best, outputs


def load() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


def table(best: dict, n: int, c: dict, fit: dict) -> list[dict]:
    gflop = {
        "stage 1": c["stage1_gflop"],
        "backbone": c["backbone_gflop"],
        "projection + global": c["projection_gflop"],
        "float16 + write": 0.0,
    }
    head = f"  {'variant':14} " + " ".join(f"{s:>20}" for s in STAGES) + f" {'total':>9} {'exemplars/s':>12}"
    print(head + f" {'with fit':>9}")
    print(f"  {'':14} " + " ".join(f"{'ms/ex (GFLOP/s)':>20}" for _ in STAGES))
    rows = []
    for name, seconds in best.items():
        ms = {k: s * 1000 / n for k, s in seconds.items()}
        total = sum(ms.values())
        fit_ms = fit.get(name, fit["after"]) * 1000 / BANK_SIZE  # spread over a bank of BANK_SIZE
        cells = " ".join(
            f"{ms[s]:9.2f} ({gflop[s] / ms[s] * 1000:6.0f})" if gflop[s] else f"{ms[s]:9.2f}{'':9}" for s in STAGES
        )
        print(f"  {name:14} {cells} {total:9.2f} {1000 / total:12.1f} {1000 / (total + fit_ms):9.1f}")
        rows.append(
            {
                "variant": name,
                "ms_per_exemplar": {k: round(v, 3) for k, v in ms.items()},
                "exemplars_per_s": round(1000 / total, 2),
                "exemplars_per_s_with_fit": round(1000 / (total + fit_ms), 2),
                "gflop_per_s": round(sum(gflop.values()) / total * 1000, 1),
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="a trained model folder (with cache/ from training)")
    ap.add_argument("--exemplars", type=int, default=256, help="exemplars per pass (default 256)")
    ap.add_argument("--batch", type=int, default=16, help="batch of the 'after' pass (default 16, as a build)")
    ap.add_argument("--dim", type=int, default=64, help="reduced descriptor size d (default 64)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of A, B, ... (default 3)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="wall: elapsed time (default); cpu: this process's CPU time, which other processes on a busy "
        "machine barely change (use it with --threads 1)",
    )
    ap.add_argument("--isa", choices=["native", "avx2"], default="native", help="limit PyTorch/oneDNN to AVX2")
    ap.add_argument("--both", action="store_true", help="run natively, then again limited to AVX2")
    args = ap.parse_args()
    if args.isa == "avx2" and os.environ.get("ONEDNN_MAX_CPU_ISA") != "AVX2":
        env = {**os.environ, **AVX2_LIMITS}
        sys.exit(subprocess.call([sys.executable, *sys.argv], env=env))
    torch.set_num_threads(args.threads)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    label = "limited to AVX2" if args.isa == "avx2" else "native"
    print(f"\nbank build throughput, {label}: {describe_cpu()}; load {load()}")
    model = checkpoint.load_model(args.model / checkpoint.FILENAME).eval()
    backbone = load_backbone("vgg16-hed")
    x = training_inputs(args.model, args.exemplars)
    basis = bank_basis(args.model, backbone, x, model, args.dim)
    basis_t = torch.from_numpy(basis)
    S = model.cfg.size
    with torch.inference_mode():
        global_dim = global_descriptor(backbone(torch.rand(1, 3, S, S))).shape[1]
    c = cost(model, backbone, x, args.dim, global_dim)
    print(f"cost of one {S}x{S} exemplar:")
    print_cost(c)

    picked = pass_arithmetic(backbone, S, args.batch, len(x))
    variants = [
        before_variant(model, backbone, basis_t),
        after_variant("after", model, backbone, basis_t, args.batch, picked),
    ]
    native = cpu_summary()["native_bf16"]
    if native:
        variants.append(after_variant("after, bf16", model, backbone, basis_t, args.batch, Choice("bf16", True, "")))
    large = probe(backbone, S, args.batch) if native else picked
    print(f"after: {picked.note}; a pass of >= 1000 exemplars would take: {large.note}")
    print(f"{len(x)} exemplars of {args.model.name}, {args.threads} threads, {args.rounds} rounds, {args.clock} time:")
    with tempfile.TemporaryDirectory(prefix="build-speed-") as tmp:
        best, outputs = measure(variants, x, args.dim, args.rounds, Path(tmp), clock)
    f16 = stage1_outputs(model, x[:FIT_IMAGES], progress=False)
    fit = {
        "before": fit_seconds(lambda: before_fit(backbone, f16, args.dim, FIT_IMAGES), clock),
        "after": fit_seconds(lambda: fit_bank_projection(backbone, f16, args.dim, FIT_IMAGES), clock),
    }
    print(
        f"projection fit on {len(f16)} exemplars (a build fits on {FIT_IMAGES}, once per bank): "
        f"before {fit['before']:.1f} s, after {fit['after']:.1f} s; 'with fit' spreads it over {BANK_SIZE} exemplars"
    )
    rows = table(best, len(x), c, fit)
    ref_desc, ref_glob = outputs["before"]
    agree = {name: agreement(d, ref_desc, g, ref_glob) for name, (d, g) in outputs.items() if name != "before"}
    for name, a in agree.items():
        print(
            f"  {name} against before: pixel cosine mean {a['pixel_cos_mean']:.7f}, min {a['pixel_cos_min']:.7f}; "
            f"float16 values equal {a['float16_equal']:.3f}, max |diff| {a['max_abs_diff']:.2e}; "
            f"global cosine min {a['global_cos_min']:.7f}"
        )
    print(f"load at the end: {load()}")
    result = {
        "cpu": cpu_summary(),
        "isa": args.isa,
        "model": str(args.model),
        "exemplars": len(x),
        "batch": args.batch,
        "threads": args.threads,
        "clock": args.clock,
        "after_choice": picked.note,
        "large_pass_choice": large.note,
        "cost": c,
        "fit_seconds": fit,
        "rows": rows,
        "agreement": agree,
        "load_end": os.getloadavg(),
    }
    print(json.dumps(result))
    if args.both:
        sys.stdout.flush()
        argv = [a for a in sys.argv[1:] if a != "--both"]
        subprocess.call([sys.executable, __file__, *argv, "--isa", "avx2"])


if __name__ == "__main__":
    main()
