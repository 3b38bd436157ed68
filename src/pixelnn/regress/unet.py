"""Stage 1: a fully convolutional U-Net regressor f(x) trained with an L2 loss.

The input signal x may be smaller than the output (a 12 x 12 low-resolution image for a 96 x 96
output): it is first upsampled bicubically to the output size.

The network predicts a correction on top of a baseline, and its last layer starts at zero, so an
untrained f(x) is exactly that baseline and training starts no worse than it:
- residual (x is an RGB image of the output's kind, i.e. low resolution): the bicubic upsampling of x;
- otherwise: the per-pixel mean of the training targets (`set_mean_image`).

Normalisation depends on the input (`default_norm`):
- residual inputs use GroupNorm: no running statistics, so f(x) is the same function in training and
  in evaluation however few steps were taken; the colours come through the bicubic baseline.
- other inputs (edge maps, sketches, normals) use BatchNorm. GroupNorm normalises each image on its
  own, which throws away how much line work an edge map holds over the whole image, and the network
  learns slowly without it: on CelebA HED edge maps, after 250 steps of batch 32, held-out PSNR was
  11.8 dB with GroupNorm (8 groups, 1 group, or 8 channels per group alike), 11.5 dB with no
  normalisation and 13.1 dB with BatchNorm (docs/benchmarks.md, "Stage-1 normalisation").
  Evaluation uses the running statistics.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

NORMS = ("group", "batch", "none")


def default_norm(residual: bool) -> str:
    """The normalisation a new stage 1 uses: GroupNorm for residual (low-resolution RGB) inputs, else BatchNorm."""
    return "group" if residual else "batch"


@dataclass(frozen=True)
class Stage1Config:
    in_channels: int  # channels of the input signal x (3 for low resolution, 1 for edge maps)
    input_size: int  # side of x (12 for 12 -> 96)
    size: int  # side of the output f(x)
    width: int = 24  # channels at full resolution; doubled at each level down to width * 8
    levels: int = 4  # number of 2x downsamplings
    residual: bool = False  # predict f(x) - upsample(x) (only when x is an RGB image)
    norm: str = ""  # group | batch | none; "" for default_norm(residual)
    mean_base: bool = True  # non-residual: predict f(x) - the mean training image
    zero_head: bool = True  # the last layer starts at zero, so an untrained f(x) is its baseline

    def __post_init__(self) -> None:
        if not self.norm:
            object.__setattr__(self, "norm", default_norm(self.residual))
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {self.norm!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Stage1Config:
        """A config as saved; one saved before `norm` existed is the old BatchNorm network without a mean image
        (and a random last layer: `zero_head` False)."""
        d = dict(d)
        if "norm" not in d:
            d.update(norm="batch", mean_base=False, zero_head=False)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "group":
        return nn.GroupNorm(math.gcd(8, channels), channels)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.Identity()


def _double_conv(cin: int, cout: int, norm: str) -> nn.Sequential:
    bias = norm == "none"
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=bias),
        _norm(norm, cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=bias),
        _norm(norm, cout),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    def __init__(self, cfg: Stage1Config) -> None:
        super().__init__()
        self.cfg = cfg
        widths = [min(cfg.width * 2**i, cfg.width * 8) for i in range(cfg.levels + 1)]
        self.down = nn.ModuleList()
        cin = cfg.in_channels
        for w in widths:
            self.down.append(_double_conv(cin, w, cfg.norm))
            cin = w
        self.up = nn.ModuleList(
            _double_conv(widths[i + 1] + widths[i], widths[i], cfg.norm) for i in reversed(range(cfg.levels))
        )
        self.head = nn.Conv2d(widths[0], 3, 1)
        if cfg.zero_head:  # new models start exactly at their baseline
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)
        if self.uses_mean_image:
            self.register_buffer("mean_image", torch.zeros(1, 3, cfg.size, cfg.size))  # (1, 3, S, S)

    @property
    def uses_mean_image(self) -> bool:
        return self.cfg.mean_base and not self.cfg.residual

    def set_mean_image(self, y_uint8: np.ndarray) -> None:
        """Set the baseline of a non-residual model to the mean of the training targets (N, S, S, 3) uint8."""
        if not self.uses_mean_image:
            return
        mean = np.asarray(y_uint8, dtype=np.float64).mean(axis=0) / 255.0  # (S, S, 3)
        self.mean_image.copy_(torch.from_numpy(mean).float().permute(2, 0, 1)[None])

    def baseline(self, x: torch.Tensor) -> torch.Tensor:
        """What f(x) is before any training: bicubic x (residual), the mean image, or 0. (B, 3, S, S)."""
        cfg = self.cfg
        if cfg.residual:
            return _upsample(x, cfg.size)
        if self.uses_mean_image:
            return self.mean_image.expand(x.shape[0], -1, -1, -1)
        return torch.zeros(x.shape[0], 3, cfg.size, cfg.size, dtype=x.dtype, device=x.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, h, w) in [0, 1] -> f(x) (B, 3, S, S), unclamped."""
        cfg = self.cfg
        if x.shape[1] != cfg.in_channels or x.shape[-1] != cfg.input_size or x.shape[-2] != cfg.input_size:
            raise ValueError(
                f"stage 1 expects inputs (B, {cfg.in_channels}, {cfg.input_size}, {cfg.input_size}), "
                f"got {tuple(x.shape)}"
            )
        h = _upsample(x, cfg.size)
        skips = []
        for i, block in enumerate(self.down):
            if i:
                h = F.max_pool2d(h, 2, ceil_mode=True)
            h = block(h)
            skips.append(h)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            h = F.interpolate(h, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            h = block(torch.cat([h, skip], dim=1))
        out = self.head(h)  # (B, 3, S, S)
        return self.baseline(x).to(out.dtype) + out


def _upsample(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False)


def to_tensor(images) -> torch.Tensor:
    """uint8 (N, H, W, C) numpy -> float (N, C, H, W) in [0, 1]."""
    t = torch.as_tensor(np.ascontiguousarray(images))
    # a plain NCHW layout whatever the array's strides: convolutions pick their kernels by layout
    return t.permute(0, 3, 1, 2).float().div_(255.0).contiguous()


@torch.inference_mode()
def predict(model: UNet, x_uint8, batch: int = 16, channels_last: bool = True) -> torch.Tensor:
    """f(x) for uint8 inputs (N, h, w, C): float (N, 3, S, S) clamped to [0, 1], always float32.

    Inputs go in channels_last (NHWC) memory layout, which oneDNN's convolutions run 1.5-2x faster
    than NCHW at inference on AVX2 and AVX-512 CPUs alike (docs/benchmarks.md, "Stage 1 on the CPU").
    """
    model.eval()
    device = next(model.parameters()).device
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    outs = [
        model(to_tensor(x_uint8[i : i + batch]).to(device).contiguous(memory_format=fmt)).float().clamp_(0, 1).cpu()
        for i in range(0, len(x_uint8), batch)
    ]
    return torch.cat(outs).contiguous()
