"""Checkpoints are safetensors + JSON: round trips, old torch.save folders, damage, and no code run on load."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from pixelnn.cli import main
from pixelnn.errors import ConfigError
from pixelnn.regress import checkpoint
from pixelnn.regress.unet import Stage1Config, UNet
from pixelnn.workflow import convert_folder

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CFG = Stage1Config(in_channels=3, input_size=8, size=32, width=8, levels=2, residual=True)


def trained_state(model: UNet) -> dict:
    """A training state as train() saves it: an Adam optimizer after one step, history, precision."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.5, 0.999))
    model(torch.rand(2, 3, 8, 8)).mean().backward()
    opt.step()
    return {
        "step": 1,
        "epoch": 0,
        "elapsed_s": 1.5,
        "done": False,
        "train": {"batch": 2, "lr": 1e-3},
        "history": [{"epoch": 1, "loss": 0.25}],
        "precision": {"precision": "fp32", "channels_last": False},
        "optimizer": opt.state_dict(),
    }


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def old_folder(root: Path, model: UNet, state: dict) -> Path:
    """A model folder as PixelNN wrote it before safetensors: stage1.pt from torch.save."""
    root.mkdir(parents=True, exist_ok=True)
    blob = {
        "format": checkpoint.FORMAT,
        "version": checkpoint.VERSION,
        "config": model.cfg.to_dict(),
        "model": model.state_dict(),
        **state,
    }
    torch.save(blob, root / checkpoint.LEGACY_FILENAME)
    return root


def saved(tmp_path: Path) -> tuple[UNet, dict, Path]:
    """A seeded model and its training state, saved as a checkpoint in tmp_path."""
    torch.manual_seed(0)
    model = UNet(CFG)
    state = trained_state(model)
    path = tmp_path / checkpoint.FILENAME
    checkpoint.save(path, model, state)
    return model, state, path


def test_round_trip_keeps_weights_optimizer_and_state(tmp_path):
    model, state, path = saved(tmp_path)
    blob = checkpoint.read(path)
    assert same(blob["model"], model.state_dict())
    assert same(blob["optimizer"], state["optimizer"])  # int keys of `state` and tuple betas survive
    assert {k: blob[k] for k in ("step", "epoch", "elapsed_s", "done", "train", "history", "precision")} == {
        k: state[k] for k in ("step", "epoch", "elapsed_s", "done", "train", "history", "precision")
    }
    opt = torch.optim.Adam(model.parameters())
    opt.load_state_dict(blob["optimizer"])  # the optimizer resumes from it
    assert opt.state_dict()["state"].keys() == state["optimizer"]["state"].keys()
    assert checkpoint.fingerprint(checkpoint.load_model(path)) == checkpoint.fingerprint(model)
    assert not list(tmp_path.glob(".*.tmp"))


def test_the_description_alone_is_read_from_the_header_of_new_and_old_files(tmp_path):
    model, state, path = saved(tmp_path)
    described = checkpoint.read_description(path, "stage 1")
    assert {k: described[k] for k in ("step", "history", "precision")} == {
        k: state[k] for k in ("step", "history", "precision")
    }
    assert described["config"] == CFG.to_dict()
    assert all(v is None for v in described["model"].values())  # the weights are left out, not loaded
    old = old_folder(tmp_path / "old", model, state) / checkpoint.LEGACY_FILENAME
    assert checkpoint.read_description(old, "stage 1")["step"] == 1
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(ConfigError, match="not a readable stage 1 checkpoint"):
        checkpoint.read_description(path, "stage 1")


def test_the_file_is_plain_safetensors_with_a_json_description(tmp_path):
    from safetensors import safe_open

    path = tmp_path / checkpoint.FILENAME
    checkpoint.save(path, UNet(CFG), {"done": True})
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        assert all(k.startswith("model/") for k in f.keys())
    described = json.loads(meta["pixelnn"])
    assert described["format"] == checkpoint.FORMAT and described["config"] == CFG.to_dict() and described["done"]
    assert len(meta["pixelnn_sha256"]) == 64


