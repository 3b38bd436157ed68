"""Face normals from photos (data/face_normals.py): the rasteriser on a known surface, the encoding, the
statistics, MediaPipe's face mesh on a real face and on no face, and the error without the extra."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest
from skimage import data

from conftest import face_photos, smooth_textures
from pixelnn.data import face_normals as fn
from pixelnn.data.images import fit_square
from pixelnn.data.notice import DataWarning
from pixelnn.data.prepare import prepare
from pixelnn.data.signals import make_signal, signal_from_photos
from pixelnn.data.sources import Sample
from pixelnn.errors import ConfigError, DataError


def _sphere(size: int = 64, radius: float = 24.0, n: int = 600, seed: int = 0):
    """Landmarks on the front of a sphere centred in a size x size image, in the camera frame of
    fn.landmarks, and the sphere's true normal at every pixel centre inside radius (H, W, 3), with its mask."""
    rng = np.random.default_rng(seed)
    c = size / 2
    r = radius * np.sqrt(rng.random(n))
    t = rng.random(n) * 2 * np.pi
    u, v = r * np.cos(t), r * np.sin(t)  # image-plane offsets (v down)
    z = np.sqrt(radius**2 - u**2 - v**2)
    points = np.stack([c + u, -(c + v), z], axis=1)
    gy, gx = np.mgrid[0:size, 0:size] + 0.5
    du, dv = gx - c, gy - c
    inside = du**2 + dv**2 < (0.9 * radius) ** 2
    dz = np.sqrt(np.maximum(radius**2 - du**2 - dv**2, 0))
    true = np.stack([du, -dv, dz], axis=-1) / radius
    return points, true, inside


def test_rasterise_recovers_the_normals_of_a_sphere():
    points, true, inside = _sphere()
    normals, mask = fn.rasterise(points, 64, 64)
    assert mask[inside].all()  # the triangulation covers the sphere's disc (but its ragged rim)
    assert not mask[0, 0] and not mask[-1, -1]  # and nothing far outside it
    np.testing.assert_allclose(np.linalg.norm(normals[mask], axis=1), 1.0, atol=1e-5)
    assert (normals[~mask] == 0).all()
    errors = fn.angular_errors(normals[inside], true[inside])
    assert np.median(errors) < 2.0 and np.mean(errors) < 3.0, (np.median(errors), np.mean(errors))
    # the left half of the sphere faces left (x < 0), the top half up (y > 0)
    assert normals[32, 16, 0] < -0.3 and normals[16, 32, 1] > 0.3


def test_rasterise_without_a_surface_gives_an_empty_mask():
    flat = np.array([[1.0, -1.0, 0.0], [2.0, -2.0, 0.0], [3.0, -3.0, 0.0]])  # on one line
    normals, mask = fn.rasterise(flat, 8, 8)
    assert not mask.any() and (normals == 0).all()


def test_encoding_round_trips_and_marks_unknown_pixels():
    points, _, _ = _sphere()
    normals, mask = fn.rasterise(points, 64, 64)
    x = fn.encode(normals, mask)
    assert x.dtype == np.uint8 and (x[~mask] == fn.UNKNOWN).all()
    assert (x[mask][:, 2] >= 128).all()  # normals facing the camera: never the unknown value
    back, back_mask = fn.decode(x)
    assert (back_mask == mask).all()
    assert fn.angular_errors(back[mask], normals[mask]).max() < 0.7  # 8 bits per channel
    assert (back[~mask] == 0).all()


def test_error_statistics_of_known_errors():
    stats = fn.error_statistics(np.array([0.0, 10.0, 20.0, 40.0]))
    assert stats["normal_mean"] == pytest.approx(17.5)
    assert stats["normal_median"] == pytest.approx(15.0)
    assert stats["normal_rmse"] == pytest.approx(np.sqrt(525.0))
    assert (stats["normal_11"], stats["normal_22"], stats["normal_30"]) == (50.0, 75.0, 75.0)
    assert all(np.isnan(v) for v in fn.error_statistics(np.zeros(0)).values())
    assert fn.angular_errors(np.array([1.0, 0, 0]), np.array([0, 1.0, 0])) == pytest.approx(90.0)


