"""The jobs behind the CLI verbs, callable from Python: train a model folder, index, synthesize.

A model folder holds config.json (the resolved configuration), stage1.safetensors and bank/ (older ones stage1.pt).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from .bank import store
from .bank.build import add_exemplars
from .errors import ConfigError
from .features import backbones
from .fileio import write_json
from .regress import checkpoint, run_folder
from .regress.precision import cpu_summary
from .regress.train import BASELINES, TrainConfig, below_baselines, evaluate_psnr, train
from .regress.unet import Stage1Config, UNet
from .synth.pipeline import BANK, own_bank, read_run_config


def write_run(root: Path, model: UNet, config: dict) -> None:
    """Write a model folder from a model and its configuration (used by tests and imports)."""
    root = Path(root)
    checkpoint.save(root / checkpoint.FILENAME, model, {"done": True})
    write_json(root / run_folder.CONFIG, {**config, "stage1": model.cfg.to_dict()})


def stage1_config(x: np.ndarray, y: np.ndarray, signal: str, width: int, levels: int) -> Stage1Config:
    h, w, c = x.shape[1:]
    if h != w:
        raise ConfigError(f"input signals must be square, got {h}x{w}")
    return Stage1Config(
        in_channels=c, input_size=h, size=y.shape[1], width=width, levels=levels, residual=(signal == "lowres")
    )


def train_run(
    root: Path, x, y, config: dict, train_cfg: TrainConfig, width: int = 16, levels: int = 4, val=None
) -> dict:
    """Train (or resume) stage 1 into `root`; returns the metrics written to root/metrics.json."""
    root = Path(root)
    cfg = stage1_config(x, y, config["signal"], width, levels)
    run_folder.claim(root, config, "stage1", cfg.to_dict(), train_cfg, "model")
    model = train(x, y, root, cfg, train_cfg)
    mean = np.asarray(y, np.float64).mean(axis=0) / 255.0  # (S, S, 3): the mean-image baseline
    metrics = run_folder.measure(lambda xs, ys: evaluate_psnr(model, xs, ys, mean), x, y, val)
    metrics["training"] = training_summary(checkpoint.read(root / checkpoint.FILENAME), train_cfg.batch, len(x))
    run_folder.write_metrics(root, metrics)
    update_model_card(root)
    return metrics


def update_model_card(root: Path) -> Path:
    """Rewrite root/README.md (the model card) from the folder's configuration, metrics and own bank
    (root/bank, or the one its bank-ref.json names)."""
    root = Path(root)
    bank = own_bank(root)
    manifest = store.read_manifest(bank) if (bank / store.MANIFEST).exists() else None
    where = f"{BANK}/" if bank == root / BANK else str(bank)
    return run_folder.write_model_card(root, manifest, where)


def training_summary(state: dict, batch: int, n: int) -> dict:
    """What a stage-1 checkpoint's training state says about the run: steps, epochs, time, speed, precision."""
    return {
        "steps": state["step"],
        "epochs": round(state["step"] * batch / n, 2),
        "pairs": n,
        "minutes": round(state["elapsed_s"] / 60, 2),
        "images_per_s": round(state["step"] * batch / max(state["elapsed_s"], 1e-9), 1),
        "precision": state.get("precision"),
        "cpu": cpu_summary(),
    }


def report_training(metrics: dict) -> list[str]:
    """Lines that say what training did and how stage 1 compares with its baselines (warnings last)."""
    t = metrics["training"]
    lines = [
        f"stage 1: {t['steps']} steps, {t['epochs']:g} epochs in {t['minutes']:.1f} min "
        f"({t['images_per_s']:.0f} images/s, {t['precision']['precision'] if t['precision'] else '?'})"
    ]
    warnings = []
    for split in ("train", "val"):
        if split in metrics:
            m = metrics[split]
            base = ", ".join(f"{BASELINES[k]} {m[k]:.2f} dB" for k in BASELINES if k in m)
            lines.append(f"{split}: stage-1 PSNR {m['stage1_psnr']:.2f} dB; baselines: {base}")
            warnings += [f"warning ({split}): {w}" for w in below_baselines(m)]
    return lines + warnings


def index_arrays(
    root: Path,
    x,
    y,
    names,
    labels,
    backbone: str | None = None,
    bank: Path | None = None,
    descriptors: int | None = None,
    progress=True,
    allow_duplicates: bool = False,
    version: int | None = None,
) -> dict:
    """Add exemplars (x, y) to the model folder's bank (created on first use); returns the manifest.

    Exemplars already in the bank are skipped unless `allow_duplicates`; `version`: the format of a
    new bank (default: the current, see bank/store.py). A bank larger than
    global_index.FLAT_LIMIT then has its global index saved (bank/global_index_build.py). The model card
    (README.md) is updated when the bank is the folder's own (root/bank, or the one its bank-ref.json names)."""
    from .bank.global_index_build import save_global_index

    root = Path(root)
    config = read_run_config(root)
    model = checkpoint.load_model(root / checkpoint.FILENAME)
    own = own_bank(root)
    bank = Path(bank) if bank else own
    manifest = add_exemplars(
        bank,
        model,
        backbone or config.get("backbone", backbones.DEFAULT),
        config["signal"],
        x,
        y,
        names,
        labels,
        descriptors=descriptors,
        progress=progress,
        allow_duplicates=allow_duplicates,
        **({} if version is None else {"version": version}),
    )
    save_global_index(bank)
    if bank.resolve() == own.resolve():
        update_model_card(root)
    return manifest


def synthesize_to_folder(model, inputs, names, out: Path, grid=None, targets=None, **control) -> list[Path]:
    """Synthesize every input and write its folder of PNGs, correspondences and an HTML page.

    control: the exemplar restrictions of PixelNN.synthesize (labels, exemplar_ids, like, like_k, regions).
    """
    from .report.result_page import write_index, write_result

    out = Path(out)
    pages, used = [], set()
    for i, (x, name) in enumerate(tqdm(list(zip(inputs, names)), desc="synthesizing", unit="input")):
        result = model.synthesize(x, grid=grid, **control)
        target = None if targets is None else targets[i]
        folder, k = _safe(name), 1
        while folder in used:  # 'a b/c.png' and 'a_b/c.png' (or c.png, c.jpg) must not share a folder
            folder, k = f"{_safe(name)}-{k + 1}", k + 1
        used.add(folder)
        pages.append(write_result(out / folder, result, model.bank, target=target, title=name))
    write_index(out, pages)
    return pages


def _safe(name: str) -> str:
    stem = Path(name).with_suffix("").as_posix()
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in stem)[:80] or "input"
