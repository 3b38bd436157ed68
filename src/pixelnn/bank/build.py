"""Build a bank, or add exemplars to one, from input/target pairs and a trained stage 1."""

from __future__ import annotations

import functools
import itertools
import logging
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
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
from ..regress.unet import UNet
from . import store
from .stage1 import bank_outputs, manifest_entry, stage1_outputs

log = logging.getLogger(__name__)


def expected_manifest(model: UNet, backbone: str, signal: str, global_dim: int) -> dict:
    cfg = model.cfg
    input_shape = (cfg.input_size, cfg.input_size, cfg.in_channels)
    return store.new_manifest(fingerprint(model), backbone, cfg.size, signal, input_shape, global_dim)


# Images projected at a time: the full-resolution temporaries of a chunk (2.4 MB per image each) stay in
# cache and below glibc's mmap threshold; a batch of 16 at once was 2.5x slower (docs/benchmarks.md).
PROJECT_CHUNK = 2


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


def reduced_descriptors(taps: list[torch.Tensor], basis: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """project_taps of a batch's taps, (B, S, S, d) float32, computed PROJECT_CHUNK images at a time."""
    chunks = []
    for j in range(0, len(taps[0]), PROJECT_CHUNK):
        chunks.append(project_taps([t[j : j + PROJECT_CHUNK] for t in taps], basis, size).float())
    return torch.cat(chunks)


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
        imgs = _images(f[i : i + batch])
        with torch.inference_mode():
            out.append(reduced_descriptors(run_backbone(backbone_model, imgs, FP32), basis_t, imgs.shape[-2:]).numpy())
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
        basis_t = torch.tensor(encoding.basis)  # a copy: a Ray task gets it read-only
    choice = pass_arithmetic(backbone_model, f.shape[1], batch, len(f))
    log.info("exemplar descriptors: %s", choice.note)
    glob = []
    for i in tqdm(range(0, len(f), batch), desc="exemplar descriptors", disable=not progress, leave=False):
        imgs = _images(encoding.f_values(f[i : i + batch]))
        with torch.inference_mode():
            taps = run_backbone(backbone_model, imgs, choice)
            glob.append(global_descriptor(taps).float().numpy())
            if out is not None:
                out[i : i + batch] = encoding.store_desc(reduced_descriptors(taps, basis_t, imgs.shape[-2:]))
    if out is not None:
        out.flush()
    return np.concatenate(glob)


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


CHUNK = 1024  # exemplars computed, staged and committed at once; a multiple of STAGE1_BATCH, so no batch changes
PROJECTION_IMAGES = 256  # a new bank's projection is fitted on its first exemplars (fit_bank_projection)


@dataclass
class Exemplars:
    """Input/target pairs to add to a bank, with their names and labels (one chunk, or all of them)."""

    x: np.ndarray  # (n, h, w, c) uint8 input signals
    y: np.ndarray  # (n, S, S, 3) uint8 targets
    names: list[str]
    labels: list[str | None]

    def __post_init__(self) -> None:
        if not len(self.x) == len(self.y) == len(self.names) == len(self.labels):
            raise ValueError("x, y, names and labels must have the same length")
        self.x, self.y = np.asarray(self.x, np.uint8), np.asarray(self.y, np.uint8)
        self.names, self.labels = list(self.names), list(self.labels)

    def __len__(self) -> int:
        return len(self.y)

    def take(self, rows) -> Exemplars:
        rows = list(rows)
        return Exemplars(self.x[rows], self.y[rows], [self.names[i] for i in rows], [self.labels[i] for i in rows])

    def chunks(self, size: int) -> Iterator[Exemplars]:
        """Consecutive pieces of `size` exemplars (the last may be shorter)."""
        for start in range(0, len(self), size):
            yield self.take(range(start, min(start + size, len(self))))


@dataclass(frozen=True)
class BankPlan:
    """What every chunk of one indexing run shares: the bank, its backbone, signal and projection, and
    the exemplars the chunks are deduplicated against. Small enough to send to other processes."""

    root: Path
    backbone: str
    signal: str
    encoding: store.Encoding  # the bank's, or the one fitted for a new bank
    known: frozenset[str] | None  # content hashes already in the bank; None: add duplicates too
    checked: frozenset[str] | None  # the names of the shards `known` was read from
    folds: tuple[UNet, ...] = ()  # fold models that give the stored f(x_k) (stage1.py); none: the model's own

    def template(self, model: UNet, global_dim: int) -> dict:
        manifest = expected_manifest(model, self.backbone, self.signal, global_dim)
        if self.folds:
            manifest["cross_fit"] = manifest_entry(self.folds)
        return manifest

    def after(self, manifest: dict, hashes: list[str]) -> BankPlan:
        """The plan once `manifest` lists a chunk whose exemplars have `hashes`: the bank's projection is now
        fixed, and those exemplars are in the bank."""
        encoding = self.encoding if manifest.get("descriptors") else store.Encoding(self.encoding.version)
        if self.known is None:
            return replace(self, encoding=encoding)
        names = frozenset(s["name"] for s in manifest["shards"])
        return replace(self, encoding=encoding, known=self.known | set(hashes), checked=names)


@dataclass
class Staged:
    """One chunk computed into folder/shard: `count` exemplars staged, `skipped` already in the bank."""

    folder: Path  # holds the staged shard in folder/shard (when count > 0)
    count: int
    skipped: int
    global_dim: int
    hashes: list[str]  # of every exemplar of the chunk, staged or skipped

    @property
    def shard(self) -> Path:
        return self.folder / "shard"


@functools.cache
def network(backbone: str):
    """The descriptor network of that name, loaded once per process (each Ray worker keeps its own)."""
    return load_backbone(backbone)


def new_bank_encoding(model: UNet, backbone_model, x: np.ndarray, dim: int, version: int) -> store.Encoding:
    """Set up a new bank's reduced descriptors: the encoding (projection and, in version 2, codec) fitted
    on f(x) of the first PROJECTION_IMAGES inputs, once before any chunk is described."""
    f = stage1_outputs(model, x[:PROJECTION_IMAGES], progress=False)
    return fit_bank_encoding(backbone_model, f, dim, version)


def plan_bank(
    root: Path,
    model: UNet,
    backbone: str,
    signal: str,
    descriptors: int | None = None,
    allow_duplicates: bool = False,
    first_x: np.ndarray | None = None,
    version: int = store.VERSION,
    folds: tuple[UNet, ...] = (),
) -> BankPlan:
    """The plan of a run that adds to the bank at `root` (made by the first commit if missing).

    An existing bank must have been built with the same model weights, backbone, size and signal, and
    the same fold models (stage1.py) or none; its encoding is kept. A new bank (format `version`) with
    `descriptors` d gets a projection and codec fitted on `first_x`, the first inputs of the run (at
    least PROJECTION_IMAGES of them when there are that many), through the model itself."""
    root = Path(root)
    existing = store.read_manifest(root) if (root / store.MANIFEST).exists() else None
    if existing is None:
        encoding = store.Encoding(version)
        if descriptors:
            if first_x is None or not len(first_x):
                raise BankError(f"no exemplars to fit the projection of the new bank {root} on")
            encoding = new_bank_encoding(model, network(backbone), first_x, descriptors, version)
        known = None if allow_duplicates else frozenset()
        return BankPlan(root, backbone, signal, encoding, known, None if allow_duplicates else frozenset(), folds)
    backbone = existing["backbone"]
    store.check_compatible(existing, expected_manifest(model, backbone, signal, existing["global_dim"]), root)
    _check_cross_fit(existing, folds, root)
    _check_descriptors(existing, descriptors, root)
    encoding = store.read_encoding(root, existing)
    if allow_duplicates:
        return BankPlan(root, backbone, signal, encoding, None, None, folds)
    names = frozenset(s["name"] for s in existing["shards"])
    return BankPlan(root, backbone, signal, encoding, frozenset(store.bank_hashes(root, existing)), names, folds)


def _check_cross_fit(existing: dict, folds: tuple[UNet, ...], root: Path) -> None:
    """Exemplars added to a bank get their f(x_k) as its others did: from the same fold models, or none."""
    have, want = existing.get("cross_fit"), manifest_entry(folds)
    if have != want:
        raise BankError(
            f"the bank {root} stores f(x_k) from {_origin(have)}, but this run would compute them with "
            f"{_origin(want)}; build a new bank (--bank NEW_FOLDER), or rebuild this one with "
            "`pixelnn train --out MODEL`"
        )


def _origin(cross_fit: dict | None) -> str:
    return "the model itself" if cross_fit is None else f"{cross_fit['folds']} fold models"


def stage_chunk(
    folder: Path, plan: BankPlan, model: UNet, backbone: Callable, chunk: Exemplars, progress=True
) -> Staged:
    """Compute one chunk (stage 1, then descriptors with the plan's projection) and stage it as a shard in
    folder/shard, leaving out exemplars the plan knows to be in the bank. `backbone()` returns the
    descriptor network (called only when the chunk has new exemplars). Both the single-process build and
    the distributed one (distributed/ray_index.py) stage every chunk with this."""
    hashes = store.exemplar_hashes(chunk.x, chunk.y)
    keep = [i for i, h in enumerate(hashes) if plan.known is None or h not in plan.known]
    if not keep:
        return Staged(folder, 0, len(chunk), 0, hashes)
    new = chunk.take(keep) if len(keep) < len(chunk) else chunk
    shutil.rmtree(folder / "shard", ignore_errors=True)  # what an attempt killed before this one left
    kept = [hashes[i] for i in keep]
    f = bank_outputs(model, plan.folds, new.x, kept, progress=progress)
    dim = _stage(folder, backbone(), f, new.x, new.y, new.names, new.labels, kept, plan.encoding, progress)
    return Staged(folder, len(new), len(chunk) - len(new), dim, hashes)


def commit_chunks(plan: BankPlan, model: UNet, staged: list[Staged]) -> dict | None:
    """List the staged chunks (those with exemplars) in the bank in ONE manifest write; returns the
    manifest, or None when no chunk staged anything. Raises store.ProjectionChanged when another writer
    created the bank with another projection meanwhile (the chunks must then be staged again)."""
    full = [s for s in staged if s.count]
    if not full:
        return None
    dims = {s.global_dim for s in full}
    if len(dims) != 1:
        raise BankError(f"bank {plan.root}: the chunks made global descriptors of different sizes {sorted(dims)}")
    checked = None if plan.checked is None else set(plan.checked)
    return store.commit_staged_many(
        plan.root, plan.template(model, dims.pop()), [(s.shard, s.count) for s in full], plan.encoding, checked
    )


def _add_chunk(
    plan: BankPlan, model: UNet, backbone: Callable, chunk: Exemplars, progress
) -> tuple[dict | None, BankPlan, int]:
    """Stage and commit one chunk (the single-process build): the new manifest (None: nothing new), the
    plan for the next chunk, and how many of the chunk's exemplars were in the bank already."""
    with store.staging_folder(plan.root) as staging:
        for _ in range(3):
            staged = stage_chunk(staging, plan, model, backbone, chunk, progress)
            if not staged.count:
                return None, plan, staged.skipped
            template = plan.template(model, staged.global_dim)
            checked = None if plan.checked is None else set(plan.checked)
            try:
                manifest = store.commit_staged(plan.root, template, staged.shard, staged.count, plan.encoding, checked)
            except store.ProjectionChanged as changed:  # another writer created the bank meanwhile
                plan = replace(plan, encoding=changed.encoding)
                continue
            return manifest, plan.after(manifest, staged.hashes), staged.skipped
        raise BankError(f"bank {plan.root}: its projection kept changing while this run added to it; run it again")


def peek(chunks: Iterable[Exemplars], n: int) -> tuple[np.ndarray, Iterator[Exemplars]]:
    """The inputs x of the first `n` exemplars of `chunks`, and an iterator over all the chunks still."""
    chunks = iter(chunks)
    head: list[Exemplars] = []
    while sum(len(c) for c in head) < n:
        nxt = next(chunks, None)
        if nxt is None:
            break
        head.append(nxt)
    x = np.concatenate([c.x for c in head])[:n] if head else np.zeros((0, 0, 0, 0), np.uint8)
    return x, itertools.chain(head, chunks)


def add_chunks(
    root: Path,
    model: UNet,
    backbone: str,
    signal: str,
    chunks: Iterable[Exemplars],
    descriptors: int | None = None,
    progress: bool = True,
    allow_duplicates: bool = False,
    total: int | None = None,
    version: int = store.VERSION,
    folds: tuple[UNet, ...] = (),
) -> dict:
    """Create the bank at `root` or add to it chunk by chunk, each chunk computed, staged and committed
    as its own shard, so that memory does not grow with the number of exemplars; returns the manifest.

    A new bank's projection is fitted once, on the first PROJECTION_IMAGES exemplars, before any chunk
    is written. Inputs whose content (x and y bytes) is already in the bank are skipped unless
    `allow_duplicates`, so a rerun adds nothing twice, and a run that was stopped midway adds only the
    chunks it had not committed. Several writers may add to one bank at once (see store). With `folds`
    (stage1.load_folds), the stored f(x_k) are cross-fitted.
    """
    root = Path(root)
    first_x, chunks = peek(chunks, PROJECTION_IMAGES) if descriptors else (None, iter(chunks))
    plan = plan_bank(root, model, backbone, signal, descriptors, allow_duplicates, first_x, version, folds)
    manifest = store.read_manifest(root) if (root / store.MANIFEST).exists() else None
    backbone_model, seen, skipped = functools.partial(network, plan.backbone), 0, 0
    with tqdm(total=total, desc="indexing", unit="exemplar", disable=not progress) as bar:
        for chunk in chunks:
            made, plan, old = _add_chunk(plan, model, backbone_model, chunk, progress)
            manifest, seen, skipped = made or manifest, seen + len(chunk), skipped + old
            bar.update(len(chunk))
    log_skipped(root, skipped, seen)
    if manifest is None:
        raise BankError(f"no exemplars to add to the bank {root}")
    return manifest


def log_skipped(root: Path, skipped: int, seen: int) -> None:
    if skipped:
        log.info(
            "index: skipped %d of %d exemplars already in the bank %s (--allow-duplicates adds them again)",
            skipped,
            seen,
            root,
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
    chunk: int = CHUNK,
    version: int = store.VERSION,
) -> dict:
    """add_chunks for exemplars given as arrays, `chunk` exemplars at a time; returns the manifest.
    `version` is the format of a new bank (store: 2 is compact; 1, uncompressed, is there to compare
    with and to test the reading of older banks); an existing bank keeps its own."""
    exemplars = Exemplars(x, y, names, labels)
    chunks = exemplars.chunks(chunk)
    return add_chunks(
        root, model, backbone, signal, chunks, descriptors, progress, allow_duplicates, len(exemplars), version
    )
