"""Checkpoints without pickle: tensors in a safetensors file, everything else as JSON in its header.

A checkpoint is one file, `stage1.safetensors` for stage 1 (pix2pix uses the same layout). Its
tensors are the model's weights (and, while training, the optimizer's moments), named by where
they sit in the checkpoint dict ("model/enc.0.weight", "optimizer/state/3/exp_avg"). The rest of
the dict (format, version, config, step, epoch, elapsed_s, done, train, history, precision, the
optimizer's param groups) is JSON in the file's `__metadata__`, beside a sha256 of every tensor's
name, dtype, shape and bytes. One file is written atomically, so the weights and their description
can never come from two different saves; a file whose tensors do not match the sum is refused.

Reading never runs code from the file: safetensors holds only arrays and JSON. Older checkpoints
(`stage1.pt`, written by torch.save) are still read, with torch.load(weights_only=True), which
accepts plain dicts of tensors and numbers and refuses anything else; `pixelnn convert MODEL_DIR`
rewrites them in the new format.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save_file

from ..errors import ConfigError
from ..fileio import atomic_path
from ..hashing import add_weights
from .unet import Stage1Config, UNet

FORMAT = "pixelnn-stage1"
VERSION = 1
FILENAME = "stage1.safetensors"
LEGACY_FILENAME = "stage1.pt"  # torch.save checkpoints of PixelNN before safetensors
CONVERT_HINT = "convert it once with `pixelnn convert {folder}`"
_META_KEY = "pixelnn"
_SUM_KEY = "pixelnn_sha256"
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's zip container


# ---------------------------------------------------------------- encoding a checkpoint dict


def _join(name: str, key: object) -> str:
    return f"{name}/{key}" if name else str(key)


def _encode(value: Any, name: str, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON-ready copy of `value`; its tensors (and arrays) go to `tensors` under path-like names."""
    if name in tensors:
        raise TypeError(f"a checkpoint cannot hold two entries named {name}")
    if isinstance(value, torch.Tensor):
        tensors[name] = value.detach().cpu().contiguous().clone()
        return {"__tensor__": name}
    if isinstance(value, np.ndarray):
        tensors[name] = torch.from_numpy(np.ascontiguousarray(value)).clone()
        return {"__ndarray__": name}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, _join(name, i), tensors) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, _join(name, i), tensors) for i, v in enumerate(value)]
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {k: _encode(v, _join(name, k), tensors) for k, v in value.items()}
        return {"__items__": [[k, _encode(v, _join(name, k), tensors)] for k, v in value.items()]}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"a checkpoint cannot hold {type(value).__name__} (at {name or 'the top'})")


def _decode(value: Any, tensors: dict[str, torch.Tensor] | None) -> Any:
    """Inverse of _encode; with tensors None, every tensor and array is None (the description alone)."""
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if value.keys() == {"__tensor__"}:
        return None if tensors is None else tensors[value["__tensor__"]]
    if value.keys() == {"__ndarray__"}:
        return None if tensors is None else tensors[value["__ndarray__"]].numpy()
    if value.keys() == {"__tuple__"}:
        return tuple(_decode(v, tensors) for v in value["__tuple__"])
    if value.keys() == {"__items__"}:
        return {k: _decode(v, tensors) for k, v in value["__items__"]}
    return {k: _decode(v, tensors) for k, v in value.items()}


def tensor_checksum(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 of every tensor's name, dtype, shape and bytes, in name order (independent of file layout)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------- generic read and write


def write_checkpoint(path: Path, blob: dict) -> None:
    """Write a checkpoint dict (tensors, numbers, strings, lists, dicts) as one safetensors file, atomically."""
    tensors: dict[str, torch.Tensor] = {}
    meta = _encode(blob, "", tensors)
    header = {_META_KEY: json.dumps(meta), _SUM_KEY: tensor_checksum(tensors)}
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata=header)


def is_legacy(path: Path) -> bool:
    """True for a torch.save file (a zip container), the format before safetensors."""
    with open(path, "rb") as f:
        return f.read(4) == _ZIP_MAGIC


def _read_safetensors(path: Path, what: str) -> dict:
    """The checkpoint dict of a safetensors checkpoint, its tensors checked against the stored sum."""
    data = path.read_bytes()
    try:
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len])
        meta = header.get("__metadata__") if isinstance(header, dict) else None
        tensors = st_load(data)
    except (SafetensorError, ValueError, UnicodeDecodeError, AttributeError) as e:
        raise ConfigError(f"{path} is not a readable {what} checkpoint ({e.__class__.__name__}: {e})") from None
    if not isinstance(meta, dict) or _META_KEY not in meta or _SUM_KEY not in meta:
        raise ConfigError(f"{path} is not a PixelNN {what} checkpoint")
    if tensor_checksum(tensors) != meta[_SUM_KEY]:
        raise ConfigError(
            f"{path} is damaged: its tensors do not match the sha256 stored with them (a partial copy or an "
            f"edited file); copy it again from its source, or train it again"
        )
    try:
        return _decode(json.loads(meta[_META_KEY]), tensors)
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{path} is damaged: its description cannot be read ({e.__class__.__name__})") from None


