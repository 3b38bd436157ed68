"""Composition: out_i = f_i(x) + (y_jk - f_j(x_k)) for each pixel's chosen source (k, j)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .coherence import finish, vote_correction
from .grid import Spec


@dataclass
class Correspondence:
    """Where every output pixel came from: bank id, source row/column and cosine similarity."""

    exemplar: np.ndarray  # (H, W) int64 bank ids
    sy: np.ndarray  # (H, W) int32 source row
    sx: np.ndarray  # (H, W) int32 source column
    sim: np.ndarray  # (H, W) float32
    # (H, W, 9) patch-voting weights over the 3x3 neighbours' continued sources (synth/coherence.py);
    # None: every pixel is its own source's copy (Eq. 3 and the coherence prior)
    weights: np.ndarray | None = None

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"exemplar": self.exemplar, "sy": self.sy, "sx": self.sx, "sim": self.sim}
        return out if self.weights is None else {**out, "weights": self.weights}

    def save(self, path) -> None:
        from ..fileio import write_npz

        write_npz(path, **self.arrays())

    @classmethod
    def load(cls, path) -> Correspondence:
        with np.load(path) as z:
            return cls(z["exemplar"], z["sy"], z["sx"], z["sim"], z["weights"] if "weights" in z.files else None)

    def shares(self) -> list[tuple[int, float]]:
        """(bank id, share of output pixels) for every source exemplar, largest share first."""
        ids, counts = np.unique(self.exemplar, return_counts=True)
        order = np.argsort(-counts, kind="stable")
        return [(int(ids[i]), counts[i] / self.exemplar.size) for i in order]


Matches = dict[int, tuple[np.ndarray, np.ndarray]]  # window -> (sim (K, H, W), j (K, H, W)) by neighbour rank


def choose(matches: Matches, spec: Spec, available: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For one candidate: per pixel the best rank in its pool and the source index in that exemplar.

    Returns (sim (H, W), rank (H, W) 0-based global rank, j (H, W) flat source index).
    """
    lo = spec.first - 1
    hi = min(lo + spec.n, available)
    sims, js = (a[lo:hi] for a in matches[spec.window])  # (n, H, W)
    best = sims.argmax(0)[None]  # ties: the better-ranked neighbour
    return np.take_along_axis(sims, best, 0)[0], lo + best[0], np.take_along_axis(js, best, 0)[0]


def rebuild(corr: Correspondence, fq: np.ndarray, f_of, y_of) -> np.ndarray:
    """A candidate rebuilt from its correspondence map alone: fq (H, W, 3) float32 f(x); f_of / y_of
    map bank ids (n,) to the exemplars' f(x_n) and y_n as (n, H, W, 3) float32 in [0, 1]."""
    H, W = corr.exemplar.shape
    ids, index = np.unique(corr.exemplar, return_inverse=True)
    residual = (np.asarray(y_of(ids), np.float32) - np.asarray(f_of(ids), np.float32)).reshape(len(ids), H * W, 3)
    rank, j = index.reshape(H, W), corr.sy.astype(np.int64) * W + corr.sx
    correction = None if corr.weights is None else vote_correction(rank, j, residual, corr.weights)
    return compose(fq, np.asarray(f_of(ids), np.float32), np.asarray(y_of(ids), np.float32), rank, j, correction)


def compose(
    fq: np.ndarray,
    f_ex: np.ndarray,
    y_ex: np.ndarray,
    rank: np.ndarray,
    j: np.ndarray,
    correction: np.ndarray | None = None,
) -> np.ndarray:
    """fq (H, W, 3), f_ex and y_ex (K, H, W, 3) float32 in [0, 1]; rank, j (H, W) -> (H, W, 3) in [0, 1].

    correction (H, W, 3): added before clipping (patch voting's, synth/coherence.vote_correction)."""
    return finish(copied(fq, f_ex, y_ex, rank, j), correction)


def copied(fq: np.ndarray, f_ex: np.ndarray, y_ex: np.ndarray, rank: np.ndarray, j: np.ndarray) -> np.ndarray:
    """f(x) plus each pixel's copied residual y - f(x_k), before any correction and clipping: (H, W, 3)."""
    K, H, W, _ = f_ex.shape
    src_y = y_ex.reshape(K, H * W, 3)[rank, j]  # (H, W, 3)
    src_f = f_ex.reshape(K, H * W, 3)[rank, j]
    return src_y + (fq - src_f)
