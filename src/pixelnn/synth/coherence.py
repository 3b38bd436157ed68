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
- 'matched': the prior, then as much voting (a share of 0, 1/4, .. 1 of voting's weights, the rest
  on the pixel's own source) as brings the candidate's spectrum closest to the mean spectrum of the
  exemplar photos it copies from, weighted by the pixels each gives. Too busy a patchwork has more
  high frequencies than its sources and is voted smooth; a coherent copy already has their detail
  and is kept as it is. The chosen weights are kept with the map like voting's.

A continued source keeps the neighbour's offset, so it stays inside the candidate's window and pool.
"""

from __future__ import annotations

import numba
import numpy as np

from ..errors import ConfigError
from ..search.cpu_kernels import dot
from ..spectra import log_spectra, spectrum_distance

COPY_MODES = ("eq3", "coherent", "vote", "coherent-vote", "matched")
# 'eq3' is the paper's independent per-pixel copy; full voting smooths more and varies less. 'matched'
# replaced 'coherent' as the default: in all 5 domains of docs/results.md a higher Top-1 PSNR and edge
# AP, a smaller spectrum gap in 4, at the cost of some diversity (docs/benchmarks.md, "Coherent copying")
DEFAULT_COPY = "matched"
COHERENCE_TAU = 0.02  # cosine similarity a pixel may give up to continue a neighbour's source
PASSES = 3  # checkerboard sweeps of the prior
VOTE_OFFSETS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]  # order of Correspondence.weights' last axis
OWN = VOTE_OFFSETS.index((0, 0))  # the pixel's own source among them
MATCH_SHARES = np.linspace(0.0, 1.0, 5)  # shares of voting that 'matched' tries

DIRS = ((0, 1), (0, -1), (1, 0), (-1, 0))
_DY = np.array([d[0] for d in DIRS], np.int64)  # the same, for the compiled kernels
_DX = np.array([d[1] for d in DIRS], np.int64)


def check_mode(mode: str) -> str:
    if mode not in COPY_MODES:
        raise ConfigError(f"copy must be one of {', '.join(COPY_MODES)}, got {mode!r}")
    return mode


def uses_prior(mode: str) -> bool:
    """Whether a copy mode runs the coherence prior (which needs the pixel descriptors kept)."""
    return mode.startswith("coherent") or mode == "matched"


def uses_votes(mode: str) -> bool:
    """Whether a copy mode keeps voting weights with its maps."""
    return mode.endswith("vote") or mode == "matched"


def coherent(
    sim: np.ndarray,
    rank: np.ndarray,
    j: np.ndarray,
    owner: np.ndarray,
    Q: np.ndarray,
    table: np.ndarray,
    tau: float = COHERENCE_TAU,
    passes: int = PASSES,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The coherence prior over an Eq. 3 map (sim, rank, j (H, W)); returns the new (sim, rank, j).

    Each pixel chooses among its current source and its 4 neighbours' sources continued to it, those
    within tau of its Eq. 3 similarity: the one coherent with the most neighbours, then the most similar.
    Pixels of one checkerboard colour move while the others hold still.

    Similarities are dot products of unit descriptors: Q (H*W, d) the query's pixels, table (R, H*W, d)
    the pixels of the exemplars, by rank (float32, C-contiguous)."""
    H, W = rank.shape
    out = (
        np.array(sim, np.float32),
        np.array(rank, np.int64),
        np.array(j, np.int64),
    )
    _coherent_kernel(
        *out,
        np.ascontiguousarray(owner, np.int64),
        np.ascontiguousarray(Q, np.float32),
        np.ascontiguousarray(table, np.float32).reshape(len(table), H * W, -1),
        np.float32(tau),
        passes,
    )
    return out


@numba.njit(cache=True, nogil=True)
def _coherent_kernel(sim, rank, j, owner, Q, table, tau, passes):
    """In place over (sim, rank, j): `passes` sweeps of both checkerboard colours (see `coherent`).

    A pixel's neighbours all have the other colour, so updating one colour in place reads the same
    state as updating it all at once. Option 0 is the pixel's own source, option e + 1 the source of
    its neighbour p - DIRS[e] continued to it. Neighbour p + e copies option o's source continued by
    e exactly when its own source continued back to p is o, so an option's votes are how many of the
    continued options equal it."""
    H, W = rank.shape
    best = sim.copy()  # Eq. 3's similarity: the reference for what is given up
    jy, jx = j // W, j % W
    o_r = np.empty(5, np.int64)
    o_j = np.empty(5, np.int64)
    o_s = np.empty(5, np.float32)
    ok = np.empty(5, np.bool_)
    for _ in range(passes):
        moved = 0
        for c in range(2):
            for y in range(H):
                for x in range((y + c) % 2, W, 2):
                    o_r[0], o_j[0], o_s[0], ok[0] = rank[y, x], j[y, x], sim[y, x], True
                    for e in range(4):  # neighbour n = p - e, its source continued by e
                        dy, dx = _DY[e], _DX[e]
                        ny, nx = y - dy, x - dx
                        ok[e + 1] = False
                        if ny < 0 or ny >= H or nx < 0 or nx >= W or owner[ny, nx] != owner[y, x]:
                            continue
                        sy, sx = jy[ny, nx] + dy, jx[ny, nx] + dx
                        if sy < 0 or sy >= H or sx < 0 or sx >= W:
                            continue
                        ok[e + 1], o_r[e + 1], o_j[e + 1] = True, rank[ny, nx], sy * W + sx
                        o_s[e + 1] = np.nan
                        for k in range(e + 1):  # a source met already keeps its similarity
                            if ok[k] and o_r[k] == o_r[e + 1] and o_j[k] == o_j[e + 1]:
                                o_s[e + 1] = o_s[k]
                                break
                        if np.isnan(o_s[e + 1]):
                            o_s[e + 1] = dot(Q[y * W + x], table[o_r[e + 1], o_j[e + 1]])
                    # most coherent neighbours first, similarity (< 1 apart) breaks ties
                    chosen, value = 0, -np.inf
                    for k in range(5):
                        if not ok[k] or o_s[k] < best[y, x] - tau:
                            continue
                        votes = 0
                        for m in range(1, 5):
                            votes += ok[m] and o_r[m] == o_r[k] and o_j[m] == o_j[k]
                        v = np.float32(4 * votes) + o_s[k]
                        if v > value:
                            chosen, value = k, v
                    if chosen:
                        sim[y, x], rank[y, x], j[y, x] = o_s[chosen], o_r[chosen], o_j[chosen]
                        jy[y, x], jx[y, x] = o_j[chosen] // W, o_j[chosen] % W
                        moved += 1
        if moved == 0:  # the next sweep would see the same state and move nothing either
            break


def vote_weights(j: np.ndarray) -> np.ndarray:
    """(H, W, 9) uniform weights over the 3x3 neighbours whose source, continued to the pixel, is inside the image."""
    H, W = j.shape
    out = np.zeros((H, W, len(VOTE_OFFSETS)), np.float32)
    _vote_weights_kernel(np.ascontiguousarray(j, np.int64), out)
    return out


def vote_correction(rank: np.ndarray, j: np.ndarray, residual: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(H, W, 3): what voting adds to each pixel's own copy, sum_k w_k (r_k - r_own), where r_k is the
    residual y - f(x) that the 3x3 neighbour k's source, continued to the pixel, gives. Exactly 0 where
    every neighbour continues the pixel's own source, so coherent regions are copied bit for bit.

    residual (K, H*W, 3) by rank; weights (H, W, 9) in VOTE_OFFSETS order (from vote_weights)."""
    H, W = rank.shape
    out = np.zeros((H, W, 3), np.float32)
    _vote_kernel(
        np.ascontiguousarray(rank, np.int64),
        np.ascontiguousarray(j, np.int64),
        np.ascontiguousarray(residual, np.float32),
        np.ascontiguousarray(weights, np.float32),
        out,
    )
    return out


_VY = np.array([o[0] for o in VOTE_OFFSETS], np.int64)  # VOTE_OFFSETS, for the compiled kernels
_VX = np.array([o[1] for o in VOTE_OFFSETS], np.int64)


@numba.njit(cache=True, nogil=True)
def _continues(j, y, x, k):
    """The source of pixel (y, x)'s 3x3 neighbour k continued to (y, x), or -1 (outside the image)."""
    H, W = j.shape
    ny, nx = y + _VY[k], x + _VX[k]
    if ny < 0 or ny >= H or nx < 0 or nx >= W:
        return -1
    sy, sx = j[ny, nx] // W - _VY[k], j[ny, nx] % W - _VX[k]
    if sy < 0 or sy >= H or sx < 0 or sx >= W:
        return -1
    return sy * W + sx


@numba.njit(cache=True, nogil=True)
def _vote_weights_kernel(j, out):
    H, W = j.shape
    for y in range(H):
        for x in range(W):
            n = 0
            for k in range(len(_VY)):
                n += _continues(j, y, x, k) >= 0
            for k in range(len(_VY)):
                if _continues(j, y, x, k) >= 0:
                    out[y, x, k] = np.float32(1.0) / np.float32(n)


@numba.njit(cache=True, nogil=True)
def _vote_kernel(rank, j, residual, weights, out):
    H, W = rank.shape
    for y in range(H):
        for x in range(W):
            own = residual[rank[y, x], j[y, x]]
            for k in range(len(_VY)):
                src = _continues(j, y, x, k)
                if src < 0:
                    continue
                r = rank[y + _VY[k], x + _VX[k]]
                for c in range(3):
                    out[y, x, c] += weights[y, x, k] * (residual[r, src, c] - own[c])


def blended(weights: np.ndarray, share: float) -> np.ndarray:
    """(H, W, 9) weights: `share` of voting's, the rest on each pixel's own source."""
    out = weights * np.float32(share)
    out[..., OWN] += np.float32(1.0 - share)
    return out


def matched_share(outputs: np.ndarray, target: np.ndarray) -> int:
    """Index of the output whose spectrum is closest to target (R,) (pixelnn.spectra; ties: the first).

    outputs (N, H, W, 3) in [0, 1]: one candidate with each share of MATCH_SHARES."""
    return int(np.argmin(spectrum_distance(log_spectra(outputs), target)))


def finish(out: np.ndarray, correction: np.ndarray | None = None) -> np.ndarray:
    """An output from compose.copied's (..., H, W, 3) and a correction (voting's, or None), clipped to [0, 1]."""
    return np.clip(out if correction is None else out + correction, 0.0, 1.0)


def voting(
    mode: str, out: np.ndarray, rank: np.ndarray, j: np.ndarray, residual: np.ndarray, sources: np.ndarray | None
) -> tuple[np.ndarray | None, np.ndarray | None, float | None]:
    """(weights, correction, share) that a copy mode's voting gives one candidate; (None, None, None)
    for the modes that do not vote.

    out (H, W, 3): the candidate before correction (compose.copied); rank, j (H, W) its map;
    residual (K, H*W, 3) the exemplars' y - f(x) by rank; sources (K, R) their photos' log spectra
    ('matched' only). The correction is exactly what compose.rebuild computes from the weights."""
    if not uses_votes(mode):
        return None, None, None
    weights = vote_weights(j)
    full = vote_correction(rank, j, residual, weights)
    if mode != "matched":
        return weights, full, 1.0
    outputs = finish(out[None], MATCH_SHARES[:, None, None, None].astype(np.float32) * full[None])
    given = np.bincount(rank.ravel(), minlength=len(sources)) / rank.size
    share = float(MATCH_SHARES[matched_share(outputs, given @ sources)])
    weights = blended(weights, share)
    if share == 0.0:  # every pixel its own source: the correction is exactly 0
        return weights, None, share
    if share == 1.0:  # the weights are voting's, bit for bit
        return weights, full, share
    return weights, vote_correction(rank, j, residual, weights), share
