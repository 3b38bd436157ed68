"""Connecting to a Ray cluster, and turning what its tasks raise into PixelNN's errors."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from pathlib import Path

from ..errors import ClusterError, ConfigError, PixelNNError

log = logging.getLogger(__name__)

INSTALL = "pip install 'pixelnn[ray]'"


def import_ray():
    """The ray module, or a ConfigError that says how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--ray needs Ray, which is not installed: install it with `{INSTALL}`") from None
    return ray


def connect(address: str):
    """Join the Ray cluster at `address` ('auto': the one this machine belongs to, or else a new one on
    this machine) unless this process is connected already; returns the ray module."""
    ray = import_ray()
    if not ray.is_initialized():
        try:
            ray.init(address=None if address == "auto" else address, logging_level=logging.WARNING)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise ClusterError(f"--ray {address}: cannot connect to a Ray cluster there ({exc})") from None
    return ray


def cluster_cpus(ray) -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def even_chunk(total: int, workers: int, step: int, most: int) -> int:
    """A chunk size that gives each of `workers` about one chunk of `total` items: a multiple of `step`,
    at most `most` (more chunks than workers beyond that).

    >>> even_chunk(400, 2, 16, 1024), even_chunk(100_000, 8, 16, 1024), even_chunk(3, 4, 16, 1024)
    (208, 1024, 16)
    """
    size = math.ceil(max(total, 1) / workers)
    return max(step, min(most, math.ceil(size / step) * step))


def results(ray, refs: list, what: str, progress: bool, sizes: list[int] | None = None) -> Iterator[tuple[int, object]]:
    """(position, result) of each task as it finishes. A task's PixelNNError is raised as itself; a task
    that failed for good (its retries spent) raises a ClusterError naming `what`; the others are cancelled."""
    from tqdm import tqdm

    where = {ref: i for i, ref in enumerate(refs)}
    pending = list(refs)
    total = sum(sizes) if sizes else len(refs)
    with tqdm(total=total, desc=what, disable=not progress) as bar:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            i = where[done[0]]
            try:
                value = ray.get(done[0])
            except Exception as exc:
                for ref in pending:
                    ray.cancel(ref)
                raise user_error(ray, exc, what, i) from None
            bar.update(sizes[i] if sizes else 1)
            yield i, value


def user_error(ray, exc: Exception, what: str, i: int | None = None) -> Exception:
    """What a failed task raised, as the error to show: its own PixelNNError, or a ClusterError."""
    cause = getattr(exc, "cause", None)
    if isinstance(exc, ray.exceptions.RayTaskError) and isinstance(cause, PixelNNError):
        return cause
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    task = "a task" if i is None else f"task {i}"
    return ClusterError(f"{what}: {task} failed after its retries ({type(exc).__name__}: {first}); rerun to finish")


def absolute(path: Path | None) -> Path | None:
    """Paths sent to tasks are absolute: a worker's working folder is not the driver's."""
    return None if path is None else Path(path).absolute()
