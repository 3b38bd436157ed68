"""Synthesize a batch of inputs into result folders, resumably; one process and Ray's actors share it.

Every input gets out/<folder>/ (result_page.write_result), assembled in a temporary folder and renamed
into place when complete, with a file `.pixelnn-result` holding the key of the settings that made it
(model weights, bank, search, grid, restrictions, how inputs are read). A rerun with the same settings
skips the inputs whose folder holds that key and computes the others; a folder made with other
settings is replaced. out/index.html, listing every finished input, is written at the end.

Inputs are read `CHUNK` at a time (a chunk is also the unit of work of a Ray actor), at the same
chunk boundaries however the batch runs, so that inputs made in batches (HED edges) come out the
same on one machine and on a cluster.
"""

from __future__ import annotations

import dataclasses
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.images import fit_square, load_rgb
from ..data.notice import DataWarning, warn_data
from ..data.prepare import prepare
from ..data.sources import Sample
from ..errors import DataError
from ..fileio import atomic_folder
from ..hashing import arrays_hash, json_hash
from ..regress.checkpoint import fingerprint
from ..synth.request import Request
from .result_page import write_index, write_result

MARK = ".pixelnn-result"  # in a finished result folder: the key of the settings it was made with
CHUNK = 16  # inputs read at once: HED edges are computed in batches of 16 (data/signals.py)


@dataclass(frozen=True)
class Job:
    """One input of a batch and the folder its result goes to. The input is one of: a sample of a
    data folder (prepared with the batch's data options), an image file, or arrays given directly."""

    folder: str  # name of its result folder under the batch's out
    title: str  # the input's name, shown on its page
    sample: Sample | None = None
    file: Path | None = None  # an input signal image, or a photo when the batch says from_photo
    x: np.ndarray | None = None  # (h, w, c) uint8 input signal
    target: np.ndarray | None = None  # (S, S, 3) uint8 original, when known


@dataclass(frozen=True)
class Batch:
    """Where results go and how every input of a batch is read and synthesized; `key` marks its folders."""

    out: Path
    key: str
    request: Request
    prep: tuple | None = None  # (size, signal, factor) for samples of a data folder
    from_photo: bool = False

    @classmethod
    def make(cls, model, out: Path, request: Request, prep: tuple | None = None, from_photo: bool = False) -> Batch:
        """The batch of `request` on `model` into `out`, keyed by settings_key."""
        return cls(Path(out), settings_key(model, request, prep, from_photo), request, prep, from_photo)


@dataclass
class ChunkReport:
    inputs: int  # of the chunk, done before or not
    made: int  # inputs synthesized now
    skipped: list[str]  # 'name (reason)' of inputs that could not be read


def folder_names(names: list[str]) -> list[str]:
    """A distinct folder name per input name: 'a b/c.png' -> 'a_b_c', then 'a_b_c-2' for the next one
    that cleans to the same name ('a_b/c.png', or c.jpg beside c.png)."""
    used, out = set(), []
    for name in names:
        folder, k = _safe(name), 1
        while folder in used:
            folder, k = f"{_safe(name)}-{k + 1}", k + 1
        used.add(folder)
        out.append(folder)
    return out


def _safe(name: str) -> str:
    stem = Path(name).with_suffix("").as_posix()
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in stem)[:80] or "input"


def settings_key(model, request: Request, prep: tuple | None, from_photo: bool) -> str:
    """The key of what decides a batch's results: the model's weights, its bank as listed, the search,
    the request (its grid as fitted to the model) and how inputs are read."""
    manifest = model.bank.manifest
    described = {
        "model": fingerprint(model.model),
        "bank": [str(model.bank.root.resolve()), manifest["shards"], manifest["count"]],
        "search": model.search,
        "grid": [str(s) for s in model.checked_grid(request.grid)],
        "request": request.key(),
        "prep": list(prep) if prep else None,
        "from_photo": from_photo,
    }
    return json_hash(described)


def chunks(jobs: list[Job]) -> list[list[Job]]:
    return [jobs[i : i + CHUNK] for i in range(0, len(jobs), CHUNK)]


def absolute(job: Job) -> Job:
    """The job with absolute file paths, for a process whose working folder is not this one."""
    sample = None if job.sample is None else job.sample.absolute()
    return dataclasses.replace(job, sample=sample, file=None if job.file is None else job.file.absolute())


def is_done(batch: Batch, job: Job) -> bool:
    """Whether the job's folder is complete, made with the batch's settings from the same input."""
    try:
        return (batch.out / job.folder / MARK).read_text() == _mark(batch, job)
    except (OSError, UnicodeDecodeError):
        return False


def _mark(batch: Batch, job: Job) -> str:
    """The settings key, and what identifies the input: its files' size and time, or its arrays' content."""
    if job.x is not None:
        return f"{batch.key} {arrays_hash(job.x, *([job.target] if job.target is not None else []))}"
    files = [job.file] if job.file is not None else [job.sample.target, job.sample.input]
    stats = [(f.stat().st_size, f.stat().st_mtime_ns) for f in files if f is not None]
    return f"{batch.key} {json_hash(stats)}"


