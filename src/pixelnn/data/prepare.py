"""Load a list of Samples once into (input, target) arrays; save and reload them as .npz."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import ConfigError, DataError
from ..fileio import write_npz
from .images import UnreadableImage, fit_square, load_rgb
from .notice import examples, warn_data
from .options import SIGNALS
from .signals import lowres, signal_from_photos
from .sources import Sample

FORMAT = "pixelnn-prepared-1"
_KEYS = ("format", "x", "y", "names", "labels", "labeled", "signal")


@dataclass
class Prepared:
    x: np.ndarray  # (N, h, w, c) uint8 input signals
    y: np.ndarray  # (N, S, S, 3) uint8 target photos
    names: list[str]
    labels: list[str | None]
    signal: str  # 'lowres' | 'edges' | 'canny' | 'pairs' | 'folders'


def sample_kind(samples: Sequence[Sample]) -> str:
    """'photos', 'pairs' or 'folders'; all samples must be of one kind."""
    kinds = {"pairs" if s.half else "folders" if s.input is not None else "photos" for s in samples}
    if len(kinds) != 1:
        raise ConfigError(f"samples mix several layouts ({', '.join(sorted(kinds))}); use one source")
    return kinds.pop()


def _check_signal(kind: str, signal: str | None, size: int, factor: int) -> None:
    if kind != "photos":
        if signal is not None:
            raise ConfigError(f"signal {signal!r} applies to photo folders only; {kind} carry their own input")
        return
    if signal not in SIGNALS:
        raise ConfigError(f"a photo folder needs an input signal, one of {', '.join(SIGNALS)}; got {signal!r}")
    if signal == "lowres":
        lowres(np.zeros((0, size, size, 3), np.uint8), factor)  # size/factor check before loading
    if signal == "normals":
        from .face_normals import require

        require()  # the optional extra, before loading anything


def load_pair(sample: Sample, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(input, target), each (size, size, 3) uint8, for one sample of any kind.

    Photos: the input is empty, (0, 0, 3); signals are made later for all photos at once.
    """
    if sample.half is not None:
        both = load_rgb(sample.target)  # (H, W, 3) uint8, A|B side by side
        mid = both.shape[1] // 2
        if mid == 0:
            raise UnreadableImage(sample.target, "too narrow to split into two halves")
        left, right = both[:, :mid], both[:, mid : 2 * mid]
        target, source = (left, right) if sample.half == "left" else (right, left)
        return fit_square(source, size), fit_square(target, size)
    target = fit_square(load_rgb(sample.target), size)
    if sample.input is None:
        return np.zeros((0, 0, 3), np.uint8), target
    return fit_square(load_rgb(sample.input), size), target


def _skip_reason(sample: Sample, exc: UnreadableImage) -> str:
    """Why a sample was skipped; names the input file when that is the unreadable one."""
    return exc.reason if exc.path == str(sample.target) else f"input {exc.path}: {exc.reason}"


def _skip_message(skipped: list[tuple[str, str]], total: int, shown: int = 3) -> str:
    listed = ", ".join(f"{name} ({reason})" for name, reason in skipped[:shown])
    more = f", ... (+{len(skipped) - shown} more)" if len(skipped) > shown else ""
    return f"skipped {len(skipped)} of {total} images that could not be read: {listed}{more}"


