"""The bank's batched passes (stage 1, exemplar descriptors, projection fit) against plain references."""

import numpy as np
import pytest
import torch

from conftest import smooth_textures
from pixelnn.bank.stage1 import stage1_outputs
from pixelnn.data.signals import lowres
from pixelnn.features.projection import fit_projection
from pixelnn.regress.unet import Stage1Config, UNet

pytestmark = pytest.mark.usefixtures("one_torch_thread")
FLOAT16_STEP = 2.0**-11  # one float16 step for values in [0.5, 1)


def _trained_like(seed: int) -> UNet:
    """A stage 1 with random non-zero weights everywhere (an untrained one is exactly bicubic)."""
    torch.manual_seed(seed)
    model = UNet(Stage1Config(3, 12, 48, width=8, levels=3, residual=True))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def test_batched_stage1_matches_one_at_a_time_within_one_float16_step():
    model = _trained_like(0)
    x = lowres(smooth_textures(20, 48, seed=1), 4)
    batched = stage1_outputs(model, x, progress=False).astype(np.float32)
    alone = stage1_outputs(model, x, batch=1, progress=False).astype(np.float32)
    assert batched.shape == (20, 48, 48, 3)
    diff = np.abs(batched - alone)
    assert diff.max() <= FLOAT16_STEP * 1.0001
    assert (diff == 0).mean() > 0.99  # almost every value is bit-identical
    # and the batch size used does not matter beyond that
    assert (
        np.abs(stage1_outputs(model, x, batch=7, progress=False).astype(np.float32) - batched).max()
        <= FLOAT16_STEP * 1.0001
    )


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("descriptors", [None, 16])
def test_a_bank_exemplar_given_as_a_query_still_copies_itself(tmp_path, descriptors, version):
    from pixelnn.synth.pipeline import PixelNN
    from pixelnn.workflow import index_arrays, write_run

    model = _trained_like(2)
    write_run(tmp_path, model, {"signal": "lowres", "factor": 4, "size": 48, "backbone": "vgg16-hed"})
    y = smooth_textures(8, 48, seed=3)
    x = lowres(y, 4)
    names = [f"im{i}.png" for i in range(8)]
    index_arrays(tmp_path, x, y, names, [None] * 8, descriptors=descriptors, progress=False, version=version)
    pixelnn = PixelNN.load(tmp_path)
    assert pixelnn.bank.manifest["version"] == version
    assert pixelnn.search == ("fast" if descriptors else "exact")
    # the step of f(x) as stored: the bank's batch may round one value of f(x_i) the other way
    step = FLOAT16_STEP if version == 1 else 1 / 255
    rows, cols = np.mgrid[0:48, 0:48]
    for i in (0, 5):
        result = pixelnn.synthesize(x[i], grid="1:1:1,1:1:5")
        assert result.neighbours[0] == i
        for cand in result.candidates:
            assert (cand.corr.exemplar == i).all()
            assert (cand.corr.sy == rows).all() and (cand.corr.sx == cols).all()
            # out = y + f(x) - f(x_i): y itself, up to that step
            assert np.abs(cand.image - y[i] / 255.0).max() <= step * 1.0001


def _reference_descriptors(backbone, f: np.ndarray, basis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pass written plainly, one image at a time: NCHW float32 forward, the full per-layer-normalised
    hypercolumn, the projection, renormalisation, float16; and the global descriptor."""
    from pixelnn.features.hypercolumn import global_descriptor, pixel_descriptors

    desc, glob = [], []
    for img in f:
        x = torch.from_numpy(img.astype(np.float32)).permute(2, 0, 1)[None].contiguous()  # (1, 3, S, S)
        with torch.no_grad():
            taps = backbone(x)
        h = pixel_descriptors(taps, x.shape[-2:], normalize_first=True)[0]  # (D, S, S)
        d = torch.nn.functional.normalize(torch.einsum("dhw,kd->hwk", h, torch.from_numpy(basis)), dim=-1)
        desc.append(d.half().numpy())
        glob.append(global_descriptor(taps)[0].numpy())
    return np.stack(desc), np.stack(glob)


@pytest.mark.parametrize("batch", [3, 16])
def test_exemplar_descriptors_match_a_plain_reference(tmp_path, batch):
    from pixelnn.bank.build import describe_exemplars
    from pixelnn.bank.store import Encoding
    from pixelnn.features.backbones import load_backbone

    backbone = load_backbone("vgg16-hed")
    f = (smooth_textures(5, 32, seed=4) / 255.0).astype(np.float16)  # as stored: (N, S, S, 3) float16
    basis = fit_projection(torch.randn(3000, 1472, generator=torch.Generator().manual_seed(0)), 16).numpy()
    glob = describe_exemplars(backbone, f, Encoding(1, basis), tmp_path / "desc.npy", batch=batch, progress=False)
    desc = np.load(tmp_path / "desc.npy")
    ref_desc, ref_glob = _reference_descriptors(backbone, f, basis)
    assert desc.shape == ref_desc.shape == (5, 32, 32, 16) and desc.dtype == np.float16
    assert np.abs(desc.astype(np.float32) - ref_desc.astype(np.float32)).max() <= 2 * FLOAT16_STEP
    cos = (desc.astype(np.float32) * ref_desc.astype(np.float32)).sum(-1)  # both unit norm up to float16
    assert cos.min() >= 0.999
    assert glob.shape == ref_glob.shape and np.abs(glob - ref_glob).max() <= 1e-5
    # without a basis: the same global descriptors, nothing written
    assert np.abs(describe_exemplars(backbone, f, Encoding(1), None, batch=batch, progress=False) - glob).max() <= 1e-6


def test_the_projection_is_fitted_on_the_same_hypercolumn_pixels_as_before():
    """fit_bank_projection samples pixels without building the full map; the basis spans the same subspace."""
    from pixelnn.bank.build import fit_bank_projection
    from pixelnn.features.backbones import load_backbone
    from pixelnn.features.hypercolumn import pixel_descriptors
    from pixelnn.features.projection import sample_pixels

    backbone = load_backbone("vgg16-hed")
    f = (smooth_textures(20, 32, seed=5) / 255.0).astype(np.float16)
    gen = torch.Generator().manual_seed(0)
    samples = []
    for i in range(0, 20, 16):  # the fit as it was: the whole hypercolumn map, then sample_pixels
        x = torch.from_numpy(f[i : i + 16].astype(np.float32)).permute(0, 3, 1, 2)
        with torch.no_grad():
            samples.append(sample_pixels(pixel_descriptors(backbone(x), (32, 32), normalize_first=True), 128, gen))
    before = fit_projection(torch.cat(samples), 4).numpy()
    after = fit_bank_projection(backbone, f, 4)
    assert after.shape == (4, 1472)
    overlap = np.square(after @ before.T).sum()  # 4 when the two spans coincide
    assert overlap >= 4 - 1e-3


def test_stored_float16_exemplars_become_channels_last_float32_images():
    from pixelnn.bank.build import _images as bank_images

    f = np.random.default_rng(0).random((2, 8, 8, 3)).astype(np.float16)
    imgs = bank_images(f)
    assert imgs.dtype == torch.float32 and imgs.shape == (2, 3, 8, 8)
    assert imgs.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(imgs.permute(0, 2, 3, 1), torch.from_numpy(f.astype(np.float32)))
