"""What a user asks of a synthesis, parsed and checked once: `Request`.

A request is the candidate grid, the restriction of the exemplars (labels, ids, an example photo
and how many of its nearest exemplars to keep), the regions that restrict them locally, the copy
mode and whether to rank. The CLI (`from_cli`), the web app (`from_form`) and Python (`Request.make`,
or the keyword arguments of PixelNN.synthesize) all build one here; Ray and batch runs carry it, and
`key()` names it in cache keys. What depends on a model (the grid's memory at its size, ids within
its bank, labels it has) is checked by the model, before any work.

>>> r = Request.make(grid="1:1:3,3:1:whole", ids=[4, 2], copy="eq3")
>>> [str(s) for s in r.grid], r.ids, r.copy
(['1:1:3', '3:1:whole'], (2, 4), 'eq3')
>>> Request.make(like_k=5)
Traceback (most recent call last):
pixelnn.errors.ConfigError: like_k (how many exemplars like the example image to keep) needs an example image ...
>>> Request.parse_ids("3,,7")
Traceback (most recent call last):
pixelnn.errors.ConfigError: ids takes comma-separated exemplar ids such as 3,17,42; got '3,,7'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.images import fit_square, load_rgb
from ..errors import ConfigError
from ..hashing import arrays_hash, json_hash
from ..numbers import strict_int
from . import LIKE_K
from . import grid as grids
from .coherence import COPY_MODES, DEFAULT_COPY
from .control import ExemplarSet


@dataclass(frozen=True)
class Limits:
    """The most a request may ask for (the web app has tighter limits than the CLI and Python)."""

    candidates: int = grids.MAX_CANDIDATES
    neighbours: int = grids.MAX_NEIGHBOURS
    windows: int = grids.MAX_WINDOWS  # each distinct window size is one more matching pass per exemplar

    def check(self, specs: Sequence[grids.Spec]) -> None:
        if not specs:
            raise ConfigError("the grid has no candidate")
        for what, value, limit in (
            ("candidates", len(specs), self.candidates),
            ("neighbour rank", grids.neighbours_needed(specs), self.neighbours),
            ("distinct window sizes", len({s.window for s in specs}), self.windows),
        ):
            if value > limit:
                raise ConfigError(f"the grid asks for {what} {value}; the limit is {limit}")


@dataclass(frozen=True, eq=False)
class Request:
    """One synthesis request, checked. Build it with `make`, `from_cli` or `from_form`.

    grid: the candidates (n neighbours, first rank, window); labels: keep exemplars with one of these
    labels ('Boots' also matches 'Boots/Ankle'); ids: keep these bank ids; like: an example photo,
    (h, w, 3) uint8, whose like_k nearest exemplars are kept; regions: ExemplarSets with masks, each
    replacing the restriction inside its mask (later ones win); copy: how pixels are copied
    (synth/coherence.py); rank: order the candidates best first. Conditions combine by intersection.
    """

    grid: tuple[grids.Spec, ...]
    labels: tuple[str, ...] | None = None
    ids: tuple[int, ...] | None = None
    like: np.ndarray | None = None
    like_k: int = LIKE_K
    regions: tuple[ExemplarSet, ...] = ()
    copy: str = DEFAULT_COPY
    rank: bool = True

    @classmethod
    def make(
        cls,
        grid: Sequence[grids.Spec] | str | None = None,
        labels: Sequence[str] | None = None,
        ids: Sequence[int] | None = None,
        like: np.ndarray | None = None,
        like_k: int | None = None,
        regions: Sequence[ExemplarSet] = (),
        copy: str = DEFAULT_COPY,
        rank: bool = True,
        limits: Limits = Limits(),
    ) -> Request:
        """A checked request; every value that cannot be used is a ConfigError that names it."""
        specs = tuple(grids.parse(grid) if isinstance(grid, str) else (grid if grid is not None else grids.paper72()))
        limits.check(specs)
        if copy not in COPY_MODES:
            raise ConfigError(f"copy must be one of {', '.join(COPY_MODES)}, not {copy!r}")
        if like_k is not None and like is None:
            raise ConfigError(
                "like_k (how many exemplars like the example image to keep) needs an example image (like); "
                "give both or neither"
            )
        like_k = LIKE_K if like_k is None else like_k
        if like_k < 1:
            raise ConfigError(
                f"like_k (how many exemplars like the example image to keep) must be at least 1, got {like_k}"
            )
        return cls(
            specs,
            _labels(labels),
            _ids(ids),
            None if like is None else _photo(like, "the example image (like)"),
            like_k,
            tuple(regions),
            copy,
            bool(rank),
        )

    @classmethod
    def given(cls, request: Request | None, options: dict) -> Request:
        """`request`, or one made from its values as keyword arguments (the two ways callers pass one)."""
        if request is None:
            return cls.make(**options)
        if options:
            raise ConfigError(f"give a Request or its values ({', '.join(sorted(options))}), not both")
        return request

    @classmethod
    def from_cli(cls, args, size: int) -> Request:
        """The request of `pixelnn synthesize`'s arguments, for a model of size x size outputs."""
        if args.like_k is not None and not args.like:
            raise ConfigError("--like-k says how many exemplars like the --like photo to keep; give --like too")
        return cls.make(
            grid=args.grid,
            labels=args.restrict_labels,
            ids=cls.parse_ids(args.ids, "--ids") if args.ids is not None else None,
            like=load_rgb(args.like) if args.like else None,
            like_k=args.like_k,
            regions=[parse_region(text, size) for text in args.region or []],
            copy=args.copy,
        )

    @staticmethod
    def parse_ids(text: str, name: str = "ids") -> tuple[int, ...]:
        """'3,17,42' -> (3, 17, 42); anything else (an empty item, a word) is a ConfigError naming `name`."""
        try:
            return tuple(strict_int(i) for i in text.split(","))
        except ValueError:
            raise ConfigError(f"{name} takes comma-separated exemplar ids such as 3,17,42; got {text!r}") from None

    def options(self) -> dict:
        """The request as keyword arguments of Request.make (the inverse of make)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def key(self) -> str:
        """A short hash of everything the request decides (images and masks by content), for caches."""
        return json_hash(_plain(self.options()))

    def describe(self) -> dict:
        """What a result page or the web app shows of the request."""
        return {
            "grid": ",".join(str(s) for s in self.grid),
            "labels": list(self.labels) if self.labels else None,
            "ids": list(self.ids) if self.ids is not None else None,
            "like_k": self.like_k if self.like is not None else None,
            "regions": len(self.regions),
            "copy": self.copy,
        }

    def __eq__(self, other) -> bool:
        return isinstance(other, Request) and self.key() == other.key()

    def __hash__(self) -> int:
        return hash(self.key())


def parse_region(text: str, size: int) -> ExemplarSet:
    """'MASK.png:ids=1,2' | 'MASK.png:label=Boots' | 'MASK.png:like=photo.jpg' -> an ExemplarSet whose
    mask (the white pixels of MASK.png, fitted to size x size) it governs."""
    path, sep, rule = text.rpartition(":")
    key, eq, value = rule.partition("=")
    if not sep or not eq or key not in ("ids", "label", "like"):
        raise ConfigError(
            f"bad --region {text!r}: write MASK.png:ids=1,2 or MASK.png:label=NAME or MASK.png:like=PHOTO"
        )
    mask = fit_square(load_rgb(Path(path)), size).mean(axis=2) > 127  # white = inside the region
    if key == "ids":
        return ExemplarSet(ids=Request.parse_ids(value, f"--region {text!r}"), mask=mask)
    if key == "label":
        return ExemplarSet(labels=[value], mask=mask)
    return ExemplarSet(like=load_rgb(Path(value)), mask=mask)


def _labels(labels: Sequence[str] | None) -> tuple[str, ...] | None:
    if labels is None:
        return None
    if isinstance(labels, str):
        labels = [labels]
    out = tuple(str(label) for label in labels)
    if not out or any(not label for label in out):
        raise ConfigError(f"labels must be non-empty names, got {list(out)!r}")
    return out


def _ids(ids: Sequence[int] | None) -> tuple[int, ...] | None:
    """Sorted distinct ids; an empty list is refused (it would keep no exemplar, or silently all)."""
    if ids is None:
        return None
    try:
        out = sorted({strict_int(i) for i in ids})
    except (TypeError, ValueError):
        raise ConfigError(f"ids must be exemplar ids (whole numbers), got {list(ids)!r}") from None
    if not out:
        raise ConfigError("ids lists no exemplar; leave it out to copy from every exemplar")
    if out[0] < 0:
        raise ConfigError(f"exemplar ids are 0 or more, got {out[0]}")
    return tuple(out)


def _photo(image, what: str) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ConfigError(f"{what} must be an (h, w, 3) uint8 RGB image, got {image.dtype} {image.shape}")
    return image


def _plain(value):
    """A JSON-able stand-in: arrays by their content hash, dataclasses as dicts."""
    if isinstance(value, np.ndarray):
        return {"array": arrays_hash(value), "shape": list(value.shape), "dtype": str(value.dtype)}
    if isinstance(value, grids.Spec):
        return str(value)
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
