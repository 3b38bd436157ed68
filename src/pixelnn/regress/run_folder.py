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
from ..fileio import write_json, write_text

CONFIG = "config.json"
METRICS = "metrics.json"
CARD = "README.md"  # the model card: what a model folder holds, in words
MEASURED = 500  # training pairs whose fit is measured


def claim(root: Path, config: dict, key: str, model_cfg: dict, train_cfg, what: str) -> None:
    """Write root/config.json: the data description `config`, the model's configuration under `key` and
    the training options; refused when the folder already holds a `what` of another configuration."""
    path = Path(root) / CONFIG
    if path.exists():
        old = read_config(path)
        if _network(old.get(key)) != _network(model_cfg) or old.get("signal") != config.get("signal"):
            raise ConfigError(
                f"{root} already holds a {what} with another configuration ({old.get('signal')}, "
                f"{old.get(key)}); choose another --out folder"
            )
        _same_budget(root, old.get("train"), asdict(train_cfg))
    write_json(path, {**config, key: model_cfg, "train": asdict(train_cfg)})


BUDGET = ("minutes", "steps", "epochs", "batch", "lr", "weight_decay", "seed", "flip")  # what shapes a training run


def _same_budget(root: Path, old: dict | None, new: dict) -> None:
    """Refuse to resume a training run with another budget: its learning rate follows a cosine over the
    budget it started with, so a changed one would be ignored in part and silently rewritten."""
    changed = [k for k in BUDGET if old is not None and k in old and k in new and old[k] != new[k]]
    if changed:
        was = ", ".join(f"{k} {old[k]}" for k in changed)
        now = ", ".join(f"{k} {new[k]}" for k in changed)
        raise ConfigError(
            f"{root} was trained with {was}, and this run asks for {now}: resume with the same budget "
            "(--minutes, --steps, --epochs, --batch, --weight-decay), or train into another --out"
        )


def _network(model_cfg: dict | None) -> dict | None:
    """A model configuration without how its training starts ('zero_head', which folders made before it
    existed lack): what decides whether a folder holds the same network."""
    return None if model_cfg is None else {k: v for k, v in model_cfg.items() if k != "zero_head"}


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