def prepare(
    samples: Sequence[Sample],
    size: int = 96,
    signal: str | None = None,
    factor: int = 8,
    progress: bool = True,
) -> tuple[Prepared, list[tuple[str, str]]]:
    """Load, crop and resize every sample once; unreadable files are skipped and reported.

    Returns the Prepared arrays and the skipped (name, reason) pairs.
    """
    if not samples:
        raise DataError("no samples to prepare")
    kind = sample_kind(samples)
    _check_signal(kind, signal, size, factor)
    n = len(samples)
    y_all = np.empty((n, size, size, 3), np.uint8)  # (N, S, S, 3), trimmed to the kept rows
    x_all = np.empty((n if kind != "photos" else 0, size, size, 3), np.uint8)  # inputs from files
    kept: list[Sample] = []
    skipped: list[tuple[str, str]] = []
    for sample in tqdm(samples, desc="loading images", unit="img", disable=not progress):
        try:
            x, y = load_pair(sample, size)
        except UnreadableImage as exc:
            skipped.append((sample.name, _skip_reason(sample, exc)))
            continue
        y_all[len(kept)] = y
        if kind != "photos":
            x_all[len(kept)] = x
        kept.append(sample)
    if skipped:
        message = _skip_message(skipped, n)
        if not kept:
            raise DataError(f"none of the {n} images could be read; {message}")
        warn_data(message)
        y_all, x_all = y_all[: len(kept)].copy(), x_all[: len(kept)].copy()
    if kind == "photos":
        x_all, y_all, kept = _signal(signal, y_all, kept, factor, progress)  # type: ignore[arg-type]
    prepared = Prepared(
        x=x_all,
        y=y_all,
        names=[s.name for s in kept],
        labels=[s.label for s in kept],
        signal=signal if kind == "photos" else kind,  # type: ignore[arg-type]
    )
    return prepared, skipped


def _signal(
    signal: str, y: np.ndarray, kept: list[Sample], factor: int, progress: bool
) -> tuple[np.ndarray, np.ndarray, list[Sample]]:
    """(x, y, samples) of the photos that have the signal: the normals signal leaves out, with a
    count in the log, the photos in which no face is found (DataError when none has one)."""
    x, has = signal_from_photos(signal, y, factor=factor, progress=progress)
    if has.all():
        return x, y, kept
    names = [s.name for s, ok in zip(kept, has) if not ok]
    if not has.any():
        raise DataError(f"no face found in any of the {len(kept)} photos: the {signal} signal needs photos of faces")
    warn_data(
        f"skipped {len(names)} of {len(kept)} photos in which no face was found ({signal} signal): " + examples(names)
    )
    return x[has], y[has], [s for s, ok in zip(kept, has) if ok]


def save_prepared(path: str | os.PathLike, prepared: Prepared) -> None:
    """Write prepared arrays atomically as a compressed .npz (no pickled objects)."""
    write_npz(
        path,
        format=np.array(FORMAT),
        x=prepared.x,
        y=prepared.y,
        names=np.array(prepared.names, dtype=str),
        labels=np.array(["" if v is None else v for v in prepared.labels], dtype=str),
        labeled=np.array([v is not None for v in prepared.labels], dtype=bool),
        signal=np.array(prepared.signal),
    )


def load_prepared(path: str | os.PathLike) -> Prepared:
    """Read a file written by save_prepared; DataError if it is missing, corrupt or something else."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: prepared data file not found")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in _KEYS if k not in npz.files]
            if missing:
                raise DataError(f"{path}: not a PixelNN prepared-data file (missing {', '.join(missing)})")
            arrays = {k: npz[k] for k in _KEYS}
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise DataError(f"{path}: cannot read prepared data ({type(exc).__name__}: {exc})") from exc
    return _from_arrays(path, arrays)


def _from_arrays(path: Path, a: dict[str, np.ndarray]) -> Prepared:
    if str(a["format"]) != FORMAT:
        raise DataError(f"{path}: prepared-data format {str(a['format'])!r}, expected {FORMAT!r}")
    n = len(a["y"])
    if a["x"].dtype != np.uint8 or a["y"].dtype != np.uint8 or a["x"].ndim != 4 or a["y"].ndim != 4:
        raise DataError(f"{path}: x and y must be 4-d uint8 arrays")
    if not (len(a["x"]) == len(a["names"]) == len(a["labels"]) == len(a["labeled"]) == n):
        raise DataError(f"{path}: x, y, names and labels have different lengths")
    labels = [str(v) if ok else None for v, ok in zip(a["labels"], a["labeled"])]
    return Prepared(x=a["x"], y=a["y"], names=[str(v) for v in a["names"]], labels=labels, signal=str(a["signal"]))
