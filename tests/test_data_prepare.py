"""prepare / save_prepared / load_prepared on small images written by the tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pixelnn.data.notice import DataWarning
from pixelnn.data.prepare import Prepared, load_prepared, prepare, save_prepared
from pixelnn.data.sources import Sample, pair_files, paired_folders, photo_folder
from pixelnn.errors import ConfigError, DataError

RED, BLUE, GREEN = (255, 0, 0), (0, 0, 255), (0, 255, 0)


def _img(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (40, 32)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def _photos(root: Path, n: int) -> None:
    for i in range(n):
        _img(root / ("cat" if i % 2 else "dog") / f"{i}.png", (i * 20, 100, 200))


def test_photo_folder_lowres(tmp_path: Path) -> None:
    _photos(tmp_path, 4)
    prep, skipped = prepare(photo_folder(tmp_path, labels="path:1"), size=32, signal="lowres", factor=4, progress=False)
    assert skipped == []
    assert prep.y.shape == (4, 32, 32, 3) and prep.x.shape == (4, 8, 8, 3)
    assert prep.x.dtype == np.uint8 and prep.y.dtype == np.uint8
    assert prep.names == ["cat/1.png", "cat/3.png", "dog/0.png", "dog/2.png"]
    assert prep.labels == ["cat", "cat", "dog", "dog"]
    assert prep.signal == "lowres"
    assert tuple(prep.y[2, 5, 5]) == (0, 100, 200)


def test_photo_folder_canny(tmp_path: Path) -> None:
    _photos(tmp_path, 2)
    prep, _ = prepare(photo_folder(tmp_path), size=16, signal="canny", progress=False)
    assert prep.x.shape == (2, 16, 16, 1) and (prep.x == 255).all()  # flat photos: no edges


def test_signal_rules(tmp_path: Path) -> None:
    _photos(tmp_path / "photos", 1)
    _img(tmp_path / "pairs/1.png", RED, (32, 16))
    with pytest.raises(ConfigError, match="needs an input signal"):
        prepare(photo_folder(tmp_path / "photos"), progress=False)
    with pytest.raises(ConfigError, match="photo folders only"):
        prepare(pair_files(tmp_path / "pairs"), signal="lowres", progress=False)
    with pytest.raises(ConfigError, match="not divisible"):
        prepare(photo_folder(tmp_path / "photos"), size=30, signal="lowres", factor=8, progress=False)


def test_truncated_and_fake_images_are_skipped_and_counted(tmp_path: Path) -> None:
    _photos(tmp_path, 3)
    big = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(big).save(tmp_path / "full.jpg", quality=95)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "full.jpg").unlink()
    (tmp_path / "half.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "x.jpg").write_text("hello")
    with pytest.warns(DataWarning, match=r"skipped 2 of 5 images that could not be read: half\.jpg \(.*\), x\.jpg"):
        prep, skipped = prepare(photo_folder(tmp_path), size=16, signal="lowres", factor=4, progress=False)
    assert [name for name, _ in skipped] == ["half.jpg", "x.jpg"]
    assert skipped[1][1] == "not a recognised image format"
    assert len(prep.names) == 3 and prep.y.shape[0] == 3 and prep.x.shape[0] == 3
    assert "half.jpg" not in prep.names


def test_everything_unreadable_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_text("no")
    (tmp_path / "b.png").write_text("no")
    with pytest.raises(DataError, match="none of the 2 images could be read"):
        prepare(photo_folder(tmp_path), size=16, signal="lowres", factor=4, progress=False)


def _pair_file(path: Path) -> None:
    """A 64x32 A|B file: left half red, right half blue."""
    pair = np.zeros((32, 64, 3), np.uint8)
    pair[:, :32] = RED
    pair[:, 32:] = BLUE
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pair).save(path)


@pytest.mark.parametrize(("direction", "target", "source"), [("BtoA", RED, BLUE), ("AtoB", BLUE, RED)])
def test_pair_file_halves(tmp_path: Path, direction: str, target: tuple, source: tuple) -> None:
    _pair_file(tmp_path / "pairs/1.png")
    prep, _ = prepare(pair_files(tmp_path / "pairs", direction), size=16, progress=False)
    assert prep.signal == "pairs"
    assert prep.x.shape == (1, 16, 16, 3) and prep.y.shape == (1, 16, 16, 3)
    assert (prep.y[0] == target).all() and (prep.x[0] == source).all()


def test_paired_folders_load_both(tmp_path: Path) -> None:
    _img(tmp_path / "in/a/1.png", GREEN, (20, 20))
    _img(tmp_path / "out/a/1.jpg", RED, (30, 40))
    prep, _ = prepare(paired_folders(tmp_path / "in", tmp_path / "out"), size=12, progress=False)
    assert prep.signal == "folders" and prep.names == ["a/1.jpg"]
    assert prep.x.shape == (1, 12, 12, 3) and tuple(prep.x[0, 6, 6]) == GREEN
    assert prep.y[0, 6, 6, 0] > 240 and prep.y[0, 6, 6, 1] < 15


def test_unreadable_input_file_is_named(tmp_path: Path) -> None:
    _img(tmp_path / "in/1.png", GREEN)
    (tmp_path / "in/2.png").write_text("broken")
    _img(tmp_path / "out/1.png", RED)
    _img(tmp_path / "out/2.png", RED)
    with pytest.warns(DataWarning, match="skipped 1 of 2"):
        prep, skipped = prepare(paired_folders(tmp_path / "in", tmp_path / "out"), size=8, progress=False)
    assert prep.names == ["1.png"]
    assert skipped[0][0] == "2.png" and "input" in skipped[0][1] and "2.png" in skipped[0][1]


def test_mixed_sample_kinds_rejected(tmp_path: Path) -> None:
    a = Sample("a.png", tmp_path / "a.png")
    b = Sample("b.png", tmp_path / "b.png", half="left")
    with pytest.raises(ConfigError, match="mix"):
        prepare([a, b], signal="lowres", progress=False)
    with pytest.raises(DataError, match="no samples"):
        prepare([], signal="lowres", progress=False)


def test_save_load_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    prep = Prepared(
        x=rng.integers(0, 256, (3, 4, 4, 1), dtype=np.uint8),
        y=rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8),
        names=["a b/1.jpg", "Dr. M & co/2.png", "3.png"],
        labels=["cat", None, ""],
        signal="edges",
    )
    path = tmp_path / "out" / "prepared.npz"
    save_prepared(path, prep)
    back = load_prepared(path)
    np.testing.assert_array_equal(back.x, prep.x)
    np.testing.assert_array_equal(back.y, prep.y)
    assert back.names == prep.names and back.labels == prep.labels and back.signal == "edges"
    assert [p.name for p in path.parent.iterdir()] == ["prepared.npz"]  # no temporary left behind


def test_load_prepared_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_prepared(tmp_path / "none.npz")
    (tmp_path / "junk.npz").write_bytes(b"this is not a zip file")
    with pytest.raises(DataError, match=r"junk\.npz: cannot read prepared data"):
        load_prepared(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(DataError, match=r"not a PixelNN prepared-data file \(missing format"):
        load_prepared(tmp_path / "other.npz")