def sweep(out: Path) -> None:
    """Remove the temporary folders that a killed run left in `out` (one run per out at a time)."""
    for path in out.glob(".*.tmp"):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)


def run_batch(model, batch: Batch, jobs: list[Job], progress: bool = True) -> list[Path]:
    """Synthesize every input of the batch in this process (chunk by chunk); returns the pages."""
    from tqdm import tqdm

    batch.out.mkdir(parents=True, exist_ok=True)
    sweep(batch.out)
    skipped = []
    with tqdm(total=len(jobs), desc="synthesizing", unit="input", disable=not progress) as bar:
        for chunk in chunks(jobs):
            skipped += run_chunk(model, batch, chunk, tick=bar.update).skipped
    return finish(batch, jobs, skipped)


def run_chunk(model, batch: Batch, jobs: list[Job], tick=None) -> ChunkReport:
    """Synthesize the inputs of one chunk whose folders are not done, writing each folder atomically;
    tick(n) is called as inputs are done or skipped."""
    tick = tick or (lambda n: None)
    todo = [job for job in jobs if not is_done(batch, job)]
    tick(len(jobs) - len(todo))
    if not todo:
        return ChunkReport(len(jobs), 0, [])
    inputs, skipped = _read(model, batch, jobs)
    made = 0
    for job in todo:
        if job.folder not in inputs:
            tick(1)
            continue
        x, target = inputs[job.folder]
        result = model.synthesize(x, batch.request)
        final = batch.out / job.folder
        if final.exists():  # made with other settings, or left by a run without resume
            shutil.rmtree(final)
        with atomic_folder(final) as tmp:
            write_result(tmp, result, model.bank, target=target, title=job.title, signal=model.config["signal"])
            (tmp / MARK).write_text(_mark(batch, job))
        made += 1
        tick(1)
    return ChunkReport(len(jobs), made, [skipped[job.folder] for job in todo if job.folder in skipped])


def _read(model, batch: Batch, jobs: list[Job]) -> tuple[dict[str, tuple], dict[str, str]]:
    """{folder: (x, target)} of the chunk's readable inputs, and {folder: 'name (reason)'} of the others.
    The samples of a chunk are prepared together (all of them, done or not, for the same batches)."""
    inputs, skipped = {}, {}
    samples = [job for job in jobs if job.sample is not None]
    if samples:
        ready, why = _prepare([job.sample for job in samples], batch.prep)
        for job in samples:
            if job.sample.name in ready:
                inputs[job.folder] = ready[job.sample.name]
            else:
                skipped[job.folder] = f"{job.title} ({why.get(job.sample.name, 'could not be read')})"
    for job in jobs:
        if job.x is not None:
            inputs[job.folder] = (job.x, job.target)
        elif job.file is not None:
            try:
                inputs[job.folder] = _from_file(model, job.file, batch.from_photo)
            except DataError as exc:
                skipped[job.folder] = f"{job.title} ({exc})"
    return inputs, skipped


def _prepare(samples: list[Sample], prep: tuple) -> tuple[dict[str, tuple], dict[str, str]]:
    """{name: (x, y)} of the samples prepared together, and {name: why} of those that could not be read."""
    size, signal, factor = prep
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)  # reported once for the whole batch
        try:
            prepared, skipped = prepare(samples, size=size, signal=signal, factor=factor, progress=False)
        except DataError as exc:  # none of them readable
            return {}, {s.name: str(exc) for s in samples}
    ready = {name: (x, y) for name, x, y in zip(prepared.names, prepared.x, prepared.y)}
    return ready, dict(skipped)


def _from_file(model, path: Path, from_photo: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """(input, target) from an image file: the model's input made from a photo, or the file itself as
    the input signal, fitted to the model's input shape (size and channels)."""
    image = load_rgb(path)
    if from_photo:
        return model.input_from_photo(image), fit_square(image, model.model.cfg.size)
    h, _, c = model.input_shape
    x = fit_square(image, h)
    return (x.mean(axis=2, keepdims=True).round().astype(np.uint8) if c == 1 else x), None


def finish(batch: Batch, jobs: list[Job], skipped: list[str]) -> list[Path]:
    """Report the unreadable inputs (an error when none was readable) and write out/index.html linking
    every finished input in the batch's order; returns their pages."""
    if skipped:
        listed = ", ".join(skipped[:3]) + (f", ... (+{len(skipped) - 3} more)" if len(skipped) > 3 else "")
        if len(skipped) == len(jobs):
            raise DataError(f"none of the {len(jobs)} input images could be read: {listed}")
        warn_data(f"skipped {len(skipped)} of {len(jobs)} input images that could not be read: {listed}")
    pages = [batch.out / job.folder / "index.html" for job in jobs if is_done(batch, job)]
    write_index(batch.out, pages)
    return pages
