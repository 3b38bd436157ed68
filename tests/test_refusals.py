"""Options that cannot apply are refused before any work, with a message naming the option; model
folders are written with the user's umask; `pixelnn --version`."""

import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest

import pixelnn
from conftest import write_photos
from pixelnn.cli import main
from pixelnn.errors import ConfigError
from pixelnn.workflow import index_arrays

NAMES = [f"p{i}.png" for i in range(8)]
COMMON = ["--signal", "lowres", "--size", "32", "--factor", "4"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """(photo folder, model folder) of `pixelnn train` on 8 photos, written under umask 022."""
    root = tmp_path_factory.mktemp("refusals")
    data = write_photos(root / "photos", NAMES, 32, seed=5)
    run = root / "run"
    old = os.umask(0o022)
    try:
        code = main(["train", "--data", str(data), *COMMON, "--steps", "3", "--width", "8", "--out", str(run)])
    finally:
        os.umask(old)
    assert code == 0
    return data, run


def _refused(capsys, argv, *phrases):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "error: " in err and "Traceback" not in err
    for phrase in phrases:
        assert phrase in err, err
    return err


def test_every_file_and_folder_of_a_model_is_readable_by_others_under_umask_022(model):
    _, run = model
    paths = [run, *run.rglob("*")]
    assert len(paths) > 10
    for path in paths:
        mode = stat.S_IMODE(path.lstat().st_mode)
        need = 0o755 if path.is_dir() else 0o644
        assert mode & need == need, f"{path.relative_to(run)}: {oct(mode)}"
        assert not mode & 0o022, f"{path.relative_to(run)}: {oct(mode)} is writable by others"


def test_files_follow_a_stricter_umask_too(tmp_path):
    from pixelnn.fileio import atomic_folder, write_json

    old = os.umask(0o077)
    try:
        write_json(tmp_path / "a.json", {})
        with atomic_folder(tmp_path / "f") as tmp:
            (tmp / "x").write_text("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o700


def test_version_prints_the_package_version():
    out = subprocess.run(
        [sys.executable, "-m", "pixelnn.cli", "--version"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert out.strip() == f"pixelnn {pixelnn.__version__}"


def test_an_unknown_backbone_is_refused_by_the_parser_before_any_data_is_read(capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--data", str(tmp_path / "none"), "--signal", "edges", "--backbone", "nonsense", "--out", "o"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--backbone" in err and "'nonsense'" in err and "vgg16-hed" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "extra, phrases",
    [
        (["--size", "48"], ["--size 48", "size 32", "leave --size out"]),
        (["--factor", "2"], ["--factor 2", "factor 4"]),
        (["--labels", "path"], ["--labels", "--restrict"]),
        (["--like-k", "3"], ["--like-k", "--like"]),
        (["--from-photo"], ["--from-photo", "--data"]),
        (["--ids", "1,,2"], ["--ids", "'1,,2'"]),
        (["--ids", ",,,"], ["--ids", "',,,'"]),
        (["--pairs", "BtoA"], ["--pairs and --signal exclude each other"]),
    ],
)
def test_synthesize_refuses_options_that_cannot_apply(capsys, model, tmp_path, extra, phrases):
    data, run = model
    out = tmp_path / "out"
    _refused(
        capsys,
        ["synthesize", "--model", str(run), "--data", str(data), "--signal", "lowres", *extra, "--out", str(out)],
        *phrases,
    )
    assert not (out / "index.html").exists()


def test_synthesize_refuses_inputs_and_data_together(capsys, model, tmp_path):
    data, run = model
    argv = ["synthesize", "--model", str(run), str(data / NAMES[0]), "--data", str(data), "--out", str(tmp_path / "o")]
    _refused(capsys, argv, "not both")


def test_synthesize_refuses_targets_without_data(capsys, model, tmp_path):
    data, run = model
    argv = ["synthesize", "--model", str(run), str(data / NAMES[0]), "--targets", str(data), "--out", str(tmp_path)]
    _refused(capsys, argv, "--targets", "--data")


@pytest.mark.parametrize("inside", [".", "results", "bank/out"])
def test_synthesize_refuses_an_out_inside_the_model_folder(capsys, model, inside):
    data, run = model
    before = sorted(p.name for p in run.iterdir())
    out = run / inside
    _refused(capsys, ["synthesize", "--model", str(run), "--data", str(data), "--out", str(out)], "inside the model")
    assert sorted(p.name for p in run.iterdir()) == before


def test_evaluate_refuses_labels(capsys, model, tmp_path):
    data, run = model
    argv = ["evaluate", "--model", str(run), "--data", str(data), "--labels", "path", "--out", str(tmp_path / "e")]
    _refused(capsys, argv, "--labels")
    assert not (tmp_path / "e").exists()


@pytest.mark.parametrize(
    "extra, phrases",
    [
        (["--backbone", "efficientnet-lite0"], ["--backbone efficientnet-lite0", "vgg16-hed", "new bank only"]),
        (["--descriptors", "8"], ["--descriptors 8", "descriptors None"]),
        (["--size", "64"], ["--size 64", "size 32"]),
    ],
)
def test_index_refuses_new_bank_options_for_an_existing_bank(capsys, model, extra, phrases):
    data, run = model
    before = (run / "bank" / "bank.json").read_text()
    _refused(capsys, ["index", "--model", str(run), "--data", str(data), *extra], *phrases)
    assert (run / "bank" / "bank.json").read_text() == before


def test_index_arrays_refuses_another_format_version_for_an_existing_bank(model):
    _, run = model
    x = np.zeros((1, 8, 8, 3), np.uint8)
    y = np.zeros((1, 32, 32, 3), np.uint8)
    with pytest.raises(ConfigError, match="version 1: the bank .* exists with version 2"):
        index_arrays(run, x, y, ["z.png"], [None], progress=False, version=1)


def test_train_refuses_to_resume_with_another_budget(capsys, model):
    data, run = model
    config = (run / "config.json").read_text()
    argv = ["train", "--data", str(data), *COMMON, "--steps", "5", "--width", "8", "--out", str(run)]
    _refused(capsys, argv, "steps 3", "steps 5", "same budget")
    assert (run / "config.json").read_text() == config
    assert json.loads(config)["train"]["steps"] == 3


def test_train_refuses_pairs_with_a_signal(capsys, tmp_path):
    argv = ["train", "--data", str(tmp_path), "--pairs", "BtoA", "--signal", "edges", "--out", str(tmp_path / "o")]
    _refused(capsys, argv, "--pairs and --signal exclude each other")
