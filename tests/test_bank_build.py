"""The bank's batched stage-1 pass against the one-image pass a query takes."""

import numpy as np
import pytest
import torch

from conftest import smooth_textures
from pixelnn.bank.build import stage1_outputs
from pixelnn.data.signals import lowres
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
