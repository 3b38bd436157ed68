"""The stage-1 outputs f(x_k) a bank stores: from the model itself, or cross-fitted from fold models.

A stage 1 fits the pairs it trained on better than new inputs; on a small training set it learns
them (edges2shoes, 1,000 pairs: 24.0 dB on its training pairs, 17.8 dB held out). The residuals
y_k - f(x_k) that candidates copy are then far weaker than a new input's own error, and candidates
barely differ. A cross-fitted bank (`pixelnn train --folds K`) splits the exemplars into K folds
by content hash; fold model k trains on the exemplars outside fold k and gives the stored f(x_k) of
the exemplars in fold k, so every stored output is one of a stage 1 that never saw that pair, as a
query's is. Queries still use the model itself.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import BankError
from ..regress import checkpoint, run_folder
from ..regress.unet import UNet, predict

log = logging.getLogger(__name__)

FOLDS = "folds"  # a model folder's sub-folder of fold models: folds/0, folds/1, ...
STAGE1_BATCH = 16  # fastest of 1, 8, 16, 32 on 2 cores (docs/benchmarks.md)


def stage1_outputs(model: UNet, x: np.ndarray, batch: int = STAGE1_BATCH, progress: bool = True) -> np.ndarray:
    """f(x) as stored in a bank: (N, S, S, 3) float16. Queries use the same rounding.

    Computed in batches. A query computes its f(x) alone, and convolution kernels may round
    differently for one image than for a batch, so a bank exemplar given as a query may differ
    from its stored f(x_n) by one float16 step at a few pixels (tests/test_bank_build.py); the
    pixel search treats such near-equal similarities as ties won by the nearest pixel, so the
    exemplar still copies itself (not in a cross-fitted bank, whose f(x_n) is a fold model's).
    """
    outs = []
    for i in tqdm(range(0, len(x), batch), desc="stage 1", disable=not progress, leave=False, unit_scale=batch):
        outs.append(predict(model, x[i : i + batch], batch=batch).permute(0, 2, 3, 1).half().numpy())
    if not outs:
        return np.zeros((0, model.cfg.size, model.cfg.size, 3), np.float16)
    return np.concatenate(outs)


def fold_of(hashes: list[str], folds: int) -> np.ndarray:
    """The fold (0 .. folds-1) of each exemplar, from its content hash (store.exemplar_hashes): the same
    pair falls in the same fold when a model's folds are trained and when its bank is built."""
    return np.array([int(h[:12], 16) % folds for h in hashes], dtype=np.int64)


def fold_folder(root: Path, k: int) -> Path:
    return Path(root) / FOLDS / str(k)


def fold_record(k: int, folds: int) -> dict:
    """What a fold model's metrics.json says of it once trained (workflow.train_folds)."""
    return {"index": k, "of": folds}


def cross_fitted_outputs(folds: tuple[UNet, ...], x: np.ndarray, hashes: list[str], progress=True) -> np.ndarray:
    """Stored f(x_k) of each exemplar from the fold model that did not train on it, (N, S, S, 3) float16."""
    which = fold_of(hashes, len(folds))
    out = np.empty((len(x), folds[0].cfg.size, folds[0].cfg.size, 3), np.float16)
    for k, model in enumerate(folds):
        rows = np.flatnonzero(which == k)
        if len(rows):
            out[rows] = stage1_outputs(model, x[rows], progress=progress)
    return out


def bank_outputs(model: UNet, folds: tuple[UNet, ...], x: np.ndarray, hashes: list[str], progress=True) -> np.ndarray:
    """The f(x_k) a bank stores: cross-fitted when there are fold models, else the model's own."""
    if folds:
        return cross_fitted_outputs(folds, x, hashes, progress)
    return stage1_outputs(model, x, progress=progress)


def manifest_entry(folds: tuple[UNet, ...]) -> dict | None:
    """What a bank's manifest says of its stored outputs' origin ('cross_fit'; None: the model's own)."""
    if not folds:
        return None
    return {"folds": len(folds), "fingerprints": [checkpoint.fingerprint(m) for m in folds]}


def load_folds(root: Path, main: UNet) -> tuple[UNet, ...]:
    """The finished fold models of the model folder `root` (none when it has no folds/ folder).

    Refused (BankError) when a fold is missing, unfinished (its metrics.json does not yet name it) or
    of another architecture than the model: a bank must not be built from half of its folds."""
    base = Path(root) / FOLDS
    if not base.is_dir():
        return ()
    found = sorted(int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit())
    count = max(found) + 1 if found else 0
    if count < 2 or found != list(range(count)):
        raise BankError(f"{base} holds folds {found}, not 0 .. K-1 with K >= 2; rerun `pixelnn train --folds K`")
    folds = []
    for k in found:
        folder = fold_folder(root, k)
        done = run_folder.read_metrics(folder).get("fold") == fold_record(k, count)
        if not done or not checkpoint.exists(folder / checkpoint.FILENAME):
            raise BankError(f"fold {k} of {count} ({folder}) is not finished; rerun `pixelnn train --folds {count}`")
        model = checkpoint.load_model(folder / checkpoint.FILENAME)
        if _architecture(model) != _architecture(main):
            raise BankError(f"fold {k} ({folder}) has another architecture than the model it belongs to")
        folds.append(model)
    log.info("bank: f(x_k) cross-fitted by %d fold models (%s)", count, base)
    return tuple(folds)


def _architecture(model: UNet) -> dict:
    cfg = model.cfg.to_dict()
    del cfg["zero_head"]  # how training starts, not what the network computes
    return cfg
