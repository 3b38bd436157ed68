"""Ranking candidates from the input alone (never the photo): which one to show first.

Each candidate gets up to three parts, each one "higher is better":

- consistency: how well it agrees with the input signal. A low-resolution input is compared with
  the candidate downsampled the way such inputs are made (PSNR, dB). An input of the output's size
  (edge map, sketch, any aligned signal) is compared by structure: the correlation between the
  candidate's gradient magnitude and the input's line strength (dark lines on a light ground) or,
  for other signals, the input's own gradient magnitude, both lightly blurred.
- stage1: for inputs of the output's size, how well its colours at 1/STAGE1_FACTOR of the output's
  size agree with stage 1's f(x) there (PSNR, dB). An edge map says little about colour; f(x), the
  regression's estimate of the mean photo, is the input's best guess of it, so the first candidate
  is the one whose colours a squared-error loss would expect, and the others give the alternatives.
  A low-resolution input already gives those colours itself (consistency), so there it is left out.
  Given f(x) (every method: pix2pix's samples are ranked against PixelNN's stage 1 too).
- match: the mean cosine similarity of its copied pixels. Only for candidates with a map.
- seam: minus the mean seam cost of its correspondence map (see `seam_cost`); 0 for a copy of
  one coherent source. Only for candidates with a map. Reported, not counted in the total: on
  training faces left out of the bank, counting it made the first candidate worse (it favours the
  whole-image copies of Eq. 2, which have no seams but carry another face's details); the copying
  itself (synth/coherence.py) is where seams are removed.

The total is the sum of the counted parts (COUNTED) after each is standardised over the input's
candidates (z-scores), so no part's unit dominates; parts that do not vary add nothing. Every method
is ranked by the same function; a method without correspondence maps is ranked by consistency alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
from scipy.ndimage import correlate1d, gaussian_filter

from ..data.signals import lowres
from ..pixels import psnr, to_uint8

PARTS = ("consistency", "stage1", "seam", "match")
COUNTED = ("consistency", "stage1", "match")  # the parts the total adds up
STAGE1_FACTOR = 8  # the stage1 part compares colours at 1/8 of the output's size (12x12 for 96x96)
BLUR_SIGMA = 1.0  # pixels, applied to both structure maps before their correlation


@dataclass(frozen=True)
class Score:
    """A candidate's rank score (higher is better) and its parts (None: not defined for it)."""

    total: float
    consistency: float
    stage1: float | None = None
    seam: float | None = None
    match: float | None = None

    def parts(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in PARTS if getattr(self, k) is not None}


def _gray(images: np.ndarray) -> np.ndarray:
    """(..., H, W, C) in [0, 1] -> (..., H, W) mean over channels (einsum: faster than numpy's mean over
    a short last axis)."""
    C = images.shape[-1]
    return np.einsum("...c,c->...", images, np.full(C, 1.0 / C, images.dtype))


def _gradient(gray: np.ndarray) -> np.ndarray:
    """Sobel gradient magnitude of (..., H, W) images, each image on its own (edges reflected, as scipy's sobel)."""
    gx = correlate1d(correlate1d(gray, [1.0, 2.0, 1.0], axis=-2), [-1.0, 0.0, 1.0], axis=-1)
    gy = correlate1d(correlate1d(gray, [1.0, 2.0, 1.0], axis=-1), [-1.0, 0.0, 1.0], axis=-2)
    return np.hypot(gx, gy)


def input_structure(x: np.ndarray) -> np.ndarray:
    """(H, W) structure map of an input signal (H, W, C) uint8 of the output's size.

    A mostly light input (median above mid-grey) is read as dark lines on a light ground, the
    project's edge-map convention: its line strength 1 - grey. Anything else: its gradient magnitude.
    """
    g = _gray(np.asarray(x, np.float64) / 255.0)
    s = 1.0 - g if np.median(g) > 0.5 else _gradient(g)
    return gaussian_filter(s, BLUR_SIGMA)


def structure_agreement(images: np.ndarray, x: np.ndarray) -> np.ndarray:
    """(n,) Pearson correlation of each candidate's blurred gradient magnitude with the input's structure."""
    target = input_structure(x).ravel()
    target = target - target.mean()
    grads = gaussian_filter(_gradient(_gray(np.asarray(images, np.float32))), BLUR_SIGMA, axes=(-2, -1))
    s = grads.reshape(len(grads), -1)
    s = s - s.mean(1, keepdims=True)
    denom = np.sqrt((s * s).sum(1) * (target * target).sum())
    dot = np.einsum("np,p->n", s, target)
    return np.where(denom > 0, dot / np.where(denom > 0, denom, 1.0), 0.0)


def lowres_agreement(images: np.ndarray, x: np.ndarray) -> np.ndarray:
    """(n,) PSNR (dB) between each candidate downsampled like the inputs and the low-res input x
    (outputs rounded to uint8 first, MSE floored at 1e-10); also the evaluation's input consistency."""
    factor = images.shape[1] // x.shape[0]
    small = lowres(to_uint8(images), factor)
    return psnr(small / 255.0, np.asarray(x) / 255.0)


def _unit(images: np.ndarray) -> np.ndarray:
    """Candidates as floats in [0, 1] (uint8 ones scaled)."""
    images = np.asarray(images)
    return images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images


