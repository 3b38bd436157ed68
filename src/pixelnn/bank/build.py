"""Build a bank, or add exemplars to one, from input/target pairs and a trained stage 1."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..errors import BankError
from ..features.backbones import describe_global, load_backbone
from ..features.hypercolumn import global_descriptor, pixel_descriptors
from ..features.projection import fit_projection, project_taps, sample_pixels
from ..regress.checkpoint import fingerprint
from ..regress.unet import UNet, predict
from . import store

log = logging.getLogger(__name__)


def expected_manifest(model: UNet, backbone: str, signal: str, global_dim: int) -> dict:
    cfg = model.cfg
    input_shape = (cfg.input_size, cfg.input_size, cfg.in_channels)
    return store.new_manifest(fingerprint(model), backbone, cfg.size, signal, input_shape, global_dim)


STAGE1_BATCH = 16  # fastest of 1, 8, 16, 32 on 2 cores (docs/benchmarks.md)


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
        outs.append(predict(model, x[i : i + batch], batch=batch).permute(0, 2, 3, 1).numpy().astype(np.float16))
    return np.concatenate(outs)


def fit_bank_projection(
    backbone_model, f: np.ndarray, dim: int, n_images: int = 256, per_image: int = 128
) -> np.ndarray:
    """Uncentred PCA basis (dim, D) fitted on random pixels of the first n_images exemplars."""
    gen = torch.Generator().manual_seed(0)
    samples = []
    for i in range(0, min(len(f), n_images), 16):
        imgs = torch.from_numpy(np.asarray(f[i : i + 16], dtype=np.float32)).permute(0, 3, 1, 2)
        with torch.no_grad():
            pix = pixel_descriptors(backbone_model(imgs), imgs.shape[-2:], normalize_first=True)
        samples.append(sample_pixels(pix, per_image, gen))
    return fit_projection(torch.cat(samples), dim).numpy()


CODEC_IMAGES = 64  # exemplars whose reduced descriptor maps train a new bank's codec (150 MB of float32)


def fit_bank_encoding(backbone_model, f: np.ndarray, dim: int | None, version: int = store.VERSION) -> store.Encoding:
    """The encoding of a new bank, from its first exemplars' stage-1 outputs f (N, S, S, 3) float in
    [0, 1]: with `dim`, the projection basis (fit_bank_projection), and in version 2 that basis
    rotated and the codec (store.Encoding.trained), trained on the reduced descriptor maps of the
    first CODEC_IMAGES exemplars (a second backbone pass over them)."""
    if not dim:
        return store.Encoding(version)
    basis = fit_bank_projection(backbone_model, f, dim)
    if version == 1:
        return store.Encoding(version, basis)
    return store.Encoding.trained(basis, reduced_maps(backbone_model, f[:CODEC_IMAGES], basis))


def reduced_maps(backbone_model, f: np.ndarray, basis: np.ndarray, batch: int = 16) -> np.ndarray:
    """Reduced pixel descriptors (N, S, S, d) float32 of stage-1 outputs f (N, S, S, 3) float in [0, 1]."""
    basis_t = torch.from_numpy(basis)
    out = []
    for i in range(0, len(f), batch):
        imgs = torch.from_numpy(np.asarray(f[i : i + batch], dtype=np.float32)).permute(0, 3, 1, 2)
        with torch.no_grad():
            out.append(project_taps(backbone_model(imgs), basis_t, imgs.shape[-2:]).numpy())
    return np.concatenate(out)


def describe_exemplars(
    backbone_model,
    f: np.ndarray,
    encoding: store.Encoding,
    desc_file: Path | None,
    batch: int = 16,
    progress: bool = True,
) -> np.ndarray:
    """Global descriptors (N, G) float32 of stored stage-1 outputs f (as `encoding` stores them);
    with the encoding's basis, also write reduced pixel descriptors as it stores them to desc_file
    (a memory-mapped .npy, so a large bank never sits in RAM)."""
    out = None
    if encoding.basis is not None:
        shape, dtype = encoding.desc_array(len(f), f.shape[1])
        out = np.lib.format.open_memmap(desc_file, mode="w+", dtype=dtype, shape=shape)
        basis_t = torch.from_numpy(encoding.basis)
    glob = []
    for i in tqdm(range(0, len(f), batch), desc="exemplar descriptors", disable=not progress, leave=False):
        imgs = torch.from_numpy(encoding.f_values(f[i : i + batch])).permute(0, 3, 1, 2)
        if out is None:
            glob.append(describe_global(backbone_model, imgs).numpy())
            continue
        with torch.no_grad():
            taps = backbone_model(imgs)
            glob.append(global_descriptor(taps).numpy())
            out[i : i + batch] = encoding.store_desc(project_taps(taps, basis_t, imgs.shape[-2:]))
    if out is not None:
        out.flush()
    return np.concatenate(glob)


def _new_only(root: Path, manifest: dict, hashes: list[str]) -> np.ndarray:
    """Boolean mask of the inputs whose content is not in the bank yet."""
    known = store.bank_hashes(root, manifest)
    return np.array([h not in known for h in hashes], dtype=bool)


def _stage(staging: Path, backbone_model, f, x, y, names, labels, hashes, encoding: store.Encoding, progress) -> int:
    """Store stage-1 outputs f (float, in [0, 1]) as `encoding` says, describe them (global and, with
    its basis, pixel descriptors) and write the shard into staging/shard; returns the global size."""
    f = encoding.store_f(f)  # descriptors are computed from f as stored, as a query's are (PixelNN.stage1)
    desc_file = staging / "desc.npy" if encoding.basis is not None else None
    g = describe_exemplars(backbone_model, f, encoding, desc_file, progress=progress).astype(encoding.global_dtype)
    store.stage_shard(staging / "shard", store.Shard(f, y, x, g, names, labels, desc_file, hashes))
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
    version: int = store.VERSION,
) -> dict:
    """Create the bank at `root` or append a shard to it; returns the new manifest.

    An existing bank must have been built with the same model weights, backbone, size and signal;
    its reduced descriptors (if any) are extended with its own projection. `descriptors` d, for a
    new bank, stores d-dimensional pixel descriptors for the fast search. Inputs whose content
    (x and y bytes) is already in the bank are skipped unless `allow_duplicates`, so a rerun adds
    nothing twice. Several writers may add to one bank at once (see store). `version` is the format
    of a new bank (store: 2 is compact; 1, uncompressed, is there to compare with and to test the
    reading of older banks); an existing bank keeps its own.
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
        encoding = store.read_encoding(root, existing)
    else:
        encoding = fit_bank_encoding(backbone_model, f, descriptors, version)
    with store.staging_folder(root) as staging:
        for _ in range(3):
            global_dim = _stage(staging, backbone_model, f, x, y, names, labels, hashes, encoding, progress)
            template = expected_manifest(model, backbone, signal, global_dim)
            try:
                return store.commit_staged(root, template, staging / "shard", len(x), encoding, checked)
            except store.ProjectionChanged as changed:  # another writer created the bank meanwhile
                encoding = changed.encoding
        raise BankError(f"bank {root}: its encoding kept changing while this run added to it; run it again")
