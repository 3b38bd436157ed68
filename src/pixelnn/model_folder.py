"""A model folder on disk: `ModelFolder` knows its layout and keeps it consistent.

    config.json          what was trained on which data (regress/run_folder.py writes it while training)
    stage1.safetensors   the stage-1 network (regress/checkpoint.py; an old stage1.pt still loads)
    metrics.json         how well stage 1 fits, and what its training did
    README.md            the model card, rewritten from the three above and the bank's manifest
    bank/                the exemplar bank (bank/store.py), or bank-ref.json naming one kept elsewhere
    folds/k/             the fold models of a cross-fitted bank (bank/stage1.py), model folders themselves
    cache/               prepared training data

Code outside this module asks a ModelFolder for these paths instead of joining file names itself.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .bank import store
from .bank.stage1 import fold_folder
from .errors import ConfigError
from .fileio import fsync_path, write_json
from .regress import checkpoint, run_folder

CONFIG = run_folder.CONFIG
METRICS = run_folder.METRICS
CARD = run_folder.CARD
BANK = "bank"  # a model folder's own bank
BANK_REF = "bank-ref.json"  # instead of bank/: {"path": the absolute path of a bank kept elsewhere} (PixelNN.save)
CACHE = "cache"
# Keys of config.json a model folder needs (signal) or may have, with their types.
CONFIG_KEYS = {"signal": str, "factor": int, "size": int, "backbone": str, "stage1": dict}
REQUIRED_KEYS = ("signal",)


@dataclass(frozen=True)
class ModelFolder:
    """The folder `root` of one model (made by `pixelnn train`, PixelNN.save or write_run)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def checkpoint(self) -> Path:
        """The stage-1 file to read (stage1.safetensors, or an old stage1.pt in its place)."""
        return checkpoint.locate(self.root / checkpoint.FILENAME)

    @property
    def cache(self) -> Path:
        return self.root / CACHE

    def fold(self, k: int) -> ModelFolder:
        """The model folder of fold model k of a cross-fitted bank."""
        return ModelFolder(fold_folder(self.root, k))

    def config(self) -> dict:
        """config.json, checked: a ConfigError names the folder when it is not a model folder or is damaged."""
        path = self.root / CONFIG
        if not path.exists():
            raise ConfigError(
                f"{self.root} is not a PixelNN model folder (missing {CONFIG}); train one with `pixelnn train`"
            )
        try:
            config = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConfigError(f"{path} is not a readable model configuration ({e})") from None
        _check_config(path, config)
        return config

    def metrics(self) -> dict:
        """metrics.json, or {} when there is none (metrics are a report, not needed to run)."""
        return run_folder.read_metrics(self.root)

    def bank(self) -> Path:
        """The folder's own bank: root/bank, or the folder named by root/bank-ref.json (PixelNN.save)."""
        ref = self.root / BANK_REF
        if (self.root / BANK).exists() or not ref.exists():
            return self.root / BANK
        try:
            target = json.loads(ref.read_text())["path"]
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
            raise ConfigError(f"{ref} is damaged ({e.__class__.__name__}: {e}); save the model again") from None
        if not isinstance(target, str):
            raise ConfigError(f"{ref} is damaged: its path is not a string; save the model again")
        return Path(target)

    def write_card(self) -> Path:
        """Rewrite README.md (the model card) from the configuration, metrics and own bank."""
        bank = self.bank()
        manifest = store.read_manifest(bank) if (bank / store.MANIFEST).exists() else None
        where = f"{BANK}/" if bank == self.root / BANK else str(bank)
        return run_folder.write_model_card(self.root, manifest, where)

    def swap_bank(self, build: Callable[[Path], dict]) -> dict:
        """Build a new own bank with build(folder) next to the old one, then swap it in (the old bank
        survives a failure, and an interrupted swap is undone by the next); returns build's manifest."""
        fresh, old, bank = self.root / ".bank-new", self.root / ".bank-old", self.root / BANK
        if old.exists() and not bank.exists():  # an earlier swap was interrupted: restore
            old.rename(bank)
        for p in (fresh, old):
            shutil.rmtree(p, ignore_errors=True)
        manifest = build(fresh)
        if bank.exists():
            bank.rename(old)
        fresh.rename(bank)
        fsync_path(self.root)  # the swap survives a power cut
        shutil.rmtree(old, ignore_errors=True)
        self.write_card()
        return manifest

    def fill(self, config: dict, model, bank, mode: str, metrics_from: ModelFolder | None = None) -> None:
        """Write a model into this new, empty folder: config.json, stage1.safetensors, its bank (mode 'copy':
        the bank as opened; 'reference': bank-ref.json naming it), metrics (from `metrics_from`), the card."""
        write_json(self.root / CONFIG, {**config, "stage1": model.cfg.to_dict()})
        checkpoint.save(self.root / checkpoint.FILENAME, model, {"done": True})
        if mode == "copy":
            _copy_bank(bank, self.root / BANK)
        else:
            write_json(self.root / BANK_REF, {"path": str(bank.root.resolve())})
        if metrics_from is not None and (metrics_from.root / METRICS).exists():
            shutil.copyfile(metrics_from.root / METRICS, self.root / METRICS)
        self.write_card()


def _copy_bank(bank, dest: Path) -> None:
    """Copy a bank as opened (its manifest, the shards listed there and its projection) into the new folder dest."""
    dest.mkdir()
    for entry in bank.manifest["shards"]:
        shutil.copytree(bank.root / entry["name"], dest / entry["name"])
    for name in store.encoding_files(bank.manifest):
        shutil.copyfile(bank.root / name, dest / name)
    write_json(dest / store.MANIFEST, bank.manifest)


def _check_config(path: Path, config) -> None:
    """Refuse a config.json that is not an object, lacks the signal, or has a key of the wrong type."""
    if not isinstance(config, dict):
        raise ConfigError(f"{path} is damaged: it holds a JSON {type(config).__name__}, not an object")
    for key in REQUIRED_KEYS:
        if key not in config:
            raise ConfigError(f"{path} is damaged: it lacks the key {key!r}")
    for key, kind in CONFIG_KEYS.items():
        value = config.get(key)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            raise ConfigError(f"{path} is damaged: {key} must be a {kind.__name__}, not {value!r}")
        if kind is int and value is not None and value < 1:
            raise ConfigError(f"{path} is damaged: {key} must be at least 1, not {value!r}")
