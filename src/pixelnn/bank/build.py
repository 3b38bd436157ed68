"""Build a bank, or add exemplars to one, from input/target pairs and a trained stage 1."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..errors import BankError
from ..features.backbones import load_backbone
from ..features.hypercolumn import global_descriptor
from ..features.inference import FP32, pass_arithmetic, run_backbone
from ..features.projection import fit_projection, project_taps, sample_hypercolumns
from ..regress.checkpoint import fingerprint
from ..regress.unet import UNet, predict
from . import store

log = logging.getLogger(__name__)


def expected_manifest(model: UNet, backbone: str, signal: str, global_dim: int) -> dict:
    cfg = model.cfg
    input_shape = (cfg.input_size, cfg.input_size, cfg.in_channels)
    return store.new_manifest(fingerprint(model), backbone, cfg.size, signal, input_shape, global_dim)


STAGE1_BATCH = 16  # fastest of 1, 8, 16, 32 on 2 cores (docs/benchmarks.md)
# Images projected at a time: the full-resolution temporaries of a chunk (2.4 MB per image each) stay in
# cache and below glibc's mmap threshold; a batch of 16 at once was 2.5x slower (docs/benchmarks.md).
PROJECT_CHUNK = 2


def stage1_outputs(model: UNet, x: np.ndarray, batch: int = STAGE1_BATCH, progress: bool = True) -> np.ndarray:
    """f(x) as stored in a bank: (N, S, S, 3) float16. Queries use the same rounding.

    Computed in batches. A query computes its f(x) alone, and convolution kernels may round
    differently for one image than for a batch, so a bank exemplar given as a query may differ
    from its stored f(x_n) by one float16 step at a few pixels (tests/test_bank_build.py); the
    pixel search treats such near-equal similarities as ties won by the nearest pixel, so the
    exemplar still copies itself.
    """
    outs = []
    for i in tqdm(range(0, len(x), batch), desc="stage 1", disable=not progress, leave=False, unit_scale=batch):
        outs.append(predict(model, x[i : i + batch], batch=batch).permute(0, 2, 3, 1).half().numpy())
    return np.concatenate(outs)


def fit_bank_projection(
    backbone_model, f: np.ndarray, dim: int, n_images: int = 256, per_image: int = 128
) -> np.ndarray:
    """Uncentred PCA basis (dim, D) fitted on random pixels of the first n_images exemplars (float32 taps)."""
    gen = torch.Generator().manual_seed(0)
    samples = []
    for i in range(0, min(len(f), n_images), 16):
        imgs = _images(f[i : i + 16])
        samples.append(sample_hypercolumns(run_backbone(backbone_model, imgs, FP32), imgs.shape[-2:], per_image, gen))
    return fit_projection(torch.cat(samples), dim).numpy()


def _images(f: np.ndarray) -> torch.Tensor:
    """Stored f(x) (B, S, S, 3) float16 -> (B, 3, S, S) float32, channels_last in memory (a free view)."""
    return torch.from_numpy(np.asarray(f, dtype=np.float32)).permute(0, 3, 1, 2)


def reduced_descriptors(taps: list[torch.Tensor], basis: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """project_taps of a batch's taps as stored, (B, S, S, d) float16, computed PROJECT_CHUNK images at a time."""
    chunks = []
    for j in range(0, len(taps[0]), PROJECT_CHUNK):
        chunks.append(project_taps([t[j : j + PROJECT_CHUNK] for t in taps], basis, size).half())
    return torch.cat(chunks).numpy()


def describe_exemplars(
    backbone_model,
    f: np.ndarray,
    basis: np.ndarray | None,
    desc_file: Path | None,
    batch: int = 16,
    progress: bool = True,
) -> np.ndarray:
    """Global descriptors (N, G) of f(x_n); with a basis, also write reduced pixel descriptors
    (N, S, S, d) float16 to desc_file (a memory-mapped .npy, so a large bank never sits in RAM)."""
    out = None
    if basis is not None:
        N, S = len(f), f.shape[1]
        out = np.lib.format.open_memmap(desc_file, mode="w+", dtype=np.float16, shape=(N, S, S, basis.shape[0]))
        basis_t = torch.from_numpy(basis)
    choice = pass_arithmetic(backbone_model, f.shape[1], batch, len(f))
    log.info("exemplar descriptors: %s", choice.note)
    glob = []
    for i in tqdm(range(0, len(f), batch), desc="exemplar descriptors", disable=not progress, leave=False):
        imgs = _images(f[i : i + batch])
        with torch.inference_mode():
            taps = run_backbone(backbone_model, imgs, choice)
            glob.append(global_descriptor(taps).numpy())
            if out is not None:
                out[i : i + batch] = reduced_descriptors(taps, basis_t, imgs.shape[-2:])
    if out is not None:
        out.flush()
    return np.concatenate(glob)