def read_metrics(root: Path) -> dict:
    """root/metrics.json, or {} when there is none or it cannot be read (metrics are a report, not needed to run)."""
    try:
        metrics = json.loads((Path(root) / METRICS).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return metrics if isinstance(metrics, dict) else {}


# The baselines stage 1 is measured against (regress/train.py's BASELINES; repeated here so that the card
# is written without importing the training code and torch).
CARD_BASELINES = {"bicubic_psnr": "bicubic upsampling", "mean_image_psnr": "mean training image"}


def _card_data(config: dict) -> list[str]:
    """Table rows: where the data came from and what the model maps to what."""
    data = config.get("data") or {}
    source = data.get("source") or "not recorded"
    rows = [
        f"| data | {source}"
        + (f" (targets: {data['targets']})" if data.get("targets") else "")
        + (f", {data['pairs']} pair files" if data.get("pairs") else "")
        + " |"
    ]
    signal = config.get("signal", "?")
    if signal == "lowres":
        signal += f" (photos downsampled by {config.get('factor', 8)})"
    rows.append(f"| input signal | {signal} |")
    if data.get("labels"):
        rows.append(f"| labels | {data['labels']} |")
    return rows


def _card_model(config: dict) -> list[str]:
    """Table rows: output size, the stage-1 network and the descriptor backbone."""
    s1 = config.get("stage1") or {}
    rows = [f"| output size | {config.get('size', s1.get('size', '?'))} x {config.get('size', s1.get('size', '?'))} |"]
    if s1:
        rows.append(
            f"| stage 1 | U-Net, input {s1.get('input_size')} x {s1.get('input_size')} x {s1.get('in_channels')}, "
            f"width {s1.get('width')}, {s1.get('levels')} levels{', residual' if s1.get('residual') else ''} |"
        )
    rows.append(f"| pixel descriptors | {config.get('backbone', 'vgg16-hed')} |")
    return rows


def _card_training(config: dict, metrics: dict) -> list[str]:
    """Table rows: the training budget asked for and what training did."""
    asked = config.get("train") or {}
    t = metrics.get("training")
    if not t:
        return ["| training | not recorded |"]
    precision = (t.get("precision") or {}).get("precision", "?")
    pairs = f" over {t['pairs']} training pairs" if t.get("pairs") else ""
    rows = [
        f"| training | {t['steps']} steps, {t['epochs']:g} epochs{pairs}, {t['minutes']:.1f} min, "
        f"precision {precision} |"
    ]
    if asked:
        limits = ", ".join(f"{k} {asked[k]}" for k in ("steps", "epochs", "minutes") if asked.get(k))
        rows.append(
            f"| asked for | {limits or 'the default budget'}, batch {asked.get('batch')}, "
            f"weight decay {asked.get('weight_decay', 0.0):g} |"
        )
    return rows


def _card_psnr(metrics: dict) -> list[str]:
    """The stage-1 PSNR table (train and validation splits beside the baselines), or a line saying there is none."""
    splits = [s for s in ("train", "val") if s in metrics]
    if not splits:
        return ["Stage 1 has not been measured (no metrics.json)."]
    lines = [
        "| split | stage 1 | " + " | ".join(CARD_BASELINES.values()) + " |",
        "|---|---:|" + "---:|" * len(CARD_BASELINES),
    ]
    for split in splits:
        m = metrics[split]
        cells = [f"{m[k]:.2f} dB" if k in m else "n/a" for k in CARD_BASELINES]
        lines.append(f"| {split} | {m['stage1_psnr']:.2f} dB | " + " | ".join(cells) + " |")
    if "val" not in metrics:
        lines += ["", "No validation data was given (`--val`): the PSNR above is on training pairs only."]
    return lines


def _card_bank(bank: dict | None, where: str) -> list[str]:
    """A line about the exemplar bank: its size, shards and search, or how to build it."""
    if not bank:
        return ["No exemplar bank yet: build one with `pixelnn index --model THIS_FOLDER --data ...`."]
    desc = bank.get("descriptors")
    search = (
        f"reduced {desc['dim']}-dim pixel descriptors (fast search)"
        if desc
        else "no reduced descriptors (exact search)"
    )
    lines = [
        f"{sum(s['count'] for s in bank['shards'])} exemplars in {len(bank['shards'])} shard(s) at `{where}`, "
        f"{bank.get('backbone', '?')} descriptors, {search}."
    ]
    if bank.get("cross_fit"):
        lines.append(
            f"Its stored f(x_k) are cross-fitted: each from the one of {bank['cross_fit']['folds']} fold models "
            "(`folds/`) that did not train on that pair."
        )
    return lines


def model_card(config: dict, metrics: dict, bank: dict | None = None, bank_where: str = "bank/") -> str:
    """The README.md of a model folder, from its config.json, metrics.json and bank manifest (None: no bank).

    >>> card = model_card({"signal": "edges", "size": 64, "data": {"source": "shoes/train"}}, {})
    >>> print(card.splitlines()[0])
    # PixelNN model: edges -> 64 x 64 photo
    >>> "| data | shoes/train |" in card and "No exemplar bank yet" in card
    True
    """
    title = (
        f"# PixelNN model: {config.get('signal', '?')} -> {config.get('size', '?')} x {config.get('size', '?')} photo"
    )
    table = ["| | |", "|---|---|", *_card_data(config), *_card_model(config), *_card_training(config, metrics)]
    parts = [
        [
            title,
            "",
            "Written by PixelNN; updated by `pixelnn train` and `pixelnn index`. Do not edit: it is rewritten.",
        ],
        table,
        ["## Stage-1 PSNR", "", *_card_psnr(metrics)],
        ["## Exemplar bank", "", *_card_bank(bank, bank_where)],
        [
            "## Use",
            "",
            "```python",
            "import pixelnn",
            "",
            'model = pixelnn.load("THIS_FOLDER")',
            "result = model.synthesize(x)  # x: an input signal, uint8 (h, w, c)",
            "```",
        ],
    ]
    return "\n\n".join("\n".join(p) for p in parts) + "\n"


def write_model_card(root: Path, bank: dict | None = None, bank_where: str = "bank/") -> Path:
    """Write root/README.md (atomically) from root/config.json, root/metrics.json if any, and `bank`
    (the bank's manifest, None when there is none yet); returns its path."""
    root = Path(root)
    config = read_config(root / CONFIG)
    write_text(root / CARD, model_card(config, read_metrics(root), bank, bank_where))
    return root / CARD
