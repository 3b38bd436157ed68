"""A picture of what stage 1 learned: per validation photo, the input, its baselines, f(x) and the photo.

    .venv/bin/python benchmarks/stage1_figure.py --model runs/celeba-10 --val ../shared/data/celeba/val \
--out docs/results/stage1-celeba.png

Columns: the input signal (enlarged, nearest), the baseline stage 1 starts from (bicubic
upsampling for low-resolution inputs, otherwise the mean training image as stored in the model),
f(x), and the photo. The PSNR of the baseline and of f(x) against each photo is printed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from pixelnn.data.images import IMAGE_SUFFIXES, fit_square, load_rgb
from pixelnn.fileio import write_png
from pixelnn.regress.train import psnr
from pixelnn.regress.unet import predict, to_tensor
from pixelnn.report.result_page import display
from pixelnn.synth.pipeline import PixelNN


def rows(model: PixelNN, photos: list[np.ndarray]) -> tuple[np.ndarray, list[tuple[float, float]]]:
    S = model.model.cfg.size
    x = np.stack([model.input_from_photo(p) for p in photos])  # (N, h, w, c)
    y = np.stack([fit_square(p, S) for p in photos])  # (N, S, S, 3): the photos as the model sees them
    with torch.no_grad():
        base = model.model.baseline(to_tensor(x)).clamp(0, 1)  # (N, 3, S, S)
    f = predict(model.model, x)
    out, scores = [], []
    for i in range(len(photos)):
        target = y[i]
        t = to_tensor(target[None])
        scores.append((psnr(base[i : i + 1], t).item(), psnr(f[i : i + 1], t).item()))
        cells = [display(x[i], S), _u8(base[i]), _u8(f[i]), target]
        out.append(np.concatenate([np.pad(c, ((2, 2), (2, 2), (0, 0))) for c in cells], axis=1))
    return np.concatenate(out, axis=0), scores


def _u8(t: torch.Tensor) -> np.ndarray:
    return (t.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--val", type=Path, required=True, help="folder of validation photos")
    ap.add_argument("--n", type=int, default=6)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    model = PixelNN.load(args.model)
    files = sorted(p for p in args.val.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[: args.n]
    grid, scores = rows(model, [load_rgb(p) for p in files])
    write_png(args.out, grid)
    for p, (b, s) in zip(files, scores):
        print(f"{p.name}: baseline {b:.2f} dB, stage 1 {s:.2f} dB")
    print(f"wrote {args.out}: columns input, baseline, stage 1, photo")


if __name__ == "__main__":
    main()
