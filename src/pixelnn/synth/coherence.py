"""Coherent copying: alternatives to copying each pixel's best match independently (Eq. 3).

- 'coherent': a coherence prior after Ashikhmin and PatchMatch's propagation. A pixel takes the
  continuation of a neighbour's source (same exemplar, same offset) instead of its own best match
  when the similarity given up is at most COHERENCE_TAU. Updates alternate over the two colours of a
  checkerboard, so a pixel always continues a neighbour that holds still. The map stays one source
  per pixel: the output is rebuilt from it exactly as for Eq. 3.
- 'vote': patch voting. Every pixel averages the high frequencies that its 3x3 neighbours' sources,
  continued to it, would give (uniform weights over the continuations that stay inside the image).
  The weights are kept with the map (Correspondence.weights), so the output is rebuilt exactly.
- 'coherent-vote': the prior, then voting.

A continued source keeps the neighbour's offset, so it stays inside the candidate's window and pool.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import ConfigError

COPY_MODES = ("eq3", "coherent", "vote", "coherent-vote")
DEFAULT_COPY = "coherent"  # 'eq3' is the paper's independent per-pixel copy; voting smooths more and varies less
COHERENCE_TAU = 0.02  # cosine similarity a pixel may give up to continue a neighbour's source
PASSES = 3  # checkerboard sweeps of the prior
VOTE_OFFSETS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]  # order of Correspondence.weights' last axis

DIRS = ((0, 1), (0, -1), (1, 0), (-1, 0))
SimFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]  # (pixels, rank, j) -> similarities


def check_mode(mode: str) -> str:
    if mode not in COPY_MODES:
        raise ConfigError(f"copy must be one of {', '.join(COPY_MODES)}, got {mode!r}")
    return mode


def _continued(rank: np.ndarray, j: np.ndarray, owner: np.ndarray, dy: int, dx: int):
    """For every pixel p, the source of its neighbour n = p - (dy, dx) continued to p.

    Returns (valid (H, W) bool, rank (H, W), j (H, W)); valid where n is in the image, belongs to the
    same exemplar set as p, and its source continued by (dy, dx) stays in the image."""
    H, W = rank.shape
    valid = np.zeros((H, W), bool)
    r_out, j_out = np.zeros_like(rank), np.zeros_like(j)
    ys, xs = slice(max(dy, 0), H + min(dy, 0)), slice(max(dx, 0), W + min(dx, 0))
    yn, xn = slice(max(-dy, 0), H + min(-dy, 0)), slice(max(-dx, 0), W + min(-dx, 0))
    jn = j[yn, xn]
    sy, sx = jn // W + dy, jn % W + dx
    ok = (sy >= 0) & (sy < H) & (sx >= 0) & (sx < W) & (owner[yn, xn] == owner[ys, xs])
    valid[ys, xs] = ok
    r_out[ys, xs] = rank[yn, xn]
    j_out[ys, xs] = np.where(ok, sy * W + sx, 0)
    return valid, r_out, j_out


def _agreement(rank: np.ndarray, j: np.ndarray, owner: np.ndarray, r_opt: np.ndarray, j_opt: np.ndarray) -> np.ndarray:
    """(H, W) how many of each pixel's 4 neighbours are coherent with the option (r_opt, j_opt) there:
    neighbour p + e copies the option's source continued by e."""
    H, W = rank.shape
    count = np.zeros((H, W), np.int8)
    sy, sx = j_opt // W, j_opt % W
    for dy, dx in DIRS:
        ys, xs = slice(max(-dy, 0), H + min(-dy, 0)), slice(max(-dx, 0), W + min(-dx, 0))  # p with p + e inside
        yn, xn = slice(max(dy, 0), H + min(dy, 0)), slice(max(dx, 0), W + min(dx, 0))  # p + e
        inside = (sy[ys, xs] + dy >= 0) & (sy[ys, xs] + dy < H) & (sx[ys, xs] + dx >= 0) & (sx[ys, xs] + dx < W)
        same = (
            (rank[yn, xn] == r_opt[ys, xs])
            & (j[yn, xn] == j_opt[ys, xs] + dy * W + dx)
            & (owner[yn, xn] == owner[ys, xs])
        )
        count[ys, xs] += inside & same
    return count


