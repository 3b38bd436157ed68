"""Compact pixel descriptors: a residual pyramid of product quantisers, coarse block means first.

Reduced descriptors (d = 64, unit norm) vary slowly across an image: conv3 to conv5 are upsampled
from 1/4 to 1/16 resolution. On edges2shoes the bilinear upsampling of their 4 x 4 block means
leaves 5.5% of their energy, of their 2 x 2 means 1.7%. So a descriptor map (S, S, d) is coded in
levels, coarse to fine (LEVELS: blocks of 4 x 4, then 2 x 2, then single pixels):

    level l codes the mean, over each of its blocks, of what the levels before it left (the map
    minus the bilinear upsampling of their decoded means), product-quantised: `bytes` sub-vectors
    of d / bytes dimensions, each coded by the nearest of 256 centroids (one byte).

Decoding adds the levels' upsampled decoded means. LEVELS costs 16/16 + 16/4 + 1 = 6 bytes per
pixel (55 KB per 96 x 96 exemplar, against 1.18 MB in float16). Against the exhaustive search on
the float16 descriptors it gives up 0.0011 (edges2shoes) to 0.0019 (edges2handbags) of mean
similarity, and Table 1's metrics stay within their bootstrap noise (benchmarks/compact.py;
docs/benchmarks.md, "Compact banks"). During development two other codes lost more similarity for
their size: two levels of 5 bytes (4 x 4 blocks, then 4 bytes per pixel) and one 8-byte quantiser
of the pixels (faiss OPQ8); their figures were not kept. Levels whose sub-vectors have 2 dimensions
or fewer did no better and train far slower in faiss. Centroids are trained with
faiss's k-means and codes computed by faiss (`faiss.ProductQuantizer`), decoding is plain tensor
operations here; a query and the bank are coded by the same code. A rotation (`fit_rotated_codec`) balances the
sub-vectors' variances; the bank folds it into its projection basis, so it costs nothing here.

One exemplar's codes are one row of bytes: each level's codes in turn, coarse first, its blocks in
row-major order (ceil(S / side)^2 blocks of `bytes` codes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import faiss
import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError

LEVELS = ((4, 16), (2, 16), (1, 1))  # (block side, bytes per block), coarse to fine
CENTROIDS = 256  # per sub-quantiser: a code is one byte
TRAIN_ROWS = 65_536  # most rows one level's k-means is trained on

Levels = tuple[tuple[int, int], ...]


def blocks_per_side(size: int, side: int) -> int:
    return -(-size // side)


def code_length(size: int, levels: Levels = LEVELS) -> int:
    """Bytes of one S x S exemplar's codes."""
    return sum(blocks_per_side(size, side) ** 2 * m for side, m in levels)


def levels_for(dim: int, levels: Levels = LEVELS) -> Levels:
    """LEVELS with each level's bytes cut to a divisor of dim (their greatest common divisor) for
    descriptors that 16, 8 or 4 does not divide (small test descriptors)."""
    return tuple((side, math.gcd(m, dim)) for side, m in levels)


@dataclass(frozen=True, eq=False)
class PixelCodec:
    """Per level (coarse to fine) its block side and centroids (bytes, 256, d / bytes) float32."""

    sides: tuple[int, ...]
    centroids: tuple[np.ndarray, ...]

    @property
    def dim(self) -> int:
        c = self.centroids[-1]
        return int(c.shape[0] * c.shape[2])

    @property
    def levels(self) -> Levels:
        return tuple((side, int(c.shape[0])) for side, c in zip(self.sides, self.centroids))

    def code_length(self, size: int) -> int:
        return code_length(size, self.levels)

    def same_as(self, other: PixelCodec | None) -> bool:
        return (
            other is not None
            and self.sides == other.sides
            and len(self.centroids) == len(other.centroids)
            and all(np.array_equal(a, b) for a, b in zip(self.centroids, other.centroids))
        )

    def encode(self, desc: torch.Tensor) -> torch.Tensor:
        """desc (N, S, S, d) float -> codes (N, code_length(S)) uint8."""
        N, S, _, d = desc.shape
        residual, codes = desc.float(), []
        for side, c in zip(self.sides, self.centroids):
            means = block_means(residual, side)  # (N, B, B, d)
            level = pq_encode(means.reshape(-1, d), c)  # (N*B*B, m)
            residual = residual - upsample(pq_decode(level, c).view(means.shape), S)
            codes.append(level.view(N, -1))
        return torch.cat(codes, dim=1)

    def decode(self, codes: torch.Tensor, size: int) -> torch.Tensor:
        """codes (N, code_length(size)) uint8 -> descriptors (N, S, S, d) float32 (not unit norm)."""
        N, S, d = len(codes), size, self.dim
        if codes.shape[1] != self.code_length(S):
            raise ValueError(f"codes of {codes.shape[1]} bytes per exemplar; {S} x {S} takes {self.code_length(S)}")
        out, start = None, 0
        for side, c in zip(self.sides, self.centroids):
            B, m = blocks_per_side(S, side), c.shape[0]
            level = codes[:, start : start + B * B * m].reshape(N * B * B, m)
            start += B * B * m
            part = upsample(pq_decode(level, c).view(N, B, B, d), S)
            out = part if out is None else out.add_(part)
        return out


def block_means(desc: torch.Tensor, side: int) -> torch.Tensor:
    """(N, S, S, d) -> (N, B, B, d): mean over each side x side block (blocks at the edge may be partial)."""
    if side == 1:
        return desc
    return F.avg_pool2d(desc.permute(0, 3, 1, 2), side, ceil_mode=True).permute(0, 2, 3, 1)


