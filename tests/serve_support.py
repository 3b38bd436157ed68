"""Helpers of the web app's tests: image files as bytes, a folder of photos, a real server in a thread."""

from __future__ import annotations

import io
import struct
import threading
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

FAST_GRID = "1:1:1,2:1:3,3:1:whole"  # 3 candidates from 3 neighbours


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


def png_declaring(width: int, height: int) -> bytes:
    """A valid PNG header for a width x height RGB image with only a few rows of data: tiny to send,
    huge to decode (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress((b"\x00" + b"\x00" * 3 * width) * 4)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def sketch(size: int = 256) -> np.ndarray:
    """Dark strokes on white, like the page's canvas: a box and a diagonal."""
    img = np.full((size, size, 3), 255, np.uint8)
    a, b, w = size // 4, 3 * size // 4, max(size // 64, 2)
    img[a : a + w, a:b] = img[b - w : b, a:b] = img[a:b, a : a + w] = img[a:b, b - w : b] = 0
    for i in range(a, b):
        img[i, i : i + w] = 0
    return img


def photo_folder(root: Path, photos: np.ndarray) -> Path:
    """Validation photos in nested folders: val/p0.png, val/p1.png, val/sub/p2.png, ..."""
    root.mkdir(parents=True, exist_ok=True)
    for i, photo in enumerate(photos):
        path = root / ("sub" if i >= 2 else "") / f"p{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(photo).save(path)
    return root


@contextmanager
def running(app, threads: int = 6, **options):
    """The app under waitress on 127.0.0.1 and a free port, in a thread; yields the base URL.
    options: more keyword arguments of make_server (idle_timeout_s, connections)."""
    from pixelnn.serve.server import make_server, url

    server = make_server(app, "127.0.0.1", 0, threads=threads, **options)
    thread = threading.Thread(target=server.run, name="waitress", daemon=True)
    thread.start()
    try:
        yield url(server).rstrip("/")
    finally:
        server.close()
        server.task_dispatcher.shutdown()
        thread.join(timeout=5)


def tiny_app(model, photos: np.ndarray, root: Path, **limits):
    """(app, work folder, validation folder): the web app over `model`, listing 4 of `photos`."""
    from pixelnn.serve import create_app

    val = photo_folder(root / "val", photos[:4])
    work = root / "work"
    return create_app(model, val=val, work=work, **limits), work, val
