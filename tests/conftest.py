"""Shared fixtures: tiny images, a tiny stage-1 model and bank made by the tests themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

torch.set_num_threads(2)


def smooth_textures(n: int, size: int, seed: int = 0) -> np.ndarray:
    """(n, size, size, 3) uint8 random images with structure at several scales (no two alike)."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, size, size, 3), np.float32)
    for scale in (4, 8, size):
        coarse = torch.from_numpy(rng.random((n, 3, scale, scale), dtype=np.float32))
        up = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
        out += up.permute(0, 2, 3, 1).numpy()
    out /= 3
    return (out * 255).round().astype(np.uint8)


def face_photos(n: int, size: int = 48) -> np.ndarray:
    """(n, size, size, 3) uint8 photos of one face (scikit-image's astronaut), each cropped a little
    elsewhere, every other one mirrored, each a little brighter: MediaPipe's face mesh finds the face in
    every one from size 48 on."""
    from skimage import data

    from pixelnn.data.images import fit_square

    photo = data.astronaut()  # (512, 512, 3), the face in the upper middle
    out = []
    for i in range(n):
        top, left = 10 + 5 * (i % 4), 110 + 7 * (i // 4 % 4)
        im = fit_square(photo[top : top + 260, left : left + 260], size)
        im = im[:, ::-1] if i % 2 else im
        out.append(np.clip(im * (0.75 + 0.05 * (i % 8)), 0, 255).astype(np.uint8))
    return np.stack(out)


def write_photos(folder, names: list[str], size: int, seed: int):
    """smooth_textures saved as image files under `folder` by relative name (folders made, format from
    the suffix); returns the folder."""
    folder = Path(folder)
    for name, im in zip(names, smooth_textures(len(names), size, seed=seed)):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(im).save(folder / name)
    return folder


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models gain nothing from 2 threads, and a busy machine makes 2 threads wait on each other.

    Modules opt in with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A model folder with an untrained stage 1 (lowres 8 -> 32) and a 6-exemplar labelled bank."""
    from pixelnn.regress.unet import Stage1Config, UNet
    from pixelnn.workflow import index_arrays, write_run

    root = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    model = UNet(Stage1Config(in_channels=3, input_size=8, size=32, width=8, levels=2, residual=True)).eval()
    write_run(root, model, {"signal": "lowres", "factor": 4, "size": 32, "backbone": "vgg16-hed"})
    y = smooth_textures(6, 32)
    x = np.stack([np.asarray(Image.fromarray(im).resize((8, 8))) for im in y])
    labels = ["cat", "cat", "dog", "dog", "dog/terrier", None]
    index_arrays(root, x, y, [f"im{i}.png" for i in range(6)], labels, progress=False)
    return root, x, y, labels


@pytest.fixture(scope="module")
def model(tiny_run):
    """The tiny model folder loaded as a PixelNN (one per test module)."""
    from pixelnn.synth.pipeline import PixelNN

    return PixelNN.load(tiny_run[0])
