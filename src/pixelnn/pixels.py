"""Pixel arithmetic shared by every stage: images in [0, 1] to uint8, and PSNR.

Images are float arrays in [0, 1]; one image is (H, W, C) or (C, H, W), stacks add leading axes.
"""

from __future__ import annotations

import numpy as np

MSE_FLOOR = 1e-10  # the PSNR of identical images: 100 dB


def as_uint8_image(image, channels: int) -> np.ndarray:
    """One image as (H, W, channels) uint8, from what a user has at hand: a uint8 array, a float array in
    [0, 1], (H, W) or (H, W, 1) grayscale (repeated for 3 channels), or a PIL image; ValueError otherwise.

    >>> as_uint8_image(np.full((2, 2), 0.5), 3).shape, as_uint8_image(np.full((2, 2), 0.5), 3)[0, 0, 0]
    ((2, 2, 3), np.uint8(128))
    """
    if hasattr(image, "convert") and hasattr(image, "mode"):  # a PIL image
        image = np.asarray(image.convert("L" if channels == 1 else "RGB"))
    x = np.asarray(image)
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3:
        raise ValueError(f"an image is (H, W) or (H, W, C); got shape {x.shape}")
    if x.shape[2] == 1 and channels == 3:
        x = np.repeat(x, 3, axis=2)
    if x.dtype == np.uint8:
        return x
    if x.dtype.kind == "f":
        if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
            raise ValueError("a float image must have values in [0, 1]")
        return to_uint8(x)
    if x.dtype == bool:
        return x.astype(np.uint8) * 255
    raise ValueError(f"an image is uint8 or float in [0, 1]; got {x.dtype}")


def to_uint8(images: np.ndarray) -> np.ndarray:
    """float in [0, 1] -> uint8, rounded to nearest (any shape; values outside [0, 1] are clipped)."""
    return (np.clip(images, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def psnr(images, target) -> np.ndarray:
    """PSNR in dB, 10 log10(1 / MSE) with MSE over the last three axes (one image) floored at MSE_FLOOR.

    images and target broadcast against each other: (N, H, W, C) against one (H, W, C) gives (N,),
    (N, C, H, W) against (N, C, H, W) gives one value per pair (N,), two single images a 0-d array.
    Numpy arrays or CPU tensors; computed in float64.
    """
    diff = np.asarray(images, np.float64) - np.asarray(target, np.float64)
    mse = np.square(diff, out=diff).mean(axis=(-3, -2, -1))
    return 10.0 * np.log10(1.0 / np.maximum(mse, MSE_FLOOR))
