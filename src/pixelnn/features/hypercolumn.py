"""Hypercolumn pixel descriptors and global descriptors from a backbone's feature taps.

A pixel's descriptor is the concatenation of every tap, upsampled bilinearly to the image size and
L2-normalised per layer, scaled by 1/sqrt(number of layers) so that the whole vector has unit norm:
cosine similarity is then a dot product.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

GLOBAL_GRID = 3  # global descriptor: last tap average-pooled to a 3 x 3 grid (keeps the layout)


def pixel_descriptors(taps: list[torch.Tensor], size: tuple[int, int], normalize_first: bool = False) -> torch.Tensor:
    """taps [(B, C_l, H_l, W_l)] -> (B, D, H, W), D = sum C_l, unit norm along D.

    normalize_first: normalise each layer at its own resolution, then upsample (the form whose
    projection features/projection.py computes cheaply; its norm is then only close to 1).
    """
    parts = []
    for t in taps:
        if normalize_first:
            t = F.normalize(t, dim=1)
        if t.shape[-2:] != size:
            t = F.interpolate(t, size=size, mode="bilinear", align_corners=False)
        parts.append(t if normalize_first else F.normalize(t, dim=1))
    return torch.cat(parts, dim=1) / len(parts) ** 0.5


def global_descriptor(taps: list[torch.Tensor]) -> torch.Tensor:
    """Last (deepest) tap pooled to GLOBAL_GRID x GLOBAL_GRID and L2-normalised: (B, C * 9)."""
    pooled = F.adaptive_avg_pool2d(taps[-1], GLOBAL_GRID)  # (B, C, 3, 3)
    return F.normalize(pooled.flatten(1), dim=1)
