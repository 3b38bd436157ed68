"""Build a bank, or add exemplars to one, from input/target pairs and a trained stage 1."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..features.backbones import describe_global, load_backbone
from ..regress.checkpoint import fingerprint
from ..regress.unet import UNet, predict
from . import store


def expected_manifest(model: UNet, backbone: str, signal: str, global_dim: int) -> dict:
    cfg = model.cfg
    input_shape = (cfg.input_size, cfg.input_size, cfg.in_channels)
    return store.new_manifest(fingerprint(model), backbone, cfg.size, signal, input_shape, global_dim)


def stage1_outputs(model: UNet, x: np.ndarray, batch: int = 32, progress: bool = True) -> np.ndarray:
    """f(x) as stored in a bank: (N, S, S, 3) float16. Queries use the same rounding."""
    outs = []
    for i in tqdm(range(0, len(x), batch), desc="stage 1", disable=not progress, leave=False):
        outs.append(predict(model, x[i : i + batch]).permute(0, 2, 3, 1).numpy().astype(np.float16))
    return np.concatenate(outs)


def global_descriptors(backbone_model, f: np.ndarray, batch: int = 32, progress: bool = True) -> np.ndarray:
    """(N, S, S, 3) float16 -> (N, G) float32 unit-norm global descriptors."""
    outs = []
    for i in tqdm(range(0, len(f), batch), desc="global descriptors", disable=not progress, leave=False):
        imgs = torch.from_numpy(np.asarray(f[i : i + batch], dtype=np.float32)).permute(0, 3, 1, 2)
        outs.append(describe_global(backbone_model, imgs).numpy())
    return np.concatenate(outs)


def add_exemplars(
    root: Path,
    model: UNet,
    backbone: str,
    signal: str,
    x: np.ndarray,
    y: np.ndarray,
    names: list[str],
    labels: list[str | None],
    progress: bool = True,
) -> dict:
    """Create the bank at `root` or append a shard to it; returns the new manifest.

    An existing bank must have been built with the same model weights, backbone, size and signal.
    """
    if len(x) != len(y) or len(x) != len(names) or len(x) != len(labels):
        raise ValueError("x, y, names and labels must have the same length")
    backbone_model = load_backbone(backbone)
    f = stage1_outputs(model, x, progress=progress)
    g = global_descriptors(backbone_model, f, progress=progress)
    expected = expected_manifest(model, backbone, signal, g.shape[1])
    root = Path(root)
    if (root / store.MANIFEST).exists():
        manifest = store.read_manifest(root)
        store.check_compatible(manifest, expected, root)
    else:
        manifest = expected
    shard = store.Shard(f, np.asarray(y, np.uint8), np.asarray(x, np.uint8), g.astype(np.float32), list(names), list(labels))
    return store.write_shard(root, manifest, shard)