def _new_only(root: Path, manifest: dict, hashes: list[str]) -> np.ndarray:
    """Boolean mask of the inputs whose content is not in the bank yet."""
    known = store.bank_hashes(root, manifest)
    return np.array([h not in known for h in hashes], dtype=bool)


def _stage(staging: Path, backbone_model, f, x, y, names, labels, hashes, basis, progress) -> int:
    """Compute the descriptors of f with `basis` and write the shard into staging/shard."""
    desc_file = staging / "desc.npy" if basis is not None else None
    g = describe_exemplars(backbone_model, f, basis, desc_file, progress=progress)
    store.stage_shard(staging / "shard", store.Shard(f, y, x, g.astype(np.float32), names, labels, desc_file, hashes))
    return g.shape[1]


def _check_descriptors(existing: dict, descriptors: int | None, root: Path) -> None:
    """`descriptors` for an existing bank must be what it already stores (it is fixed when a bank is made)."""
    have = (existing.get("descriptors") or {}).get("dim")
    if descriptors is not None and descriptors != have:
        stored = f"{have}-d reduced descriptors" if have else "no reduced descriptors"
        raise BankError(
            f"the bank {root} stores {stored}; --descriptors {descriptors} applies only to a new bank "
            "(give --bank NEW_FOLDER, or leave --descriptors out to extend this one)"
        )


def add_exemplars(
    root: Path,
    model: UNet,
    backbone: str,
    signal: str,
    x: np.ndarray,
    y: np.ndarray,
    names: list[str],
    labels: list[str | None],
    descriptors: int | None = None,
    progress: bool = True,
    allow_duplicates: bool = False,
) -> dict:
    """Create the bank at `root` or append a shard to it; returns the new manifest.

    An existing bank must have been built with the same model weights, backbone, size and signal;
    its reduced descriptors (if any) are extended with its own projection. `descriptors` d, for a
    new bank, stores d-dimensional pixel descriptors for the fast search. Inputs whose content
    (x and y bytes) is already in the bank are skipped unless `allow_duplicates`, so a rerun adds
    nothing twice. Several writers may add to one bank at once (see store).
    """
    if len(x) != len(y) or len(x) != len(names) or len(x) != len(labels):
        raise ValueError("x, y, names and labels must have the same length")
    root = Path(root)
    x, y, names, labels = np.asarray(x, np.uint8), np.asarray(y, np.uint8), list(names), list(labels)
    hashes = store.exemplar_hashes(x, y)
    existing = store.read_manifest(root) if (root / store.MANIFEST).exists() else None
    checked = None if allow_duplicates else {s["name"] for s in existing["shards"]} if existing else set()
    if existing is not None:
        backbone = existing["backbone"]
        store.check_compatible(existing, expected_manifest(model, backbone, signal, existing["global_dim"]), root)
        _check_descriptors(existing, descriptors, root)
        if not allow_duplicates:
            new = _new_only(root, existing, hashes)
            if not new.all():
                log.info(
                    "index: skipped %d of %d exemplars already in the bank %s (--allow-duplicates adds them again)",
                    int((~new).sum()),
                    len(new),
                    root,
                )
            if not new.any():
                return existing
            keep = np.flatnonzero(new)
            x, y, hashes = x[keep], y[keep], [hashes[i] for i in keep]
            names, labels = [names[i] for i in keep], [labels[i] for i in keep]
    backbone_model = load_backbone(backbone)
    f = stage1_outputs(model, x, progress=progress)
    if existing is not None:
        basis = store.read_projection(root) if existing.get("descriptors") else None
    else:
        basis = fit_bank_projection(backbone_model, f, descriptors) if descriptors else None
    with store.staging_folder(root) as staging:
        for _ in range(3):
            global_dim = _stage(staging, backbone_model, f, x, y, names, labels, hashes, basis, progress)
            template = expected_manifest(model, backbone, signal, global_dim)
            try:
                return store.commit_staged(root, template, staging / "shard", len(x), basis, checked)
            except store.ProjectionChanged as changed:  # another writer created the bank meanwhile
                basis = changed.basis
        raise BankError(f"bank {root}: its projection kept changing while this run added to it; run it again")