def read_description(path: Path, what: str) -> dict:
    """The JSON part of a checkpoint (format, step, config, history, ...) with every tensor None, read
    from the safetensors header alone: for reporting, never for loading weights (the tensors are not
    checked). An old torch.save file is unpickled with its tensors memory-mapped (left in, not read)."""
    path = Path(path)
    if is_legacy(path):
        return read_legacy(path, what, mmap=True)
    try:
        with open(path, "rb") as f:
            header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
        return _decode(json.loads(header["__metadata__"][_META_KEY]), None)
    except (OSError, ValueError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise ConfigError(f"{path} is not a readable {what} checkpoint ({e.__class__.__name__})") from None


def read_legacy(path: Path, what: str, trust_pickle: bool = False, mmap: bool = False) -> dict:
    """A torch.save checkpoint, read with weights_only=True: plain containers, tensors and numbers only.

    trust_pickle unpickles anything (which can run code): only `pixelnn convert --trust-pickle` asks for it.
    mmap: the tensors are memory-mapped, read only where used."""
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_pickle, mmap=mmap)
    except Exception as e:  # noqa: BLE001 - a damaged file, or one that is not plain data: refused, never run
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        if "weights only load failed" not in first.lower():
            raise ConfigError(
                f"{path} is not a readable {what} checkpoint ({e.__class__.__name__}: {first[:200]})"
            ) from None
        raise ConfigError(
            f"{path} is not a readable {what} checkpoint: it is an old torch.save file that holds more than "
            f"tensors and numbers, which PixelNN no longer unpickles because that can run code. Only if you trust "
            f"where it came from, convert it with `pixelnn convert {path.parent} --trust-pickle`"
        ) from None


def read_checkpoint(path: Path, fmt: str, version: int, what: str, verb: str) -> dict:
    """Load a checkpoint dict (safetensors, or an old torch.save file), refusing other files and versions clearly."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no {what} checkpoint at {path}: train one with `pixelnn {verb}`")
    blob = read_legacy(path, what) if is_legacy(path) else _read_safetensors(path, what)
    if not isinstance(blob, dict) or blob.get("format") != fmt:
        raise ConfigError(f"{path} is not a PixelNN {what} checkpoint")
    if blob.get("version") != version:
        raise ConfigError(f"{path} has {what} checkpoint version {blob.get('version')}, this PixelNN reads {version}")
    return blob


# ---------------------------------------------------------------- stage 1


def locate(path: Path) -> Path:
    """The stage-1 file to read for `path`: the path itself, or an old stage1.pt beside a missing stage1.safetensors."""
    path = Path(path)
    legacy = path.with_name(LEGACY_FILENAME)
    if not path.exists() and path.name == FILENAME and legacy.exists():
        return legacy
    return path


def exists(path: Path) -> bool:
    """Whether a stage-1 checkpoint (new, or old stage1.pt) is there to resume or load."""
    return locate(path).is_file()


def save(path: Path, model: UNet, state: dict) -> None:
    """Write model weights, its config and the training state (optimizer, step, elapsed, ...)."""
    blob = {"format": FORMAT, "version": VERSION, "config": model.cfg.to_dict(), "model": model.state_dict(), **state}
    write_checkpoint(path, blob)


def read(path: Path) -> dict:
    return read_checkpoint(locate(path), FORMAT, VERSION, "stage-1", "train")


def load_model(path: Path) -> UNet:
    path = locate(path)
    blob = read(path)
    if not isinstance(blob.get("config"), dict) or not isinstance(blob.get("model"), dict):
        raise ConfigError(f"{path} is damaged: it lacks the model's configuration or weights")
    try:
        model = UNet(Stage1Config.from_dict(blob["config"]))
        model.load_state_dict(blob["model"])
    except (TypeError, ValueError, KeyError, RuntimeError) as e:  # a config or weights that do not fit the network
        raise ConfigError(
            f"{path} is damaged: its weights do not fit its configuration ({e.__class__.__name__}: {_first_line(e)})"
        ) from None
    return model.eval()


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else ""


def fingerprint(model: UNet) -> str:
    """A hash of the weights and configuration: a bank built with another model is refused."""
    cfg = model.cfg.to_dict()
    del cfg["zero_head"]  # how training starts, not what the network computes (and added later)
    if cfg["norm"] == "batch" and not cfg["mean_base"]:  # saved before these keys existed: hash as then
        del cfg["norm"], cfg["mean_base"]
    h = hashlib.sha256(repr(sorted(cfg.items())).encode())
    add_weights(h, model)
    return h.hexdigest()[:16]
