"""Reduced pixel descriptors: an uncentred PCA of hypercolumns, fitted on a bank.

Uncentred, because what matters is the dot product between descriptors, and the top right
singular vectors of the (pixels x D) matrix give its best rank-d approximation. After projecting,
each descriptor is renormalised, so similarity stays a cosine in [-1, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def fit_projection(samples: torch.Tensor, dim: int) -> torch.Tensor:
    """samples (n, D) pixel descriptors -> basis (dim, D), orthonormal rows, by decreasing energy."""
    if dim < 1 or dim > samples.shape[1]:
        raise ValueError(f"projection dimension must be in 1..{samples.shape[1]}, got {dim}")
    x = samples.double()
    moment = x.T @ x / len(x)  # (D, D)
    evals, evecs = torch.linalg.eigh(moment)  # ascending
    return evecs[:, -dim:].flip(1).T.float().contiguous()


def project(desc: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """desc (B, D, H, W) -> (B, H, W, d) unit-norm reduced descriptors (pixel-major)."""
    B, D, H, W = desc.shape
    flat = desc.permute(0, 2, 3, 1).reshape(-1, D)  # (B*H*W, D)
    return F.normalize(flat @ basis.T, dim=1).view(B, H, W, -1)


def sample_pixels(desc: torch.Tensor, per_image: int, generator: torch.Generator) -> torch.Tensor:
    """(B, D, H, W) -> (B * per_image, D) descriptors of random pixels."""
    B, D, H, W = desc.shape
    idx = torch.randint(0, H * W, (B, per_image), generator=generator)
    return torch.gather(desc.flatten(2), 2, idx.unsqueeze(1).expand(B, D, per_image)).permute(0, 2, 1).reshape(-1, D)
