"""Read any common image file as 8-bit RGB, and crop/resize it to a square."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import DataError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})

_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N"}


class UnreadableImage(DataError):
    """An image file that cannot be decoded; `path` and `reason` are kept for skip reports."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        super().__init__(f"{path}: cannot read image ({reason})")
        self.path = str(path)
        self.reason = reason


def is_image_file(path: str | os.PathLike) -> bool:
    """True if the file name ends in one of IMAGE_SUFFIXES (any case)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def load_rgb(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file fully and return it upright as (H, W, 3) uint8 RGB.

    Transparent pixels are composited over white; 16-bit images are scaled by their bit depth.
    Any failure (missing, not an image, truncated, corrupt) raises UnreadableImage (a DataError).
    """
    try:
        with Image.open(path) as img:
            img.load()  # full decode here, so truncated files fail now and not later
            depth = _declared_bit_depth(img)  # read before exif_transpose, which drops format/tags
            return _to_rgb(ImageOps.exif_transpose(img), depth)
    except UnreadableImage:
        raise
    except FileNotFoundError:
        raise UnreadableImage(path, "file not found") from None
    except UnidentifiedImageError:
        raise UnreadableImage(path, "not a recognised image format") from None
    except Exception as exc:  # PIL raises OSError, ValueError, SyntaxError, struct.error, ...
        raise UnreadableImage(path, _describe(exc)) from exc


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _to_rgb(img: Image.Image, depth: int | None = None) -> np.ndarray:
    """Any PIL mode -> (H, W, 3) uint8; `depth` = bits per sample of I/I;16 images if known."""
    if img.mode in _SIXTEEN_BIT_MODES or img.mode in ("I", "F"):
        gray = _wide_to_uint8(img, depth)  # (H, W) uint8
        return np.repeat(gray[:, :, None], 3, axis=2)
    if img.mode in _ALPHA_MODES or "transparency" in img.info:
        return _over_white(np.asarray(img.convert("RGBA")))
    if img.mode in ("1", "L"):
        gray = np.asarray(img.convert("L"))  # (H, W) uint8; 1-bit -> 0/255
        return np.repeat(gray[:, :, None], 3, axis=2)
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()  # CMYK, P, YCbCr, RGBX, ...


def _over_white(rgba: np.ndarray) -> np.ndarray:
    """(H, W, 4) uint8 RGBA -> (H, W, 3) uint8, composited over a white background."""
    alpha = rgba[:, :, 3:4].astype(np.float32) / 255.0  # (H, W, 1)
    rgb = rgba[:, :, :3].astype(np.float32)  # (H, W, 3)
    return np.round(rgb * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)


def _wide_to_uint8(img: Image.Image, depth: int | None) -> np.ndarray:
    """Single-channel 16/32-bit integer or float image -> (H, W) uint8, scaled, not clipped."""
    values = np.asarray(img).astype(np.float64)  # (H, W)
    if img.mode == "F":
        values = np.nan_to_num(values)
        scale = 255.0 if values.max(initial=0.0) <= 1.0 else 1.0
    else:
        if depth is None:
            depth = 16 if img.mode in _SIXTEEN_BIT_MODES or values.max(initial=0.0) <= 65535 else 32
        scale = 255.0 / (2**depth - 1)
    return np.clip(np.round(values * scale), 0, 255).astype(np.uint8)


def _declared_bit_depth(img: Image.Image) -> int | None:
    """Bits per sample of a 16/32-bit integer grayscale image as the file declares it, else None."""
    if img.mode in _SIXTEEN_BIT_MODES:
        return 16
    if img.mode != "I":
        return None
    if img.format == "PNG":  # PNG opens as I only for 16-bit grayscale
        return 16
    tags = getattr(img, "tag_v2", None)  # TIFF: BitsPerSample
    if tags is not None and 258 in tags:
        bits = tags[258]
        return int(bits[0] if isinstance(bits, tuple) else bits)
    return None


def fit_square(img: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop to a square, then resize to (size, size) with antialiased PIL bicubic.

    img: (H, W), (H, W, 1) or (H, W, 3) uint8 -> same layout with H = W = size.
    """
    if img.dtype != np.uint8 or img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (1, 3)):
        raise ValueError(f"fit_square expects (H, W[, 1|3]) uint8, got {img.shape} {img.dtype}")
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    h, w = img.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = img[top : top + side, left : left + side]  # (side, side[, c])
    if side == size:
        return np.ascontiguousarray(crop)
    single = crop.ndim == 3 and crop.shape[2] == 1
    pil = Image.fromarray(np.ascontiguousarray(crop[:, :, 0] if single else crop))
    out = np.asarray(pil.resize((size, size), Image.Resampling.BICUBIC))  # (size, size[, 3])
    return out[:, :, None].copy() if single else out.copy()
