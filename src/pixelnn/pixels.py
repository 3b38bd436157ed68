"""Pixel arithmetic shared by every stage: images in [0, 1] to uint8, and PSNR.

Images are float arrays in [0, 1]; one image is (H, W, C) or (C, H, W), stacks add leading axes.
"""

from __future__ import annotations

import numpy as np

MSE_FLOOR = 1e-10  # the PSNR of identical images: 100 dB


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