def test_an_old_model_folder_loads_as_it_is_and_converts(tmp_path):
    torch.manual_seed(1)
    model = UNet(CFG).eval()
    state = trained_state(model)
    root = old_folder(tmp_path / "old", model, state)
    fp = checkpoint.fingerprint(model)
    assert checkpoint.exists(root / checkpoint.FILENAME)
    assert checkpoint.fingerprint(checkpoint.load_model(root / checkpoint.FILENAME)) == fp  # no conversion needed
    assert main(["convert", str(root)]) == 0
    assert not (root / checkpoint.LEGACY_FILENAME).exists() and not checkpoint.is_legacy(root / checkpoint.FILENAME)
    assert checkpoint.fingerprint(checkpoint.load_model(root / checkpoint.FILENAME)) == fp
    assert same(checkpoint.read(root / checkpoint.FILENAME)["optimizer"], state["optimizer"])
    assert convert_folder(root) == [f"{root} holds no old checkpoint (stage1.pt, pix2pix.pt): nothing to convert"]


def test_convert_can_keep_the_old_file_and_never_overwrites_a_new_one(tmp_path):
    model = UNet(CFG)
    root = old_folder(tmp_path / "old", model, {"done": True})
    convert_folder(root, keep_old=True)
    assert (root / checkpoint.LEGACY_FILENAME).exists() and (root / checkpoint.FILENAME).exists()
    (line,) = convert_folder(root)
    assert "already exists" in line


def test_an_old_pix2pix_checkpoint_is_rewritten_in_place(tmp_path):
    from pixelnn.baselines.pix2pix import checkpoint as P
    from pixelnn.baselines.pix2pix.model import Discriminator, Generator, Pix2PixConfig

    gen_cfg = Pix2PixConfig(in_channels=3, input_size=8, size=32, ngf=4, ndf=4)
    gen, disc = Generator(gen_cfg), Discriminator(gen_cfg)
    torch.save(
        {
            "format": P.FORMAT,
            "version": P.VERSION,
            "config": gen_cfg.to_dict(),
            "generator": gen.state_dict(),
            "discriminator": disc.state_dict(),
            "done": True,
        },
        tmp_path / P.FILENAME,
    )
    convert_folder(tmp_path)
    assert not checkpoint.is_legacy(tmp_path / P.FILENAME) and not (tmp_path / (P.FILENAME + ".old")).exists()
    assert same(P.load_generator(tmp_path).state_dict(), gen.state_dict())


def test_edited_tensors_are_refused_by_the_checksum(tmp_path):
    path = tmp_path / checkpoint.FILENAME
    checkpoint.save(path, UNet(CFG), {"done": True})
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x40  # one bit of the last tensor's data: the file still parses
    path.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match="damaged: its tensors do not match the sha256"):
        checkpoint.load_model(path)


