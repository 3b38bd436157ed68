"""Stage-1 training loop: L2 loss, a budget of steps, epochs or minutes, atomic checkpoints, resume."""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..pixels import psnr
from . import budget, checkpoint
from .precision import Choice, choose
from .unet import Stage1Config, UNet, predict, to_tensor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    minutes: float | None = None  # wall-clock cap; None: 20 min when no steps or epochs are given, else no cap
    steps: int = 0  # optimizer steps (0: no limit)
    epochs: int = 0  # passes over the data (0: no limit)
    batch: int = 32
    lr: float = 2e-3  # peak; a cosine over the budget brings it to 0
    weight_decay: float = 0.0  # L2 penalty on the weights (the paper's Eq. 1 lambda), AdamW-style
    seed: int = 0
    flip: bool = True  # random horizontal flips of (x, y) pairs
    save_every_s: float = 60.0
    precision: str = "auto"  # auto | fp32 | bf16 (auto: bf16 only where the CPU runs it natively and faster)

    @property
    def limits(self) -> budget.Limits:
        return budget.Limits.of(self.minutes, self.steps, self.epochs)


def _lr(cfg: TrainConfig, done: float) -> float:
    """A cosine from cfg.lr to 0 over the budget (done: the fraction spent)."""
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * done))


def _batch(x, y, cfg: TrainConfig, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    xb, yb = to_tensor(x), to_tensor(y)
    if cfg.flip:
        mask = torch.from_numpy(rng.random(len(xb)) < 0.5)
        xb[mask], yb[mask] = xb[mask].flip(-1), yb[mask].flip(-1)
    return xb, yb


def _step(model, opt, xb: torch.Tensor, yb: torch.Tensor, choice: Choice) -> float:
    with choice.autocast():
        out = model(choice.layout(xb))
    loss = torch.nn.functional.mse_loss(out.float(), yb)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item()


def _losses(mse: float) -> dict[str, float]:
    """A step's loss and the PSNR it means (the loss is the mean squared error of images in [0, 1])."""
    return {"loss": mse, "psnr": 10 * math.log10(1.0 / max(mse, 1e-10))}


def _optimizer(model: UNet, cfg: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def choose_precision(model: UNet, x: np.ndarray, y: np.ndarray, cfg: TrainConfig) -> Choice:
    """Probe one real training step on a copy of the model for each precision and layout."""
    xb, yb = to_tensor(x[: cfg.batch]), to_tensor(y[: cfg.batch])

    def trial(option: Choice) -> None:
        probe = copy.deepcopy(model).train().to(memory_format=option.memory_format)
        _step(probe, _optimizer(probe, cfg), xb, yb, option)

    return choose(cfg.precision, trial)


def train(x: np.ndarray, y: np.ndarray, out_dir: Path, stage1: Stage1Config, cfg: TrainConfig) -> UNet:
    """Train (or resume) stage 1 on uint8 x (N, h, w, c) and y (N, S, S, 3); returns the model.

    A checkpoint in out_dir is resumed: its weights, optimizer, steps, epochs and time carry on.
    The checkpoint's state also records the precision chosen (`precision`) and steps/epochs done.
    """
    path = Path(out_dir) / checkpoint.FILENAME
    limits = cfg.limits
    torch.manual_seed(cfg.seed)
    model = UNet(stage1)
    model.set_mean_image(y)
    state = budget.fresh_state(cfg)
    resumed = None
    if checkpoint.exists(path):  # an old stage1.pt is resumed too; the next save writes the new format
        resumed = checkpoint.read(path)
        model.load_state_dict(resumed["model"])
        budget.resume(state, resumed, "stage 1", path)
    if resumed is not None and budget.progress(state, limits, max(len(x) // cfg.batch, 1)) >= 1.0:
        return model.eval()  # a finished run asked for the same budget: nothing to do, no probe
    choice = choose_precision(model, x, y, cfg)
    log.info(f"stage 1: {limits.describe()}, batch {cfg.batch}, precision {choice.note}")
    state["precision"] = choice.to_dict()
    model.train().to(memory_format=choice.memory_format)
    opt = _optimizer(model, cfg)  # built after the layout change, so its state matches the parameters
    if resumed is not None and "optimizer" in resumed:
        opt.load_state_dict(resumed["optimizer"])
    rng = np.random.default_rng(cfg.seed + state["epoch"])

    def step(idx: np.ndarray, done: float) -> dict[str, float]:
        for g in opt.param_groups:
            g["lr"] = _lr(cfg, done)
        return _losses(_step(model, opt, *_batch(x[idx], y[idx], cfg, rng), choice))

    def save() -> None:
        checkpoint.save(path, model, {**state, "optimizer": opt.state_dict()})

    budget.run(
        state,
        len(x),
        cfg.batch,
        limits,
        step,
        save,
        desc="training stage 1",
        rng=rng,
        save_every_s=cfg.save_every_s,
        history=path.parent / budget.HISTORY,
    )
    return model.to(memory_format=torch.contiguous_format).eval()


@torch.no_grad()
def evaluate_psnr(model: UNet, x: np.ndarray, y: np.ndarray, mean_image: np.ndarray | None = None) -> dict[str, float]:
    """Mean PSNR against y of f(x) and of its baselines, in dB.

    bicubic_psnr: the upsampled input, when x is a smaller RGB image; mean_image_psnr: the mean
    training image (S, S, 3) float in [0, 1], when given.
    """
    target = to_tensor(y)
    out = {"stage1_psnr": float(psnr(predict(model, x), target).mean())}
    if x.shape[-1] == 3 and x.shape[1] != y.shape[1]:
        up = torch.nn.functional.interpolate(to_tensor(x), size=y.shape[1:3], mode="bicubic", align_corners=False)
        out["bicubic_psnr"] = float(psnr(up.clamp(0, 1), target).mean())
    if mean_image is not None:
        mean = torch.from_numpy(np.asarray(mean_image, np.float32)).permute(2, 0, 1)[None].expand_as(target)
        out["mean_image_psnr"] = float(psnr(mean, target).mean())
    return out


BASELINES = {"bicubic_psnr": "bicubic upsampling", "mean_image_psnr": "the mean training image"}


def below_baselines(metrics: dict[str, float], margin_db: float = 0.0) -> list[str]:
    """Plain-words warnings for each baseline that stage 1 does not beat by margin_db."""
    s = metrics["stage1_psnr"]
    return [
        f"stage 1 ({s:.2f} dB) is below {BASELINES[k]} ({metrics[k]:.2f} dB): it has not learned enough; "
        "train longer (--steps or --minutes) or check that inputs and targets belong together"
        for k in BASELINES
        if k in metrics and s < metrics[k] + margin_db
    ]
