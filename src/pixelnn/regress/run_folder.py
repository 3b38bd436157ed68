"""A training run's folder, shared by stage 1 and pix2pix: config.json says what was trained on
which data, metrics.json how well it fits. A folder holds one model; training into a folder that
holds a model of another configuration is refused before any work."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..fileio import write_json

CONFIG = "config.json"
METRICS = "metrics.json"
MEASURED = 500  # training pairs whose fit is measured


def claim(root: Path, config: dict, key: str, model_cfg: dict, train_cfg, what: str) -> None:
    """Write root/config.json: the data description `config`, the model's configuration under `key` and
    the training options; refused when the folder already holds a `what` of another configuration."""
    path = Path(root) / CONFIG
    if path.exists():
        old = read_config(path)
        if old.get(key) != model_cfg or old.get("signal") != config.get("signal"):
            raise ConfigError(
                f"{root} already holds a {what} with another configuration ({old.get('signal')}, "
                f"{old.get(key)}); choose another --out folder"
            )
    write_json(path, {**config, key: model_cfg, "train": asdict(train_cfg)})


def read_config(path: Path) -> dict:
    """The JSON object in a run's config.json; a ConfigError names the file when it is not one."""
    try:
        config = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path} is not a readable configuration ({e}); choose another --out folder") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path} is damaged: it holds no JSON object; choose another --out folder")
    return config


def measure(evaluate: Callable[[np.ndarray, np.ndarray], dict], x: np.ndarray, y: np.ndarray, val=None) -> dict:
    """{'train': evaluate on the first MEASURED training pairs, 'val': on the (x, y) pair `val` if given}."""
    metrics = {"train": evaluate(x[:MEASURED], y[:MEASURED])}
    if val is not None:
        metrics["val"] = evaluate(*val)
    return metrics


def write_metrics(root: Path, metrics: dict) -> None:
    write_json(Path(root) / METRICS, metrics)