def coherent(
    sim: np.ndarray,
    rank: np.ndarray,
    j: np.ndarray,
    owner: np.ndarray,
    sim_of: SimFn,
    tau: float = COHERENCE_TAU,
    passes: int = PASSES,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The coherence prior over an Eq. 3 map (sim, rank, j (H, W)); returns the new (sim, rank, j).

    Each pixel chooses among its current source and its 4 neighbours' sources continued to it, those
    within tau of its Eq. 3 similarity: the one coherent with the most neighbours, then the most similar.
    Pixels of one checkerboard colour move while the others hold still."""
    H, W = rank.shape
    best = sim.copy()  # Eq. 3's similarity: the reference for what is given up
    sim, rank, j = sim.copy(), rank.copy(), j.copy()
    colour = (np.arange(H)[:, None] + np.arange(W)[None, :]) % 2
    pixels = np.arange(H * W).reshape(H, W)
    for _ in range(passes):
        for c in (0, 1):
            found = [_continued(rank, j, owner, dy, dx) for dy, dx in DIRS]
            valid = np.stack([v for v, _, _ in found]) & (colour == c)  # (4, H, W)
            rr, jj = np.stack([rank] + [r for _, r, _ in found]), np.stack([j] + [q for _, _, q in found])
            s = np.full((5, H, W), -np.inf, np.float32)
            s[0] = sim
            s[1:][valid] = sim_of(np.broadcast_to(pixels, valid.shape)[valid], rr[1:][valid], jj[1:][valid])
            ok = s >= best - tau  # the current source always is
            votes = np.stack([_agreement(rank, j, owner, rr[k], jj[k]) for k in range(5)]).astype(np.float32)
            # most coherent neighbours first, similarity (< 1 apart) breaks ties
            k = np.where(ok, votes * 4.0 + s, -np.inf).argmax(0)[None]
            new = [np.take_along_axis(a, k, 0)[0] for a in (s, rr, jj)]
            move = colour == c
            sim, rank, j = (np.where(move, n, o) for n, o in zip(new, (sim, rank, j)))
    return sim, rank, j


def vote_weights(j: np.ndarray) -> np.ndarray:
    """(H, W, 9) uniform weights over the 3x3 neighbours whose source, continued to the pixel, is inside the image."""
    H, W = j.shape
    w = np.zeros((H, W, len(VOTE_OFFSETS)), np.float32)
    for k, (dy, dx) in enumerate(VOTE_OFFSETS):
        valid, _, _ = _continued(np.zeros_like(j), j, np.zeros((H, W), np.int64), -dy, -dx)
        w[:, :, k] = valid
    return w / w.sum(-1, keepdims=True)  # the pixel's own source (offset 0, 0) is always valid


def vote_correction(rank: np.ndarray, j: np.ndarray, residual: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(H, W, 3): what voting adds to each pixel's own copy, sum_k w_k (r_k - r_own), where r_k is the
    residual y - f(x) that the 3x3 neighbour k's source, continued to the pixel, gives. Exactly 0 where
    every neighbour continues the pixel's own source, so coherent regions are copied bit for bit.

    residual (K, H*W, 3) by rank; weights (H, W, 9) in VOTE_OFFSETS order (from vote_weights)."""
    H, W = rank.shape
    own = residual[rank, j]  # (H, W, 3)
    out = np.zeros((H, W, 3), np.float32)
    zeros = np.zeros((H, W), np.int64)
    for k, (dy, dx) in enumerate(VOTE_OFFSETS):
        # the neighbour at p + (dy, dx) continued to p: shift by -(dy, dx)
        valid, rr, jj = _continued(rank, j, zeros, -dy, -dx)
        w = np.where(valid, weights[:, :, k], 0.0).astype(np.float32)[..., None]
        out += w * np.where(valid[..., None], residual[rr, jj] - own, 0.0)
    return out
