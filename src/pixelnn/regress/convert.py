"""Old torch.save checkpoints rewritten as safetensors (`pixelnn convert`; workflow.convert_folder).

An old stage-1 checkpoint (`stage1.pt`) becomes `stage1.safetensors` (convert_stage1); pix2pix's old
files are converted by baselines/pix2pix/convert.py with the same write_verified. Each new file is
written atomically, read back and compared tensor by tensor (and, for stage 1, by the fingerprint
that banks store) before the old file is removed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError
from . import checkpoint


def _same(a: Any, b: Any) -> bool:
    """Equal checkpoint dicts: tensors bit for bit, tuples and lists alike, everything else by ==."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def write_verified(old: Path, new: Path, fmt: str, version: int, what: str, trust_pickle: bool) -> dict:
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


def convert_stage1(folder: Path, keep_old: bool, trust_pickle: bool) -> str | None:
    """folder/stage1.pt -> folder/stage1.safetensors, checked; a line saying what was done, None without stage1.pt."""
    old, new = folder / checkpoint.LEGACY_FILENAME, folder / checkpoint.FILENAME
    if not old.is_file():
        return None
    if new.exists():
        return f"{new.name} already exists; {old.name} is not read (remove it when you no longer need it)"
    blob = write_verified(old, new, checkpoint.FORMAT, checkpoint.VERSION, "stage-1", trust_pickle)
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
