"""Backbones that turn images into feature taps, chosen by name.

Every backbone is a module whose forward takes RGB images in [0, 1], (B, 3, H, W), and returns a
list of feature maps from fine to coarse. The names here are the ones stored in a bank's manifest.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

from ..errors import ConfigError
from . import BACKBONES, DEFAULT_BACKBONE
from .hypercolumn import global_descriptor, pixel_descriptors


def _vgg16_hed() -> nn.Module:
    from .vgg_hed import pretrained

    return pretrained()


def _efficientnet_lite0() -> nn.Module:
    from .efficientnet import pretrained

    return pretrained()


FACTORIES: dict[str, Callable[[], nn.Module]] = {
    "vgg16-hed": _vgg16_hed,
    "efficientnet-lite0": _efficientnet_lite0,
}
DEFAULT = DEFAULT_BACKBONE
assert tuple(FACTORIES) == BACKBONES, "features/__init__.py names every backbone, in this order"


def setup_weights() -> list[str]:
    """Convert every backbone's weights into the cache (the set-up step); one line per backbone."""
    from . import weights
    from .efficientnet import EfficientNetLite0
    from .vgg_hed import VGG16HED

    done = [
        (weights.HED, weights.convert(weights.HED, VGG16HED)),
        (weights.EFFICIENTNET, weights.convert(weights.EFFICIENTNET, EfficientNetLite0)),
    ]
    return [f"{s.name}: {path} (sha256 {s.tensors_sha256[:16]}…)" for s, path in done]


def load_backbone(name: str) -> nn.Module:
    if name not in FACTORIES:
        raise ConfigError(f"unknown backbone {name!r}; choose one of: {', '.join(FACTORIES)}")
    return FACTORIES[name]()


@torch.no_grad()
def describe(backbone: nn.Module, images: torch.Tensor, batch: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel descriptors (B, D, H, W) and global descriptors (B, G) of RGB images in [0, 1]."""
    pix, glob = [], []
    device = next(backbone.parameters()).device
    for i in range(0, len(images), batch):
        taps = backbone(images[i : i + batch].to(device))
        pix.append(pixel_descriptors(taps, images.shape[-2:]))
        glob.append(global_descriptor(taps))
    return torch.cat(pix), torch.cat(glob)


@torch.no_grad()
def describe_global(backbone: nn.Module, images: torch.Tensor, batch: int = 16) -> torch.Tensor:
    """Global descriptors only (B, G): what the bank stores for every exemplar."""
    device = next(backbone.parameters()).device
    return torch.cat(
        [global_descriptor(backbone(images[i : i + batch].to(device))).cpu() for i in range(0, len(images), batch)]
    )
