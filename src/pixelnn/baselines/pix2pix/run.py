"""A pix2pix run folder (config.json, pix2pix.pt, metrics.json): the job behind `pixelnn train-pix2pix`."""

from __future__ import annotations

from pathlib import Path

from ...regress import run_folder
from .model import config_for
from .sample import evaluate_psnr
from .train import Pix2PixTrainConfig, train


def train_run(
    root: Path, x, y, config: dict, train_cfg: Pix2PixTrainConfig, ngf: int = 64, ndf: int = 64, val=None
) -> dict:
    """Train (or resume) pix2pix into a folder; returns the metrics written to root/metrics.json.

    config: the data description (signal, factor, size, data), written into config.json.
    """
    cfg = config_for(x, y, ngf, ndf)
    run_folder.claim(root, {**config, "method": "pix2pix"}, "pix2pix", cfg.to_dict(), train_cfg, "pix2pix model")
    gen = train(x, y, root, cfg, train_cfg)
    metrics = run_folder.measure(lambda xs, ys: evaluate_psnr(gen, xs, ys), x, y, val)
    run_folder.write_metrics(root, metrics)
    return metrics
