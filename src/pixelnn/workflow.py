"""The jobs behind the CLI verbs, callable from Python: train a model folder, index, synthesize.

A model folder holds config.json (the resolved configuration), stage1.safetensors and bank/ (older ones stage1.pt).
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .bank import store
from .bank.build import CHUNK, PROJECTION_IMAGES, Exemplars, add_chunks
from .bank.stage1 import FOLDS, fold_folder, fold_of, fold_record, load_folds
from .data.notice import warn_data
from .data.prepare import prepare
from .data.sources import Sample
from .errors import ConfigError, DataError
from .features import backbones
from .fileio import write_json
from .model_folder import ModelFolder
from .regress import checkpoint, run_folder
from .regress.precision import cpu_summary
from .regress.train import BASELINES, TrainConfig, below_baselines, evaluate_psnr, train
from .regress.unet import Stage1Config, UNet
from .report.batch import Batch, Job, folder_names, run_batch
from .synth.request import Request

log = logging.getLogger(__name__)


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
    ModelFolder(root).write_card()
    return metrics


def train_folds(
    root: Path, x, y, config: dict, train_cfg: TrainConfig, folds: int, width: int = 16, levels: int = 4, val=None
) -> list[dict]:
    """Train (or resume) the fold models of a cross-fitted bank into root/folds/k (bank/stage1.py), after
    the model in root: fold k on the pairs outside fold k, for as many epochs as that model trained (its
    steps scaled by the share of pairs kept), so K folds cost K - 1 times its training. Folds of another
    K are removed first. Returns each fold's metrics."""
    if folds < 2:
        raise ConfigError(f"--folds must be at least 2 (got {folds}): with one fold no model is left to train")
    trained = run_folder.read_metrics(root).get("training", {}).get("steps")
    if not trained:
        raise ConfigError(f"{root} has no finished stage 1 to size the folds by; train it first")
    first = fold_folder(root, 0) / run_folder.CONFIG  # written when fold 0 starts: an unfinished fold resumes
    old = run_folder.read_config(first).get("fold") if first.exists() else None
    if (Path(root) / FOLDS).is_dir() and old != fold_record(0, folds):
        log.info("removing %s: its folds were not made for --folds %d", Path(root) / FOLDS, folds)
        shutil.rmtree(Path(root) / FOLDS)
    which = fold_of(store.exemplar_hashes(x, y), folds)
    out = []
    for k in range(folds):
        rows = np.flatnonzero(which != k)
        if not len(rows):
            raise ConfigError(f"{len(x)} training pairs are too few for {folds} folds: fold {k + 1} has none to train")
        steps = max(1, round(trained * len(rows) / len(x)))
        log.info("fold %d of %d: %d of %d pairs, %d steps", k + 1, folds, len(rows), len(x), steps)
        cfg = replace(train_cfg, minutes=None, steps=steps, epochs=0)
        folder, record = fold_folder(root, k), fold_record(k, folds)
        metrics = train_run(folder, x[rows], y[rows], {**config, "fold": record}, cfg, width, levels, val)
        metrics["fold"] = record
        run_folder.write_metrics(folder, metrics)
        out.append(metrics)
    return out


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
    chunk: int | None = None,
    ray: str | None = None,
    version: int | None = None,
) -> dict:
    """Add exemplars (x, y) to the model folder's bank (created on first use); returns the manifest.

    The exemplars are computed and committed `chunk` at a time (default build.CHUNK), one shard each,
    so memory does not grow with their number; with `ray` (an address, or 'auto') the chunks are
    computed by tasks on a Ray cluster and committed together (distributed/ray_index.py).
    Exemplars already in the bank are skipped unless `allow_duplicates`; `version`: the format of a
    new bank (default: the current, see bank/store.py; the Ray build makes the current); backbone, descriptors
    and version are refused for an existing bank whose own differ. A bank larger than
    global_index.FLAT_LIMIT then has its global index saved (bank/global_index_build.py). The model card
    (README.md) is updated when the bank is the folder's own (root/bank, or the one its bank-ref.json names)."""
    exemplars = Exemplars(x, y, names, labels)
    job = IndexJob.of(root, bank, backbone, descriptors, allow_duplicates, progress, version)
    if ray:
        from .distributed.ray_index import index_on_ray

        pieces = lambda n: list(exemplars.chunks(n))  # noqa: E731
        return job.finish(index_on_ray(ray, job, pieces, lambda: exemplars.x, len(exemplars), chunk))
    chunks = exemplars.chunks(chunk or CHUNK)
    total = len(exemplars)
    added = add_chunks(
        job.bank,
        job.model,
        job.backbone,
        job.signal,
        chunks,
        *job.options,
        total,
        version or store.VERSION,
        folds=job.folds,
    )
    return job.finish(added)


