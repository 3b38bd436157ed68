"""Training pix2pix under a budget, as stage 1 is trained (regress/budget.py).

Loss: L1 (lambda = 100, on images in [-1, 1] as pix2pix) + the original (non-saturating) GAN loss
with BCE-with-logits; the discriminator's loss is halved. Adam, lr 2e-4, betas (0.5, 0.999), constant
for the first half of the time budget, then decayed linearly to 0 (pix2pix's 'linear' policy).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import ConfigError
from ...regress import budget
from ...regress.precision import Choice, choose
from ...regress.unet import to_tensor
from .checkpoint import FILENAME, read, save
from .model import Discriminator, Generator, Pix2PixConfig, inputs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pix2PixTrainConfig:
    minutes: float | None = None  # wall-clock cap; None: 20 min when no steps or epochs are given, else no cap
    steps: int = 0  # 0: no limit
    epochs: int = 0  # 0: no limit
    batch: int = 16
    lr: float = 2e-4
    beta1: float = 0.5
    l1_weight: float = 100.0
    seed: int = 0
    flip: bool = True  # random horizontal flips of (x, y) pairs, as stage 1
    save_every_s: float = 60.0
    precision: str = "auto"  # auto | fp32 | bf16, chosen for the CPU as for stage 1 (regress/precision.py)

    @property
    def limits(self) -> budget.Limits:
        return budget.Limits.of(self.minutes, self.steps, self.epochs)


def _lr(cfg: Pix2PixTrainConfig, done: float) -> float:
    """Constant for the first half of the budget, then linear to 0 (done: the fraction spent)."""
    return cfg.lr * min(1.0, 2.0 * (1.0 - done))


def train_step(
    gen, disc, opt_g, opt_d, x: torch.Tensor, y: torch.Tensor, cfg: Pix2PixTrainConfig, choice: Choice
) -> dict[str, float]:
    """One discriminator and one generator update on x (B, C, S, S), y (B, 3, S, S), both in [-1, 1]."""
    bce = F.binary_cross_entropy_with_logits
    x, y = choice.layout(x), choice.layout(y)
    with choice.autocast():
        fake = gen(x)
        d_real = disc(x, y).float()
        d_fake = disc(x, fake.detach()).float()
    loss_d = 0.5 * (bce(d_real, torch.ones_like(d_real)) + bce(d_fake, torch.zeros_like(d_fake)))
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()
    with choice.autocast():
        d_fake = disc(x, fake).float()
    loss_gan = bce(d_fake, torch.ones_like(d_fake))
    loss_l1 = (fake.float() - y).abs().mean()
    loss_g = loss_gan + cfg.l1_weight * loss_l1
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()
    return {"d": loss_d.item(), "g_gan": loss_gan.item(), "l1": loss_l1.item()}


def _flip(x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator) -> None:
    mask = torch.from_numpy(rng.random(len(x)) < 0.5)
    x[mask], y[mask] = x[mask].flip(-1), y[mask].flip(-1)


def train(x: np.ndarray, y: np.ndarray, out_dir: Path, model_cfg: Pix2PixConfig, cfg: Pix2PixTrainConfig) -> Generator:
    """Train (or resume) pix2pix on uint8 x (N, h, w, c), y (N, S, S, 3) within cfg.minutes; returns the generator.

    The loop is regress.budget.run, as for stage 1: a time budget kept across runs, an atomic
    checkpoint every save_every_s and at the end, resume from out_dir/pix2pix.pt.
    """
    path = Path(out_dir) / FILENAME
    torch.manual_seed(cfg.seed)
    gen, disc = Generator(model_cfg), Discriminator(model_cfg)
    betas = (cfg.beta1, 0.999)
    opt_g = torch.optim.Adam(gen.parameters(), lr=cfg.lr, betas=betas)
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr, betas=betas)
    state = budget.fresh_state(cfg)
    if path.exists():
        blob = read(path)
        if blob["config"] != model_cfg.to_dict():
            raise ConfigError(
                f"{path} holds a pix2pix model with another configuration ({blob['config']}); choose another --out"
            )
        gen.load_state_dict(blob["generator"])
        disc.load_state_dict(blob["discriminator"])
        opt_g.load_state_dict(blob["opt_g"])
        opt_d.load_state_dict(blob["opt_d"])
        budget.resume(state, blob, "pix2pix", path)
        if budget.progress(state, cfg.limits, max(len(x) // cfg.batch, 1)) >= 1.0:
            gen.requires_grad_(False)  # a finished run asked for the same budget: nothing to do, no probe,
            return gen.eval()  # and its checkpoint (with the precision it trained in) stays as it is
    choice = _choose_precision(gen, disc, x, y, model_cfg, cfg)
    log.info("pix2pix: %s, batch %d, precision %s", cfg.limits.describe(), cfg.batch, choice.note)
    state["precision"] = choice.to_dict()
    for net in (gen, disc):
        net.train().to(memory_format=choice.memory_format)
    rng = np.random.default_rng(cfg.seed + state["epoch"])

    def step(idx: np.ndarray, done: float) -> dict[str, float]:
        for opt in (opt_g, opt_d):
            for g in opt.param_groups:
                g["lr"] = _lr(cfg, done)
        xb, yb = inputs(x[idx], model_cfg.size), to_tensor(y[idx]) * 2 - 1
        if cfg.flip:
            _flip(xb, yb, rng)
        losses = train_step(gen, disc, opt_g, opt_d, xb, yb, cfg, choice)
        return {"l1": losses.pop("l1"), **losses}  # l1 first: it is shown on the progress bar

    def checkpoint() -> None:
        save(path, gen, disc, {**state, "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict()})

    budget.run(
        state,
        len(x),
        cfg.batch,
        cfg.limits,
        step,
        checkpoint,
        desc="training pix2pix",
        rng=rng,
        save_every_s=cfg.save_every_s,
        history=path.parent / budget.HISTORY,
    )
    gen.requires_grad_(False)
    return gen.to(memory_format=torch.contiguous_format).eval()


def _choose_precision(gen, disc, x, y, model_cfg: Pix2PixConfig, cfg: Pix2PixTrainConfig) -> Choice:
    """Probe one real training step on copies of both networks for each precision and layout."""
    xb, yb = inputs(x[: cfg.batch], model_cfg.size), to_tensor(y[: cfg.batch]) * 2 - 1

    def trial(option: Choice) -> None:
        g, d = (copy.deepcopy(net).train().to(memory_format=option.memory_format) for net in (gen, disc))
        opts = [torch.optim.Adam(n.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999)) for n in (g, d)]
        train_step(g, d, *opts, xb, yb, cfg, option)

    return choose(cfg.precision, trial)
