import json
import math

import numpy as np
import pytest
import torch

from conftest import smooth_textures
from pixelnn.data.signals import lowres
from pixelnn.errors import ConfigError
from pixelnn.pixels import psnr
from pixelnn.regress import budget, checkpoint
from pixelnn.regress import train as train_mod
from pixelnn.regress.budget import Limits
from pixelnn.regress.precision import Choice
from pixelnn.regress.train import TrainConfig, below_baselines, evaluate_psnr, train
from pixelnn.regress.unet import Stage1Config, UNet, predict, to_tensor

CFG = Stage1Config(in_channels=3, input_size=8, size=32, width=8, levels=2, residual=True)

pytestmark = pytest.mark.usefixtures("one_torch_thread")
# fp32 and bf16 forced, and whatever `auto` picks on the machine running the tests
PRECISIONS = ["fp32", "bf16", "auto"]


@pytest.fixture(scope="module")
def data():
    y = smooth_textures(8, 32, seed=3)
    return lowres(y, 4), y


@pytest.mark.parametrize("precision", PRECISIONS)
def test_interrupted_run_resumes_with_time_steps_and_history(tmp_path, data, precision):
    x, y = data
    train(x, y, tmp_path, CFG, TrainConfig(minutes=0.02, batch=4, save_every_s=0, precision=precision))
    first = checkpoint.read(tmp_path / checkpoint.FILENAME)
    assert first["done"] and first["step"] > 0 and first["elapsed_s"] >= 0.02 * 60
    assert len(first["history"]) == first["epoch"] >= 1

    train(x, y, tmp_path, CFG, TrainConfig(minutes=0.04, batch=4, save_every_s=0, precision=precision))
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
    train(x, y, tmp_path, CFG, TrainConfig(minutes=0.04, batch=4, save_every_s=0, precision=precision))
    third = checkpoint.read(tmp_path / checkpoint.FILENAME)
    assert third["step"] == second["step"] and third["history"] == second["history"]


def test_run_killed_mid_epoch_resumes_from_its_last_checkpoint(tmp_path, data, monkeypatch):
    x, y = data
    real_step, calls = train_mod._step, []
    monkeypatch.setattr(train_mod, "choose_precision", lambda *a: Choice("fp32", False, "fixed by the test"))

    def dying_step(*args, **kwargs):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(1)
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train_mod, "_step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        train(x, y, tmp_path, CFG, TrainConfig(minutes=1.0, batch=4, save_every_s=0))
    saved = checkpoint.read(tmp_path / checkpoint.FILENAME)
    assert saved["done"] is False
    assert 1 <= saved["step"] <= 3
    assert "optimizer" in saved
    monkeypatch.setattr(train_mod, "_step", real_step)

    cfg = TrainConfig(minutes=1.0, epochs=saved["epoch"] + 2, batch=4, save_every_s=0)
    model = train(x, y, tmp_path, CFG, cfg)
    done = checkpoint.read(tmp_path / checkpoint.FILENAME)
    assert done["done"] is True
    assert done["step"] > saved["step"]
    assert done["epoch"] == saved["epoch"] + 2
    assert checkpoint.fingerprint(model) == checkpoint.fingerprint(
        checkpoint.load_model(tmp_path / checkpoint.FILENAME)
    )


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


def test_psnr_of_image_pairs_is_per_pair_and_capped_at_100_db():
    # training measures (N, C, H, W) outputs against their own targets with the evaluation's PSNR (pixels.psnr)
    a = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 0.8
    same = psnr(a, a.clone())
    assert same.shape == (2,) and np.allclose(same, 100.0)
    offset = psnr(a, a + 0.1)  # mse 0.01 -> 20 dB
    assert np.allclose(offset, 20.0, atol=1e-3)
    b = a.clone()
    b[1] += 0.01  # mse 1e-4 -> 40 dB, per image
    assert np.allclose(psnr(a, b), [100.0, 40.0], atol=1e-2)


def test_evaluate_psnr_of_a_model_that_copies_its_input():
    # a residual U-Net with a zero head returns its (upsampled) input exactly
    y = smooth_textures(4, 32, seed=5)
    identity = UNet(Stage1Config(in_channels=3, input_size=32, size=32, width=8, levels=2, residual=True))
    torch.nn.init.zeros_(identity.head.weight)
    torch.nn.init.zeros_(identity.head.bias)
    m = evaluate_psnr(identity, y, y)
    assert set(m) == {"stage1_psnr"}  # same size: no bicubic baseline
    assert m["stage1_psnr"] == pytest.approx(100.0)  # identical: the cap

    up = UNet(CFG)
    torch.nn.init.zeros_(up.head.weight)
    torch.nn.init.zeros_(up.head.bias)
    x = lowres(y, 4)
    m = evaluate_psnr(up, x, y)
    assert set(m) == {"stage1_psnr", "bicubic_psnr"}
    assert 10 < m["bicubic_psnr"] < 60
    assert m["stage1_psnr"] == pytest.approx(m["bicubic_psnr"], abs=1e-3)  # it IS bicubic upsampling


