"""photo_folder, pair_files, paired_folders and labels, on small trees made by the tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from pixelnn.data.notice import DataWarning
from pixelnn.data.sources import pair_files, paired_folders, photo_folder
from pixelnn.errors import ConfigError, DataError


def _img(path: Path, color: tuple[int, int, int] = (10, 20, 30), size: tuple[int, int] = (8, 8)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


@pytest.fixture
def shoes(tmp_path: Path) -> Path:
    """A UT-Zap50K-like tree with spaces, dots and '&' in names, plus files to ignore."""
    root = tmp_path / "shoes"
    _img(root / "Boots/Ankle/Dr. Martens/123 & co.jpg")
    _img(root / "Boots/Ankle/Dr. Martens/8027016.3.JPG")
    _img(root / "Boots/Knee High/Joan & David/a.png")
    _img(root / "Shoes/Heels/Brand/b.jpeg")
    _img(root / ".hidden/c.jpg")
    _img(root / "Shoes/.d.jpg")
    (root / "Shoes/notes.txt").write_text("ignore me")
    return root


def test_photo_folder_names_sorted_relative_and_filtered(shoes: Path) -> None:
    samples = photo_folder(shoes)
    assert [s.name for s in samples] == [
        "Boots/Ankle/Dr. Martens/123 & co.jpg",
        "Boots/Ankle/Dr. Martens/8027016.3.JPG",
        "Boots/Knee High/Joan & David/a.png",
        "Shoes/Heels/Brand/b.jpeg",
    ]
    assert samples[0].target == shoes / "Boots/Ankle/Dr. Martens/123 & co.jpg"
    assert samples[0].target.is_file()
    assert all(s.input is None and s.half is None and s.label is None for s in samples)


def test_path_labels(shoes: Path) -> None:
    two = [s.label for s in photo_folder(shoes, labels="path:2")]
    assert two == ["Boots/Ankle", "Boots/Ankle", "Boots/Knee High", "Shoes/Heels"]
    one = [s.label for s in photo_folder(shoes, labels="path:1")]
    assert one == ["Boots", "Boots", "Boots", "Shoes"]
    every = photo_folder(shoes, labels="path")
    assert every[0].label == "Boots/Ankle/Dr. Martens"


def test_path_labels_for_shallow_files_warn(tmp_path: Path) -> None:
    _img(tmp_path / "cat/1.jpg")
    _img(tmp_path / "loose.jpg")
    with pytest.warns(DataWarning, match="1 of 2 files"):
        samples = photo_folder(tmp_path, labels="path:1")
    assert {s.name: s.label for s in samples} == {"cat/1.jpg": "cat", "loose.jpg": None}


@pytest.mark.parametrize("spec", ["path:0", "path:x", "path:-1", "path:\u00b2", "path:\u0661"])
def test_bad_path_label_spec(tmp_path: Path, spec: str) -> None:
    _img(tmp_path / "a/1.jpg")
    with pytest.raises(ConfigError, match="path:N"):
        photo_folder(tmp_path, labels=spec)


def test_csv_labels_by_basename_and_full_name(tmp_path: Path) -> None:
    root = tmp_path / "faces"
    for name in ("000001.jpg", "000002.jpg", "sub/000003.jpg"):
        _img(root / name)
    csv = tmp_path / "identity.csv"
    csv.write_text("file,identity\n000001.jpg,17\n000002.jpg,4\nsub/000003.jpg,17\n")
    labels = {s.name: s.label for s in photo_folder(root, labels=csv)}
    assert labels == {"000001.jpg": "17", "000002.jpg": "4", "sub/000003.jpg": "17"}
    assert photo_folder(root, labels=str(csv))[0].label == "17"


def test_csv_missing_some_labels_warns(tmp_path: Path) -> None:
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        _img(tmp_path / "img" / name)
    csv = tmp_path / "l.csv"
    csv.write_text("file,label\na.jpg,x\n")
    with pytest.warns(DataWarning, match=r"2 of 3 samples have no label.*b\.jpg"):
        samples = photo_folder(tmp_path / "img", labels=csv)
    assert [s.label for s in samples] == ["x", None, None]


def test_csv_matching_nothing_is_an_error(tmp_path: Path) -> None:
    _img(tmp_path / "img/a.jpg")
    csv = tmp_path / "l.csv"
    csv.write_text("file,label\nzzz.jpg,x\n")
    with pytest.raises(DataError, match=r"l\.csv: no sample matches.*'a\.jpg'.*'zzz\.jpg'"):
        photo_folder(tmp_path / "img", labels=csv)


def test_csv_missing_or_malformed(tmp_path: Path) -> None:
    _img(tmp_path / "img/a.jpg")
    with pytest.raises(DataError, match="label file not found"):
        photo_folder(tmp_path / "img", labels=tmp_path / "none.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("file\na.jpg\n")
    with pytest.raises(DataError, match="header"):
        photo_folder(tmp_path / "img", labels=bad)
    clash = tmp_path / "clash.csv"
    clash.write_text("file,label\na.jpg,x\na.jpg,y\n")
    with pytest.raises(DataError, match="two labels"):
        photo_folder(tmp_path / "img", labels=clash)


def test_missing_root_not_folder_and_empty(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        photo_folder(tmp_path / "missing")
    (tmp_path / "file.jpg").write_bytes(b"")
    with pytest.raises(DataError, match="not a folder"):
        pair_files(tmp_path / "file.jpg")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty/readme.txt").write_text("no images")
    with pytest.raises(DataError, match=r"empty: no image files \(.*\.jpg"):
        photo_folder(tmp_path / "empty")


def test_pair_file_directions(tmp_path: Path) -> None:
    _img(tmp_path / "p/1.jpg", size=(16, 8))
    assert pair_files(tmp_path / "p", direction="AtoB")[0].half == "right"
    btoa = pair_files(tmp_path / "p")  # default BtoA: the photo is the left half
    assert btoa[0].half == "left" and btoa[0].input is None
    with pytest.raises(ConfigError, match="'AtoB'.*'BtoA'.*'up'"):
        pair_files(tmp_path / "p", direction="up")


def test_paired_folders_match_by_stem(tmp_path: Path) -> None:
    _img(tmp_path / "in/a/1.png")
    _img(tmp_path / "in/b.c.png")
    _img(tmp_path / "out/a/1.jpg")
    _img(tmp_path / "out/b.c.jpg")
    with pytest.warns(DataWarning, match=r"fewer than 1 folder\(s\) deep"):  # b.c.jpg has no folder
        samples = paired_folders(tmp_path / "in", tmp_path / "out", labels="path:1")
    assert [(s.name, s.input, s.target, s.label) for s in samples] == [
        ("a/1.jpg", tmp_path / "in/a/1.png", tmp_path / "out/a/1.jpg", "a"),
        ("b.c.jpg", tmp_path / "in/b.c.png", tmp_path / "out/b.c.jpg", None),
    ]


def test_paired_folders_partial_match_warns(tmp_path: Path) -> None:
    _img(tmp_path / "in/1.png")
    _img(tmp_path / "in/2.png")
    _img(tmp_path / "out/1.jpg")
    _img(tmp_path / "out/3.jpg")
    with pytest.warns(DataWarning, match=r"1 of 2 inputs and 1 of 2 targets.*2\.png.*3\.jpg"):
        samples = paired_folders(tmp_path / "in", tmp_path / "out")
    assert [s.name for s in samples] == ["1.jpg"]


def test_paired_folders_no_match_names_both(tmp_path: Path) -> None:
    _img(tmp_path / "in/1.png")
    _img(tmp_path / "out/2.png")
    with pytest.raises(DataError, match=r"input folder .*in has a partner in the target folder .*out"):
        paired_folders(tmp_path / "in", tmp_path / "out")


def test_paired_folders_duplicate_stem(tmp_path: Path) -> None:
    _img(tmp_path / "in/1.png")
    _img(tmp_path / "in/1.jpg")
    _img(tmp_path / "out/1.png")
    with pytest.raises(DataError, match="differ only in their suffix"):
        paired_folders(tmp_path / "in", tmp_path / "out")


def test_samples_are_frozen(shoes: Path) -> None:
    sample = photo_folder(shoes)[0]
    with pytest.raises(AttributeError):
        sample.label = "x"  # type: ignore[misc]
