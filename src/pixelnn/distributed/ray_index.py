"""`pixelnn index --ray`: the bank built by Ray tasks, one chunk each, committed by the driver at once.

The driver plans the run as the single-process build does (build.plan_bank: the bank's projection,
fitted first for a new bank, and the content hashes it holds), then opens ONE staging folder in the
bank, holding its owner lock while the run lasts. Each task computes one chunk with
build.stage_chunk into its own sub-folder, loading the stage-1 model once per worker process and
reading its own images when the data is a folder. When every task is done the driver lists all the
chunks in the manifest in one step (store.commit_staged_many). So:

- a task that dies is retried by Ray (its sub-folder is rewritten), and its partial files never
  reach the bank: nothing in a staging folder is listed;
- a driver that dies leaves the bank as it was, and its staging folder, whose owner lock died with
  it, is removed by the next writer; rerunning redoes the work and finishes the job.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..bank import store
from ..bank.build import (
    CHUNK,
    BankPlan,
    Exemplars,
    Staged,
    commit_chunks,
    log_skipped,
    network,
    plan_bank,
)
from ..bank.build import stage_chunk as stage_one
from ..bank.stage1 import STAGE1_BATCH
from ..errors import BankError, ConfigError
from ..regress import checkpoint
from .cluster import absolute, cluster_cpus, connect, even_chunk, results

log = logging.getLogger(__name__)

MAX_RETRIES = 3  # attempts after the first of a task whose worker died or which raised an OSError


def index_on_ray(
    address: str,
    job,
    pieces: Callable[[int], list],
    first_x: Callable[[], np.ndarray],
    total: int,
    chunk: int | None = None,
) -> dict:
    """Add the exemplars of `pieces(chunk_size)` (Exemplars, or chunks with a load() method that read
    their own files) to job.bank with Ray tasks; returns the manifest. `first_x()` gives the first
    inputs, which a new bank's projection is fitted on. `job` is a workflow.IndexJob."""
    ray = connect(address)
    root = absolute(job.bank)
    new = not (root / store.MANIFEST).exists()
    x0 = first_x() if new and job.descriptors else None
    plan = plan_bank(
        root, job.model, job.backbone, job.signal, job.descriptors, job.allow_duplicates, x0, folds=job.folds
    )
    size = chunk or even_chunk(total, cluster_cpus(ray), STAGE1_BATCH, CHUNK)
    work = pieces(size)
    log.info("index: %d exemplars in %d Ray task(s) of up to %d", total, len(work), size)
    task = ray.remote(_stage_task).options(num_cpus=1, max_retries=MAX_RETRIES, retry_exceptions=[OSError])
    model = (str(absolute(job.checkpoint)), checkpoint.fingerprint(job.model))
    with store.staging_folder(root) as staging:
        for _ in range(3):
            plan_ref = ray.put(plan)
            refs = [task.remote(model, plan_ref, staging / f"chunk-{i:05d}", p) for i, p in enumerate(work)]
            staged = _staged(ray, refs, [len(p) for p in work], job.progress)
            try:
                manifest = commit_chunks(plan, job.model, staged)
            except store.ProjectionChanged as changed:  # another writer created the bank meanwhile
                plan = replace(plan, encoding=changed.encoding)
                continue
            log_skipped(root, sum(s.skipped for s in staged), total)
            if manifest is None and new:
                raise BankError(f"no exemplars to add to the bank {root}")
            return manifest or store.read_manifest(root)
    raise BankError(f"bank {root}: its projection kept changing while this run added to it; run it again")


def _staged(ray, refs: list, sizes: list[int], progress: bool) -> list[Staged]:
    out: list[Staged | None] = [None] * len(refs)
    for i, staged in results(ray, refs, "indexing on Ray", progress, sizes):
        out[i] = staged
    return out  # type: ignore[return-value]


def _stage_task(model: tuple[str, str], plan: BankPlan, folder: Path, piece) -> Staged:
    """One Ray task: read the chunk (when it is a list of files), compute it and stage it in `folder`."""
    unet = _model(*model)
    # arrays from the object store are read-only: take() copies them
    chunk = piece.take(range(len(piece))) if isinstance(piece, Exemplars) else piece.load()
    folder.mkdir(exist_ok=True)
    if chunk is None:  # none of its images could be read (a warning says which)
        return Staged(folder, 0, 0, 0, [])
    return stage_one(folder, plan, unet, functools.partial(network, plan.backbone), chunk, progress=False)


@functools.cache
def _model(path: str, fingerprint: str):
    """The stage-1 model at `path`, loaded once per worker process, refused unless it is the driver's."""
    unet = checkpoint.load_model(Path(path))
    if checkpoint.fingerprint(unet) != fingerprint:
        raise ConfigError(
            f"{path} on this Ray worker holds other stage-1 weights than the driver's: every machine of the "
            "cluster needs the same model folder at the same path"
        )
    return unet