@pytest.mark.parametrize("precision", PRECISIONS)
def test_stage1_training_lowers_the_loss(tmp_path, data, precision):
    x, y = data
    cfg = TrainConfig(epochs=60, batch=8, flip=False, precision=precision, save_every_s=1e9)
    stage1 = Stage1Config(3, 8, 32, width=8, levels=2, residual=False)
    model = train(x, y, tmp_path, stage1, cfg)
    saved = checkpoint.read(tmp_path / checkpoint.FILENAME)
    history = saved["history"]
    assert len(history) == 60  # stopped by the epoch limit; no clock was set
    assert saved["precision"]["precision"] == (precision if precision != "auto" else saved["precision"]["precision"])
    assert saved["precision"]["precision"] in ("fp32", "bf16")
    assert history[-1]["loss"] < 0.75 * history[0]["loss"]
    mean = y.mean(axis=0) / 255.0
    m = evaluate_psnr(model, x, y, mean)
    assert m["stage1_psnr"] > m["mean_image_psnr"] + 1.0  # it learned more than the mean image it starts from


def test_untrained_lowres_stage1_is_exactly_bicubic():
    y = smooth_textures(4, 32, seed=7)
    x = lowres(y, 4)
    m = evaluate_psnr(UNet(CFG), x, y)
    assert m["stage1_psnr"] == pytest.approx(m["bicubic_psnr"], abs=1e-4)
    bicubic = torch.nn.functional.interpolate(to_tensor(x), size=(32, 32), mode="bicubic", align_corners=False)
    assert torch.equal(predict(UNet(CFG), x), bicubic.clamp(0, 1))


def test_untrained_stage1_of_other_signals_is_the_mean_training_image():
    y = smooth_textures(6, 32, seed=8)
    x = y.mean(axis=3, keepdims=True).astype(np.uint8)  # a 1-channel signal of the output's size
    model = UNet(Stage1Config(1, 32, 32, width=8, levels=2))
    model.set_mean_image(y)
    mean = torch.from_numpy(y.mean(axis=0) / 255.0).float().permute(2, 0, 1)
    out = predict(model, x)
    assert torch.allclose(out, mean.expand_as(out), atol=1e-6)
    m = evaluate_psnr(model, x, y, y.mean(axis=0) / 255.0)
    assert m["stage1_psnr"] == pytest.approx(m["mean_image_psnr"], abs=1e-3)


def test_stage1_has_no_running_statistics_so_train_and_eval_mode_agree(tmp_path, data):
    x, y = data
    model = train(x, y, tmp_path, CFG, TrainConfig(steps=6, batch=4, precision="fp32", save_every_s=1e9))
    assert not [name for name, _ in model.named_buffers() if "running" in name]
    xb = to_tensor(x)
    with torch.no_grad():
        assert torch.allclose(model.train()(xb), model.eval()(xb), atol=1e-6)
        # and one image's f(x) does not depend on the other images of its batch
        assert torch.allclose(model(xb[:1]), model(xb)[:1], atol=1e-5)