def _low_resolution(x: np.ndarray, size: int) -> bool:
    """Whether input x is a low-resolution image of size x size outputs (else: of the output's size)."""
    return np.asarray(x).shape[0] < size


def consistency(images: np.ndarray, x: np.ndarray) -> np.ndarray:
    """(n,) agreement of candidates (n, S, S, 3) in [0, 1] with their input x (h, w, c) uint8."""
    images = _unit(images)
    x = np.asarray(x)
    if x.ndim == 2:
        x = x[:, :, None]
    if _low_resolution(x, images.shape[1]):
        return lowres_agreement(images, x)
    return structure_agreement(images, x)


def stage1_agreement(images: np.ndarray, f: np.ndarray) -> np.ndarray:
    """(n,) PSNR (dB) between candidates (n, S, S, 3) and stage 1's f(x) (S, S, 3), both in [0, 1], each
    downsampled by STAGE1_FACTOR as low-resolution inputs are made (after rounding to uint8)."""
    factor = min(STAGE1_FACTOR, images.shape[1])
    small = lowres(to_uint8(images), factor) / 255.0
    return psnr(small, lowres(to_uint8(np.asarray(f)[None]), factor)[0] / 255.0)


def input_parts(images: np.ndarray, x: np.ndarray, f: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The parts every method's candidates (n, S, S, 3) get from the input alone: consistency with x,
    and with f(x) given and an input of the output's size, stage1."""
    images = _unit(images)
    parts = {"consistency": consistency(images, x)}
    if f is not None and not _low_resolution(x, images.shape[1]):
        parts["stage1"] = stage1_agreement(images, f)
    return parts


def seam_cost(rank: np.ndarray, j: np.ndarray, residual: np.ndarray) -> float:
    """Mean seam cost over neighbouring output pixels (right and down pairs) of one correspondence map.

    rank, j (H, W): each pixel's source exemplar (row of `residual`) and flat source index;
    residual (K, H*W, 3): y - f(x) of the exemplars. For a pair p, q = p + d, the cost is the mean of
    |what p's source continued to q would give - what q got| and the same from q's side; a
    continuation that leaves the image counts the direct step |r_p - r_q|. Pairs copied from one
    source with the same offset cost exactly 0.
    """
    H, W = rank.shape
    pairs = H * (W - 1) + (H - 1) * W
    total = _seam_total(
        np.ascontiguousarray(rank, np.int64),
        np.ascontiguousarray(j, np.int64),
        np.ascontiguousarray(residual, np.float32),
    )
    return total / max(pairs, 1)


@numba.njit(cache=True, nogil=True)
def _l1(a, b):
    return abs(a[0] - b[0]) + abs(a[1] - b[1]) + abs(a[2] - b[2])


@numba.njit(cache=True, nogil=True)
def _seam_total(rank, j, residual):
    """The sum over right and down pairs of seam_cost's per-pair cost."""
    H, W = rank.shape
    total = 0.0
    for y in range(H):
        for x in range(W):
            rp, jp = rank[y, x], j[y, x]
            syp, sxp = jp // W, jp % W
            own_p = residual[rp, jp]
            for dy, dx in ((0, 1), (1, 0)):
                qy, qx = y + dy, x + dx
                if qy >= H or qx >= W:
                    continue
                rq, jq = rank[qy, qx], j[qy, qx]
                own_q = residual[rq, jq]
                step = _l1(own_p, own_q)
                syq, sxq = jq // W, jq % W
                ok_p = syp + dy < H and sxp + dx < W  # p's source continued by +d
                ok_q = syq - dy >= 0 and sxq - dx >= 0  # q's source continued by -d
                from_p = _l1(residual[rp, jp + dy * W + dx], own_q) if ok_p else step
                from_q = _l1(residual[rq, jq - dy * W - dx], own_p) if ok_q else step
                total += (from_p + from_q) / 2.0
    return total


def incoherent_pairs(rank: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(H, W-1) and (H-1, W) bool: neighbours (right, down) not copied from one source at one offset."""
    W = rank.shape[1]
    right = (rank[:, 1:] != rank[:, :-1]) | (j[:, 1:] != j[:, :-1] + 1) | (j[:, :-1] % W == W - 1)
    down = (rank[1:, :] != rank[:-1, :]) | (j[1:, :] != j[:-1, :] + W)
    return right, down


def _standardised(values: np.ndarray) -> np.ndarray:
    sd = values.std()
    return (values - values.mean()) / sd if sd > 1e-12 else np.zeros_like(values)


def combine(parts: dict[str, np.ndarray]) -> np.ndarray:
    """(n,) totals: the sum of the COUNTED parts, each standardised over the candidates."""
    n = len(next(iter(parts.values())))
    total = np.zeros(n)
    for name, values in parts.items():
        if name in COUNTED:
            total += _standardised(np.asarray(values, np.float64))
    return total


def scores(parts: dict[str, np.ndarray]) -> list[Score]:
    """One Score per candidate from its parts (each (n,), higher is better)."""
    total = combine(parts)
    return [Score(float(total[i]), **{k: float(v[i]) for k, v in parts.items()}) for i in range(len(total))]


def order(score_list: list[Score]) -> list[int]:
    """Indices best first (ties keep the enumeration order)."""
    return sorted(range(len(score_list)), key=lambda i: -score_list[i].total)
