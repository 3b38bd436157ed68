import numpy as np
import pytest

from conftest import smooth_textures
from pixelnn import spectra
from pixelnn.evaluate import metrics as M


@pytest.mark.parametrize("ky,kx,radius", [(0, 5, 5), (3, 4, 5), (7, 0, 7)])
def test_radial_spectrum_of_a_sinusoid_peaks_at_its_frequency(ky, kx, radius):
    S = 32
    yy, xx = np.meshgrid(np.arange(S), np.arange(S), indexing="ij")
    gray = 0.5 + 0.4 * np.cos(2 * np.pi * (ky * yy + kx * xx) / S)
    spec = spectra.radial_log_spectra(gray)
    assert spec.shape == (S // 2,)
    assert int(np.argmax(spec)) + 1 == radius
    # every other ring is empty (log10 of the 1e-12 floor)
    assert np.sort(spec)[-2] < -10


def test_a_stack_gives_each_image_its_own_spectrum():
    """The rings of one image must not spill into the next image's (corner radii exceed min(H, W) // 2)."""
    rng = np.random.default_rng(3)
    images = rng.random((2, 3, 24, 40, 3))
    stacked = spectra.log_spectra(images)
    assert stacked.shape == (2, 3, 12)
    for i in range(2):
        for k in range(3):
            assert np.array_equal(stacked[i, k], spectra.log_spectra(images[i, k]))
    # white noise is flat, a blurred copy loses its high frequencies
    blurred = (images[0, 0] + np.roll(images[0, 0], 1, 0) + np.roll(images[0, 0], 1, 1)) / 3
    assert spectra.log_spectra(blurred)[-1] < stacked[0, 0, -1] - 0.3


def test_log_spectra_of_rgb_images_and_spectrum_distance():
    images = smooth_textures(3, 32, seed=4).astype(np.float64) / 255
    spec = M.log_spectra(images)  # the evaluation's name for the same function
    assert spec.shape == (3, 16)
    assert np.all(M.spectrum_distance(spec, spec[0])[:1] == 0)
    assert M.spectrum_distance(spec[0] + 0.25, spec[0]) == pytest.approx(0.25)
    # a gray image of RGB (v, v, v) has luma v
    assert np.allclose(M.grayscale(np.full((2, 2, 3), 0.3)), 0.3)