def index_samples(
    root: Path,
    samples: list[Sample],
    size: int,
    signal: str | None,
    factor: int,
    backbone: str | None = None,
    bank: Path | None = None,
    descriptors: int | None = None,
    progress=True,
    allow_duplicates: bool = False,
    chunk: int | None = None,
    ray: str | None = None,
) -> dict:
    """index_arrays for the samples of a data folder, read and prepared (data/prepare.py) one chunk at a
    time, so that neither the images nor the bank's arrays are ever all in memory; on Ray each task
    reads its own chunk's files (every machine must see the same data paths)."""
    job = IndexJob.of(root, bank, backbone, descriptors, allow_duplicates, progress)

    def pieces(n: int) -> list[SampleChunk]:
        return [SampleChunk(samples[i : i + n], size, signal, factor) for i in range(0, len(samples), n)]

    if ray:
        from .distributed.ray_index import index_on_ray

        samples = [s.absolute() for s in samples]  # a Ray worker's working folder is not this one
        first = lambda: pieces(PROJECTION_IMAGES)[0].loaded().x  # noqa: E731
        return job.finish(index_on_ray(ray, job, pieces, first, len(samples), chunk))
    chunks = (c for c in map(SampleChunk.load, pieces(chunk or CHUNK)) if c is not None)
    added = add_chunks(
        job.bank, job.model, job.backbone, job.signal, chunks, *job.options, len(samples), folds=job.folds
    )
    return job.finish(added)


@dataclass(frozen=True)
class SampleChunk:
    """Samples of a data folder that one chunk of an indexing run reads and prepares itself."""

    samples: list[Sample]
    size: int
    signal: str | None  # the input made from photos, or None for pair files and paired folders
    factor: int

    def __len__(self) -> int:
        return len(self.samples)

    def load(self) -> Exemplars | None:
        """The chunk's exemplars; None (after a warning) when none of its images can be read."""
        try:
            prepared, _ = prepare(self.samples, self.size, self.signal, self.factor, progress=False)
        except DataError as exc:
            warn_data(str(exc))
            return None
        return Exemplars(prepared.x, prepared.y, prepared.names, prepared.labels)

    def loaded(self) -> Exemplars:
        """load, with none readable an error."""
        chunk = self.load()
        if chunk is None:
            raise DataError(f"none of the {len(self.samples)} images of this chunk could be read")
        return chunk


def _refuse_new_bank_options(bank: Path, **given) -> None:
    """Options that shape a new bank (backbone, descriptors, version), refused when given for an existing
    bank whose own differ: it keeps its own, and adding to it must not look as if they applied."""
    if not (bank / store.MANIFEST).exists():
        return
    manifest = store.read_manifest(bank)
    own = {
        "backbone": manifest["backbone"],
        "descriptors": (manifest.get("descriptors") or {}).get("dim"),
        "version": manifest["version"],
    }
    if own["descriptors"] is not None:
        given.pop("descriptors")  # a bank with reduced descriptors refuses another size itself (bank/build.py)
    for name, value in given.items():
        if value is not None and value != own[name]:
            option = "version" if name == "version" else f"--{name}"  # version has no CLI option
            raise ConfigError(
                f"{option} {value}: the bank {bank} exists with {name} {own[name]}, which it keeps; "
                f"{option} applies to a new bank only (leave it out, or give a new --bank)"
            )