def test_training_writes_its_history_as_json_lines_beside_the_checkpoint(tmp_path, data):
    x, y = data
    train(x, y, tmp_path, CFG, TrainConfig(epochs=3, batch=4, precision="fp32", save_every_s=1e9))
    rows = [json.loads(line) for line in (tmp_path / budget.HISTORY).read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert [r["step"] for r in rows] == [(len(x) // 4) * e for e in (1, 2, 3)]
    # the mean of the steps' PSNRs is at least the PSNR of their mean loss (-log is convex)
    assert all(r["images_per_s"] > 0 and r["psnr"] >= -10 * math.log10(r["loss"]) - 1e-9 for r in rows)
    assert rows == checkpoint.read(tmp_path / checkpoint.FILENAME)["history"]


def test_edge_map_stage1_uses_batchnorm_and_evaluates_with_its_running_statistics(tmp_path):
    y = smooth_textures(8, 32, seed=3)
    x = y.mean(axis=3, keepdims=True).astype(np.uint8)  # a 1-channel signal of the output's size
    cfg = Stage1Config(1, 32, 32, width=8, levels=2)
    assert cfg.norm == "batch" and Stage1Config(3, 8, 32, residual=True).norm == "group"
    model = train(x, y, tmp_path, cfg, TrainConfig(steps=20, batch=4, precision="fp32", save_every_s=1e9))
    stats = [b for name, b in model.named_buffers() if name.endswith("running_var")]
    assert stats and all(not torch.allclose(v, torch.ones_like(v)) for v in stats)  # training moved them
    xb = to_tensor(x)
    with torch.no_grad():  # in evaluation one image's f(x) does not depend on the rest of its batch
        assert torch.allclose(model.eval()(xb[:1]), model.eval()(xb)[:1], atol=1e-5)
    loaded = checkpoint.load_model(tmp_path / checkpoint.FILENAME)
    assert loaded.cfg == cfg and torch.equal(predict(loaded, x), predict(model, x))


def test_step_and_epoch_limits_stop_training_and_minutes_only_cap_them(tmp_path, data):
    x, y = data
    train(x, y, tmp_path / "steps", CFG, TrainConfig(steps=5, batch=4, precision="fp32", save_every_s=1e9))
    saved = checkpoint.read(tmp_path / "steps" / checkpoint.FILENAME)
    assert saved["step"] == 5 and saved["done"]
    train(x, y, tmp_path / "epochs", CFG, TrainConfig(epochs=3, batch=4, precision="fp32", save_every_s=1e9))
    saved = checkpoint.read(tmp_path / "epochs" / checkpoint.FILENAME)
    assert saved["epoch"] == 3 and saved["step"] == 3 * (len(x) // 4)
    # a tiny time cap ends a long step budget early
    train(
        x,
        y,
        tmp_path / "capped",
        CFG,
        TrainConfig(steps=10**6, minutes=0.01, batch=4, precision="fp32", save_every_s=1e9),
    )
    saved = checkpoint.read(tmp_path / "capped" / checkpoint.FILENAME)
    assert 0 < saved["step"] < 10**6 and saved["elapsed_s"] >= 0.6


def test_budget_limits_and_the_learning_rate_schedule():
    assert Limits.of(None).seconds == 20 * 60  # nothing given: 20 minutes
    assert Limits.of(None, steps=100).seconds == float("inf")  # steps given: no time cap
    assert Limits.of(3, steps=100).seconds == 180
    with pytest.raises(ConfigError, match="budget"):
        Limits(steps=0, epochs=0)
    with pytest.raises(ConfigError, match="positive"):
        Limits.of(None, steps=-1)
    cfg = TrainConfig(lr=1e-3)
    assert train_mod._lr(cfg, 0.0) == pytest.approx(1e-3)
    assert train_mod._lr(cfg, 0.5) == pytest.approx(0.5e-3)
    assert train_mod._lr(cfg, 1.0) == pytest.approx(0.0, abs=1e-12)


def test_stage1_below_a_baseline_is_reported_in_plain_words():
    m = {"stage1_psnr": 19.6, "bicubic_psnr": 20.7, "mean_image_psnr": 12.0}
    warnings = below_baselines(m)
    assert len(warnings) == 1 and "below bicubic upsampling (20.70 dB)" in warnings[0] and "train longer" in warnings[0]
    assert below_baselines({**m, "stage1_psnr": 21.0}) == []
    assert len(below_baselines({"stage1_psnr": 10.0, "mean_image_psnr": 12.0})) == 1


def test_a_model_saved_before_groupnorm_still_loads_with_its_fingerprint(tmp_path):
    torch.manual_seed(1)
    old = UNet(Stage1Config(3, 8, 32, width=8, levels=2, residual=True, norm="batch", mean_base=False)).eval()
    blob = {
        "format": checkpoint.FORMAT,
        "version": checkpoint.VERSION,
        "done": True,
        "model": old.state_dict(),
        "config": {k: v for k, v in old.cfg.to_dict().items() if k not in ("norm", "mean_base")},
    }
    torch.save(blob, tmp_path / "old.pt")
    loaded = checkpoint.load_model(tmp_path / "old.pt")
    assert loaded.cfg.norm == "batch"
    x = lowres(smooth_textures(2, 32, seed=9), 4)
    assert torch.equal(predict(loaded, x), predict(old, x))
    assert checkpoint.fingerprint(loaded) == checkpoint.fingerprint(old)


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
    other = UNet(Stage1Config(3, 8, 32, width=8, levels=2, residual=False, mean_base=False, norm="group"))
    assert all(torch.equal(a, b) for a, b in zip(other.state_dict().values(), model.state_dict().values()))
    assert checkpoint.fingerprint(other) != fp
