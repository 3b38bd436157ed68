import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pixelnn.fileio import atomic_path, write_json, write_npy, write_npz, write_png, write_text


def _leftovers(folder):
    """Temporary files atomic_path may have left in `folder`."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp") or p.name.startswith("."))


def test_atomic_path_keeps_the_original_when_the_block_raises(tmp_path):
    target = tmp_path / "result.txt"
    target.write_text("original")
    seen = []
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(target) as tmp:
            seen.append(tmp)
            assert tmp != target and tmp.parent == target.parent
            tmp.write_text("half written")
            raise RuntimeError("boom")
    assert target.read_text() == "original"
    assert not seen[0].exists()
    assert _leftovers(tmp_path) == []


def test_atomic_path_does_not_create_the_file_when_the_block_raises(tmp_path):
    target = tmp_path / "new" / "deeper" / "file.bin"
    with pytest.raises(KeyError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"x")
            raise KeyError("stop")
    assert not target.exists()
    assert target.parent.is_dir()  # parents are made before the block runs
    assert _leftovers(target.parent) == []


def test_atomic_path_replaces_the_file_on_success(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with atomic_path(target) as tmp:
        tmp.write_text("new")
        assert target.read_text() == "old"  # not visible before the block ends
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_failed_png_write_leaves_the_previous_png(tmp_path):
    path = tmp_path / "im.png"
    first = np.full((4, 5, 3), 7, np.uint8)
    write_png(path, first)
    with pytest.raises(TypeError, match="Cannot handle this data type"):
        write_png(path, np.zeros((4, 4, 5), np.uint8))  # 5 channels: PIL refuses it
    assert np.array_equal(np.asarray(Image.open(path)), first)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["im.png"]


def test_write_json_round_trip(tmp_path):
    obj = {"b": [1, 2.5, None], "a": {"nested": "é & <x>"}, "flag": True}
    write_json(tmp_path / "x.json", obj)
    assert json.loads((tmp_path / "x.json").read_text()) == obj
    write_json(tmp_path / "x.json", {"replaced": 1})
    assert json.loads((tmp_path / "x.json").read_text()) == {"replaced": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]


def test_write_png_round_trips_rgb_gray_and_single_channel(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (6, 9, 3), dtype=np.uint8)
    gray = rng.integers(0, 256, (5, 4), dtype=np.uint8)
    single = rng.integers(0, 256, (3, 7, 1), dtype=np.uint8)
    write_png(tmp_path / "rgb.png", rgb)
    write_png(tmp_path / "gray.png", gray)
    write_png(tmp_path / "single.png", single)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "rgb.png")), rgb)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "gray.png")), gray)
    back = np.asarray(Image.open(tmp_path / "single.png"))
    assert back.shape == (3, 7) and np.array_equal(back, single[:, :, 0])
    # a non-contiguous view is written as the image it shows
    write_png(tmp_path / "flip.png", rgb[:, ::-1])
    assert np.array_equal(np.asarray(Image.open(tmp_path / "flip.png")), rgb[:, ::-1])
    assert _leftovers(tmp_path) == []


def test_write_npz_and_npy_round_trip(tmp_path):
    a = np.arange(12, dtype=np.int64).reshape(3, 4)
    b = np.linspace(0, 1, 5, dtype=np.float32)
    write_npz(tmp_path / "z.npz", a=a, b=b, s=np.array("text"))
    with np.load(tmp_path / "z.npz") as z:
        assert sorted(z.files) == ["a", "b", "s"]
        assert np.array_equal(z["a"], a) and z["a"].dtype == np.int64
        assert np.array_equal(z["b"], b) and z["b"].dtype == np.float32
        assert str(z["s"]) == "text"
    write_npy(tmp_path / "y.npy", b)
    assert np.array_equal(np.load(tmp_path / "y.npy"), b)
    write_text(tmp_path / "t.txt", "hello\n")
    assert (tmp_path / "t.txt").read_text() == "hello\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.txt", "y.npy", "z.npz"]


def test_atomic_writes_flush_the_file_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    import pixelnn.fileio as fileio

    synced = []
    monkeypatch.setattr(fileio, "fsync_path", lambda p: synced.append((Path(p), (tmp_path / "x.json").exists())))
    write_json(tmp_path / "x.json", {"a": 1})
    (tmp_file, existed), (folder, after) = synced
    assert tmp_file.parent == tmp_path and tmp_file.name.startswith(".x.json.") and not existed
    assert folder == tmp_path and after


def test_fsync_path_flushes_files_and_folders(tmp_path, monkeypatch):
    import pixelnn.fileio as fileio

    calls = []
    real = fileio.os.fsync
    monkeypatch.setattr(fileio.os, "fsync", lambda fd: calls.append(fd) or real(fd))
    (tmp_path / "f").write_text("x")
    fileio.fsync_path(tmp_path / "f")
    fileio.fsync_path(tmp_path)
    assert len(calls) == 2
