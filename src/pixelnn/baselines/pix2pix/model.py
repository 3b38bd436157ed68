"""The pix2pix networks (Isola et al., CVPR 2017), sized for the same (x, y) pairs as stage 1.

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

Input: the same x as stage 1, scaled to [-1, 1]; an input smaller than the output (12x12 for 96x96)
is first upsampled bicubically to the output size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ...errors import ConfigError
from ...regress.unet import to_tensor

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
            raise ValueError(
                f"the generator expects (B, {cfg.in_channels}, {cfg.size}, {cfg.size}), got {tuple(x.shape)}"
            )
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


def config_for(x: np.ndarray, y: np.ndarray, ngf: int = 64, ndf: int = 64) -> Pix2PixConfig:
    """The configuration for data x (N, h, w, c), y (N, S, S, 3)."""
    h, w, c = x.shape[1:]
    if h != w:
        raise ConfigError(f"input signals must be square, got {h}x{w}")
    cfg = Pix2PixConfig(in_channels=c, input_size=h, size=y.shape[1], ngf=ngf, ndf=ndf)
    generator_depth(cfg.size)  # size check before any work
    return cfg
