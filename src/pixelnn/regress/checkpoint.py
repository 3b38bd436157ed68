"""Stage-1 checkpoints: written atomically, with the resolved configuration inside and beside them."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from ..errors import ConfigError
from ..fileio import atomic_path
from .unet import Stage1Config, UNet

FORMAT = "pixelnn-stage1"
VERSION = 1
FILENAME = "stage1.pt"


def save(path: Path, model: UNet, state: dict) -> None:
    """Write model weights, its config and the training state (optimizer, step, elapsed, ...)."""
    blob = {"format": FORMAT, "version": VERSION, "config": model.cfg.to_dict(), "model": model.state_dict(), **state}
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)


def read_checkpoint(path: Path, fmt: str, version: int, what: str, verb: str) -> dict:
    """Load a checkpoint dict written by torch.save, refusing other files and versions clearly."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"no {what} checkpoint at {path}: train one with `pixelnn {verb}`")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means the file is not ours
        raise ConfigError(f"{path} is not a readable {what} checkpoint ({e.__class__.__name__}: {e})") from None
    if not isinstance(blob, dict) or blob.get("format") != fmt:
        raise ConfigError(f"{path} is not a PixelNN {what} checkpoint")
    if blob.get("version") != version:
        raise ConfigError(f"{path} has {what} checkpoint version {blob.get('version')}, this PixelNN reads {version}")
    return blob


def read(path: Path) -> dict:
    return read_checkpoint(path, FORMAT, VERSION, "stage-1", "train")


def load_model(path: Path) -> UNet:
    blob = read(path)
    if not isinstance(blob.get("config"), dict) or not isinstance(blob.get("model"), dict):
        raise ConfigError(f"{path} is damaged: it lacks the model's configuration or weights")
    try:
        model = UNet(Stage1Config.from_dict(blob["config"]))
        model.load_state_dict(blob["model"])
    except (TypeError, ValueError, KeyError, RuntimeError) as e:  # a config or weights that do not fit the network
        raise ConfigError(f"{path} is damaged: its weights do not fit its configuration ({e.__class__.__name__}: {_first_line(e)})") from None
    return model.eval()


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else ""


def fingerprint(model: UNet) -> str:
    """A hash of the weights and configuration: a bank built with another model is refused."""
    cfg = model.cfg.to_dict()
    if cfg["norm"] == "batch" and not cfg["mean_base"]:  # saved before these keys existed: hash as then
        del cfg["norm"], cfg["mean_base"]
    h = hashlib.sha256(repr(sorted(cfg.items())).encode())
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
