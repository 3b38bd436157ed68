"""The Python API: load a trained model with its bank and synthesize many outputs for an input.

    model = PixelNN.load("runs/celeba")
    result = model.synthesize(x)                 # x: the input signal, uint8 (h, w, c)
    result.candidates[0].image                   # (S, S, 3) float in [0, 1]
    result.candidates[0].corr.exemplar           # (S, S) bank id each pixel was copied from
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..bank import store
from ..bank.bank import Bank
from ..bank.build import expected_manifest
from ..errors import ConfigError
from ..features.backbones import describe, load_backbone
from ..regress import checkpoint
from ..regress.unet import UNet, predict
from ..search.pixel_match import match
from . import grid as grids
from .compose import Correspondence, Matches, choose, compose

RUN_CONFIG = "config.json"


@dataclass
class Candidate:
    spec: grids.Spec
    image: np.ndarray  # (S, S, 3) float32 in [0, 1]
    corr: Correspondence


@dataclass
class Result:
    input: np.ndarray  # (h, w, c) uint8, the input signal
    stage1: np.ndarray  # (S, S, 3) float32, f(x) rounded as the bank stores it
    neighbours: np.ndarray  # (K,) bank ids of the global nearest neighbours, best first
    neighbour_sims: np.ndarray  # (K,) their cosine similarities
    candidates: list[Candidate]


def read_run_config(run: Path) -> dict:
    path = Path(run) / RUN_CONFIG
    if not path.exists():
        raise ConfigError(f"{run} is not a PixelNN model folder (missing {RUN_CONFIG}); train one with `pixelnn train`")
    return json.loads(path.read_text())


class PixelNN:
    def __init__(self, model: UNet, bank: Bank, config: dict) -> None:
        self.model = model
        self.bank = bank
        self.config = config
        self.backbone_name = bank.manifest["backbone"]
        self.backbone = load_backbone(self.backbone_name)
        store.check_compatible(
            bank.manifest,
            expected_manifest(model, self.backbone_name, config["signal"], bank.manifest["global_dim"]),
            bank.root,
        )

    @classmethod
    def load(cls, run: str | Path, bank: str | Path | None = None) -> "PixelNN":
        """Open a model folder (config.json, stage1.pt) and its bank (default: run/bank)."""
        run = Path(run)
        config = read_run_config(run)
        model = checkpoint.load_model(run / checkpoint.FILENAME)
        return cls(model, Bank.open(Path(bank) if bank else run / "bank"), config)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        cfg = self.model.cfg
        return (cfg.input_size, cfg.input_size, cfg.in_channels)

    def check_input(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim == 2:
            x = x[:, :, None]
        if x.shape != self.input_shape or x.dtype != np.uint8:
            raise ConfigError(
                f"this model takes {self.config['signal']} inputs of shape {self.input_shape} uint8; "
                f"got {x.shape} {x.dtype}. Use --from-photo (or input_from_photo) to make one from a photo."
            )
        return x

    def input_from_photo(self, photo: np.ndarray) -> np.ndarray:
        """Make this model's input signal from an RGB photo (H, W, 3) uint8 of any size."""
        from ..data.images import fit_square
        from ..data.signals import make_signal

        y = fit_square(np.asarray(photo), self.model.cfg.size)[None]
        if self.config["signal"] in ("pairs", "folders"):
            raise ConfigError("this model was trained on paired files: give it an input image, not a photo")
        return make_signal(self.config["signal"], y, factor=self.config.get("factor", 8))[0]

    def stage1(self, x: np.ndarray) -> np.ndarray:
        """f(x) as (S, S, 3) float32, rounded to float16 like the bank's f(x_n)."""
        f = predict(self.model, self.check_input(x)[None])[0].permute(1, 2, 0).numpy()
        return f.astype(np.float16).astype(np.float32)

    def restrict(self, labels: list[str] | None = None, exemplar_ids=None) -> np.ndarray | None:
        """Bank ids allowed by a label list and/or an id list (their intersection); None = all."""
        subset = None
        if labels:
            subset = self.bank.ids_with_labels(list(labels))
        if exemplar_ids is not None:
            ids = np.unique(np.asarray(exemplar_ids, dtype=np.int64))
            self.bank._locate(ids)  # range check with a clear message
            subset = ids if subset is None else np.intersect1d(subset, ids)
        if subset is not None and len(subset) == 0:
            raise ConfigError("the exemplar restriction leaves no exemplar to copy from")
        return subset

    def synthesize(self, x: np.ndarray, grid: list[grids.Spec] | str | None = None, labels=None, exemplar_ids=None) -> Result:
        """All candidates of `grid` (default: the authors' 72) for one input signal x."""
        specs = grids.parse(grid) if isinstance(grid, str) else (grid or grids.authors_72())
        subset = self.restrict(labels, exemplar_ids)
        fq = self.stage1(x)  # (S, S, 3)
        q, gq = describe(self.backbone, torch.from_numpy(fq).permute(2, 0, 1)[None])
        sims, ids = self.bank.search(gq.numpy(), grids.neighbours_needed(specs), subset)
        ids, sims = ids[0][ids[0] >= 0], sims[0][ids[0] >= 0]
        specs = [s for s in specs if s.first - 1 < len(ids)]
        f_ex = self.bank.gather("f", ids).astype(np.float32)  # (K, S, S, 3)
        y_ex = self.bank.gather("y", ids).astype(np.float32) / 255.0
        matches = self._match(q[0], f_ex, sorted({s.window for s in specs}))
        candidates = [self._candidate(s, matches, fq, f_ex, y_ex, ids) for s in specs]
        return Result(self.check_input(x), fq, ids, sims, candidates)

    def _match(self, q: torch.Tensor, f_ex: np.ndarray, windows: list[int]) -> Matches:
        """Best source pixel per (window, neighbour rank), shared by every candidate."""
        out: Matches = {w: [] for w in windows}
        for f in f_ex:
            e, _ = describe(self.backbone, torch.from_numpy(f).permute(2, 0, 1)[None])
            for w, m in match(q, e[0], windows).items():
                out[w].append(m)
        return out

    def _candidate(self, spec, matches, fq, f_ex, y_ex, ids) -> Candidate:
        sim, rank, j = choose(matches, spec, len(ids))
        W = fq.shape[1]
        rank, j = rank.numpy(), j.numpy()
        corr = Correspondence(ids[rank].astype(np.int64), (j // W).astype(np.int32), (j % W).astype(np.int32), sim.numpy())
        return Candidate(spec, compose(fq, f_ex, y_ex, rank, j), corr)
