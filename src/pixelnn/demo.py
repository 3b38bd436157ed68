"""`pixelnn demo`: the whole pipeline on data that ships with a registry package.

Fashion-MNIST (Debian's dataset-fashion-mnist) shoes and bags, like the paper's edges-to-shoes and
edges-to-handbags: HED edges of each image are the input, the image is the target. Trains stage 1
for a fixed number of steps (time only caps them, so a slow CPU gets the same model), builds a
labelled bank, synthesizes the 72 candidates for held-out test images and writes an HTML page with
the training figures, inputs, stage-1 outputs, candidates and correspondence pictures.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import numpy as np

from .data.fashion import DEMO_CLASSES, fashion_photos, load_fashion
from .data.signals import hed
from .features import backbones
from .regress import checkpoint
from .regress.options import DEMO_STEPS
from .regress.precision import describe_cpu
from .regress.train import TrainConfig
from .report.result_page import write_index
from .synth.pipeline import PixelNN
from .workflow import index_arrays, report_training, synthesize_to_folder, train_run

log = logging.getLogger(__name__)

SIZE = 64
DESCRIPTORS = 32  # reduced pixel descriptors in the bank: the fast search (docs/benchmarks.md)
HELD_OUT_PER_CLASS = 50  # held-out test images per class for the stage-1 PSNR


def _data(split: str, per_class: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    images, labels = load_fashion(split, DEMO_CLASSES, limit=per_class)
    photos = fashion_photos(images, SIZE)  # (N, 64, 64, 3)
    return hed(photos), photos, labels


def _pick_inputs(labels: list[str], n: int) -> list[int]:
    """Held-out inputs spread over the classes."""
    by_class = {c: [i for i, lab in enumerate(labels) if lab == c] for c in DEMO_CLASSES}
    picks = [by_class[c][k] for k in range(n) for c in DEMO_CLASSES if k < len(by_class[c])]
    return picks[:n]


def run_demo(
    out: Path,
    steps: int = DEMO_STEPS,
    minutes: float | None = 10.0,
    n_train: int = 2000,
    n_inputs: int = 6,
    precision: str = "auto",
    held_out_per_class: int = HELD_OUT_PER_CLASS,
) -> Path:
    out = Path(out)
    t0 = time.time()
    log.info(
        "[1/4] Fashion-MNIST %s: %d training images, HED edges at %dx%d", ", ".join(DEMO_CLASSES), n_train, SIZE, SIZE
    )
    x, y, labels = _data("train", max(n_train // len(DEMO_CLASSES), 1))
    xt, yt, labels_t = _data("test", max(n_inputs, held_out_per_class))  # stage-1 PSNR on all, synthesis on n_inputs
    run = out / "model"
    config = {
        "signal": "edges",
        "factor": 8,
        "size": SIZE,
        "backbone": backbones.DEFAULT,
        "data": {"source": "fashion-mnist"},
    }
    if checkpoint.exists(run / checkpoint.FILENAME):
        shutil.rmtree(run)  # the demo always trains afresh: a finished earlier model would skip training
    cfg = TrainConfig(steps=steps, minutes=minutes, precision=precision)
    log.info("[2/4] training stage 1: %s", cfg.limits.describe())
    metrics = train_run(run, x, y, config, cfg, width=16, levels=3, val=(xt, yt))
    report = report_training(metrics)
    log.info("\n".join("      " + line for line in report))
    log.info("[3/4] building the exemplar bank")
    index_arrays(run, x, y, [f"train/{i:05d}" for i in range(len(y))], labels, descriptors=DESCRIPTORS)
    log.info("[4/4] synthesizing 72 candidates for %d held-out inputs", n_inputs)
    model = PixelNN.load(run)
    picks = _pick_inputs(labels_t, n_inputs)
    names = [f"{labels_t[i].replace(' ', '-').lower()}-{i}" for i in picks]
    pages = synthesize_to_folder(model, [xt[i] for i in picks], names, out / "results", targets=[yt[i] for i in picks])
    page = write_index(
        out / "results",
        pages,
        title="PixelNN demo",
        intro=f"Fashion-MNIST shoes and bags, HED edges to image at {SIZE}x{SIZE}; "
        f"bank of {len(y)} exemplars; 72 candidates each.",
        facts=_facts(metrics),
        warnings=[line for line in report if line.startswith("warning")],
    )
    log.info("done in %.1f min: open %s", (time.time() - t0) / 60, page)
    return page


def _facts(metrics: dict) -> list[tuple[str, str]]:
    t, val = metrics["training"], metrics["val"]
    return [
        (
            "stage 1 trained",
            f"{t['steps']} steps, {t['epochs']:g} epochs, {t['minutes']:.1f} min, {t['images_per_s']:.0f} images/s",
        ),
        ("precision", t["precision"]["note"]),
        ("CPU", describe_cpu()),
        ("held-out stage-1 PSNR", f"{val['stage1_psnr']:.2f} dB"),
        (
            "baseline: mean training image",
            f"{val['mean_image_psnr']:.2f} dB (stage 1 {val['stage1_psnr'] - val['mean_image_psnr']:+.2f} dB)",
        ),
        ("training-set stage-1 PSNR", f"{metrics['train']['stage1_psnr']:.2f} dB"),
    ]
