"""Figures of an evaluation, after the paper's:

- comparison.png (Figure 11): one column per input; rows input, stage 1, pix2pix, PixelNN (their
  Rand-1 candidates) and the original photo;
- multiple-K.png (Figure 8): for input K, per method a row of the input, 7 distinct candidates (the
  7 most mutually different by L1, greedy farthest-point) and the original;
- ranked-K.png: for input K, per multi-output method, its 7 best-ranked candidates (score from the
  input alone, synth/rank.py), best first;
- frequency.png (Figure 4): radially averaged log power spectra of the real photos and of each
  method's outputs;
- correspondence-K-rand1.png, correspondence-K-composite.png (Figure 5): where the pixels of input K's
  Rand-1 PixelNN candidate came from, and those of its candidate drawn from the most exemplars.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..fileio import atomic_path, write_png
from ..report.correspondence import figure as correspondence_figure
from ..report.result_page import display
from .cache import corr_of
from .methods import KEPT_CORR, LABELS

N_SHOWN = 6  # inputs in the comparison grid
N_STRIPS = 3  # inputs with a multiple-outputs strip
N_DISTINCT = 7
LABEL_W = 110
PAD = 4
BG = (255, 255, 255)
INK = (20, 20, 20)


def farthest_point(images: np.ndarray, k: int = N_DISTINCT) -> list[int]:
    """Indices of k mutually different images (N, H, W, C) by mean absolute difference.

    Greedy farthest-point: start with the two most different images, then repeatedly add the image
    whose L1 distance to the nearest chosen one is largest (ties: the lowest index). All N if N <= k.
    """
    flat = np.asarray(images, np.float32).reshape(len(images), -1)
    n = len(flat)
    if n <= k:
        return list(range(n))
    dist = np.stack([np.abs(flat - f).mean(1) for f in flat])  # (N, N)
    a, b = np.unravel_index(np.argmax(dist), dist.shape)
    chosen = [int(min(a, b)), int(max(a, b))]
    nearest = np.minimum(dist[chosen[0]], dist[chosen[1]])
    while len(chosen) < k:
        nearest[chosen] = -1.0
        nxt = int(np.argmax(nearest))
        chosen.append(nxt)
        nearest = np.minimum(nearest, dist[nxt])
    return chosen


def _cell(image: np.ndarray, size: int) -> Image.Image:
    """Any image (H, W), (H, W, 1) or (H, W, 3) uint8 -> an RGB PIL image of size x size (nearest)."""
    return Image.fromarray(display(np.asarray(image), size))


def labelled_grid(rows: list[tuple[str, list[np.ndarray]]], cell: int, header: list[str] | None = None) -> np.ndarray:
    """A white canvas with one labelled row per (label, images); images scaled to cell x cell: (H, W, 3) uint8."""
    ncols = max(len(images) for _, images in rows)
    top = 16 if header else 0
    W = LABEL_W + ncols * (cell + PAD) + PAD
    H = top + len(rows) * (cell + PAD) + PAD
    canvas = Image.new("RGB", (W, H), BG)
    draw = ImageDraw.Draw(canvas)
    for c, text in enumerate(header or []):
        draw.text((LABEL_W + c * (cell + PAD) + PAD, 2), text, fill=INK)
    for r, (label, images) in enumerate(rows):
        y0 = top + PAD + r * (cell + PAD)
        draw.text((PAD, y0 + cell // 2 - 6), label, fill=INK)
        for c, im in enumerate(images):
            canvas.paste(_cell(im, cell), (LABEL_W + c * (cell + PAD) + PAD, y0))
    return np.asarray(canvas)


def _cell_size(S: int) -> int:
    return S * max(1, 96 // S)


def comparison(kept: list[dict], x: np.ndarray, y: np.ndarray, per_input: list[dict], methods: list[str]) -> np.ndarray:
    """Figure 11: columns are inputs; rows input, each method's Rand-1 candidate (global NN left out), original."""
    rows = [("input", [x[i] for i in range(len(kept))])]
    for m in methods:
        if m == "global":
            continue
        rows.append((LABELS[m], [c[m][int(per_input[i][f"{m}__rand1"])] for i, c in enumerate(kept)]))
    rows.append(("original", [y[i] for i in range(len(kept))]))
    return labelled_grid(rows, _cell_size(y.shape[1]))


