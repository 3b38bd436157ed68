"""Fashion-MNIST from the Debian package dataset-fashion-mnist: the embedded demo data set."""

from __future__ import annotations

import gzip
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ConfigError, DataError

DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
DEMO_CLASSES = ("Sandal", "Sneaker", "Bag", "Ankle boot")
_PREFIX = {"train": "train", "test": "t10k"}
_IMAGES_MAGIC, _LABELS_MAGIC = 2051, 2049  # 0x00000803: uint8, 3 dims; 0x00000801: uint8, 1 dim
_INSTALL = "install it with `sudo apt-get install dataset-fashion-mnist`"


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Parse a gzipped IDX file of unsigned bytes; its magic number must be `magic`."""
    if not path.is_file():
        raise DataError(f"{path}: Fashion-MNIST file not found; {_INSTALL}")
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read gzipped IDX file ({exc})") from exc
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header or int.from_bytes(raw[:4], "big") != magic:
        found = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
        raise DataError(f"{path}: not an IDX file with magic number {magic} (found {found})")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(raw) - header != int(np.prod(dims)):
        raise DataError(f"{path}: IDX header says {dims} bytes of data, file holds {len(raw) - header}")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def _class_ids(classes: Sequence[str]) -> list[int]:
    unknown = [c for c in classes if c not in CLASSES]
    if unknown or not classes:
        raise ConfigError(f"unknown Fashion-MNIST classes {unknown}; choose from {', '.join(CLASSES)}")
    return [CLASSES.index(c) for c in classes]


def _first_per_class(labels: np.ndarray, ids: list[int], limit: int | None) -> np.ndarray:
    """Indices (in file order) of the first `limit` images of each class in ids (all if None)."""
    chosen = [np.flatnonzero(labels == i)[:limit] for i in ids]
    return np.sort(np.concatenate(chosen))


def load_fashion(
    split: str = "train",
    classes: Sequence[str] = DEMO_CLASSES,
    limit: int | None = None,
    root: str | os.PathLike = DEFAULT_ROOT,
) -> tuple[np.ndarray, list[str]]:
    """Images (N, 28, 28) uint8 (bright object on black) and their class names.

    limit: at most this many images PER CLASS, the first ones in file order (deterministic,
    balanced); the result keeps the file order.
    """
    if split not in _PREFIX:
        raise ConfigError(f"Fashion-MNIST split must be 'train' or 'test', got {split!r}")
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be a positive number of images per class, got {limit}")
    ids = _class_ids(classes)
    root = Path(root)
    images = read_idx(root / f"{_PREFIX[split]}-images-idx3-ubyte.gz", _IMAGES_MAGIC)  # (N, 28, 28)
    labels = read_idx(root / f"{_PREFIX[split]}-labels-idx1-ubyte.gz", _LABELS_MAGIC)  # (N,)
    if len(images) != len(labels):
        raise DataError(f"{root}: {split} split has {len(images)} images but {len(labels)} labels")
    if labels.size and labels.max() >= len(CLASSES):
        raise DataError(f"{root}: {split} labels hold class {labels.max()}, expected 0..9")
    index = _first_per_class(labels, ids, limit)
    return images[index].copy(), [CLASSES[i] for i in labels[index]]


def fashion_photos(images: np.ndarray, size: int) -> np.ndarray:
    """(N, 28, 28) uint8 -> (N, size, size, 3) uint8: gray repeated to RGB, PIL bicubic resize."""
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"expected (N, H, W) uint8 images, got {images.shape} {images.dtype}")
    out = np.empty((len(images), size, size, 3), np.uint8)
    for i, image in enumerate(images):
        pil = Image.fromarray(image)
        if image.shape != (size, size):
            pil = pil.resize((size, size), Image.Resampling.BICUBIC)
        out[i] = np.asarray(pil)[:, :, None]
    return out
