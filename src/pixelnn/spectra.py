"""Radially averaged power spectra: how much detail an image has at each scale.

Shared by the evaluation (the spectrum distance and gap of docs/results.md) and by synthesis (the
'matched' copy mode, synth/coherence.py, which gives each candidate the detail of its sources).

The spectrum of an image (H, W, 3) in [0, 1]: its grayscale (ITU-R 601 luma), minus its mean,
|FFT|^2 / (H W), averaged over rings of integer radius r = 1 .. min(H, W) // 2 cycles per image,
then log10. Spectra of several images are averaged in the log domain.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

LUMA = np.array([0.299, 0.587, 0.114], np.float64)


def grayscale(images: np.ndarray) -> np.ndarray:
    """(..., H, W, 3) RGB -> (..., H, W) luma (ITU-R 601)."""
    return np.asarray(images, np.float64) @ LUMA


@lru_cache(maxsize=8)
def _rings(H: int, W: int) -> tuple[np.ndarray, int]:
    """(H * W,) integer radius of every FFT frequency (cycles per image), and the number of bins."""
    fy, fx = np.meshgrid(np.fft.fftfreq(H) * H, np.fft.fftfreq(W) * W, indexing="ij")
    radius = np.rint(np.hypot(fy, fx)).astype(np.int64).ravel()
    return radius, int(radius.max()) + 1


def radial_log_spectra(gray: np.ndarray) -> np.ndarray:
    """Radial log10 power spectra of grayscale images (..., H, W): (..., R), R = min(H, W) // 2.

    Entry r - 1 is the mean of |FFT|^2 / (H W) over frequencies whose radius rounds to r."""
    gray = np.asarray(gray, np.float64)
    *lead, H, W = gray.shape
    gray = gray.reshape(-1, H, W)
    N, R = len(gray), min(H, W) // 2
    power = np.abs(np.fft.fft2(gray - gray.mean((-2, -1), keepdims=True))) ** 2 / (H * W)
    radius, bins = _rings(H, W)
    index = (radius[None] + bins * np.arange(N)[:, None]).ravel()  # one run of bins per image
    sums = np.bincount(index, weights=power.reshape(-1), minlength=N * bins).reshape(N, bins)[:, 1 : R + 1]
    counts = np.bincount(radius, minlength=bins)[1 : R + 1]
    return np.log10(sums / np.maximum(counts, 1) + 1e-12).reshape(*lead, R)


def log_spectra(images: np.ndarray) -> np.ndarray:
    """Radial log spectra of RGB images (..., H, W, 3): (..., R)."""
    return radial_log_spectra(grayscale(images))


def spectrum_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean absolute difference of log spectra over radii: a (..., R), b broadcast against it -> (...)."""
    return np.abs(np.asarray(a) - np.asarray(b)).mean(-1)
