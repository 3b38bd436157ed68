"""Input signals made from photos: low resolution, HED edges, Canny edges."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from pixelnn.data.signals import SIGNALS, canny, hed, lowres, make_signal
from pixelnn.errors import ConfigError


def _square_on_white(size: int = 64, lo: int = 16, hi: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """(1, size, size, 3) uint8 white image with a black square, and the square's (size, size) mask."""
    photos = np.full((1, size, size, 3), 255, np.uint8)
    photos[0, lo:hi, lo:hi] = 0
    mask = np.zeros((size, size), bool)
    mask[lo:hi, lo:hi] = True
    return photos, mask


def _border_and_interior(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    border = ndimage.binary_dilation(mask, iterations=2) & ~ndimage.binary_erosion(mask, iterations=2)
    interior = ndimage.binary_erosion(mask, iterations=8)
    return border, interior


def test_lowres_shape_and_values() -> None:
    photos = np.zeros((2, 96, 96, 3), np.uint8)
    photos[1] = (200, 100, 50)
    small = lowres(photos, 8)
    assert small.shape == (2, 12, 12, 3) and small.dtype == np.uint8
    assert (small[0] == 0).all() and (small[1] == (200, 100, 50)).all()


def test_lowres_averages_fine_detail() -> None:
    checker = (np.indices((96, 96)).sum(0) % 2 * 255).astype(np.uint8)
    photos = np.repeat(checker[None, :, :, None], 3, axis=3)
    small = lowres(photos, 8)
    assert 100 < small.mean() < 155 and small.std() < 15  # antialiased, not sampled


def test_lowres_size_not_divisible() -> None:
    with pytest.raises(ConfigError, match="not divisible"):
        lowres(np.zeros((1, 90, 90, 3), np.uint8), 8)


def test_canny_polarity() -> None:
    flat = np.full((1, 32, 32, 3), 255, np.uint8)
    assert (canny(flat) > 200).all()
    photos, mask = _square_on_white()
    edges = canny(photos)
    assert edges.shape == (1, 64, 64, 1) and edges.dtype == np.uint8
    border, interior = _border_and_interior(mask)
    assert edges[0, :, :, 0][border].mean() < 200
    assert (edges[0, :, :, 0][interior] == 255).all()


def test_hed_polarity_dark_edges_on_white() -> None:
    flat = np.full((1, 32, 32, 3), 255, np.uint8)
    flat_edges = hed(flat, progress=False)
    assert flat_edges.shape == (1, 32, 32, 1) and flat_edges.dtype == np.uint8
    assert flat_edges.mean() > 240 and (flat_edges[0, 4:-4, 4:-4] > 200).all()  # HED marks the frame a little
    photos, mask = _square_on_white()
    edges = hed(photos, batch=1, progress=False)[0, :, :, 0]
    border, interior = _border_and_interior(mask)
    assert edges[border].mean() < 100
    assert edges[interior].mean() > 200
    assert edges[border].mean() + 100 < edges[interior].mean()


def test_make_signal_dispatch_and_unknown() -> None:
    photos = np.full((1, 16, 16, 3), 255, np.uint8)
    assert make_signal("lowres", photos, factor=4).shape == (1, 4, 4, 3)
    assert make_signal("canny", photos).shape == (1, 16, 16, 1)
    assert SIGNALS == ("lowres", "edges", "canny", "normals")
    with pytest.raises(ConfigError, match="lowres, edges, canny, normals"):
        make_signal("sketch", photos)
