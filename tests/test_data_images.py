"""load_rgb and fit_square on small images written by the tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pixelnn.data.images import IMAGE_SUFFIXES, fit_square, is_image_file, load_rgb
from pixelnn.errors import DataError


def _gradient(h: int, w: int) -> np.ndarray:
    """(h, w, 3) uint8 with distinct rows and columns."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([yy * 255 // max(h - 1, 1), xx * 255 // max(w - 1, 1), np.full_like(yy, 90)], -1).astype(np.uint8)


def test_rgb_png_round_trip(tmp_path: Path) -> None:
    img = _gradient(10, 14)
    Image.fromarray(img).save(tmp_path / "a.png")
    out = load_rgb(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (10, 14, 3)
    np.testing.assert_array_equal(out, img)


def test_exif_orientation_6_is_rotated(tmp_path: Path) -> None:
    img = Image.fromarray(_gradient(20, 40))  # 40 wide, 20 high as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    img.save(tmp_path / "rot.jpg", exif=exif.tobytes())
    out = load_rgb(tmp_path / "rot.jpg")
    assert out.shape == (40, 20, 3)
    # after a clockwise turn the stored top row (red = 0) becomes the right column
    assert out[:, -1, 0].mean() < 40 and out[:, 0, 0].mean() > 200


def test_rgba_composited_over_white(tmp_path: Path) -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200  # red-ish
    rgba[:2, :, 3] = 0  # top half fully transparent
    rgba[2:, :, 3] = 255  # bottom half opaque
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    out = load_rgb(tmp_path / "t.png")
    assert (out[:2] == 255).all()
    np.testing.assert_array_equal(out[2:, :, 0], 200)
    np.testing.assert_array_equal(out[2:, :, 1:], 0)


def test_half_transparent_la_blends_with_white(tmp_path: Path) -> None:
    Image.new("LA", (3, 3), (0, 128)).save(tmp_path / "la.png")
    out = load_rgb(tmp_path / "la.png")
    assert out.shape == (3, 3, 3)
    assert abs(int(out[0, 0, 0]) - 127) <= 1


def test_palette_with_transparency_over_white(tmp_path: Path) -> None:
    img = Image.new("P", (4, 4), 1)
    img.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)  # index 0 black, index 1 blue
    img.putpixel((0, 0), 0)
    img.save(tmp_path / "p.png", transparency=1)  # blue is transparent
    out = load_rgb(tmp_path / "p.png")
    assert (out[0, 0] == 0).all()
    assert (out[1:, 1:] == 255).all()


def test_16bit_png_scaled_by_bit_depth(tmp_path: Path) -> None:
    values = np.array([[0, 32768, 65535, 1000]], np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as img:
        assert img.mode in ("I;16", "I")  # PIL reads 16-bit grayscale PNG in a 16/32-bit mode
    out = load_rgb(tmp_path / "deep.png")
    assert out.shape == (1, 4, 3)
    assert out[0, 0, 0] == 0 and out[0, 2, 0] == 255
    assert abs(int(out[0, 1, 0]) - 128) <= 1
    assert out[0, 3, 0] == 4  # scaled (1000/257), not clipped to 255


def test_16bit_big_endian_mode(tmp_path: Path) -> None:
    raw = np.array([[65535, 0]], dtype=">u2").tobytes()
    img = Image.frombytes("I;16B", (2, 1), raw)
    img.save(tmp_path / "b.tiff")
    out = load_rgb(tmp_path / "b.tiff")
    assert out[0, 0].tolist() == [255, 255, 255] and out[0, 1].tolist() == [0, 0, 0]


def test_grayscale_and_1bit_become_three_channels(tmp_path: Path) -> None:
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(gray).save(tmp_path / "g.png")
    out = load_rgb(tmp_path / "g.png")
    assert out.shape == (3, 4, 3)
    np.testing.assert_array_equal(out[..., 1], gray)
    Image.fromarray(gray > 100).convert("1").save(tmp_path / "bw.bmp")
    bw = load_rgb(tmp_path / "bw.bmp")
    assert set(np.unique(bw).tolist()) == {0, 255}


def test_cmyk_jpeg(tmp_path: Path) -> None:
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=95)  # red
    out = load_rgb(tmp_path / "c.jpg")
    assert out.shape == (8, 8, 3)
    assert out[..., 0].mean() > 200 and out[..., 1].mean() < 60


def test_truncated_jpeg_raises_data_error(tmp_path: Path) -> None:
    Image.fromarray(_gradient(64, 64)).save(tmp_path / "full.jpg", quality=95)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "half.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="half.jpg: cannot read image"):
        load_rgb(tmp_path / "half.jpg")


def test_text_file_named_jpg_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "x.jpg").write_text("not an image at all")
    with pytest.raises(DataError, match=r"x\.jpg: cannot read image \(not a recognised image format\)"):
        load_rgb(tmp_path / "x.jpg")
    with pytest.raises(DataError, match="file not found"):
        load_rgb(tmp_path / "nope.png")


def test_fit_square_crops_centre_then_resizes() -> None:
    img = np.zeros((20, 40, 3), np.uint8)
    img[:, 10:30] = 255  # the central 20x20 square is white, the sides black
    out = fit_square(img, 8)
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    assert (out == 255).all()


def test_fit_square_single_channel_layouts() -> None:
    tall = np.full((30, 10, 1), 7, np.uint8)
    assert fit_square(tall, 5).shape == (5, 5, 1)
    assert fit_square(tall[:, :, 0], 5).shape == (5, 5)
    assert fit_square(tall, 10).shape == (10, 10, 1)  # already square after the crop: no resize


def test_fit_square_is_antialiased() -> None:
    checker = (np.indices((64, 64)).sum(0) % 2 * 255).astype(np.uint8)  # 1-pixel checkerboard
    out = fit_square(checker, 8)
    assert 100 < out.mean() < 155 and out.std() < 20  # averaged to gray, not aliased to 0/255


def test_image_suffixes_any_case() -> None:
    assert ".jpeg" in IMAGE_SUFFIXES and ".tiff" in IMAGE_SUFFIXES
    assert is_image_file("A/B.JPG") and is_image_file("x.WebP")
    assert not is_image_file("notes.txt") and not is_image_file("jpg")
