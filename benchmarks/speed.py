"""Speed, exactness and memory of PixelNN's search; prints a table and, last, one JSON line.

    python benchmarks/speed.py --model runs/celeba-lowres --val ../shared/data/celeba/val

The model's bank must store reduced descriptors (`pixelnn index ... --descriptors 64`). Measured:
per-step milliseconds, inputs per second for the 72-candidate grid and for one candidate (K=5,
window 5), agreement of each approximation with the exact search (float32, all dimensions,
exhaustive within the same windows), resident memory, latency with the first 1,000 exemplars and
the whole bank (larger banks: benchmarks/scale.py), and the forward time of a pix2pix-size U-Net
generator as the peer's reference.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pixelnn.bank.bank import Bank
from pixelnn.data.images import IMAGE_SUFFIXES, load_rgb
from pixelnn.features.backbones import describe
from pixelnn.features.projection import project_taps
from pixelnn.search.fast_match import match_all
from pixelnn.search.pixel_match import WHOLE, match
from pixelnn.synth.pipeline import PixelNN

PAPER_INPUTS_PER_S = 0.2


def rss_gb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def val_inputs(model: PixelNN, folder: Path, n: int) -> list[np.ndarray]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[:n]
    return [model.input_from_photo(load_rgb(p)) for p in files]


def time_inputs(model: PixelNN, inputs, grid, repeats: int = 1) -> tuple[float, dict[str, float]]:
    """Seconds per input (mean after one warm-up) and the mean per-step profile."""
    model.synthesize(inputs[0], grid=grid)
    profile: dict[str, float] = {}
    t0 = time.perf_counter()
    for _ in range(repeats):
        for x in inputs:
            model.synthesize(x, grid=grid, profile=profile)
    n = repeats * len(inputs)
    return (time.perf_counter() - t0) / n, {k: v / n for k, v in profile.items()}


def resized_bank(bank: Bank, n: int) -> Bank:
    """The first n exemplars of `bank`, or the bank repeated (copies) up to n exemplars."""
    shards = []
    left = n
    while left > 0:
        for s in bank.shards:
            take = min(left, len(s))
            part = copy.copy(s)
            for key in ("f", "y", "x", "global_", "desc"):
                setattr(part, key, getattr(s, key)[:take])
            part.names, part.labels = s.names[:take], s.labels[:take]
            shards.append(part)
            left -= take
            if left == 0:
                break
    return Bank(bank.root, bank.manifest, shards)


def full_descriptors(model: PixelNN, images: np.ndarray) -> torch.Tensor:
    """Exact hypercolumns (N, D, S, S) of float images (N, S, S, 3)."""
    return describe(model.backbone, torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2))[0]


def agreement(model: PixelNN, inputs, dims: list[int], windows=(1, 3, 5, WHOLE), K: int = 11) -> list[dict]:
    """Per approximation: share of (pixel, neighbour) best matches equal to the exact one, and the
    mean loss in exact (full-D float32) similarity of the chosen source pixel."""
    rows = {}
    for x in inputs:
        fq = model.stage1(x)
        image = torch.from_numpy(fq).permute(2, 0, 1)[None]
        with torch.no_grad():
            taps = model.backbone(image)
        q_full, gq = describe(model.backbone, image)
        _, ids = model.bank.search(gq.numpy(), K)
        ids = ids[0]
        f_ex = model.bank.stage1(ids)
        e_full = full_descriptors(model, f_ex)  # (K, D, S, S)
        desc = model.bank.descriptors(ids)  # (K, S, S, d); --dims below d are meaningful for version-1 banks only
        exact = [match(q_full[0], e_full[k], list(windows)) for k in range(K)]
        D = q_full.shape[1]
        qf = q_full[0].reshape(D, -1)
        for d in dims:
            E = F.normalize(desc[..., :d], dim=-1)
            qd = F.normalize(project_taps(taps, model.basis[:d], image.shape[-2:])[0].half().float(), dim=-1)
            fast = match_all(qd, E, list(windows))
            for w in windows:
                for name, found in (("pca", None), ("fast", fast[w])):
                    if name == "pca":
                        if w != WHOLE:
                            continue  # small windows are exhaustive in both: only the descriptors differ
                        found = (
                            torch.stack(
                                [match(qd.permute(2, 0, 1), E[k].permute(2, 0, 1), [WHOLE])[WHOLE][0] for k in range(K)]
                            ),
                            torch.stack(
                                [match(qd.permute(2, 0, 1), E[k].permute(2, 0, 1), [WHOLE])[WHOLE][1] for k in range(K)]
                            ),
                        )
                    key = (f"d={d} float16" + (" + coarse-to-fine" if name == "fast" and w == WHOLE else ""), w)
                    same, loss = [], []
                    for k in range(K):
                        j_ex = exact[k][w][1].flatten()
                        s_ex = exact[k][w][0].flatten()
                        j_ap = found[1][k].flatten()
                        s_ap = (qf * e_full[k].reshape(D, -1)[:, j_ap]).sum(0)  # exact similarity of the chosen pixel
                        same.append((j_ap == j_ex).float().mean().item())
                        loss.append((s_ex - s_ap).mean().item())
                    r = rows.setdefault(key, {"same": [], "loss": []})
                    r["same"] += same
                    r["loss"] += loss
    return [
        {
            "approximation": k[0],
            "window": "whole" if k[1] == WHOLE else k[1],
            "same_source": float(np.mean(v["same"])),
            "sim_loss": float(np.mean(v["loss"])),
        }
        for k, v in rows.items()
    ]


def generator_forward_ms(size: int, repeats: int = 5) -> tuple[float, str]:
    try:
        from pixelnn.baselines.pix2pix.model import Generator  # the project's pix2pix, if present

        net, name = Generator(in_channels=3, size=size).eval(), "pix2pix generator (project)"
    except Exception:  # noqa: BLE001 - fall back to a U-Net of pix2pix's size
        from pixelnn.regress.unet import Stage1Config, UNet

        net, name = UNet(Stage1Config(3, size, size, width=64, levels=4)).eval(), "U-Net, 64 channels (pix2pix-size)"
    x = torch.rand(1, 3, size, size)
    with torch.no_grad():
        net(x)
        t0 = time.perf_counter()
        for _ in range(repeats):
            net(x)
    return 1000 * (time.perf_counter() - t0) / repeats, name


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--bank", type=Path, help="bank folder (default MODEL/bank)")
    ap.add_argument("--val", type=Path, required=True, help="validation photos")
    ap.add_argument("--inputs", type=int, default=10, help="inputs timed per configuration")
    ap.add_argument("--agree-inputs", type=int, default=3, help="inputs compared with the exact search")
    ap.add_argument("--dims", default="32,64", help="descriptor sizes compared with the exact search")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    args = ap.parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 1)

    rss0 = rss_gb()
    model = PixelNN.load(args.model, bank=args.bank, search="fast", device=args.device)
    inputs = val_inputs(model, args.val, args.inputs)
    n_bank = len(model.bank)
    per72, prof72 = time_inputs(model, inputs, "paper72")
    per1, prof1 = time_inputs(model, inputs, "5:1:5")
    rss_after = rss_gb()
    print(
        f"\nPixelNN search benchmark: bank {n_bank} exemplars, {model.model.cfg.size}x{model.model.cfg.size}, "
        f"descriptors d={model.bank.manifest['descriptors']['dim']}, {torch.get_num_threads()} threads, "
        f"{args.inputs} inputs\n"
    )
    print("| step | 72 candidates (ms) | 1 candidate K=5 T=5 (ms) |\n|---|---:|---:|")
    for step in prof72:
        print(f"| {step} | {1000 * prof72[step]:.1f} | {1000 * prof1.get(step, 0):.1f} |")
    print(f"| **total per input** | **{1000 * per72:.1f}** | **{1000 * per1:.1f}** |")
    print(
        f"\ninputs per second: 72 candidates {1 / per72:.2f}, one candidate {1 / per1:.2f} "
        f"(paper: {PAPER_INPUTS_PER_S} for the 72; {1 / per72 / PAPER_INPUTS_PER_S:.0f}x)"
    )

    # Sizes up to the real bank only: a bank padded in memory here has no saved global index, so above
    # 20,000 exemplars its global search would be the exact one over float16 rows, which no built bank
    # uses. benchmarks/scale.py measures larger banks as `pixelnn index` writes them.
    sizes = {}
    for n in sorted({min(1000, n_bank), n_bank}):
        resized = PixelNN(model.model, resized_bank(model.bank, n), model.config, search="fast", device=args.device)
        sizes[n] = time_inputs(resized, inputs[: max(3, len(inputs) // 2)], "paper72")[0]
    print("\n| bank size | s per input (72 candidates) | ratio to the full bank |\n|---:|---:|---:|")
    for n, t in sizes.items():
        print(f"| {n} | {t:.3f} | {t / sizes[n_bank]:.2f} |")
    print("(larger banks, with their saved global index: benchmarks/scale.py)")

    dims = [int(d) for d in args.dims.split(",")]
    agree = agreement(model, inputs[: args.agree_inputs], dims)
    print("\n| approximation | window | same source pixel | mean similarity loss |\n|---|---|---:|---:|")
    for r in agree:
        print(f"| {r['approximation']} | {r['window']} | {100 * r['same_source']:.1f}% | {r['sim_loss']:.4f} |")

    gen_ms, gen_name = generator_forward_ms(model.model.cfg.size)
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"\npeer reference: {gen_name} forward {gen_ms:.1f} ms per input (one output)")
    print(
        f"resident memory: {rss0:.2f} GB before loading, {rss_after:.2f} GB after loading the bank and timing; "
        f"peak {maxrss:.2f} GB"
    )
    d_used = model.bank.manifest["descriptors"]["dim"]
    whole_fast = [
        r
        for r in agree
        if r["window"] == "whole" and "coarse" in r["approximation"] and f"d={d_used} " in r["approximation"]
    ]
    summary = {
        "grid72_inputs_per_s": round(1 / per72, 3),
        "single_inputs_per_s": round(1 / per1, 3),
        "exact_agreement": round(min(r["same_source"] for r in agree if f"d={d_used} " in r["approximation"]), 4),
        "exact_agreement_whole": round(whole_fast[0]["same_source"], 4) if whole_fast else None,
        "max_sim_loss": round(max(r["sim_loss"] for r in agree if f"d={d_used} " in r["approximation"]), 5),
        "bank_rss_gb": round(rss_after - rss0, 3),
        "latency_ratio_small_to_full": round(sizes[min(1000, n_bank)] / sizes[n_bank], 3),
        "peer_generator_ms": round(gen_ms, 1),
        "paper_inputs_per_s": PAPER_INPUTS_PER_S,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
