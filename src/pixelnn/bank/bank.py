"""An opened exemplar bank: exemplars addressed by id across shards, plus its global index."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import BankError, ConfigError
from . import store
from .global_index import open_global_index


class Bank:
    def __init__(self, root: Path, manifest: dict, shards: list[store.Shard]) -> None:
        self.root = Path(root)
        self.manifest = manifest
        self.shards = shards
        self.offsets = np.cumsum([0] + [len(s) for s in shards])  # shard i holds ids offsets[i]..offsets[i+1]-1
        self.names: list[str] = [n for s in shards for n in s.names]
        self.labels: list[str | None] = [lab for s in shards for lab in s.labels]
        self.index = open_global_index(self.root, manifest, shards)  # memory-mapped: nothing is built here
        self.encoding = store.read_encoding(self.root, manifest)  # how f and descriptors are stored

    @classmethod
    def open(cls, root: Path) -> Bank:
        manifest = store.read_manifest(root)
        shards = [store.read_shard(root, entry, manifest) for entry in manifest["shards"]]
        return cls(root, manifest, shards)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def check_ids(self, ids) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) and (ids.min() < 0 or ids.max() >= len(self)):
            raise ConfigError(f"exemplar ids must be in 0..{len(self) - 1}; got {ids.min()}..{ids.max()}")
        return ids

    def _locate(self, ids) -> list[tuple[int, int]]:
        ids = self.check_ids(ids)
        shard = np.searchsorted(self.offsets, ids, side="right") - 1
        return [(int(s), int(i - self.offsets[s])) for s, i in zip(shard, ids)]

    def gather(self, key: str, ids) -> np.ndarray:
        """Rows of array `key` ('f', 'y', 'x' or 'global_') for the given exemplar ids, in order."""
        return np.stack([np.asarray(getattr(self.shards[s], key)[i]) for s, i in self._locate(ids)])

    def stage1(self, ids) -> np.ndarray:
        """f(x_n) of the given ids as float32 (n, S, S, 3) in [0, 1], whatever the bank stores."""
        return self.encoding.f_values(self.gather("f", ids))

    def descriptors(self, ids) -> torch.Tensor:
        """Reduced pixel descriptors of the given ids, decoded: float32 (n, S, S, d), not normalised."""
        return self.encoding.desc_values(self.gather("desc", ids), self.manifest["size"])

    def ids_with_labels(self, labels: list[str]) -> np.ndarray:
        """Ids whose label equals one of `labels` or lies below it ('Boots' matches 'Boots/Ankle')."""
        wanted = set(labels)
        known = {lab for lab in self.labels if lab is not None}
        if not known:
            raise ConfigError(f"bank {self.root} has no labels; build it with --labels to restrict by label")

        def match(lab: str | None) -> bool:
            return lab is not None and any(lab == w or lab.startswith(w + "/") for w in wanted)

        ids = np.array([i for i, lab in enumerate(self.labels) if match(lab)], dtype=np.int64)
        if not len(ids):
            examples = ", ".join(sorted(known)[:8])
            raise ConfigError(f"no exemplar has label {', '.join(labels)}; labels in this bank include: {examples}")
        return ids

    def search(self, xq: np.ndarray, k: int, subset: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Global k-NN by cosine similarity: xq (Q, G) -> D (Q, k) similarities, I (Q, k) ids.

        With `subset`, only those exemplar ids are searched. Fewer than k exemplars give -1 ids.
        Exact for a small bank or a small subset; above that, see bank/global_index.py.
        """
        if len(self) == 0:
            raise BankError(f"bank {self.root} is empty")
        xq = np.ascontiguousarray(xq, dtype=np.float32)
        if subset is not None and len(subset) == 0:
            raise ConfigError("the exemplar restriction leaves no exemplar to copy from")
        return self.index.search(xq, k, subset)
