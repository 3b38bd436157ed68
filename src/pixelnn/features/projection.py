"""Reduced pixel descriptors: an uncentred PCA of hypercolumns, fitted on a bank.

Uncentred, because what matters is the dot product between descriptors, and the top right
singular vectors of the (pixels x D) matrix give its best rank-d approximation. After projecting,
each descriptor is renormalised, so similarity stays a cosine in [-1, 1].

The reduced descriptor projects each layer at its own resolution and upsamples the projection:
P [up(n_1); ...; up(n_L)] / sqrt(L) = sum_l up(P_l n_l) / sqrt(L), with n_l the layer normalised at
its resolution. This is the hypercolumn with per-layer normalisation before upsampling (the exact
search normalises after) and costs about 0.15 GFLOP per 96 x 96 image instead of 1.7 plus a
54 MB tensor. The benchmark measures what the difference does to the matches.

The arithmetic runs on pixels-last (B, h, w, C) views, which is how channels_last taps lie in memory:
each layer is one matrix product, P_l n_l is computed as (P_l t_l) / |t_l| so that no normalised copy
of a tap is made, and the result comes out (B, H, W, d) without a transposing copy. Few large
temporaries matter more than flops here: a fresh tensor above glibc's 32 MB mmap limit is
page-faulted in on every use, which once cost more than the projection itself (docs/benchmarks.md,
"Bank build throughput").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ConfigError

NORM_EPS = 1e-12  # as F.normalize: an all-zero pixel stays zero


def fit_projection(samples: torch.Tensor, dim: int) -> torch.Tensor:
    """samples (n, D) pixel descriptors -> basis (dim, D), orthonormal rows, by decreasing energy."""
    if dim < 1 or dim > samples.shape[1]:
        raise ConfigError(
            f"reduced descriptors (--descriptors) must have 1..{samples.shape[1]} dimensions "
            f"(the backbone's pixel descriptor size), got {dim}"
        )
    x = samples.double()
    moment = x.T @ x / len(x)  # (D, D)
    evals, evecs = torch.linalg.eigh(moment)  # ascending
    return evecs[:, -dim:].flip(1).T.float().contiguous()


def project_taps(taps: list[torch.Tensor], basis: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """taps [(B, C_l, h_l, w_l)], basis (d, sum C_l) -> (B, H, W, d) unit-norm reduced descriptors."""
    blocks = basis.split([t.shape[1] for t in taps], dim=1)  # (d, C_l) each
    acc = None
    for t, P in zip(taps, blocks):
        r = _project_layer(t, P).permute(0, 3, 1, 2)  # (B, d, h_l, w_l), channels_last in memory
        if r.shape[-2:] != size:
            r = F.interpolate(r, size=size, mode="bilinear", align_corners=False)
        acc = r if acc is None else acc.add_(r)
    return F.normalize(acc, dim=1).permute(0, 2, 3, 1).contiguous()  # (B, H, W, d)


def _project_layer(t: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) tap, (d, C) block -> (B, h, w, d): P applied to the L2-normalised tap at every pixel."""
    x = t.permute(0, 2, 3, 1)  # (B, h, w, C): a free view of a channels_last tap
    r = torch.matmul(x, P.T)  # (B, h, w, d)
    return r.div_(torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min_(NORM_EPS))


def sample_pixels(desc: torch.Tensor, per_image: int, generator: torch.Generator) -> torch.Tensor:
    """(B, D, H, W) -> (B * per_image, D) descriptors of random pixels."""
    B, D, H, W = desc.shape
    idx = torch.randint(0, H * W, (B, per_image), generator=generator)
    return torch.gather(desc.flatten(2), 2, idx.unsqueeze(1).expand(B, D, per_image)).permute(0, 2, 1).reshape(-1, D)


def sample_hypercolumns(
    taps: list[torch.Tensor], size: tuple[int, int], per_image: int, generator: torch.Generator
) -> torch.Tensor:
    """Random pixels of the hypercolumn pixel_descriptors(taps, size, normalize_first=True): (B * per_image, D).

    The same pixels as sample_pixels on that (B, D, H, W) map (the same draws from `generator`), but
    only those pixels are interpolated: bilinear upsampling (align_corners=False) samples a layer at
    normalised coordinate (2i + 1) / H - 1 for output row i whatever the layer's size, which is what
    grid_sample computes with border padding. The full map is B x 1,472 x 96 x 96 floats for the
    VGG-16 taps, 870 MB for a batch of 16; the samples are 12 MB.
    """
    B, (H, W) = taps[0].shape[0], size
    idx = torch.randint(0, H * W, (B, per_image), generator=generator)  # as sample_pixels
    rows, cols = idx // W, idx % W
    grid = torch.stack([(2 * cols + 1) / W - 1, (2 * rows + 1) / H - 1], dim=-1).unsqueeze(2)  # (B, n, 1, 2) x, y
    parts = [
        F.grid_sample(F.normalize(t.float(), dim=1), grid, mode="bilinear", padding_mode="border", align_corners=False)
        for t in taps
    ]  # (B, C_l, n, 1) each
    return torch.cat(parts, dim=1)[..., 0].permute(0, 2, 1).reshape(B * per_image, -1) / len(taps) ** 0.5
