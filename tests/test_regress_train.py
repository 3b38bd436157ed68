import numpy as np
import pytest
import torch

from pixelnn.data.signals import lowres
from pixelnn.errors import ConfigError
from pixelnn.regress import checkpoint
from pixelnn.regress import train as train_mod
from pixelnn.regress.train import TrainConfig, evaluate_psnr, psnr, train
from pixelnn.regress.unet import Stage1Config, UNet

from conftest import smooth_textures

CFG = Stage1Config(in_channels=3, input_size=8, size=32, width=8, levels=2, residual=True)

pytestmark = pytest.mark.usefixtures("one_torch_thread")




@pytest.fixture(scope="module")
def data():
    y = smooth_textures(8, 32, seed=3)
    return lowres(y, 4), y


def test_interrupted_run_resumes_with_time_steps_and_history(tmp_path, data):
    x, y = data
    train(x, y, tmp_path, CFG, TrainConfig(minutes=0.02, batch=4, save_every_s=0))
    first = checkpoint.read(tmp_path / checkpoint.FILENAME)
    assert first["done"] and first["step"] > 0 and first["elapsed_s"] >= 0.02 * 60
    assert len(first["history"]) == first["epoch"] >= 1

    train(x, y, tmp_path, CFG, TrainConfig(minutes=0.04, batch=4, save_every_s=0))
    second = checkpoint.read(tmp_path / checkpoint.FILENAME)
    assert second["elapsed_s"] > first["elapsed_s"]
    assert second["elapsed_s"] >= 0.04 * 60
    assert second["step"] > first["step"]
    assert second["epoch"] > first["epoch"]
    assert second["history"][: len(first["history"])] == first["history"]
    assert len(second["history"]) == second["epoch"]
    elapsed = [h["elapsed_s"] for h in second["history"]]
    assert elapsed == sorted(elapsed)

    # a finished run asked for the same budget again does no more work
    train(x, y, tmp_path, CFG, TrainConfig(minutes=0.04, batch=4, save_every_s=0))
    third = checkpoint.read(tmp_path / checkpoint.FILENAME)
    assert third["step"] == second["step"] and third["history"] == second["history"]


def test_run_killed_mid_epoch_resumes_from_its_last_checkpoint(tmp_path, data, monkeypatch):
    x, y = data
    real_step, calls = train_mod._step, []

    def dying_step(*args, **kwargs):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(1)
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train_mod, "_step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        train(x, y, tmp_path, CFG, TrainConfig(minutes=1.0, batch=4, save_every_s=0, bf16=False))
    saved = checkpoint.read(tmp_path / checkpoint.FILENAME)
    assert saved["done"] is False
    assert 1 <= saved["step"] <= 3
    assert "optimizer" in saved
    monkeypatch.setattr(train_mod, "_step", real_step)

    cfg = TrainConfig(minutes=1.0, max_epochs=saved["epoch"] + 2, batch=4, save_every_s=0, bf16=False)
    model = train(x, y, tmp_path, CFG, cfg)
    done = checkpoint.read(tmp_path / checkpoint.FILENAME)
    assert done["done"] is True
    assert done["step"] > saved["step"]
    assert done["epoch"] == saved["epoch"] + 2
    assert checkpoint.fingerprint(model) == checkpoint.fingerprint(checkpoint.load_model(tmp_path / checkpoint.FILENAME))


def test_checkpoint_read_refuses_files_that_are_not_checkpoints(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ConfigError, match="not a readable stage-1 checkpoint"):
        checkpoint.read(junk)

    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(ConfigError, match="not a PixelNN stage-1 checkpoint"):
        checkpoint.read(other)

    with pytest.raises(ConfigError, match="pixelnn train"):
        checkpoint.read(tmp_path / "missing.pt")


def test_checkpoint_version_mismatch_is_refused(tmp_path):
    path = tmp_path / checkpoint.FILENAME
    checkpoint.save(path, UNet(CFG), {"version": 99})
    with pytest.raises(ConfigError, match="version 99"):
        checkpoint.read(path)
    with pytest.raises(ConfigError, match="version"):
        checkpoint.load_model(path)


def test_psnr_of_identical_images_is_very_high_and_of_a_known_mse_is_known():
    a = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 0.8
    same = psnr(a, a.clone())
    assert same.shape == (2,) and (same > 100).all()
    offset = psnr(a, a + 0.1)  # mse 0.01 -> 20 dB
    assert torch.allclose(offset, torch.full((2,), 20.0), atol=1e-3)
    b = a.clone()
    b[1] += 0.01  # mse 1e-4 -> 40 dB, per image
    assert torch.allclose(psnr(a, b), torch.tensor([120.0, 40.0]), atol=1e-2)


def test_evaluate_psnr_of_a_model_that_copies_its_input():
    # a residual U-Net with a zero head returns its (upsampled) input exactly
    y = smooth_textures(4, 32, seed=5)
    identity = UNet(Stage1Config(in_channels=3, input_size=32, size=32, width=8, levels=2, residual=True))
    torch.nn.init.zeros_(identity.head.weight)
    torch.nn.init.zeros_(identity.head.bias)
    m = evaluate_psnr(identity, y, y)
    assert set(m) == {"stage1_psnr"}  # same size: no bicubic baseline
    assert m["stage1_psnr"] > 100

    up = UNet(CFG)
    torch.nn.init.zeros_(up.head.weight)
    torch.nn.init.zeros_(up.head.bias)
    x = lowres(y, 4)
    m = evaluate_psnr(up, x, y)
    assert set(m) == {"stage1_psnr", "bicubic_psnr"}
    assert 10 < m["bicubic_psnr"] < 60
    assert m["stage1_psnr"] == pytest.approx(m["bicubic_psnr"], abs=1e-3)  # it IS bicubic upsampling


def test_stage1_training_lowers_the_loss(tmp_path, data):
    x, y = data
    cfg = TrainConfig(minutes=5.0, max_epochs=12, batch=8, flip=False, bf16=False, save_every_s=1e9)
    model = train(x, y, tmp_path, Stage1Config(3, 8, 32, width=8, levels=2, residual=False), cfg)
    history = checkpoint.read(tmp_path / checkpoint.FILENAME)["history"]
    assert len(history) == 12  # stopped by max_epochs, not the clock
    assert history[-1]["loss"] < 0.5 * history[0]["loss"]
    trained = evaluate_psnr(model, x, y)["stage1_psnr"]
    untrained = evaluate_psnr(UNet(Stage1Config(3, 8, 32, width=8, levels=2, residual=False)), x, y)["stage1_psnr"]
    assert trained > untrained


def test_fingerprint_changes_with_one_weight_and_survives_save_and_load(tmp_path):
    torch.manual_seed(0)
    model = UNet(CFG).eval()
    fp = checkpoint.fingerprint(model)
    assert fp == checkpoint.fingerprint(model)
    path = tmp_path / "m.pt"
    checkpoint.save(path, model, {"done": True})
    loaded = checkpoint.load_model(path)
    assert checkpoint.fingerprint(loaded) == fp
    with torch.no_grad():
        loaded.head.bias[0] += 1e-3
    assert checkpoint.fingerprint(loaded) != fp
    # same weights, other configuration -> another fingerprint
    torch.manual_seed(0)
    other = UNet(Stage1Config(3, 8, 32, width=8, levels=2, residual=False))
    assert all(torch.equal(a, b) for a, b in zip(other.state_dict().values(), model.state_dict().values()))
    assert checkpoint.fingerprint(other) != fp
