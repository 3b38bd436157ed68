"""Compact pixel descriptors: a two-level product quantiser, block means first, then each pixel's residual.

Reduced descriptors (d = 64, unit norm) vary slowly across an image: conv3 to conv5 are upsampled
from 1/4 to 1/16 resolution. On edges2shoes the bilinear upsampling of their 4 x 4 block means
leaves 5.5% of their energy. So a descriptor map (S, S, d) is coded in two levels:

block level
    the mean descriptor of every BLOCK x BLOCK block, product-quantised: `block_bytes` sub-vectors
    of d / block_bytes dimensions, each coded by the nearest of 256 centroids (one byte);
pixel level
    each pixel's residual from the bilinear upsampling of the decoded block means, product-quantised
    with `pixel_bytes` sub-vectors.

Decoding adds the upsampled block means to the residuals. The default (blocks of 4 x 4 with 16
bytes, 4 bytes per pixel) costs 5 bytes per pixel (46 KB per 96 x 96 exemplar, against 1.18 MB
for float16); measured (benchmarks/compact.py, docs/benchmarks.md) it loses much less similarity
than one 8-byte product quantiser of the pixels (faiss OPQ8). Centroids are trained with faiss's
k-means (`faiss.ProductQuantizer`); encoding and decoding are plain tensor operations here, so a
query and the bank are coded by the same code. A rotation (`fit_rotation`) balances the sub-vectors'
variances; the bank folds it into its projection basis, so it costs nothing here.

One exemplar's codes are one row of bytes: its S*S*pixel_bytes pixel codes (row-major pixels), then
its B*B*block_bytes block codes (B = ceil(S / BLOCK)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import faiss
import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError

BLOCK = 4  # side of the blocks whose means the block level codes
BLOCK_BYTES = 16  # sub-quantisers of a block mean (one byte each)
PIXEL_BYTES = 4  # sub-quantisers of a pixel's residual
CENTROIDS = 256  # per sub-quantiser: a code is one byte
TRAIN_ROWS = 65_536  # most rows one level's k-means is trained on
CHUNK = 16_384  # rows encoded at once (bounds the (M, rows, 256) distance table)


def blocks_per_side(size: int, block: int = BLOCK) -> int:
    return -(-size // block)


def code_length(size: int, pixel_bytes: int = PIXEL_BYTES, block_bytes: int = BLOCK_BYTES, block: int = BLOCK) -> int:
    """Bytes of one S x S exemplar's codes."""
    return size * size * pixel_bytes + blocks_per_side(size, block) ** 2 * block_bytes


@dataclass(frozen=True, eq=False)
class PixelCodec:
    """The two levels' centroids: block (block_bytes, 256, d / block_bytes) and pixel
    (pixel_bytes, 256, d / pixel_bytes), float32."""

    block_centroids: np.ndarray
    pixel_centroids: np.ndarray
    block: int = BLOCK

    @property
    def dim(self) -> int:
        return int(self.pixel_centroids.shape[0] * self.pixel_centroids.shape[2])

    @property
    def block_bytes(self) -> int:
        return int(self.block_centroids.shape[0])

    @property
    def pixel_bytes(self) -> int:
        return int(self.pixel_centroids.shape[0])

    def code_length(self, size: int) -> int:
        return code_length(size, self.pixel_bytes, self.block_bytes, self.block)

    def same_as(self, other: PixelCodec | None) -> bool:
        return (
            other is not None
            and self.block == other.block
            and np.array_equal(self.block_centroids, other.block_centroids)
            and np.array_equal(self.pixel_centroids, other.pixel_centroids)
        )

    def encode(self, desc: torch.Tensor) -> torch.Tensor:
        """desc (N, S, S, d) float -> codes (N, code_length(S)) uint8."""
        N, S, _, d = desc.shape
        desc = desc.float()
        means = block_means(desc, self.block)  # (N, B, B, d)
        block_codes = pq_encode(means.reshape(-1, d), self.block_centroids)  # (N*B*B, Mb)
        base = upsample(pq_decode(block_codes, self.block_centroids).view(means.shape), S)
        pixel_codes = pq_encode((desc - base).reshape(-1, d), self.pixel_centroids)  # (N*S*S, Mp)
        return torch.cat([pixel_codes.view(N, -1), block_codes.view(N, -1)], dim=1)

    def decode(self, codes: torch.Tensor, size: int) -> torch.Tensor:
        """codes (N, code_length(size)) uint8 -> descriptors (N, S, S, d) float32 (not unit norm)."""
        N, S, B, d = len(codes), size, blocks_per_side(size, self.block), self.dim
        if codes.shape[1] != self.code_length(S):
            raise ValueError(f"codes of {codes.shape[1]} bytes per exemplar; {S} x {S} takes {self.code_length(S)}")
        split = S * S * self.pixel_bytes
        block_codes = codes[:, split:].reshape(N * B * B, self.block_bytes)
        pixel_codes = codes[:, :split].reshape(N * S * S, self.pixel_bytes)
        base = upsample(pq_decode(block_codes, self.block_centroids).view(N, B, B, d), S)
        return base + pq_decode(pixel_codes, self.pixel_centroids).view(N, S, S, d)