def test_a_face_is_found_and_its_normals_face_the_camera():
    maps = fn.estimate(face_photos(2, 96))
    assert maps.found.all()
    assert 0.05 < maps.mask[0].mean() < 0.6  # the face, not the background or the suit
    n = maps.normals[0][maps.mask[0]]
    assert n[:, 2].mean() > 0.7  # mostly towards the viewer
    # the mirrored photo's normals are the mirror image: x flips sign, on average over the face
    assert np.sign(maps.normals[0][maps.mask[0]][:, 0].mean()) != np.sign(maps.normals[1][maps.mask[1]][:, 0].mean())


def test_no_face_in_a_cat_or_in_textures():
    images = np.concatenate([fit_square(data.chelsea(), 96)[None], smooth_textures(2, 96)])
    maps = fn.estimate(images)
    assert not maps.found.any() and not maps.mask.any()


def test_compare_scores_an_output_against_the_photo():
    faces = face_photos(3, 96)[[0, 2]]  # the second shifted and brighter, not mirrored
    cat = fit_square(data.chelsea(), 96)[None]
    maps = fn.estimate(np.concatenate([faces, cat]))
    stats = fn.compare(maps, maps.normals[0], maps.mask[0])
    assert stats["face_found"].tolist() == [1.0, 1.0, 0.0]
    assert stats["normal_mean"][0] == pytest.approx(0.0, abs=0.05) and stats["normal_11"][0] == 100.0
    assert 0 < stats["normal_mean"][1] < 25  # the same face, shifted: close, not the same
    assert all(np.isnan(stats[k][2]) for k in fn.STATISTICS)  # no face: no angular error


def test_the_normals_signal_skips_photos_without_a_face(tmp_path):
    from PIL import Image

    faces = face_photos(3, 48)
    cat = fit_square(data.chelsea(), 48)
    x, kept = signal_from_photos("normals", np.concatenate([faces, cat[None]]))
    assert kept.tolist() == [True, True, True, False]
    assert (x[3] == fn.UNKNOWN).all() and (x[0] != fn.UNKNOWN).any(axis=-1).mean() > 0.05
    with pytest.raises(DataError, match="no face found in 1 of 1 photo"):
        make_signal("normals", cat[None])
    samples = []
    for i, im in enumerate([*faces, cat]):
        Image.fromarray(im).save(tmp_path / f"{i}.png")
        samples.append(Sample(name=f"{i}.png", target=tmp_path / f"{i}.png"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prepared, _ = prepare(samples, size=48, signal="normals", progress=False)
    assert prepared.names == ["0.png", "1.png", "2.png"] and len(prepared.x) == len(prepared.y) == 3
    assert (prepared.x == x[:3]).all()
    said = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    assert any("skipped 1 of 4 photos in which no face was found" in m and "3.png" in m for m in said), said
    with pytest.raises(DataError, match="no face found in any"):
        prepare(samples[3:], size=48, signal="normals", progress=False)


@pytest.fixture
def without_mediapipe(monkeypatch):
    """As if the optional extra were not installed."""
    for name in ("mediapipe", "mediapipe.python", "mediapipe.python.solutions"):
        monkeypatch.setitem(sys.modules, name, None)  # None in sys.modules: the import fails


def test_without_the_extra_the_error_says_how_to_install_it(without_mediapipe, tmp_path):
    assert not fn.available()
    with pytest.raises(ConfigError, match="make setup-normals"):
        fn.require()
    sample = Sample(name="a.png", target=tmp_path / "a.png")  # not even read: refused before loading
    with pytest.raises(ConfigError, match=r"pixelnn\[normals\]"):
        prepare([sample], size=48, signal="normals", progress=False)
