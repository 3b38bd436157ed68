"""Stage-1 training loop: L2 loss, a time or epoch budget, atomic checkpoints, resume."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from . import budget, checkpoint
from .unet import Stage1Config, UNet, predict, to_tensor


@dataclass(frozen=True)
class TrainConfig:
    minutes: float = 20.0  # wall-clock budget (the learning rate follows a cosine over it)
    max_epochs: int = 1000
    batch: int = 32
    lr: float = 2e-3
    seed: int = 0
    flip: bool = True  # random horizontal flips of (x, y) pairs
    save_every_s: float = 60.0
    bf16: bool = True  # bfloat16 autocast for the forward pass (about 2x faster on CPUs with AVX-512 BF16)


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of images in [0, 1]: (N, C, H, W) x2 -> (N,)."""
    mse = ((a - b) ** 2).flatten(1).mean(1).clamp_min(1e-12)
    return 10 * torch.log10(1.0 / mse)


def _lr(cfg: TrainConfig, elapsed: float) -> float:
    frac = min(elapsed / (cfg.minutes * 60.0), 1.0)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * frac))


def _step(model, opt, x, y, cfg: TrainConfig, rng: np.random.Generator) -> float:
    xb, yb = to_tensor(x), to_tensor(y)
    if cfg.flip:
        mask = torch.from_numpy(rng.random(len(xb)) < 0.5)
        xb[mask], yb[mask] = xb[mask].flip(-1), yb[mask].flip(-1)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
        out = model(xb)
    loss = torch.nn.functional.mse_loss(out.float(), yb)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item()


def train(x: np.ndarray, y: np.ndarray, out_dir: Path, stage1: Stage1Config, cfg: TrainConfig) -> UNet:
    """Train (or resume) stage 1 on uint8 x (N, h, w, c) and y (N, S, S, 3); returns the model.

    A checkpoint in out_dir is resumed: its weights, optimizer, elapsed time and epoch carry on.
    """
    path = Path(out_dir) / checkpoint.FILENAME
    torch.manual_seed(cfg.seed)
    model = UNet(stage1)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    state = {"step": 0, "epoch": 0, "elapsed_s": 0.0, "done": False, "train": asdict(cfg), "history": []}
    if path.exists():
        blob = checkpoint.read(path)
        model.load_state_dict(blob["model"])
        opt.load_state_dict(blob["optimizer"])
        state.update({k: blob[k] for k in ("step", "epoch", "elapsed_s", "history")})
        tqdm.write(f"resuming stage 1 from {path}: epoch {state['epoch']}, {state['elapsed_s'] / 60:.1f} min done")
    model.train()

    def step(idx: np.ndarray, elapsed: float) -> dict[str, float]:
        for g in opt.param_groups:
            g["lr"] = _lr(cfg, elapsed)
        return {"loss": _step(model, opt, x[idx], y[idx], cfg, rng)}

    def save() -> None:
        checkpoint.save(path, model, {**state, "optimizer": opt.state_dict()})

    rng = np.random.default_rng(cfg.seed + state["epoch"])
    budget.run(state, len(x), cfg.batch, cfg.minutes * 60.0, step, save, desc="training stage 1", rng=rng,
               max_epochs=cfg.max_epochs, save_every_s=cfg.save_every_s)
    return model.eval()


@torch.no_grad()
def evaluate_psnr(model: UNet, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Mean PSNR of f(x) and of bicubic upsampling (when x is a smaller RGB image) against y."""
    target = to_tensor(y)
    out = {"stage1_psnr": psnr(predict(model, x), target).mean().item()}
    if x.shape[-1] == 3 and x.shape[1] != y.shape[1]:
        up = torch.nn.functional.interpolate(to_tensor(x), size=y.shape[1:3], mode="bicubic", align_corners=False)
        out["bicubic_psnr"] = psnr(up.clamp(0, 1), target).mean().item()
    return out