def block_means(desc: torch.Tensor, block: int) -> torch.Tensor:
    """(N, S, S, d) -> (N, B, B, d): mean over each block (blocks at the edge may be partial)."""
    return F.avg_pool2d(desc.permute(0, 3, 1, 2), block, ceil_mode=True).permute(0, 2, 3, 1)


def upsample(means: torch.Tensor, size: int) -> torch.Tensor:
    """(N, B, B, d) block means -> (N, S, S, d), bilinear."""
    up = F.interpolate(means.permute(0, 3, 1, 2), size=(size, size), mode="bilinear", align_corners=False)
    return up.permute(0, 2, 3, 1)


def pq_encode(x: torch.Tensor, centroids: np.ndarray) -> torch.Tensor:
    """x (n, d) -> (n, M) uint8: per sub-vector the nearest centroid (centroids (M, 256, d / M))."""
    M, K, ds = centroids.shape
    c = torch.from_numpy(centroids).to(x.device)  # (M, K, ds)
    half_norm = (c * c).sum(-1).unsqueeze(1) / 2  # (M, 1, K)
    out = torch.empty((len(x), M), dtype=torch.uint8, device=x.device)
    for start in range(0, len(x), CHUNK):
        xs = x[start : start + CHUNK].float().reshape(-1, M, ds).transpose(0, 1)  # (M, n, ds)
        score = torch.baddbmm(-half_norm, xs, c.transpose(1, 2))  # x.c - |c|^2 / 2, largest = nearest
        out[start : start + CHUNK] = score.argmax(-1).T.to(torch.uint8)
    return out


def pq_decode(codes: torch.Tensor, centroids: np.ndarray) -> torch.Tensor:
    """codes (n, M) uint8 -> (n, d) float32."""
    M = centroids.shape[0]
    c = torch.from_numpy(centroids).to(codes.device)
    return c[torch.arange(M, device=codes.device), codes.long()].reshape(len(codes), -1)  # (n, M, ds) -> (n, d)


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


def fit_rotation(x: np.ndarray, m: int | None = None) -> np.ndarray:
    """An orthogonal (d, d) rotation R after which m (default: the pixel level's) sub-vectors of rows
    x (n, d) quantise better (rotated rows are x @ R.T): the principal axes, dealt to the m
    sub-vectors so that their variances balance (faiss.PCAMatrix with balanced_bins, the closed-form
    variant of OPQ). Measured on edges2shoes it does nearly as well as faiss's iterative OPQ (0.0042
    against 0.0040 mean similarity loss in whole-image windows) in 0.2 s instead of 10 to 60 s."""
    d = x.shape[1]
    m = m or math.gcd(PIXEL_BYTES, d)
    pca = faiss.PCAMatrix(d, d, 0.0, False)
    pca.balanced_bins = m
    x = _sample_rows(x, TRAIN_ROWS, 0)
    pca.train(np.resize(x, (max(len(x), 2 * d), d)))  # faiss needs more rows than dimensions
    return faiss.vector_to_array(pca.A).reshape(d, d).astype(np.float32)


def fit_codec(
    maps: np.ndarray, block_bytes: int | None = None, pixel_bytes: int | None = None, block: int = BLOCK, seed: int = 0
) -> PixelCodec:
    """Train both levels on descriptor maps (n, S, S, d): block centroids on their block means, then
    pixel centroids on the residuals those leave. Bytes default to BLOCK_BYTES and PIXEL_BYTES, or
    their greatest common divisor with d where they do not divide d (small test descriptors)."""
    desc = torch.from_numpy(np.asarray(maps, dtype=np.float32))
    N, S, _, d = desc.shape
    block_bytes = block_bytes or math.gcd(BLOCK_BYTES, d)
    pixel_bytes = pixel_bytes or math.gcd(PIXEL_BYTES, d)
    means = block_means(desc, block)
    block_centroids = train_pq(means.reshape(-1, d).numpy(), block_bytes, seed)
    base = upsample(pq_decode(pq_encode(means.reshape(-1, d), block_centroids), block_centroids).view(means.shape), S)
    pixel_centroids = train_pq((desc - base).reshape(-1, d).numpy(), pixel_bytes, seed + 1)
    return PixelCodec(block_centroids, pixel_centroids, block)
