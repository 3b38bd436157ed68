"""`pixelnn synthesize --ray`: a batch of inputs synthesized by Ray tasks, each worker loading the model once.

The driver makes the batch (report/batch.py: the jobs, their folders and the settings key) and
submits one task per chunk of jobs whose folders are not done. A task runs in one of the cluster's
worker processes, which keeps the model folder and bank it opened (one at a time) for the next
task, checks that they give the driver's settings key (the same weights and bank on every
machine), and runs its chunk with batch.run_chunk: every result folder is written to a temporary
folder and renamed, so a killed task (retried by Ray) or driver leaves only complete folders, and a
rerun skips them. The driver writes out/index.html at the end.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import replace
from pathlib import Path

from ..errors import ClusterError, ConfigError
from ..report.batch import Batch, ChunkReport, Job, chunks, finish, is_done, run_chunk, settings_key, sweep
from ..report.batch import absolute as absolute_job
from .cluster import absolute, connect, results

log = logging.getLogger(__name__)

MAX_RETRIES = 3  # attempts after the first of a task whose worker died or which raised an OSError


def synthesize_on_ray(address: str, model, batch: Batch, jobs: list[Job], progress: bool = True) -> list[Path]:
    """Synthesize the batch's jobs on the Ray cluster at `address`; returns the pages (batch.finish).
    `model` is the driver's PixelNN, loaded from a model folder (PixelNN.load)."""
    if model.source is None:
        raise ConfigError("synthesizing on Ray needs a model loaded from a model folder (PixelNN.load)")
    ray = connect(address)
    batch = replace(batch, out=absolute(batch.out))
    batch.out.mkdir(parents=True, exist_ok=True)
    sweep(batch.out)
    todo = [c for c in chunks([absolute_job(job) for job in jobs]) if not all(is_done(batch, job) for job in c)]
    skipped: list[str] = []
    if todo:
        log.info("synthesize: %d chunk(s) of up to %d inputs on Ray", len(todo), len(todo[0]))
        source = (str(absolute(model.source)), str(absolute(model.bank.root)), model.search, str(model.device))
        task = ray.remote(_synthesize_task).options(num_cpus=1, max_retries=MAX_RETRIES, retry_exceptions=[OSError])
        ref = ray.put(batch)
        refs = [task.remote(source, ref, chunk) for chunk in todo]
        for _, report in results(ray, refs, "synthesizing on Ray", progress, [len(c) for c in todo]):
            skipped += report.skipped
    return finish(batch, jobs, skipped)


def _synthesize_task(source: tuple[str, str, str, str], batch: Batch, jobs: list[Job]) -> ChunkReport:
    """One Ray task: the chunk's inputs synthesized with the worker's model, checked against the driver's key."""
    model = _model(*source)
    if _key(model, batch) != batch.key:  # the bank grew since this worker opened it, or this machine differs
        _model.cache_clear()
        model = _model(*source)
        if _key(model, batch) != batch.key:
            raise ClusterError(
                f"the model folder or bank {model.bank.root} on this Ray worker differs from the driver's: every "
                "machine of the cluster needs the same model folder and bank at the same path"
            )
    return run_chunk(model, batch, jobs)


def _key(model, batch: Batch) -> str:
    return settings_key(model, batch.request, batch.prep, batch.from_photo)


@functools.lru_cache(maxsize=1)
def _model(run: str, bank: str, search: str, device: str):
    """The model folder and bank, opened once per worker process (the last one asked for is kept)."""
    from ..synth.pipeline import PixelNN

    return PixelNN.load(run, bank, search=search, device=device)
