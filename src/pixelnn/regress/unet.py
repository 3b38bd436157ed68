"""Stage 1: a fully convolutional U-Net regressor f(x) trained with an L2 loss.

The input signal x may be smaller than the output (a 12 x 12 low-resolution image for a 96 x 96
output): it is first upsampled bicubically to the output size. When x is an RGB image of the output's
kind (low resolution), the network predicts a residual on top of that upsampled image.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass(frozen=True)
class Stage1Config:
    in_channels: int  # channels of the input signal x (3 for low resolution, 1 for edge maps)
    input_size: int  # side of x (12 for 12 -> 96)
    size: int  # side of the output f(x)
    width: int = 24  # channels at full resolution; doubled at each level down to width * 8
    levels: int = 4  # number of 2x downsamplings
    residual: bool = False  # predict f(x) - upsample(x) (only when x is an RGB image)

    def to_dict(self) -> dict:
        return asdict(self)


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
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
            self.down.append(_double_conv(cin, w))
            cin = w
        self.up = nn.ModuleList(_double_conv(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(cfg.levels)))
        self.head = nn.Conv2d(widths[0], 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, h, w) in [0, 1] -> f(x) (B, 3, S, S), unclamped."""
        cfg = self.cfg
        if x.shape[1] != cfg.in_channels or x.shape[-1] != cfg.input_size or x.shape[-2] != cfg.input_size:
            raise ValueError(
                f"stage 1 expects inputs (B, {cfg.in_channels}, {cfg.input_size}, {cfg.input_size}), "
                f"got {tuple(x.shape)}"
            )
        if cfg.input_size != cfg.size:
            x = F.interpolate(x, size=(cfg.size, cfg.size), mode="bicubic", align_corners=False)
        base = x
        skips = []
        h = x
        for i, block in enumerate(self.down):
            if i:
                h = F.max_pool2d(h, 2, ceil_mode=True)
            h = block(h)
            skips.append(h)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            h = F.interpolate(h, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            h = block(torch.cat([h, skip], dim=1))
        out = self.head(h)  # (B, 3, S, S)
        return base + out if cfg.residual else out


def to_tensor(images) -> torch.Tensor:
    """uint8 (N, H, W, C) numpy -> float (N, C, H, W) in [0, 1]."""
    t = torch.as_tensor(np.ascontiguousarray(images))
    # a plain NCHW layout whatever the array's strides: convolutions pick their kernels by layout,
    # and the same input must give the same f(x) bit for bit (bank exemplars used as queries)
    return t.permute(0, 3, 1, 2).float().div_(255.0).contiguous()


@torch.no_grad()
def predict(model: UNet, x_uint8, batch: int = 32) -> torch.Tensor:
    """f(x) for uint8 inputs (N, h, w, C): float (N, 3, S, S) clamped to [0, 1]."""
    model.eval()
    device = next(model.parameters()).device
    outs = [model(to_tensor(x_uint8[i : i + batch]).to(device)).clamp_(0, 1).cpu() for i in range(0, len(x_uint8), batch)]
    return torch.cat(outs)
