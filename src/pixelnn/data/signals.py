"""Make the incomplete input signal x from target photos: low-resolution images, edge maps or face normals.

Edge maps are DARK lines on WHITE (like pix2pix's edges2shoes files and like a user's sketch). Normal
maps are encoded as in data/face_normals.py (RGB (n + 1) / 2, black where there is no normal); they
exist only for photos in which a face is found.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..errors import ConfigError, DataError
from .options import SIGNALS


def _check_photos(photos: np.ndarray) -> None:
    if photos.ndim != 4 or photos.shape[3] != 3 or photos.dtype != np.uint8:
        raise ValueError(f"expected photos (N, H, W, 3) uint8, got {photos.shape} {photos.dtype}")


def lowres(photos: np.ndarray, factor: int = 8) -> np.ndarray:
    """(N, S, S, 3) uint8 -> (N, S/factor, S/factor, 3) uint8, antialiased PIL bicubic."""
    _check_photos(photos)
    n, h, w, _ = photos.shape
    if not isinstance(factor, (int, np.integer)) or factor < 1:
        raise ConfigError(f"low-resolution factor must be a positive integer, got {factor!r}")
    if h % factor or w % factor:
        raise ConfigError(f"image size {h}x{w} is not divisible by the low-resolution factor {factor}")
    size = (w // factor, h // factor)  # PIL order: (width, height)
    out = np.empty((n, h // factor, w // factor, 3), np.uint8)
    for i in range(n):
        out[i] = np.asarray(Image.fromarray(photos[i]).resize(size, Image.Resampling.BICUBIC))
    return out


def _edge_polarity(prob: np.ndarray) -> np.ndarray:
    """Edge probability in [0, 1] -> uint8 with edges dark: 255 - round(255 * p)."""
    return (255 - np.round(255.0 * np.clip(prob, 0.0, 1.0))).astype(np.uint8)


def hed(photos: np.ndarray, batch: int = 16, progress: bool = True) -> np.ndarray:
    """HED edges: (N, S, S, 3) uint8 -> (N, S, S, 1) uint8, dark edges on white."""
    _check_photos(photos)
    import torch  # imported here: torch is slow to import and only HED needs it

    from ..features.vgg_hed import hed_edges

    n, h, w, _ = photos.shape
    out = np.empty((n, h, w, 1), np.uint8)
    starts = range(0, n, batch)
    for start in tqdm(starts, desc="HED edges", unit="batch", disable=not progress or n <= batch):
        chunk = photos[start : start + batch]  # (B, S, S, 3) uint8
        images = torch.from_numpy(chunk).permute(0, 3, 1, 2).float() / 255.0  # (B, 3, S, S)
        prob = hed_edges(images, batch=batch).numpy()  # (B, 1, S, S)
        out[start : start + batch] = _edge_polarity(prob.transpose(0, 2, 3, 1))
    return out


def canny(photos: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """Canny edges on the grayscale photo: (N, S, S, 3) uint8 -> (N, S, S, 1) uint8, dark on white."""
    _check_photos(photos)
    from skimage.color import rgb2gray
    from skimage.feature import canny as skimage_canny

    out = np.empty(photos.shape[:3] + (1,), np.uint8)
    for i, photo in enumerate(photos):
        edges = skimage_canny(rgb2gray(photo), sigma=sigma)  # (S, S) bool
        out[i, :, :, 0] = np.where(edges, 0, 255)
    return out


def normals(photos: np.ndarray, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Face normal maps: (N, S, S, 3) uint8 photos -> (encoded normal maps (N, S, S, 3) uint8, found (N,) bool).

    A photo without a face gets an all-unknown map and found False. Needs the optional extra."""
    _check_photos(photos)
    from . import face_normals

    maps = face_normals.estimate(photos, progress=progress)
    return face_normals.encode(maps.normals, maps.mask), maps.found


def signal_from_photos(
    kind: str, photos: np.ndarray, factor: int = 8, progress: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """The input signal of every photo and which photos have one, (x, kept (N,) bool): every photo but
    those in which the normals signal finds no face."""
    if kind == "normals":
        return normals(photos, progress=progress)
    if kind == "lowres":
        x = lowres(photos, factor)
    elif kind == "edges":
        x = hed(photos, progress=progress)
    elif kind == "canny":
        x = canny(photos)
    else:
        raise ConfigError(f"unknown input signal {kind!r}; choose one of {', '.join(SIGNALS)}")
    return x, np.ones(len(photos), bool)


def make_signal(kind: str, photos: np.ndarray, factor: int = 8, progress: bool = True) -> np.ndarray:
    """The input signal of every photo: 'lowres' (factor), 'edges' (HED), 'canny' or 'normals' (faces;
    DataError when a photo has no face)."""
    x, kept = signal_from_photos(kind, photos, factor, progress)
    if not kept.all():
        missing = int((~kept).sum())
        raise DataError(
            f"no face found in {missing} of {len(kept)} photo(s): the {kind} signal is made from photos of faces "
            "(MediaPipe's face mesh); use a photo with one clearly visible face"
        )
    return x