def multiple(cands: dict, x: np.ndarray, y: np.ndarray, methods: list[str]) -> np.ndarray:
    """Figure 8 for one input: per multi-output method, input, 7 distinct candidates, original."""
    rows = []
    for m in methods:
        if m == "stage1" or m == "global":
            continue
        pick = farthest_point(cands[m])
        rows.append((LABELS[m], [x, *[cands[m][j] for j in pick], y]))
    header = ["input", *[f"#{k + 1}" for k in range(N_DISTINCT)], "original"]
    return labelled_grid(rows, _cell_size(y.shape[0]), header)


def ranked(cands: dict, x: np.ndarray, y: np.ndarray, methods: list[str]) -> np.ndarray:
    """Per multi-output method: input, its N_DISTINCT best-ranked candidates (best first), original."""
    rows = []
    for m in methods:
        if m in ("stage1", "global") or f"score__{m}" not in cands:
            continue
        order = np.argsort(-np.asarray(cands[f"score__{m}"]), kind="stable")[:N_DISTINCT]
        rows.append((LABELS[m], [x, *[cands[m][j] for j in order], y]))
    header = ["input", *[f"rank {k + 1}" for k in range(N_DISTINCT)], "original"]
    return labelled_grid(rows, _cell_size(y.shape[0]), header)


def frequency_plot(path: Path, spectra: dict[str, list[float]], title: str = "") -> None:
    """Figure 4: log10 power against spatial frequency (cycles per image), one line per method."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    styles = {
        "real": ("black", "-"),
        "stage1": ("tab:blue", "--"),
        "global": ("tab:gray", ":"),
        "pixelnn": ("tab:red", "-"),
        "pix2pix": ("tab:green", "-."),
    }
    for name, spec in spectra.items():
        colour, style = styles.get(name, ("tab:purple", "-"))
        r = np.arange(1, len(spec) + 1)
        ax.plot(
            r,
            spec,
            style,
            color=colour,
            label="real photos" if name == "real" else LABELS.get(name, name),
            linewidth=1.5,
        )
    ax.set_xlabel("spatial frequency (cycles per image)")
    ax.set_ylabel("log10 power (radial mean)")
    ax.set_title(title or "radially averaged power spectrum (grayscale)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def write_all(
    folder: Path, model, kept: list[dict], x, y, per_input, summary: dict, methods: list[str], seed: int
) -> list[Path]:
    """Write every figure into `folder`; returns their paths."""
    folder = Path(folder)
    paths = []
    if kept:
        write_png(folder / "comparison.png", comparison(kept, x, y, per_input, methods))
        paths.append(folder / "comparison.png")
    for i, cands in enumerate(kept[:N_STRIPS]):
        if any(m in methods for m in ("pixelnn", "pix2pix")):
            write_png(folder / f"multiple-{i}.png", multiple(cands, x[i], y[i], methods))
            write_png(folder / f"ranked-{i}.png", ranked(cands, x[i], y[i], methods))
            paths += [folder / f"multiple-{i}.png", folder / f"ranked-{i}.png"]
    frequency_plot(folder / "frequency.png", summary["spectra"])
    paths.append(folder / "frequency.png")
    for i, cands in enumerate(kept):
        for kind in KEPT_CORR:
            found = corr_of(cands, kind)
            if found is None:
                continue
            index, corr = found
            image = cands["pixelnn"][index].astype(np.float32) / 255.0
            used = [ex for ex, _ in corr.shares()[:8]]
            exemplars = dict(zip(used, model.bank.gather("y", used)))
            path = folder / f"correspondence-{i}-{kind}.png"
            write_png(path, correspondence_figure(image, corr, exemplars))
            paths.append(path)
    return paths
