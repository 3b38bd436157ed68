"""Sampling pix2pix as the paper did: dropout stays active at test time, so each call draws
another output for the same input."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn as nn

from ...pixels import psnr
from ...regress.unet import to_tensor
from .model import Generator, inputs


@contextmanager
def dropout_active(gen: nn.Module) -> Iterator[nn.Module]:
    """The generator in eval mode except its dropout layers, which stay active; its mode is restored after."""
    was_training = gen.training
    gen.eval()
    for m in gen.modules():
        if isinstance(m, nn.Dropout):
            m.train()
    try:
        yield gen
    finally:
        gen.train(was_training)


@torch.no_grad()
def sample(gen: Generator, x: np.ndarray, n: int, seed: int = 0, batch: int = 24) -> np.ndarray:
    """n outputs for one input x (h, w, c) uint8, dropout active: (n, S, S, 3) float32 in [0, 1].

    The dropout masks come from `seed` (the global torch RNG is left as it was).
    """
    xin = inputs(np.asarray(x)[None], gen.cfg.size)  # (1, C, S, S)
    outs = []
    with torch.random.fork_rng(devices=[]), dropout_active(gen):
        torch.manual_seed(seed)
        for start in range(0, n, batch):
            m = min(batch, n - start)
            outs.append(gen(xin.expand(m, -1, -1, -1)).float())
    out = (torch.cat(outs) + 1) / 2  # (n, 3, S, S)
    return out.clamp_(0, 1).permute(0, 2, 3, 1).numpy()


@torch.no_grad()
def evaluate_psnr(gen: Generator, x: np.ndarray, y: np.ndarray, seed: int = 0, batch: int = 32) -> dict[str, float]:
    """Mean PSNR against y of one dropout sample per input (x (N, h, w, c), y (N, S, S, 3) uint8)."""
    outs = []
    with torch.random.fork_rng(devices=[]), dropout_active(gen):
        torch.manual_seed(seed)
        for i in range(0, len(x), batch):
            outs.append(((gen(inputs(x[i : i + batch], gen.cfg.size)).float() + 1) / 2).clamp_(0, 1))
    return {"pix2pix_psnr": float(psnr(torch.cat(outs), to_tensor(y)).mean())}
