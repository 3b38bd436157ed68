"""The evaluation job: each method's candidates per input, their metrics, Rand-1 / Oracle, tables, figures.

    OUT/cache/cand-00000.npz      the candidates of input 0 for every method (uint8), resumable
    OUT/cache/metrics-00000.npz   the per-candidate metrics of input 0, resumable
    OUT/figures/*.png             comparison grid, multiple outputs, frequency plot, correspondences
    OUT/report.json, report.md    the tables and the definitions of the metrics

Methods: 'stage1' (f(x), one output), 'global' (Eq. 2: the 10 nearest exemplars copied whole; these
are the candidates 1:r:1 of the paper72 grid, so they are taken out of the same synthesize call),
'pixelnn' (the 72 candidates of the paper72 grid) and 'pix2pix' (n_samples generator calls with
dropout active). Every file is written atomically; a cache file whose key (model, bank, pix2pix
weights, seed, sample count, input and photo) differs is recomputed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import ConfigError
from ..fileio import write_npz
from ..synth.coherence import DEFAULT_COPY
from . import cache, figures, tables
from .aggregate import aggregate
from .candidates import candidates
from .input_metrics import input_metrics
from .methods import KEPT_CORR, METHODS, N_CORR, N_SAMPLES, SPREAD_EXEMPLARS, SPREAD_PAIRS
from .metrics import residual_spread


@dataclass
class Evaluation:
    """What evaluate_to_folder computed (also written to report.json)."""

    report: dict
    out: Path
    figures: list[Path] = field(default_factory=list)


def evaluate_to_folder(
    model,
    x: np.ndarray,
    y: np.ndarray,
    names: list[str],
    out: Path,
    generator=None,
    seed: int = 0,
    n_samples: int = N_SAMPLES,
    meta: dict | None = None,
    progress: bool = True,
    copy: str = DEFAULT_COPY,
    faces: bool = False,
) -> Evaluation:
    """Evaluate a PixelNN model (and a pix2pix generator) on inputs x (N, h, w, c) with photos y (N, S, S, 3).

    faces: also score every output by the normals estimated on it against the photo's, and whether a face
    is found in it (methods.FACE_METRICS; needs the optional extra of data/face_normals.py).
    Resumes from OUT/cache; writes OUT/report.json, OUT/report.md and OUT/figures/*.png.
    """
    out = Path(out)
    check_inputs(model, generator, x, y, names)
    if faces:
        from ..data.face_normals import require

        require()  # the optional extra, before any work
    signal = model.config["signal"]
    factor = int(model.config.get("factor", 8))
    methods = [m for m in METHODS if m != "pix2pix" or generator is not None]
    run = cache.run_key(model.bank.manifest, generator, seed, n_samples, copy)
    per_input = []
    kept: list[dict] = []  # the candidates of the first inputs, for figures
    bar = tqdm(range(len(x)), desc="evaluating", unit="input", disable=not progress)
    for i in bar:
        ckey = cache.candidates_key(run, x[i], y[i])
        cand_path = cache.candidates_path(out / "cache", i)
        cands = cache.read(cand_path, ckey)
        if cands is None or (i < N_CORR and any(cache.corr_of(cands, kind) is None for kind in KEPT_CORR)):
            bar.set_postfix_str("synthesizing")
            cands = candidates(model, x[i], i, generator, seed, n_samples, y[i], copy)
            write_npz(cand_path, key=np.array(ckey), **cands)
        mkey = cache.metrics_key(ckey, faces)
        met_path = cache.metrics_path(out / "cache", i)
        met = cache.read(met_path, mkey)
        if met is None:
            bar.set_postfix_str("metrics")
            met = input_metrics(cands, x[i], y[i], i, signal, factor, seed, faces)
            write_npz(met_path, key=np.array(mkey), **met)
        per_input.append(met)
        if i < figures.N_SHOWN:
            kept.append(cands)
    bar.close()
    summary = aggregate(per_input, methods, signal, faces)
    fig_paths = figures.write_all(out / "figures", model, kept, x, y, per_input, summary, methods, seed)
    bank = bank_spread(model.bank, seed)
    rep = tables.build(
        summary, methods, signal, factor, len(x), seed, n_samples, meta or {}, fig_paths, out, bank, faces
    )
    tables.write(out, rep)
    return Evaluation(rep, out, fig_paths)


def bank_spread(bank, seed: int) -> dict:
    """The residual spread (metrics.residual_spread) of up to SPREAD_EXEMPLARS exemplars of the bank,
    drawn with the evaluation's seed: how far apart copies of unrelated exemplars' residuals lie."""
    rng = np.random.default_rng([seed, len(bank)])
    ids = np.sort(rng.choice(len(bank), size=min(len(bank), SPREAD_EXEMPLARS), replace=False))
    y = bank.gather("y", ids).astype(np.float32) / 255.0
    spread = residual_spread(y, bank.stage1(ids), SPREAD_PAIRS, seed)
    return {"residual_spread": spread, "exemplars": len(ids), "pairs": SPREAD_PAIRS}


def check_inputs(model, generator, x: np.ndarray, y: np.ndarray, names: list[str]) -> None:
    """Refuse, before any work, inputs and photos that do not fit each other, the model or the generator."""
    if len(x) == 0:
        raise ConfigError("no validation inputs to evaluate")
    if len(x) != len(y) or len(names) != len(x):
        raise ConfigError("inputs, photos and names differ in number")
    S = model.model.cfg.size
    if y.shape[1:] != (S, S, 3):
        raise ConfigError(f"the photos are {y.shape[1:]}, this model makes {(S, S, 3)}")
    if generator is not None:
        gcfg = generator.cfg
        if (gcfg.input_size, gcfg.input_size, gcfg.in_channels) != model.input_shape or gcfg.size != S:
            raise ConfigError(
                f"the pix2pix model takes {gcfg.input_size}x{gcfg.input_size}x{gcfg.in_channels} inputs "
                f"to {gcfg.size}x{gcfg.size} "
                f"outputs; the PixelNN model {model.input_shape} to {S}x{S}: train both on the same data"
            )
