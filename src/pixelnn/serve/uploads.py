"""Uploaded images: refused with a clear 4xx unless they are a readable image of a sane size.

Only the header is read before the pixel count is checked, so a small file that declares a huge
image (a decompression bomb) is refused without being decoded. Nothing is written to disk.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..data.images import _declared_bit_depth, _to_rgb
from .params import RequestError

FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")
MAX_PIXELS = 40_000_000  # 40 megapixels: any camera photo, far below PIL's own bomb limit
FLOOR_PIXELS = 16_000_000  # the cap for a model never goes below this (a 12-megapixel phone photo)


def pixel_cap(size: int, max_pixels: int = MAX_PIXELS) -> int:
    """Most pixels an upload may declare for a model of S x S outputs: 32 S per side, but never
    under 16 megapixels nor over max_pixels. Every upload is fitted to S x S anyway."""
    return min(max_pixels, max(FLOOR_PIXELS, (32 * size) ** 2))


def read_file(files, name: str, what: str) -> bytes | None:
    """The bytes of file field `name`, or None when the field is absent or has no file chosen."""
    storage = files.get(name)
    if storage is None or (not storage.filename and not storage.content_length):
        return None
    data = storage.read()
    if not data:
        raise RequestError(f"the {what} is an empty file")
    return data


def decode_image(
    data: bytes, what: str = "upload", max_pixels: int = MAX_PIXELS, need: int | None = None
) -> np.ndarray:
    """Bytes of a PNG/JPEG/WebP/BMP/GIF file -> (H, W, 3) uint8 RGB, upright, alpha over white.

    The declared size is checked before decoding; need: the side the caller uses (a JPEG is then
    decoded at the smallest of 1/1..1/8 scale that keeps both sides at least `need`).
    Raises RequestError: 415 not an image, 413 too many pixels or too large to decode, 400 truncated or corrupt.
    """
    limit = min(max_pixels, Image.MAX_IMAGE_PIXELS or max_pixels)  # stay below PIL's bomb warning
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as img:
            _check_size(img.size, limit, what)
            if need and img.format == "JPEG":
                img.draft(None, (need, need))
            img.load()
            depth = _declared_bit_depth(img)
            return _to_rgb(ImageOps.exif_transpose(img), depth)
    except RequestError:
        raise
    except UnidentifiedImageError:
        raise RequestError(f"the {what} is not an image this server reads ({', '.join(FORMATS)})", 415) from None
    except Image.DecompressionBombError as exc:
        raise RequestError(f"the {what} declares too many pixels to decode safely ({exc})", 413) from None
    except MemoryError:
        raise RequestError(f"the {what} is too large: the server has no memory to decode it", 413) from None
    except Exception as exc:  # PIL raises OSError, ValueError, SyntaxError, struct.error... on bad data
        raise RequestError(f"the {what} is a damaged or truncated image ({_exception_text(exc)})") from None


def _check_size(size: tuple[int, int], limit: int, what: str) -> None:
    w, h = size
    if w < 1 or h < 1:
        raise RequestError(f"the {what} has no pixels ({w}x{h})")
    if w * h > limit:
        raise RequestError(
            f"the {what} is {w}x{h} pixels ({w * h / 1e6:.0f} megapixels); the limit is {limit / 1e6:g} megapixels", 413
        )


def _exception_text(exc: BaseException) -> str:
    """An exception as 'Type: message' (the type alone when the message is empty), for error messages."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def png_bytes(image: np.ndarray) -> bytes:
    """(H, W), (H, W, 1) or (H, W, 3) uint8 -> PNG file bytes."""
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG")
    return buffer.getvalue()
