"""Fashion-MNIST IDX loader on tiny fake files written by the tests."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from pixelnn.data.fashion import CLASSES, fashion_photos, load_fashion
from pixelnn.errors import ConfigError, DataError

LABELS = [9, 5, 0, 8, 7, 5, 9, 8, 5, 7]  # Ankle boot, Sandal, T-shirt/top, Bag, Sneaker, ...


def _write_idx(path: Path, magic: int, array: np.ndarray) -> None:
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def fake_root(tmp_path: Path) -> Path:
    images = np.zeros((len(LABELS), 28, 28), np.uint8)
    for i in range(len(LABELS)):
        images[i, 10:18, 10:18] = 100 + i  # bright square on black; value identifies the image
    for prefix in ("train", "t10k"):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", 2051, images)
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", 2049, np.array(LABELS))
    return tmp_path


def test_default_classes_in_file_order(fake_root: Path) -> None:
    images, labels = load_fashion(root=fake_root)
    assert images.shape == (9, 28, 28) and images.dtype == np.uint8
    assert "T-shirt/top" not in labels
    assert labels == [CLASSES[i] for i in LABELS if i != 0]
    assert images[0, 12, 12] == 100 and images[1, 12, 12] == 101


def test_limit_is_per_class_and_deterministic(fake_root: Path) -> None:
    images, labels = load_fashion("test", classes=("Sandal", "Ankle boot"), limit=2, root=fake_root)
    assert labels == ["Ankle boot", "Sandal", "Sandal", "Ankle boot"]
    assert images[:, 12, 12].tolist() == [100, 101, 105, 106]  # first two of each class


def test_bad_arguments(fake_root: Path) -> None:
    with pytest.raises(ConfigError, match="train' or 'test"):
        load_fashion("val", root=fake_root)
    with pytest.raises(ConfigError, match="Boot"):
        load_fashion(classes=("Boot",), root=fake_root)


def test_missing_files_name_the_package(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        load_fashion(root=tmp_path)


def test_wrong_magic_and_truncated(fake_root: Path) -> None:
    _write_idx(fake_root / "train-labels-idx1-ubyte.gz", 2051, np.zeros((2, 1, 1)))
    with pytest.raises(DataError, match="magic number 2049"):
        load_fashion(root=fake_root)
    raw = (2051).to_bytes(4, "big") + (5).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + b"\0" * 10
    with gzip.open(fake_root / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(raw)
    with pytest.raises(DataError, match="header says"):
        load_fashion("test", root=fake_root)


def test_fashion_photos_rgb_natural_polarity() -> None:
    images = np.zeros((2, 28, 28), np.uint8)
    images[:, 8:20, 8:20] = 255
    photos = fashion_photos(images, 56)
    assert photos.shape == (2, 56, 56, 3) and photos.dtype == np.uint8
    assert (photos[:, 0, 0] == 0).all() and (photos[:, 28, 28] == 255).all()  # black background kept
    assert (photos[..., 0] == photos[..., 2]).all()
    np.testing.assert_array_equal(fashion_photos(images, 28)[..., 1], images)
