"""A pix2pix baseline (Isola et al., CVPR 2017) trained on the same (x, y) pairs as stage 1.

Generator: the pix2pix U-Net. Encoder C64-C128-C256-C512-C512-... (4x4 convolutions, stride 2,
LeakyReLU 0.2; no normalisation on the first and the innermost layer), decoder of 4x4 transposed
convolutions (ReLU, normalisation, dropout 0.5 on the first three decoder layers), skip connections
between mirrored layers, tanh output. The depth adapts to the size: as many halvings as keep the
bottleneck an integer >= 1 pixel, at most 8 (256 -> 1x1 as in the paper; 96 -> 3x3 after 5; 64 ->
1x1 after 6; 32 -> 1x1 after 5).

Discriminator: the 70x70 PatchGAN, C64-C128-C256 (stride 2) - C512 (stride 1) - 1 channel (stride 1),
4x4 convolutions, LeakyReLU 0.2, no normalisation on the first layer; it sees (x, y) concatenated.

Normalisation: instance norm in both. pix2pix trained with batch size 1 and ran batch norm on the
test batch's statistics at test time, which is instance normalisation at train and test time; we
train with larger batches for CPU throughput, so we use instance norm to keep that behaviour.

Loss: L1 (lambda = 100, on images in [-1, 1] as pix2pix) + the original (non-saturating) GAN loss
with BCE-with-logits; the discriminator's loss is halved. Adam, lr 2e-4, betas (0.5, 0.999), constant
for the first half of the time budget, then decayed linearly to 0 (pix2pix's 'linear' policy).

Input: the same x as stage 1, scaled to [-1, 1]; an input smaller than the output (12x12 for 96x96)
is first upsampled bicubically to the output size. At test time dropout stays active (as the paper
did), so each call samples a different output: `sample(generator, x, n, seed)`.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from ..errors import ConfigError
from ..fileio import atomic_path
from ..regress.checkpoint import read_checkpoint, write_checkpoint
from ..regress import budget
from ..regress.precision import Choice, choose
from ..regress.train import psnr
from ..regress.unet import to_tensor

FORMAT = "pixelnn-pix2pix"
VERSION = 1
FILENAME = "pix2pix.pt"
MAX_DEPTH = 8


@dataclass(frozen=True)
class Pix2PixConfig:
    in_channels: int  # channels of x (3 for low resolution, 1 for edge maps)
    input_size: int  # side of x
    size: int  # side of the output
    ngf: int = 64  # generator channels of the first layer (x2 per level, at most x8)
    ndf: int = 64  # discriminator channels of the first layer
    dropout: float = 0.5

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def depth(self) -> int:
        return generator_depth(self.size)


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


def generator_depth(size: int) -> int:
    """Number of stride-2 layers: halve while the side stays an integer >= 1, at most 8."""
    depth, s = 0, size
    while s % 2 == 0 and s >= 2 and depth < MAX_DEPTH:
        s //= 2
        depth += 1
    if depth < 3:
        raise ConfigError(f"pix2pix needs an output size divisible by 8 (got {size})")
    return depth


def _norm(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=True)


class Generator(nn.Module):
    """pix2pix U-Net: x (B, C, S, S) in [-1, 1] (already at the output size) -> (B, 3, S, S) in [-1, 1]."""

    def __init__(self, cfg: Pix2PixConfig) -> None:
        super().__init__()
        self.cfg = cfg
        depth = cfg.depth
        ch = [cfg.ngf * min(2**i, 8) for i in range(depth)]  # encoder outputs, fine to coarse
        self.down = nn.ModuleList()
        cin = cfg.in_channels
        for i, c in enumerate(ch):
            layers: list[nn.Module] = [] if i == 0 else [nn.LeakyReLU(0.2)]
            layers.append(nn.Conv2d(cin, c, 4, 2, 1))
            if 0 < i < depth - 1:  # no norm on the outermost and the innermost layer
                layers.append(_norm(c))
            self.down.append(nn.Sequential(*layers))
            cin = c
        n_dropout = min(3, depth - 1)
        self.up = nn.ModuleList()
        for k in range(depth):  # k = 0: innermost
            i = depth - 1 - k
            cin = ch[i] if k == 0 else 2 * ch[i]
            if i == 0:
                self.up.append(nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(cin, 3, 4, 2, 1), nn.Tanh()))
            else:
                layers = [nn.ReLU(), nn.ConvTranspose2d(cin, ch[i - 1], 4, 2, 1), _norm(ch[i - 1])]
                if k < n_dropout:
                    layers.append(nn.Dropout(cfg.dropout))
                self.up.append(nn.Sequential(*layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        if x.shape[1] != cfg.in_channels or x.shape[-2:] != (cfg.size, cfg.size):
            raise ValueError(f"the generator expects (B, {cfg.in_channels}, {cfg.size}, {cfg.size}), got {tuple(x.shape)}")
        skips = []
        h = x
        for block in self.down:
            h = block(h)
            skips.append(h)
        h = self.up[0](skips[-1])
        for k in range(1, len(self.up)):
            h = self.up[k](torch.cat([h, skips[-1 - k]], dim=1))
        return h


class Discriminator(nn.Module):
    """70x70 PatchGAN: (x, y) (B, C + 3, S, S) in [-1, 1] -> logits (B, 1, S/8 - 2, S/8 - 2)."""

    def __init__(self, cfg: Pix2PixConfig) -> None:
        super().__init__()
        n = cfg.ndf
        self.net = nn.Sequential(
            nn.Conv2d(cfg.in_channels + 3, n, 4, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(n, 2 * n, 4, 2, 1),
            _norm(2 * n),
            nn.LeakyReLU(0.2),
            nn.Conv2d(2 * n, 4 * n, 4, 2, 1),
            _norm(4 * n),
            nn.LeakyReLU(0.2),
            nn.Conv2d(4 * n, 8 * n, 4, 1, 1),
            _norm(8 * n),
            nn.LeakyReLU(0.2),
            nn.Conv2d(8 * n, 1, 4, 1, 1),
        )

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x, y], dim=1))


def inputs(x_uint8: np.ndarray, size: int) -> torch.Tensor:
    """uint8 x (N, h, w, C) -> (N, C, S, S) in [-1, 1], bicubically upsampled when h != S."""
    t = to_tensor(x_uint8)
    if t.shape[-1] != size or t.shape[-2] != size:
        t = F.interpolate(t, size=(size, size), mode="bicubic", align_corners=False).clamp_(0, 1)
    return t * 2 - 1


# ---------------------------------------------------------------- checkpoints


def save(path: Path, gen: Generator, disc: Discriminator, state: dict) -> None:
    blob = {
        "format": FORMAT,
        "version": VERSION,
        "config": gen.cfg.to_dict(),
        "generator": gen.state_dict(),
        "discriminator": disc.state_dict(),
        **state,
    }
    write_checkpoint(path, blob)  # safetensors + JSON, whatever the file's name says


def read(path: Path) -> dict:
    path = Path(path)
    return read_checkpoint(path / FILENAME if path.is_dir() else path, FORMAT, VERSION, "pix2pix", "train-pix2pix")


def load_generator(path: Path) -> Generator:
    """The generator of a pix2pix run folder (or checkpoint file), in eval mode."""
    blob = read(path)
    path = Path(path) / FILENAME if Path(path).is_dir() else Path(path)  # messages name the file
    if not isinstance(blob.get("config"), dict) or not isinstance(blob.get("generator"), dict):
        raise ConfigError(f"{path} is damaged: it lacks the generator's configuration or weights")
    try:
        gen = Generator(Pix2PixConfig(**blob["config"]))
        gen.load_state_dict(blob["generator"])
    except (TypeError, ValueError, KeyError, RuntimeError) as e:  # a config or weights that do not fit the network
        raise ConfigError(f"{path} is damaged: its weights do not fit its configuration ({e.__class__.__name__})") from None
    gen.requires_grad_(False)
    return gen.eval()


# ---------------------------------------------------------------- training


def _lr(cfg: Pix2PixTrainConfig, done: float) -> float:
    """Constant for the first half of the budget, then linear to 0 (done: the fraction spent)."""
    return cfg.lr * min(1.0, 2.0 * (1.0 - done))


def train_step(gen, disc, opt_g, opt_d, x: torch.Tensor, y: torch.Tensor, cfg: Pix2PixTrainConfig, choice: Choice) -> dict[str, float]:
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
    state = {"step": 0, "epoch": 0, "elapsed_s": 0.0, "done": False, "train": asdict(cfg), "history": []}
    if path.exists():
        blob = read(path)
        if blob["config"] != model_cfg.to_dict():
            raise ConfigError(f"{path} holds a pix2pix model with another configuration ({blob['config']}); choose another --out")
        gen.load_state_dict(blob["generator"])
        disc.load_state_dict(blob["discriminator"])
        opt_g.load_state_dict(blob["opt_g"])
        opt_d.load_state_dict(blob["opt_d"])
        state.update({k: blob[k] for k in ("step", "epoch", "elapsed_s", "history")})
        tqdm.write(f"resuming pix2pix from {path}: step {state['step']}, {state['elapsed_s'] / 60:.1f} min done")
    choice = _choose_precision(gen, disc, x, y, model_cfg, cfg)
    tqdm.write(f"pix2pix: {cfg.limits.describe()}, batch {cfg.batch}, precision {choice.note}")
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

    budget.run(state, len(x), cfg.batch, cfg.limits, step, checkpoint, desc="training pix2pix", rng=rng,
               save_every_s=cfg.save_every_s)
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


# ---------------------------------------------------------------- sampling


class dropout_active:
    """Context: the generator in eval mode except its dropout layers, which stay active."""

    def __init__(self, gen: nn.Module) -> None:
        self.gen = gen

    def __enter__(self) -> nn.Module:
        self.was_training = self.gen.training
        self.gen.eval()
        for m in self.gen.modules():
            if isinstance(m, nn.Dropout):
                m.train()
        return self.gen

    def __exit__(self, *exc) -> None:
        self.gen.train(self.was_training)


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
    return {"pix2pix_psnr": psnr(torch.cat(outs), to_tensor(y)).mean().item()}


def config_for(x: np.ndarray, y: np.ndarray, ngf: int = 64, ndf: int = 64) -> Pix2PixConfig:
    """The configuration for data x (N, h, w, c), y (N, S, S, 3)."""
    h, w, c = x.shape[1:]
    if h != w:
        raise ConfigError(f"input signals must be square, got {h}x{w}")
    cfg = Pix2PixConfig(in_channels=c, input_size=h, size=y.shape[1], ngf=ngf, ndf=ndf)
    generator_depth(cfg.size)  # size check before any work
    return cfg


def train_run(root: Path, x, y, config: dict, train_cfg: Pix2PixTrainConfig, ngf: int = 64, ndf: int = 64, val=None) -> dict:
    """Train (or resume) pix2pix into a folder (config.json, pix2pix.pt, metrics.json); returns the metrics.

    config: the data description (signal, factor, size, data), written into config.json.
    """
    from ..fileio import write_json

    root = Path(root)
    cfg = config_for(x, y, ngf, ndf)
    if (root / "config.json").exists():
        import json

        try:
            old = json.loads((root / "config.json").read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConfigError(f"{root / 'config.json'} is not a readable configuration ({e}); choose another --out folder") from None
        if not isinstance(old, dict):
            raise ConfigError(f"{root / 'config.json'} is damaged: it holds no JSON object; choose another --out folder")
        if old.get("pix2pix") != cfg.to_dict() or old.get("signal") != config.get("signal"):
            raise ConfigError(
                f"{root} already holds a pix2pix model with another configuration ({old.get('signal')}, "
                f"{old.get('pix2pix')}); choose another --out folder"
            )
    write_json(root / "config.json", {**config, "method": "pix2pix", "pix2pix": cfg.to_dict(), "train": asdict(train_cfg)})
    gen = train(x, y, root, cfg, train_cfg)
    metrics = {"train": evaluate_psnr(gen, x[:500], y[:500])}
    if val is not None:
        metrics["val"] = evaluate_psnr(gen, *val)
    write_json(root / "metrics.json", metrics)
    return metrics
