"""Data options shared by the CLI and the library, importable without numpy (so --help is instant).

DataOptions says where samples come from and how they become (x, y) pairs. The CLI builds it from
its arguments; verbs that use a trained model fit it to the model (for_model) instead of editing
the arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import ConfigError

SIZE, FACTOR = 96, 8  # the paper's working size, and its 12x12 inputs of 96x96 faces
SIGNALS = ("lowres", "edges", "canny", "normals")  # the inputs PixelNN can make from photos (data/signals.py)
EDGE_SIGNALS = ("edges", "canny")  # of which edge maps


@dataclass(frozen=True)
class DataOptions:
    data: Path | None = None  # folder of photos, of pair files (pairs) or of inputs (targets)
    pairs: str | None = None  # AtoB | BtoA: files hold input|target side by side
    targets: Path | None = None  # folder of target photos matching the inputs in `data`
    signal: str | None = None  # one of SIGNALS, for a folder of photos
    labels: str | None = None  # 'path', 'path:N' or a CSV file
    size: int = SIZE  # working size of outputs
    factor: int = FACTOR  # downsampling factor of the lowres signal
    limit: int | None = None  # only the first `limit` samples
    given: frozenset[str] = frozenset()  # of size and factor, those the user set (a model's own win otherwise)

    @classmethod
    def from_args(cls, args) -> DataOptions:
        """The data options of parsed CLI arguments (cli._data_args), refusing ways of reading data that
        exclude each other.

        >>> from argparse import Namespace as N
        >>> DataOptions.from_args(N(data=None, pairs="BtoA", targets=None, signal="edges", labels=None,
        ...                         size=None, factor=None, limit=None))
        Traceback (most recent call last):
        pixelnn.errors.ConfigError: --pairs and --signal exclude each other: pair files hold their input ...
        """
        ways = [f"--{name}" for name in ("pairs", "targets", "signal") if getattr(args, name)]
        if len(ways) > 1:
            raise ConfigError(
                f"{' and '.join(ways)} exclude each other: pair files hold their input (--pairs), a --targets "
                "folder pairs inputs with photos by name, and --signal makes the input from photos"
            )
        given = frozenset(name for name in ("size", "factor") if getattr(args, name) is not None)
        size, factor = args.size or SIZE, args.factor or FACTOR
        return cls(args.data, args.pairs, args.targets, args.signal, args.labels, size, factor, args.limit, given)

    @property
    def kind(self) -> str:
        """What the samples are: 'folders' (inputs and targets), 'pairs' (pair files) or the signal.

        >>> DataOptions(pairs="BtoA").kind, DataOptions(signal="edges").kind
        ('pairs', 'edges')
        """
        return "folders" if self.targets else "pairs" if self.pairs else self.signal

    def for_model(self, config: dict, size: int) -> DataOptions:
        """These options fitted to a model of configuration `config` making size x size outputs: its size
        and factor, and for a folder of photos given without a signal, the model's signal. A size or
        factor the user set that differs from the model's is refused (the model cannot use it)."""
        factor = config.get("factor", self.factor)
        for name, own in (("size", size), ("factor", factor)):
            if name in self.given and getattr(self, name) != own:
                raise ConfigError(
                    f"--{name} {getattr(self, name)}: this model was trained with {name} {own} and works at that "
                    f"only; leave --{name} out"
                )
        signal = self.signal
        if signal is None and not (self.pairs or self.targets) and config["signal"] in SIGNALS:
            signal = config["signal"]
        return replace(self, signal=signal, size=size, factor=factor)

    def describe(self) -> dict:
        """The options as written into a model folder's config.json."""
        targets = str(self.targets) if self.targets else None
        data = {"source": str(self.data), "pairs": self.pairs, "targets": targets, "labels": self.labels}
        return {"signal": self.kind, "factor": self.factor, "size": self.size, "data": data}