def upsample(means: torch.Tensor, size: int) -> torch.Tensor:
    """(N, B, B, d) block means -> (N, S, S, d), bilinear (the identity when B == S)."""
    if means.shape[1] == size:
        return means
    up = F.interpolate(means.permute(0, 3, 1, 2), size=(size, size), mode="bilinear", align_corners=False)
    return up.permute(0, 2, 3, 1)


def pq_encode(x: torch.Tensor, centroids: np.ndarray) -> torch.Tensor:
    """x (n, d) -> (n, M) uint8: per sub-vector the nearest centroid (centroids (M, 256, d / M)).

    By faiss (`ProductQuantizer.compute_codes` with these centroids): 8 times faster than a batched
    matrix product here for sub-vectors of 4 dimensions, where the (n, M, 256) distances dominate."""
    M, K, ds = centroids.shape
    pq = faiss.ProductQuantizer(M * ds, M, 8)
    faiss.copy_array_to_vector(np.ascontiguousarray(centroids, dtype=np.float32).ravel(), pq.centroids)
    codes = pq.compute_codes(np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32))
    return torch.from_numpy(codes).to(x.device)


def pq_decode(codes: torch.Tensor, centroids: np.ndarray) -> torch.Tensor:
    """codes (n, M) uint8 (on the CPU) -> (n, d) float32: each sub-vector's centroid, by one
    numpy take over the flattened centroids (twice as fast as torch's indexing for these rows)."""
    M, K, ds = centroids.shape
    index = codes.numpy().astype(np.int64) + np.arange(0, M * K, K)  # row of each sub-vector's centroid
    return torch.from_numpy(np.take(centroids.reshape(M * K, ds), index.reshape(-1), axis=0).reshape(len(codes), -1))


def _sample_rows(x: np.ndarray, n: int, seed: int) -> np.ndarray:
    if len(x) > n:
        x = x[np.sort(np.random.default_rng(seed).choice(len(x), n, replace=False))]
    return np.ascontiguousarray(x, dtype=np.float32)


def train_pq(x: np.ndarray, m: int, seed: int = 0) -> np.ndarray:
    """Centroids (m, 256, d / m) of a product quantiser trained (faiss k-means) on rows x (n, d);
    fewer than 256 rows are repeated so that every centroid has a point."""
    d = x.shape[1]
    if m < 1 or d % m:
        raise ConfigError(f"a product quantiser of {d}-dim descriptors needs a number of bytes dividing {d}, not {m}")
    x = _sample_rows(x, TRAIN_ROWS, seed)
    if len(x) < CENTROIDS:
        x = np.resize(x, (CENTROIDS, d))
    pq = faiss.ProductQuantizer(d, m, 8)
    pq.cp.min_points_per_centroid = 1  # small banks: no warning about few training points
    pq.cp.seed = seed
    pq.train(x)
    return faiss.vector_to_array(pq.centroids).reshape(m, CENTROIDS, d // m).astype(np.float32)


def fit_rotation(x: np.ndarray, m: int) -> np.ndarray:
    """An orthogonal (d, d) rotation R after which m sub-vectors of rows x (n, d) quantise better
    (rotated rows are x @ R.T): the principal axes, dealt to the m sub-vectors so that their variances
    balance (faiss.PCAMatrix with balanced_bins, the closed-form variant of OPQ; in 0.2 s where
    faiss's iterative OPQ takes 10 to 60 s, for a similarity loss within 0.0005 of it)."""
    d = x.shape[1]
    pca = faiss.PCAMatrix(d, d, 0.0, False)
    pca.balanced_bins = m
    x = _sample_rows(x, TRAIN_ROWS, 0)
    pca.train(np.resize(x, (max(len(x), 2 * d), d)))  # faiss needs more rows than dimensions
    return faiss.vector_to_array(pca.A).reshape(d, d).astype(np.float32)


def fit_codec(maps: np.ndarray, levels: Levels | None = None, seed: int = 0) -> PixelCodec:
    """Train the levels (default levels_for(d)) in turn on descriptor maps (n, S, S, d): each on the
    block means of the residual the trained levels before it leave."""
    residual = torch.from_numpy(np.asarray(maps, dtype=np.float32))
    N, S, _, d = residual.shape
    levels = levels or levels_for(d)
    centroids = []
    for k, (side, m) in enumerate(levels):
        means = block_means(residual, side)
        c = train_pq(means.reshape(-1, d).numpy(), m, seed + k)
        residual = residual - upsample(pq_decode(pq_encode(means.reshape(-1, d), c), c).view(means.shape), S)
        centroids.append(c)
    return PixelCodec(tuple(side for side, _ in levels), tuple(centroids))


def fit_rotated_codec(maps: np.ndarray, levels: Levels | None = None) -> tuple[np.ndarray, PixelCodec]:
    """A rotation R (d, d) and a codec for the rotated maps (maps @ R.T). R balances the sub-vectors
    of the level that spends the most bytes per pixel, on what that level codes: the block means of
    the maps less the upsampled means of the level before it (exact means stand in for decoded
    ones, so that no level is trained twice)."""
    maps = np.asarray(maps, dtype=np.float32)
    N, S, _, d = maps.shape
    levels = levels or levels_for(d)
    k = max(range(len(levels)), key=lambda i: levels[i][1] / levels[i][0] ** 2)
    target = torch.from_numpy(maps)
    if k > 0:
        target = target - upsample(block_means(target, levels[k - 1][0]), S)
    rotation = fit_rotation(block_means(target, levels[k][0]).reshape(-1, d).numpy(), levels[k][1])
    return rotation, fit_codec(maps @ rotation.T, levels)
