"""Control over the exemplars: sets restricted by label, id list or example image, per region of
the output; and label transfer through correspondences (the paper's Discussion)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from . import LIKE_K
from .compose import Correspondence, Matches


@dataclass
class ExemplarSet:
    """Which exemplars may be copied from, and (for a region) where in the output.

    labels: keep exemplars with one of these labels ('Boots' also matches 'Boots/Ankle');
    ids: keep these bank ids; like: an example photo whose like_k nearest exemplars are kept
    ("looks like this"); mask: (S, S) bool, the output pixels this set governs (None: all).
    Conditions combine by intersection.
    """

    labels: Sequence[str] | None = None
    ids: Sequence[int] | None = None
    like: np.ndarray | None = None
    like_k: int = LIKE_K
    mask: np.ndarray | None = None

    def describe(self) -> str:
        parts = []
        if self.labels:
            parts.append(f"labels {', '.join(self.labels)}")
        if self.ids is not None:
            parts.append(f"{len(self.ids)} chosen ids")
        if self.like is not None:
            parts.append(f"the {self.like_k} exemplars like the example image")
        return "(" + (" and ".join(parts) or "none") + ")"

    def checked(self, size: int) -> ExemplarSet:
        """A region must have a mask of the output's shape that selects at least one pixel."""
        if self.mask is None:
            raise ConfigError("a region needs a mask: an (S, S) boolean array of the output pixels it governs")
        mask = np.asarray(self.mask)
        if mask.shape != (size, size):
            raise ConfigError(f"a region mask must be ({size}, {size}) like the output, got {mask.shape}")
        mask = mask.astype(bool)
        if not mask.any():
            raise ConfigError("a region mask selects no pixel")
        if self.like_k < 1:
            raise ConfigError("like_k must be at least 1")
        return ExemplarSet(self.labels, self.ids, self.like, self.like_k, mask)


@dataclass
class Pool:
    """One exemplar set's global neighbours and their matches, ready for every candidate."""

    ids: np.ndarray  # (K,) bank ids, best first
    sims: np.ndarray  # (K,) global cosine similarities
    f_ex: np.ndarray  # (K, S, S, 3) float32
    y_ex: np.ndarray  # (K, S, S, 3) float32 in [0, 1]
    matches: Matches
    # the exemplars' pixel descriptors, for the coherence prior: (K, S, S, d) reduced (fast search)
    # or (K, D, S, S) full hypercolumns (exact search); None where not kept
    desc: object = None


def region_owner(masks: list[np.ndarray | None], shape: tuple[int, int]) -> np.ndarray:
    """(H, W) index of the set governing each pixel: 0 (the whole-image set) unless a later mask covers it."""
    owner = np.zeros(shape, np.int64)
    for i, mask in enumerate(masks):
        if mask is not None:
            owner[mask] = i
    return owner


def transfer_labels(corr: Correspondence, label_maps: np.ndarray | Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Per-pixel labels of the output, read from the exemplars' label images through `corr`.

    label_maps: (N, S, S) array indexed by bank id, or a function ids (n,) -> (n, S, S).
    Returns (S, S) with label_maps[exemplar, sy, sx] at every pixel.
    """
    used, index = np.unique(corr.exemplar, return_inverse=True)
    maps = np.asarray(label_maps[used] if isinstance(label_maps, np.ndarray) else label_maps(used))
    if maps.shape[0] != len(used) or maps.shape[1:3] != corr.exemplar.shape:
        raise ConfigError(f"label images must be {corr.exemplar.shape} per exemplar, got {maps.shape[1:]}")
    return maps[index.reshape(corr.exemplar.shape), corr.sy, corr.sx]
