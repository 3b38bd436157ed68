"""Data options shared by the CLI and the library, importable without numpy (so --help is instant).

DataOptions says where samples come from and how they become (x, y) pairs. The CLI builds it from
its arguments; verbs that use a trained model fit it to the model (for_model) instead of editing
the arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

SIGNALS = ("lowres", "edges", "canny", "normals")  # the inputs PixelNN can make from photos (data/signals.py)
EDGE_SIGNALS = ("edges", "canny")  # of which edge maps


@dataclass(frozen=True)
class DataOptions:
    data: Path | None = None  # folder of photos, of pair files (pairs) or of inputs (targets)
    pairs: str | None = None  # AtoB | BtoA: files hold input|target side by side
    targets: Path | None = None  # folder of target photos matching the inputs in `data`
    signal: str | None = None  # one of SIGNALS, for a folder of photos
    labels: str | None = None  # 'path', 'path:N' or a CSV file
    size: int = 96  # working size of outputs
    factor: int = 8  # downsampling factor of the lowres signal
    limit: int | None = None  # only the first `limit` samples

    @classmethod
    def from_args(cls, args) -> DataOptions:
        """The data options of parsed CLI arguments (cli._data_args)."""
        return cls(args.data, args.pairs, args.targets, args.signal, args.labels, args.size, args.factor, args.limit)

    @property
    def kind(self) -> str:
        """What the samples are: 'folders' (inputs and targets), 'pairs' (pair files) or the signal.

        >>> DataOptions(pairs="BtoA").kind, DataOptions(signal="edges").kind
        ('pairs', 'edges')
        """
        return "folders" if self.targets else "pairs" if self.pairs else self.signal

    def for_model(self, config: dict, size: int) -> DataOptions:
        """These options fitted to a model of configuration `config` making size x size outputs: its size
        and factor, and for a folder of photos given without a signal, the model's signal."""
        signal = self.signal
        if signal is None and not (self.pairs or self.targets) and config["signal"] in SIGNALS:
            signal = config["signal"]
        return replace(self, signal=signal, size=size, factor=config.get("factor", self.factor))

    def describe(self) -> dict:
        """The options as written into a model folder's config.json."""
        targets = str(self.targets) if self.targets else None
        data = {"source": str(self.data), "pairs": self.pairs, "targets": targets, "labels": self.labels}
        return {"signal": self.kind, "factor": self.factor, "size": self.size, "data": data}
