"""The README's Python block runs as written, against a small model folder of the name it uses."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import smooth_textures

README = Path(__file__).resolve().parents[1] / "README.md"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def python_block() -> str:
    """The ```python block under '## Python API'."""
    section = README.read_text(encoding="utf-8").split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_python_block_names_nothing_it_does_not_define():
    code = python_block()
    compile(code, "README.md", "exec")
    for undefined in ("my_cat_photo", '"Boots"'):
        assert undefined not in code


def test_the_python_block_runs_as_written(tmp_path, monkeypatch):
    import torch

    from pixelnn.data.signals import lowres
    from pixelnn.regress.unet import Stage1Config, UNet
    from pixelnn.workflow import index_arrays, write_run

    run = tmp_path / "runs" / "celeba-lowres"
    torch.manual_seed(0)
    model = UNet(Stage1Config(in_channels=3, input_size=8, size=32, width=8, levels=2, residual=True)).eval()
    write_run(run, model, {"signal": "lowres", "factor": 4, "size": 32, "backbone": "vgg16-hed"})
    y = smooth_textures(48, 32, seed=3)
    labels = [f"{1000 + i % 6}" for i in range(48)]  # CelebA-like identities
    index_arrays(run, lowres(y, 4), y, [f"{i:06d}.jpg" for i in range(48)], labels, progress=False)
    Image.fromarray(smooth_textures(1, 178, seed=9)[0]).save(tmp_path / "face.jpg")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(python_block(), "README.md", "exec"), scope)  # noqa: S102
    assert len(scope["result"].candidates) > 0 and (tmp_path / "models" / "celeba" / "config.json").is_file()
    assert scope["labels"].shape == (32, 32)
    assert np.isin(scope["result"].candidates[0].corr.exemplar, [3, 17, 42]).all()
