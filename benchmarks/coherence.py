#!/usr/bin/env python
"""Coherent copying measured against plain Eq. 3: one table per trained model, one row per copy mode.

For the first --limit validation inputs it synthesizes the paper's 72 candidates with each copy mode
(synth/coherence.py) and prints, over all candidates of all inputs: the seam metric (evaluate.metrics.
seam_step, against the photo), the share of neighbour pairs copied from different sources, the mean
similarity of the copied pixels, PSNR and SSIM against the photo (Rand-1 / Top-1 / Oracle), the
spectrum gap, the diversity L1 of each input's candidates and the seconds per input. The last line is JSON. Example:

    .venv/bin/python benchmarks/coherence.py --model results/paper_tables/faces-lowres/pixelnn \
        --data ../shared/data/celeba/val --signal lowres --limit 20
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from pixelnn import pixels
from pixelnn.data.prepare import prepare
from pixelnn.data.sources import pair_files, photo_folder
from pixelnn.evaluate import metrics as M
from pixelnn.regress.precision import describe_cpu
from pixelnn.synth.coherence import COPY_MODES
from pixelnn.synth.pipeline import PixelNN
from pixelnn.synth.rank import incoherent_pairs


def inputs_and_photos(model: PixelNN, folder: Path, limit: int, pairs: bool) -> tuple[list, list]:
    """(inputs, photos (S, S, 3) uint8) of the first `limit` images of a folder, prepared as the evaluation
    prepares them: photos turned into the model's input signal, or A|B pair files (photo left, as here)."""
    samples = (pair_files(folder, "BtoA") if pairs else photo_folder(folder))[:limit]
    signal = None if pairs else model.config["signal"]
    prepared, _ = prepare(samples, size=model.model.cfg.size, signal=signal, factor=model.config.get("factor", 8))
    return list(prepared.x), list(prepared.y)


def measure(model: PixelNN, xs: list, ys: list, copy: str, shown: list | None = None) -> dict:
    """The metrics of one copy mode; `shown` (a list) receives the first inputs' best-ranked candidates."""
    seams, broken, sims, psnr, ssim, spectra, top, diversity, seconds = [], [], [], [], [], [], [], [], 0.0
    for x, y in zip(xs, ys):
        t0 = time.perf_counter()
        result = model.synthesize(x, copy=copy)
        seconds += time.perf_counter() - t0
        photo = y.astype(np.float64) / 255.0
        images = np.stack([c.image for c in result.candidates]).astype(np.float64)
        if shown is not None and len(shown) < FIGURE_INPUTS:
            shown.append(pixels.to_uint8(images[:FIGURE_RANKS]))
        for c in result.candidates:
            W = c.corr.sx.shape[1]
            right, down = incoherent_pairs(c.corr.exemplar, c.corr.sy.astype(np.int64) * W + c.corr.sx)
            broken.append((right.sum() + down.sum()) / (right.size + down.size))
            seams.append(M.seam_step(c.image, photo, c.corr.exemplar, c.corr.sy, c.corr.sx))
            sims.append(float(c.corr.sim.mean()))
        psnr.append(pixels.psnr(images, photo))
        ssim.append(M.ssim(images, photo))
        spectra.append(M.log_spectra(images).mean(0))
        diversity.append(M.pairwise_l1(images))
        top.append(0)  # candidates come best first
    real = M.log_spectra(np.stack(ys).astype(np.float64) / 255.0).mean(0)
    rand = [M.rand1_index(0, "pixelnn", i, len(p)) for i, p in enumerate(psnr)]
    row = {
        "copy": copy,
        "seam": float(np.mean(seams)),
        "incoherent_pairs": float(np.mean(broken)),
        "match": float(np.mean(sims)),
        "spectrum_gap": float(M.spectrum_distance(np.mean(spectra, axis=0), real)),
        "diversity_l1": float(np.mean(diversity)),
        "seconds_per_input": seconds / len(xs),
    }
    for name, values in (("psnr", psnr), ("ssim", ssim)):
        sel = M.select(values, rand, "higher", top)
        row[name] = {k: sel[k] for k in ("rand1", "top1", "oracle")}
    return row


FIGURE_INPUTS, FIGURE_RANKS = 3, 6  # --figure: inputs shown, best-ranked candidates per input and mode


def figure(path: Path, xs: list, ys: list, shown: dict[str, list]) -> None:
    """One block per input: its input and photo, then a row per copy mode of its best-ranked candidates."""
    from PIL import Image

    from pixelnn.evaluate.figures import labelled_grid

    rows = []
    for i in range(min(FIGURE_INPUTS, len(xs))):
        rows.append((f"{i}: input, photo", [xs[i], ys[i]]))
        rows += [(mode, list(images[i])) for mode, images in shown.items()]
    size = ys[0].shape[0]
    header = [f"rank {k + 1}" for k in range(FIGURE_RANKS)]
    Image.fromarray(labelled_grid(rows, size * max(1, 96 // size), header)).save(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--bank", type=Path, help="another bank folder made for this model (default: the model's own)")
    p.add_argument("--data", type=Path, required=True, help="validation folder (photos, or A|B pairs with --pairs)")
    p.add_argument(
        "--pairs", action="store_true", help="files are photo|input pairs (edges2shoes, edges2handbags here)"
    )
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--modes", nargs="+", choices=COPY_MODES, default=list(COPY_MODES))
    p.add_argument("--figure", type=Path, help="write a PNG of the first inputs' best-ranked candidates per mode")
    opts = p.parse_args(argv)
    model = PixelNN.load(opts.model, bank=opts.bank)
    xs, ys = inputs_and_photos(model, opts.data, opts.limit, opts.pairs)
    bank = f" with the bank {opts.bank}" if opts.bank else ""
    print(f"{opts.model}{bank}: {len(xs)} inputs from {opts.data}, 72 candidates each; CPU: {describe_cpu()}")
    shown = {mode: [] for mode in opts.modes}
    rows = [measure(model, xs, ys, mode, shown[mode]) for mode in opts.modes]
    if opts.figure:
        figure(opts.figure, xs, ys, shown)
    print(
        "| copy | seam ↓ | incoherent pairs | match sim | PSNR R-1 / T-1 / O | SSIM R-1 / T-1 / O "
        "| spectrum gap ↓ | diversity L1 | s / input |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        triple = {
            k: " / ".join(f"{r[k][s]:.{2 if k == 'psnr' else 3}f}" for s in ("rand1", "top1", "oracle"))
            for k in ("psnr", "ssim")
        }
        print(
            f"| {r['copy']} | {r['seam']:.4f} | {r['incoherent_pairs']:.3f} | {r['match']:.4f} "
            f"| {triple['psnr']} | {triple['ssim']} "
            f"| {r['spectrum_gap']:.3f} | {r['diversity_l1']:.3f} | {r['seconds_per_input']:.2f} |"
        )
    print(json.dumps({"model": str(opts.model), "inputs": len(xs), "cpu": describe_cpu(), "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
