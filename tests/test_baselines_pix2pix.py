import numpy as np
import pytest
import torch

from conftest import smooth_textures
from pixelnn.baselines.pix2pix import checkpoint as ckpt
from pixelnn.baselines.pix2pix import model as nets
from pixelnn.baselines.pix2pix import sample as sampling
from pixelnn.baselines.pix2pix import train as training
from pixelnn.data.signals import lowres
from pixelnn.errors import ConfigError
from pixelnn.regress.precision import Choice

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize(
    "size,in_channels,input_size,depth,patch",
    [(96, 3, 12, 5, 10), (96, 1, 96, 5, 10), (64, 3, 64, 6, 6), (32, 3, 8, 5, 2)],
)
def test_generator_and_discriminator_shapes(size, in_channels, input_size, depth, patch):
    cfg = nets.Pix2PixConfig(in_channels=in_channels, input_size=input_size, size=size, ngf=4, ndf=4)
    gen, disc = nets.Generator(cfg), nets.Discriminator(cfg)
    assert cfg.depth == depth
    # the bottleneck is a whole number of pixels, >= 1
    assert size % 2**depth == 0 and size // 2**depth >= 1
    x = nets.inputs(np.zeros((2, input_size, input_size, in_channels), np.uint8), size)
    assert x.shape == (2, in_channels, size, size)
    with torch.no_grad():
        out = gen(x)
        logits = disc(x, out)
    assert out.shape == (2, 3, size, size)
    assert out.abs().max() <= 1
    assert logits.shape == (2, 1, patch, patch)
    # three dropout layers (fewer would give less varied samples), in the decoder
    assert sum(isinstance(m, torch.nn.Dropout) for m in gen.modules()) == 3


def test_depth_is_that_of_the_paper_at_256_and_sizes_that_cannot_halve_are_refused():
    assert nets.generator_depth(256) == 8
    with pytest.raises(ConfigError, match="divisible by 8"):
        nets.generator_depth(36)


def test_lowres_inputs_are_upsampled_bicubically_to_the_output_size():
    y = smooth_textures(2, 32, seed=1)
    x = lowres(y, 4)  # (2, 8, 8, 3)
    t = nets.inputs(x, 32)
    assert t.shape == (2, 3, 32, 32) and t.min() >= -1 and t.max() <= 1
    ref = torch.nn.functional.interpolate(
        torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255, size=(32, 32), mode="bicubic", align_corners=False
    )
    assert torch.allclose(t, ref.clamp(0, 1) * 2 - 1)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_one_training_step_changes_both_networks_with_finite_losses(precision, channels_last):
    torch.manual_seed(0)
    cfg = nets.Pix2PixConfig(in_channels=3, input_size=8, size=32, ngf=4, ndf=4)
    gen, disc = nets.Generator(cfg), nets.Discriminator(cfg)
    g0 = [p.detach().clone() for p in gen.parameters()]
    d0 = [p.detach().clone() for p in disc.parameters()]
    tcfg = training.Pix2PixTrainConfig()
    opt_g = torch.optim.Adam(gen.parameters(), lr=tcfg.lr, betas=(tcfg.beta1, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=tcfg.lr, betas=(tcfg.beta1, 0.999))
    y = smooth_textures(2, 32, seed=2)
    x = nets.inputs(lowres(y, 4), 32)
    yt = torch.from_numpy(y).permute(0, 3, 1, 2).float() / 255 * 2 - 1
    losses = training.train_step(gen, disc, opt_g, opt_d, x, yt, tcfg, Choice(precision, channels_last, ""))
    assert set(losses) == {"d", "g_gan", "l1"}
    assert all(np.isfinite(v) for v in losses.values())
    assert any(not torch.equal(a, b) for a, b in zip(g0, gen.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(d0, disc.parameters()))


def test_learning_rate_is_constant_then_decays_linearly_to_zero():
    cfg = training.Pix2PixTrainConfig(minutes=1.0)  # the schedule follows the fraction of the budget done
    assert training._lr(cfg, 0) == training._lr(cfg, 0.5) == pytest.approx(2e-4)
    assert training._lr(cfg, 0.75) == pytest.approx(1e-4)
    assert training._lr(cfg, 1.0) == 0.0


def test_dropout_stays_active_at_test_time():
    torch.manual_seed(0)
    gen = nets.Generator(nets.Pix2PixConfig(in_channels=3, input_size=8, size=32, ngf=4, ndf=4)).eval()
    x = lowres(smooth_textures(1, 32, seed=3), 4)[0]
    a = sampling.sample(gen, x, 2, seed=0)
    b = sampling.sample(gen, x, 2, seed=1)
    assert a.shape == (2, 32, 32, 3) and a.dtype == np.float32 and a.min() >= 0 and a.max() <= 1
    assert not np.array_equal(a[0], a[1])  # two outputs of one call differ
    assert not np.array_equal(a, b)  # two calls differ
    assert np.array_equal(a, sampling.sample(gen, x, 2, seed=0))  # the seed fixes the masks
    assert not gen.training  # the model is left as it was
    with torch.no_grad():  # without the dropout, outputs are deterministic
        t = nets.inputs(x[None], 32)
        assert torch.equal(gen(t), gen(t))


@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_training_resumes_from_its_checkpoint(tmp_path, precision):
    y = smooth_textures(4, 32, seed=4)
    x = lowres(y, 4)
    cfg = nets.config_for(x, y, ngf=4, ndf=4)
    tcfg = dict(minutes=5.0, batch=2, save_every_s=0, precision=precision)
    training.train(x, y, tmp_path, cfg, training.Pix2PixTrainConfig(steps=2, **tcfg))
    first = ckpt.read(tmp_path)
    assert first["done"] and first["step"] == 2 and first["elapsed_s"] > 0
    assert first["precision"]["precision"] in ("fp32", "bf16")
    gen = training.train(x, y, tmp_path, cfg, training.Pix2PixTrainConfig(steps=4, **tcfg))
    second = ckpt.read(tmp_path / ckpt.FILENAME)
    assert second["step"] == 4 and second["elapsed_s"] > first["elapsed_s"]
    assert len(second["history"]) == second["epoch"] == 2
    loaded = ckpt.load_generator(tmp_path)
    for a, b in zip(gen.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary files
    # a finished run asked for the same budget again: the same generator, the checkpoint untouched
    before = (tmp_path / ckpt.FILENAME).read_bytes()
    again = training.train(x, y, tmp_path, cfg, training.Pix2PixTrainConfig(steps=4, **tcfg))
    assert (tmp_path / ckpt.FILENAME).read_bytes() == before
    assert all(torch.equal(a, b) for a, b in zip(gen.state_dict().values(), again.state_dict().values()))
    with pytest.raises(ConfigError, match="another configuration"):
        training.train(
            x, y, tmp_path, nets.config_for(x, y, ngf=8, ndf=4), training.Pix2PixTrainConfig(steps=5, **tcfg)
        )


def test_a_file_that_is_not_a_pix2pix_checkpoint_is_refused(tmp_path):
    torch.save({"format": "something"}, tmp_path / ckpt.FILENAME)
    with pytest.raises(ConfigError, match="not a PixelNN pix2pix checkpoint"):
        ckpt.load_generator(tmp_path)
    with pytest.raises(ConfigError, match="train-pix2pix"):
        ckpt.read(tmp_path / "missing")