@dataclass(frozen=True)
class IndexJob:
    """A model folder and the bank an indexing run adds to, with the run's options."""

    root: Path  # the model folder
    bank: Path
    own: bool  # the bank is the folder's own (its model card lists it)
    model: UNet
    checkpoint: Path
    backbone: str
    signal: str
    descriptors: int | None
    allow_duplicates: bool
    progress: bool
    folds: tuple[UNet, ...]  # the folder's fold models (bank/stage1.py): they give the stored f(x_k)

    @classmethod
    def of(cls, root, bank, backbone, descriptors, allow_duplicates, progress, version=None) -> IndexJob:
        folder = ModelFolder(root)
        root, config, path, own = folder.root, folder.config(), folder.checkpoint, folder.bank()
        bank = Path(bank) if bank else own
        _refuse_new_bank_options(bank, backbone=backbone, descriptors=descriptors, version=version)
        backbone = backbone or config.get("backbone", backbones.DEFAULT)
        model = checkpoint.load_model(path)
        same = bank.resolve() == own.resolve()
        folds = load_folds(root, model)
        signal = config["signal"]
        return cls(root, bank, same, model, path, backbone, signal, descriptors, allow_duplicates, progress, folds)

    @property
    def options(self) -> tuple:
        """add_chunks' descriptors, progress and allow_duplicates."""
        return self.descriptors, self.progress, self.allow_duplicates

    def finish(self, manifest: dict) -> dict:
        """Save the global index the bank's size calls for, and update the model card of the folder's own bank."""
        from .bank.global_index_build import save_global_index

        save_global_index(self.bank)
        if self.own:
            ModelFolder(self.root).write_card()
        return manifest


def synthesize_to_folder(
    model, inputs, names, out: Path, request: Request | None = None, targets=None, ray: str | None = None, **options
) -> list[Path]:
    """Synthesize every input (arrays) and write its folder of PNGs, correspondences and an HTML page, then
    out/index.html; a rerun skips the inputs already done with the same settings (report/batch.py).

    request: a Request, or its values as keyword arguments (grid, labels, ids, like, like_k, regions, copy).
    ray: an address, or 'auto', to synthesize on a Ray cluster (the model must be loaded from a folder).
    """
    request = Request.given(request, options)
    folders = folder_names(list(names))
    target = (lambda i: None) if targets is None else (lambda i: targets[i])
    jobs = [Job(f, n, x=np.asarray(x), target=target(i)) for i, (f, n, x) in enumerate(zip(folders, names, inputs))]
    return synthesize_batch(model, Batch.make(model, out, request), jobs, ray)


def synthesize_batch(model, batch: Batch, jobs: list[Job], ray: str | None = None, progress: bool = True) -> list[Path]:
    """Run a batch of jobs (report/batch.py) here, or with `ray` on a Ray cluster; returns the pages."""
    if ray:
        from .distributed.ray_synth import synthesize_on_ray

        return synthesize_on_ray(ray, model, batch, jobs, progress)
    return run_batch(model, batch, jobs, progress)


def convert_folder(folder: Path, keep_old: bool = False, trust_pickle: bool = False) -> list[str]:
    """Convert the old checkpoints of a model (or pix2pix) folder; returns one line per file converted."""
    from .baselines.pix2pix.convert import convert_legacy
    from .regress.convert import convert_stage1

    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder: give the model folder made by `pixelnn train` (or train-pix2pix)")
    lines = (convert_stage1(folder, keep_old, trust_pickle), convert_legacy(folder, keep_old, trust_pickle))
    return [line for line in lines if line] or [
        f"{folder} holds no old checkpoint (stage1.pt, pix2pix.pt): nothing to convert"
    ]
