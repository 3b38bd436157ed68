"""`pixelnn convert MODEL_DIR`: rewrite a folder's old torch.save checkpoints as safetensors.

Old stage-1 checkpoints (`stage1.pt`) become `stage1.safetensors`; an old `pix2pix.pt` is rewritten
in place. Each new file is written atomically, read back and compared tensor by tensor (and, for
stage 1, by the fingerprint that banks store) before the old file is removed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError
from . import checkpoint

PIX2PIX_FILENAME = "pix2pix.pt"  # baselines.pix2pix.checkpoint.FILENAME, named here to keep this import light
PIX2PIX_FORMAT = "pixelnn-pix2pix"


def _same(a: Any, b: Any) -> bool:
    """Equal checkpoint dicts: tensors bit for bit, tuples and lists alike, everything else by ==."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _write_verified(old: Path, new: Path, fmt: str, version: int, what: str, trust_pickle: bool) -> dict:
    """Read `old` (a torch.save file), write `new` in the safetensors format and check they hold the same."""
    blob = checkpoint.read_legacy(old, what, trust_pickle=trust_pickle)
    if not isinstance(blob, dict) or blob.get("format") != fmt or blob.get("version") != version:
        raise ConfigError(f"{old} is not a PixelNN {what} checkpoint of version {version}; nothing was converted")
    try:
        checkpoint.write_checkpoint(new, blob)
    except TypeError as e:  # an object that is neither a tensor, an array, a number, a string nor a container
        raise ConfigError(f"{old} cannot be converted: {e}; nothing was converted") from None
    if not _same(blob, checkpoint.read_checkpoint(new, fmt, version, what, "convert")):
        raise ConfigError(f"{new} does not read back as {old} did; kept {old}, please report this")
    return blob


def _convert_stage1(folder: Path, keep_old: bool, trust_pickle: bool) -> str | None:
    old, new = folder / checkpoint.LEGACY_FILENAME, folder / checkpoint.FILENAME
    if not old.is_file():
        return None
    if new.exists():
        return f"{new.name} already exists; {old.name} is not read (remove it when you no longer need it)"
    blob = _write_verified(old, new, checkpoint.FORMAT, checkpoint.VERSION, "stage-1", trust_pickle)
    before = checkpoint.fingerprint(_model_from(blob))
    after = checkpoint.fingerprint(checkpoint.load_model(new))
    if before != after:
        new.unlink()
        raise ConfigError(f"{new} gives fingerprint {after}, {old} gave {before}; kept {old}, please report this")
    if not keep_old:
        old.unlink()
    return f"{old.name} -> {new.name} (fingerprint {after}, banks built with it stay valid)"


def _model_from(blob: dict) -> checkpoint.UNet:
    """The stage-1 network of a checkpoint dict."""
    model = checkpoint.UNet(checkpoint.Stage1Config.from_dict(blob["config"]))
    model.load_state_dict(blob["model"])
    return model


def _convert_pix2pix(folder: Path, keep_old: bool, trust_pickle: bool) -> str | None:
    path = folder / PIX2PIX_FILENAME
    if not path.is_file() or not checkpoint.is_legacy(path):
        return None
    from ..baselines.pix2pix.checkpoint import VERSION

    backup = path.with_name(path.name + ".old")
    shutil.copy2(path, backup)  # the original stays readable until the new file is checked
    try:
        _write_verified(backup, path, PIX2PIX_FORMAT, VERSION, "pix2pix", trust_pickle)
    except BaseException:
        os.replace(backup, path)
        raise
    if not keep_old:
        backup.unlink()
    return f"{path.name} rewritten as safetensors" + (f" (the old file kept as {backup.name})" if keep_old else "")


def convert_folder(folder: Path, keep_old: bool = False, trust_pickle: bool = False) -> list[str]:
    """Convert the old checkpoints of a model (or pix2pix) folder; returns one line per file converted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder: give the model folder made by `pixelnn train` (or train-pix2pix)")
    done = [
        line
        for line in (_convert_stage1(folder, keep_old, trust_pickle), _convert_pix2pix(folder, keep_old, trust_pickle))
        if line
    ]
    return done or [f"{folder} holds no old checkpoint (stage1.pt, pix2pix.pt): nothing to convert"]
