"""Composition: out_i = f_i(x) + (y_jk - f_j(x_k)) for each pixel's chosen source (k, j)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .grid import Spec


@dataclass
class Correspondence:
    """Where every output pixel came from: bank id, source row/column and cosine similarity."""

    exemplar: np.ndarray  # (H, W) int64 bank ids
    sy: np.ndarray  # (H, W) int32 source row
    sx: np.ndarray  # (H, W) int32 source column
    sim: np.ndarray  # (H, W) float32

    def save(self, path) -> None:
        from ..fileio import write_npz

        write_npz(path, exemplar=self.exemplar, sy=self.sy, sx=self.sx, sim=self.sim)

    @classmethod
    def load(cls, path) -> "Correspondence":
        with np.load(path) as z:
            return cls(z["exemplar"], z["sy"], z["sx"], z["sim"])

    def shares(self) -> list[tuple[int, float]]:
        """(bank id, share of output pixels) for every source exemplar, largest share first."""
        ids, counts = np.unique(self.exemplar, return_counts=True)
        order = np.argsort(-counts, kind="stable")
        return [(int(ids[i]), counts[i] / self.exemplar.size) for i in order]


Matches = dict[int, list[tuple[torch.Tensor, torch.Tensor]]]  # window -> per rank (sim (H,W), j (H,W))


def choose(matches: Matches, spec: Spec, available: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For one candidate: per pixel the best rank in its pool and the source index in that exemplar.

    Returns (sim (H, W), rank (H, W) 0-based global rank, j (H, W) flat source index).
    """
    ranks = [r for r in spec.ranks if r < available]
    sims = torch.stack([matches[spec.window][r][0] for r in ranks])  # (n, H, W)
    js = torch.stack([matches[spec.window][r][1] for r in ranks])
    best = sims.argmax(0)  # ties: the better-ranked neighbour
    sim = sims.gather(0, best[None])[0]
    j = js.gather(0, best[None])[0]
    return sim, torch.as_tensor(ranks)[best], j


def compose(fq: np.ndarray, f_ex: np.ndarray, y_ex: np.ndarray, rank: np.ndarray, j: np.ndarray) -> np.ndarray:
    """fq (H, W, 3), f_ex and y_ex (K, H, W, 3) float32 in [0, 1]; rank, j (H, W) -> (H, W, 3) in [0, 1]."""
    K, H, W, _ = f_ex.shape
    src_y = y_ex.reshape(K, H * W, 3)[rank, j]  # (H, W, 3)
    src_f = f_ex.reshape(K, H * W, 3)[rank, j]
    return np.clip(src_y + (fq - src_f), 0.0, 1.0)