def test_weights_from_another_save_are_refused(tmp_path):
    """Tensors of one checkpoint with the description (and sum) of another: refused, not mixed."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    torch.manual_seed(0)
    checkpoint.save(a, UNet(CFG), {"done": True})
    checkpoint.save(b, UNet(CFG), {"done": True})
    with safe_open(str(a), framework="pt") as f:
        meta_a = f.metadata()
    save_file(load_file(b), tmp_path / "mixed.safetensors", metadata=meta_a)
    with pytest.raises(ConfigError, match="do not match the sha256"):
        checkpoint.read(tmp_path / "mixed.safetensors")


def test_a_truncated_or_foreign_safetensors_file_is_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / checkpoint.FILENAME
    checkpoint.save(path, UNet(CFG), {"done": True})
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ConfigError, match="not a readable stage-1 checkpoint"):
        checkpoint.read(path)
    save_file({"w": torch.zeros(3)}, tmp_path / "foreign.safetensors")
    with pytest.raises(ConfigError, match="not a PixelNN stage-1 checkpoint"):
        checkpoint.read(tmp_path / "foreign.safetensors")


class _Exploit:
    """Unpickling this writes a file: what a hostile shared model folder would do."""

    def __init__(self, target: Path) -> None:
        self.target = str(target)

    def __reduce__(self):
        return (Path.write_text, (Path(self.target), "pwned"))


def test_a_pickle_that_runs_code_is_refused_and_not_run(tmp_path, capsys):
    marker = tmp_path / "ran"
    root = tmp_path / "shared-model"
    root.mkdir()
    blob = {
        "format": checkpoint.FORMAT,
        "version": checkpoint.VERSION,
        "config": CFG.to_dict(),
        "model": UNet(CFG).state_dict(),
        "payload": _Exploit(marker),
    }
    torch.save(blob, root / checkpoint.LEGACY_FILENAME)
    with pytest.raises(ConfigError, match=r"no longer unpickles.*pixelnn convert .*--trust-pickle"):
        checkpoint.load_model(root / checkpoint.FILENAME)
    assert main(["convert", str(root)]) == 2
    assert "can run code" in capsys.readouterr().err
    assert not marker.exists()
    assert (root / checkpoint.LEGACY_FILENAME).exists() and not (root / checkpoint.FILENAME).exists()


def test_numpy_values_in_a_checkpoint_round_trip(tmp_path):
    path = tmp_path / "x.safetensors"
    blob = {
        "format": "f",
        "version": 1,
        "a": np.arange(6, dtype=np.int16).reshape(2, 3),
        "b": np.float32(0.5),
        "t": torch.ones(2, dtype=torch.bfloat16),
        "s": torch.tensor(3.0),
    }
    checkpoint.write_checkpoint(path, blob)
    back = checkpoint.read_checkpoint(path, "f", 1, "test", "x")
    assert np.array_equal(back["a"], blob["a"]) and back["a"].dtype == np.int16 and back["b"] == 0.5
    assert same(back["t"], blob["t"]) and same(back["s"], blob["s"])
    with pytest.raises(TypeError, match="cannot hold"):
        checkpoint.write_checkpoint(path, {"f": os})


def test_training_resumes_an_old_folder_and_saves_the_new_format(tmp_path):
    from conftest import smooth_textures
    from pixelnn.data.signals import lowres
    from pixelnn.regress.train import TrainConfig, train

    y = smooth_textures(8, 32, seed=3)
    x = lowres(y, 4)
    cfg = dict(batch=4, save_every_s=0, precision="fp32")
    train(x, y, tmp_path / "new", CFG, TrainConfig(steps=2, **cfg))
    blob = checkpoint.read(tmp_path / "new" / checkpoint.FILENAME)
    old = tmp_path / "old"
    old.mkdir()
    torch.save(blob, old / checkpoint.LEGACY_FILENAME)  # the same run, as an older PixelNN saved it
    train(x, y, old, CFG, TrainConfig(steps=3, **cfg))
    resumed = checkpoint.read(old / checkpoint.FILENAME)
    assert resumed["step"] == 3 and resumed["history"][:1] == blob["history"][:1]
    assert not checkpoint.is_legacy(old / checkpoint.FILENAME)


def test_an_old_file_with_numpy_values_converts_only_when_trusted(tmp_path):
    """weights_only refuses numpy scalars; the owner of such a file can still convert it, deliberately."""
    model = UNet(CFG)
    root = old_folder(tmp_path / "old", model, {"done": True, "history": [{"loss": np.float64(0.5)}]})
    with pytest.raises(ConfigError, match="--trust-pickle"):
        checkpoint.load_model(root / checkpoint.FILENAME)
    with pytest.raises(ConfigError, match="--trust-pickle"):
        convert_folder(root)
    convert_folder(root, trust_pickle=True)
    assert checkpoint.read(root / checkpoint.FILENAME)["history"] == [{"loss": 0.5}]
    assert checkpoint.fingerprint(checkpoint.load_model(root / checkpoint.FILENAME)) == checkpoint.fingerprint(model)


def test_a_damaged_old_file_is_not_blamed_on_pickle(tmp_path):
    root = old_folder(tmp_path / "old", UNet(CFG), {"done": True})
    path = root / checkpoint.LEGACY_FILENAME
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(ConfigError, match=r"not a readable stage-1 checkpoint \(") as err:
        checkpoint.read(root / checkpoint.FILENAME)
    assert "trust" not in str(err.value)
