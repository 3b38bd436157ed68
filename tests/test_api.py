"""The top-level Python API: pixelnn.load, PixelNN.save, pixelnn.list_backbones, and the model card."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import pixelnn
from pixelnn.errors import ConfigError
from pixelnn.model_folder import BANK_REF
from pixelnn.regress import checkpoint, run_folder
from pixelnn.synth.pipeline import PixelNN

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_import_pixelnn_does_not_import_torch():
    code = "import sys, pixelnn; print('torch' in sys.modules, 'numpy' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]


def test_load_is_pixelnn_load(tiny_run):
    model = pixelnn.load(tiny_run[0])
    assert isinstance(model, PixelNN) and isinstance(model, pixelnn.PixelNN)
    assert len(model.bank) == 6 and model.source == tiny_run[0]


def test_list_backbones_names_the_default_first_and_every_loadable_one():
    from pixelnn.features import backbones

    names = pixelnn.list_backbones()
    assert names[0] == backbones.DEFAULT and sorted(names) == sorted(backbones.FACTORIES)


def _same_outputs(a: PixelNN, b: PixelNN, x: np.ndarray) -> None:
    ra, rb = a.synthesize(x, grid="2:1:3"), b.synthesize(x, grid="2:1:3")
    assert np.array_equal(ra.stage1, rb.stage1)
    assert np.array_equal(ra.candidates[0].image, rb.candidates[0].image)
    assert np.array_equal(ra.candidates[0].corr.exemplar, rb.candidates[0].corr.exemplar)


def test_save_copies_a_folder_that_load_reads_back_the_same(model, tiny_run, tmp_path):
    out = model.save(tmp_path / "copy")
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "bank", "config.json", checkpoint.FILENAME]
    assert not list(tmp_path.glob(".copy.*"))  # no temporary folder left behind
    again = pixelnn.load(out)
    assert again.bank.root == out / "bank" and len(again.bank) == len(model.bank)
    assert again.bank.names == model.bank.names and again.bank.labels == model.bank.labels
    for key, value in model.model.state_dict().items():
        assert torch.equal(again.model.state_dict()[key], value), key
    _same_outputs(model, again, tiny_run[1][0])
    assert "6 exemplars in 1 shard(s) at `bank/`" in (out / "README.md").read_text()


def test_save_by_reference_writes_no_bank_and_load_follows_the_reference(model, tiny_run, tmp_path):
    out = model.save(tmp_path / "ref", bank="reference")
    assert not (out / "bank").exists()
    assert json.loads((out / BANK_REF).read_text()) == {"path": str(model.bank.root.resolve())}
    again = pixelnn.load(out)
    assert again.bank.root == model.bank.root.resolve()
    _same_outputs(model, again, tiny_run[1][1])


def test_save_refuses_a_folder_with_files_and_an_unknown_bank_mode(model, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="exists and is not an empty folder"):
        model.save(tmp_path / "full")
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["keep.txt"]
    with pytest.raises(ConfigError, match="bank must be one of copy, reference"):
        model.save(tmp_path / "other", bank="link")
    (tmp_path / "empty").mkdir()
    assert (model.save(tmp_path / "empty") / checkpoint.FILENAME).exists()  # an empty folder is fine


def test_a_damaged_bank_reference_is_a_clear_error(model, tmp_path):
    out = model.save(tmp_path / "ref", bank="reference")
    (out / BANK_REF).write_text("{not json")
    with pytest.raises(ConfigError, match="bank-ref.json is damaged.*save the model again"):
        pixelnn.load(out)


def test_model_card_reports_training_psnr_and_bank():
    config = {
        "signal": "lowres",
        "factor": 8,
        "size": 96,
        "data": {"source": "celeba/train"},
        "stage1": {"input_size": 12, "in_channels": 3, "width": 16, "levels": 4, "residual": True},
        "train": {"steps": 0, "epochs": 0, "minutes": 25, "batch": 32, "weight_decay": 0.0},
    }
    metrics = {
        "train": {"stage1_psnr": 25.1, "bicubic_psnr": 22.0, "mean_image_psnr": 15.0},
        "training": {"steps": 1000, "epochs": 3.2, "pairs": 10000, "minutes": 25.0, "precision": {"precision": "bf16"}},
    }
    bank = {"shards": [{"count": 10}, {"count": 5}], "backbone": "vgg16-hed", "descriptors": {"dim": 32}}
    card = run_folder.model_card(config, metrics, bank)
    assert "| data | celeba/train |" in card
    assert "| input signal | lowres (photos downsampled by 8) |" in card
    assert "1000 steps, 3.2 epochs over 10000 training pairs, 25.0 min, precision bf16" in card
    assert "| train | 25.10 dB | 22.00 dB | 15.00 dB |" in card
    assert "No validation data was given" in card
    assert "15 exemplars in 2 shard(s)" in card and "reduced 32-dim" in card


def test_the_names_a_user_needs_are_importable_from_pixelnn():
    from pixelnn.synth.control import ExemplarSet, transfer_labels
    from pixelnn.synth.grid import Spec
    from pixelnn.synth.request import Request

    assert (pixelnn.ExemplarSet, pixelnn.transfer_labels, pixelnn.Spec, pixelnn.Request) == (
        ExemplarSet,
        transfer_labels,
        Spec,
        Request,
    )
    with pytest.raises(AttributeError, match="no attribute 'Nonsense'"):
        pixelnn.Nonsense  # noqa: B018


def test_inputs_may_be_float_grayscale_or_pil_and_give_what_uint8_gives(tiny_run):
    from PIL import Image

    model = pixelnn.load(tiny_run[0])
    x = tiny_run[1][0]  # (8, 8, 3) uint8
    grid = "1:1:1,2:1:3"
    want = model.synthesize(x, grid=grid).candidates[0].image
    as_float = x.astype(np.float32) / 255.0
    for given in (as_float, Image.fromarray(x)):
        assert np.array_equal(model.synthesize(given, grid=grid).candidates[0].image, want)
    gray = np.full((8, 8), 100, np.uint8)
    assert np.array_equal(model.check_input(gray), np.full((8, 8, 3), 100, np.uint8))


@pytest.mark.parametrize(
    "bad, words",
    [
        (np.full((8, 8, 3), 1.5, np.float32), "values in [0, 1]"),
        (np.zeros((8, 8, 3), np.int64), "uint8 or float"),
        (np.zeros((4, 4, 3), np.float32), "got shape (4, 4, 3)"),
    ],
)
def test_inputs_that_cannot_be_used_are_typed_errors_without_the_photo_hint(tiny_run, bad, words):
    model = pixelnn.load(tiny_run[0])
    with pytest.raises(ConfigError) as exc:
        model.synthesize(bad, grid="1:1:1")
    assert words in str(exc.value) and "--from-photo" not in str(exc.value)


def test_a_photo_given_as_input_is_told_to_use_from_photo(tiny_run):
    model = pixelnn.load(tiny_run[0])
    with pytest.raises(ConfigError, match="--from-photo"):
        model.synthesize(np.zeros((32, 32, 3), np.uint8), grid="1:1:1")
