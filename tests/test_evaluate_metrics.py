import math

import numpy as np
import pytest
import torch

from conftest import smooth_textures
from pixelnn.data.signals import lowres
from pixelnn.evaluate import metrics as M
from pixelnn.features.hypercolumn import pixel_descriptors
from pixelnn.pixels import psnr


def _photo(seed=0, size=32):
    return smooth_textures(1, size, seed=seed)[0].astype(np.float64) / 255.0


# ---------------------------------------------------------------- PSNR, SSIM, consistency


def test_psnr_of_identical_images_is_capped_at_100_db_and_black_has_a_known_value():
    y = _photo()
    assert psnr(y, y) == pytest.approx(100.0)
    grey = np.full((8, 8, 3), 0.5)
    # MSE 0.25 -> 10 log10(4)
    assert psnr(np.zeros((8, 8, 3)), grey) == pytest.approx(10 * math.log10(4.0))
    batch = psnr(np.stack([grey, np.zeros_like(grey)]), grey)
    assert batch.shape == (2,) and batch[0] == pytest.approx(100.0) and batch[1] == pytest.approx(6.0206, abs=1e-4)


def test_ssim_is_one_for_identical_images_and_lower_for_a_shifted_one():
    y = _photo(1)
    same, shifted = M.ssim(np.stack([y, np.roll(y, 3, axis=1)]), y)
    assert same == pytest.approx(1.0)
    assert shifted < 0.9


def test_input_consistency_of_the_photo_itself_is_perfect():
    y8 = smooth_textures(1, 32, seed=2)[0]
    x = lowres(y8[None], 4)[0]
    assert M.consistency_psnr(y8[None].astype(np.float64) / 255, x, 4)[0] == pytest.approx(100.0)
    assert M.consistency_psnr(np.zeros((1, 32, 32, 3)), x, 4)[0] < 20


# ---------------------------------------------------------------- average precision


def _reference_ap(scores, labels):
    """Brute force over thresholds: sum (R_k - R_{k-1}) P_k with P, R counting every score >= t."""
    ap, prev_r = 0.0, 0.0
    for t in sorted(set(scores), reverse=True):
        sel = scores >= t
        tp = (sel & labels).sum()
        p, r = tp / sel.sum(), tp / labels.sum()
        ap += (r - prev_r) * p
        prev_r = r
    return ap


def test_average_precision_on_hand_computed_examples():
    # precision at each true positive: 1/1, 2/3, 3/5
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    labels = np.array([1, 0, 1, 0, 1], bool)
    assert M.average_precision(scores, labels) == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    # shuffled input, same answer
    perm = np.array([3, 0, 4, 1, 2])
    assert M.average_precision(scores[perm], labels[perm]) == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    # a tie is one threshold: R .5 at P 1, then R 1 at P 2/3 -> .5 + .5 * 2/3
    tied = np.array([0.9, 0.5, 0.5, 0.1])
    assert M.average_precision(tied, np.array([1, 1, 0, 0], bool)) == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert M.average_precision(tied, np.array([1, 0, 1, 0], bool)) == pytest.approx(0.5 + 0.5 * 2 / 3)
    # perfect ranking, worst ranking, no positive
    assert M.average_precision(np.array([0.9, 0.8, 0.1]), np.array([1, 1, 0], bool)) == pytest.approx(1.0)
    assert M.average_precision(np.array([0.9, 0.8, 0.1]), np.array([0, 0, 1], bool)) == pytest.approx(1 / 3)
    assert math.isnan(M.average_precision(np.array([0.3, 0.2]), np.array([0, 0], bool)))


def test_average_precision_matches_the_brute_force_pr_curve_with_many_ties():
    rng = np.random.default_rng(0)
    for _ in range(5):
        scores = rng.integers(0, 12, 300) / 11.0  # many ties
        labels = rng.random(300) < 0.3
        assert M.average_precision(scores, labels) == pytest.approx(_reference_ap(scores, labels), abs=1e-12)


def test_average_precision_of_all_rows_at_once_equals_the_per_row_function():
    rng = np.random.default_rng(2)
    labels = rng.random(400) < 0.2
    scores = np.concatenate(
        [
            rng.random((4, 400)),  # no ties
            rng.integers(0, 9, (4, 400)) / 8.0,  # many ties
            np.where(labels, 0.7, rng.random(400))[None],  # every positive in one run of ties
            np.full((1, 400), 0.5),  # one threshold
        ]
    )
    rows = M.average_precision_rows(scores, labels)
    assert rows.shape == (10,)
    assert np.allclose(rows, [M.average_precision(s, labels) for s in scores], rtol=0, atol=1e-12)
    assert np.isnan(M.average_precision_rows(scores[:2], np.zeros(400, bool))).all()
    edges = scores[:3].reshape(3, 20, 20)
    assert np.array_equal(M.edge_ap(edges, labels.reshape(20, 20) * 1.0), rows[:3])


def test_edge_ap_is_one_when_the_output_has_the_real_edges():
    rng = np.random.default_rng(1)
    real = rng.random((16, 16))
    out = M.edge_ap(np.stack([real, 1 - real]), real)
    assert out.shape == (2,)
    assert out[0] == pytest.approx(1.0)
    assert out[1] < 0.7


# ---------------------------------------------------------------- diversity


def test_pixel_diversity_of_known_sets():
    same = np.repeat(_photo(5)[None], 4, axis=0)
    assert M.pairwise_l1(same) == 0.0
    assert M.pairwise_l1(same[:1]) == 0.0
    three = np.stack([np.zeros((4, 4, 3)), np.full((4, 4, 3), 0.5), np.ones((4, 4, 3))])
    assert M.pairwise_l1(three) == pytest.approx((0.5 + 1.0 + 0.5) / 3)


def test_residual_spread_is_the_mean_distance_of_two_exemplars_residuals():
    y = np.stack([np.full((4, 4, 3), v) for v in (0.2, 0.5, 0.9)])
    f = np.stack([np.full((4, 4, 3), v) for v in (0.1, 0.5, 0.5)])  # residuals 0.1, 0.0, 0.4
    spread = M.residual_spread(y, f, pairs=4000, seed=1)
    assert spread == pytest.approx((0.1 + 0.4 + 0.3) / 3, abs=0.01)  # pairs drawn evenly, never an exemplar with itself
    assert M.residual_spread(y, y, pairs=10) == 0.0  # perfect fits leave nothing to copy
    assert M.residual_spread(y[:1], f[:1], pairs=10) == 0.0


def test_hypercolumn_similarity_equals_the_explicit_descriptors():
    torch.manual_seed(0)
    taps = [torch.rand(3, 4, 8, 8), torch.rand(3, 6, 4, 4), torch.rand(3, 5, 2, 2)]
    desc = pixel_descriptors(taps, (8, 8))  # (3, D, 8, 8), unit norm
    explicit = torch.einsum("adp,bdp->ab", desc.flatten(2), desc.flatten(2)) / 64
    got = M.hypercolumn_similarity(taps, (8, 8))
    assert torch.allclose(got, explicit.double(), atol=1e-6)
    assert M.mean_pair_distance(got) == pytest.approx(
        float(np.mean([1 - explicit[0, 1], 1 - explicit[0, 2], 1 - explicit[1, 2]])), abs=1e-6
    )
    same = [t[:1].repeat(4, 1, 1, 1) for t in taps]
    assert M.mean_pair_distance(M.hypercolumn_similarity(same, (8, 8))) == pytest.approx(0.0, abs=1e-6)
    assert M.mean_pair_distance(np.ones((1, 1))) == 0.0


def _explicit_layer_similarity(t, size):
    """layer_similarity the long way, in float64: upsample, normalise per pixel, mean of dot products."""
    desc = pixel_descriptors([t.double()], size)  # (M, C, H, W), unit norm per pixel
    return torch.einsum("adp,bdp->ab", desc.flatten(2), desc.flatten(2)) / (size[0] * size[1])


@pytest.mark.parametrize(
    "shape,size",
    [
        ((4, 8, 24, 24), (24, 24)),
        ((4, 16, 12, 12), (24, 24)),
        ((4, 64, 6, 6), (24, 24)),
        ((4, 64, 3, 3), (24, 24)),
        ((3, 32, 5, 7), (13, 29)),
    ],
)
def test_layer_similarity_equals_the_explicit_descriptors_in_float64(shape, size):
    torch.manual_seed(sum(shape))
    t = torch.relu(torch.randn(shape))  # ReLU taps: sparse, non-negative
    t[0, :, 0, 0] = 0  # a pixel without any feature (a zero descriptor)
    ref = _explicit_layer_similarity(t, size)
    assert torch.allclose(M.layer_similarity(t, size), ref, rtol=0, atol=1e-6)
    assert torch.allclose(M.coarse_layer_similarity(t, size), ref, rtol=0, atol=1e-6)  # the low-resolution route


def test_layer_similarity_takes_the_low_resolution_route_for_coarse_taps(monkeypatch):
    calls = []
    monkeypatch.setattr(M, "coarse_layer_similarity", lambda t, size: calls.append(t.shape) or torch.zeros(2, 2))
    M.layer_similarity(torch.rand(2, 512, 6, 6), (96, 96))
    M.layer_similarity(torch.rand(2, 64, 96, 96), (96, 96))
    assert calls == [(2, 512, 6, 6)]


def test_bilinear_matrix_is_the_upsampling_of_f_interpolate():
    x = torch.rand(2, 3, 5, 7, dtype=torch.float64)
    up = torch.nn.functional.interpolate(x, size=(13, 29), mode="bilinear", align_corners=False)
    assert torch.allclose(M.bilinear_matrix(5, 13) @ x @ M.bilinear_matrix(7, 29).T, up, atol=1e-12)


# ---------------------------------------------------------------- Fréchet


def test_frechet_distance_of_identical_and_shifted_gaussians():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(40, 16))
    assert M.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    shift = rng.normal(size=16)
    assert M.frechet_distance(a, a + shift) == pytest.approx(float(shift @ shift), rel=1e-8)
    # fewer samples than dimensions (the small-matrix form), either set the smaller
    wide = rng.normal(size=(10, 64))
    assert M.frechet_distance(wide, wide + 2.0) == pytest.approx(64 * 4.0, rel=1e-8)


@pytest.mark.parametrize("n,m,d", [(50, 60, 8), (12, 20, 32), (20, 12, 32)])
def test_frechet_distance_equals_the_formula_on_covariances(n, m, d):
    rng = np.random.default_rng(n + m)
    a = rng.normal(size=(n, d))
    b = rng.normal(size=(m, d)) @ rng.normal(size=(d, d)) * 0.5 + 0.3
    ref = M.frechet_from_stats(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert M.frechet_distance(a, b) == pytest.approx(ref, rel=1e-5)


# ---------------------------------------------------------------- Rand-1 / Oracle


def test_rand1_and_oracle_on_a_hand_made_table():
    values = [np.array([10.0, 20.0, 15.0]), np.array([30.0, 5.0])]
    rand = [2, 1]
    high = M.select(values, rand, "higher")
    assert high["rand1"] == pytest.approx((15 + 5) / 2)
    assert high["oracle"] == pytest.approx((20 + 30) / 2)
    low = M.select(values, rand, "lower")
    assert low["rand1"] == pytest.approx((15 + 5) / 2)  # Rand-1 does not depend on the direction
    assert low["oracle"] == pytest.approx((10 + 5) / 2)
    # NaN (e.g. AP of a photo without edges): left out of both
    nan = M.select([np.array([np.nan, 0.5]), np.array([np.nan])], [0, 0], "higher")
    assert nan["oracle"] == pytest.approx(0.5) and math.isnan(nan["rand1"]) and nan["n"] == 1
    with pytest.raises(ValueError, match="better must be 'higher' or 'lower'"):
        M.select(values, rand, "up")


def test_paired_interval_known_cases():
    # every input 0.1 better: the interval collapses onto 0.1
    a, b = np.full(20, 0.6), np.full(20, 0.5)
    v = M.paired_interval(a, b, "higher")
    assert v["mean"] == pytest.approx(0.1) and v["low"] == pytest.approx(0.1) and v["high"] == pytest.approx(0.1)
    # lower is better: the same numbers are a loss
    assert M.paired_interval(a, b, "lower")["mean"] == pytest.approx(-0.1)
    # differences of +-1 in equal numbers: mean 0, the interval straddles it
    d = M.paired_interval(np.tile([1.0, -1.0], 50), np.zeros(100), "higher")
    assert d["mean"] == pytest.approx(0.0) and d["low"] < 0 < d["high"]
    # paired: a large shared per-input offset does not widen the interval
    base = np.random.default_rng(0).normal(0, 10, 30)
    paired = M.paired_interval(base + 0.2, base, "higher")
    assert paired["low"] == pytest.approx(0.2) and paired["high"] == pytest.approx(0.2)
    # NaN inputs are left out; under two inputs there is no interval
    one = M.paired_interval(np.array([1.0, np.nan]), np.array([0.5, 0.5]), "higher")
    assert one["n"] == 1 and one["mean"] == pytest.approx(0.5) and math.isnan(one["low"])
    with pytest.raises(ValueError, match="better must be 'higher' or 'lower'"):
        M.paired_interval(a, b, "up")


def test_each_metric_has_the_right_direction():
    assert M.BETTER == {
        "psnr": "higher",
        "ssim": "higher",
        "edge_ap": "higher",
        "consistency_psnr": "higher",
        "spectrum_dist": "lower",
        "seam": "lower",
        "normal_mean": "lower",  # angular errors: lower is better
        "normal_median": "lower",
        "normal_rmse": "lower",
        "normal_11": "higher",  # shares of pixels within a bound: higher is better
        "normal_22": "higher",
        "normal_30": "higher",
        "face_found": "higher",
    }


def test_seam_step_counts_only_steps_between_sources_beyond_the_photos():
    photo = np.zeros((4, 4, 3))
    photo[:, 2:] = 0.5  # the photo itself has a step between columns 1 and 2
    out = photo.copy()
    out[2:, :] += 0.2  # the output adds a step between rows 1 and 2
    one = np.zeros((4, 4), np.int64)
    sy, sx = np.indices((4, 4))
    assert M.seam_step(out, photo, one, sy, sx) == 0.0  # one coherent source: no seam
    two = one.copy()
    two[2:, :] = 1  # rows 2-3 from another exemplar: the cut lies where the output steps
    assert M.seam_step(out, photo, two, sy, sx) == pytest.approx(4 * 0.6 / 24)  # 4 pairs, 0.2 x 3 channels each
    cols = one.copy()
    cols[:, 2:] = 1  # a cut where the photo has the same step: no seam
    assert M.seam_step(photo, photo, cols, sy, sx) == 0.0


def test_top1_takes_the_ranked_first_candidate_for_every_metric():
    values = [np.array([0.1, 0.9, 0.5]), np.array([0.7, 0.2, np.nan])]
    assert M.top1(values, [2, 0]).tolist() == [0.5, 0.7]
    sel = M.select(values, [0, 1], "higher", top_idx=[2, 0])
    assert (
        sel["top1"] == pytest.approx(0.6)
        and sel["rand1"] == pytest.approx(0.15)
        and sel["oracle"] == pytest.approx(0.8)
    )


def test_rand1_index_is_fixed_by_seed_method_and_input():
    picks = [M.rand1_index(0, "pixelnn", i, 72) for i in range(50)]
    assert picks == [M.rand1_index(0, "pixelnn", i, 72) for i in range(50)]
    assert all(0 <= p < 72 for p in picks) and len(set(picks)) > 10
    assert picks != [M.rand1_index(1, "pixelnn", i, 72) for i in range(50)]
    assert picks != [M.rand1_index(0, "pix2pix", i, 72) for i in range(50)]
    assert M.rand1_index(0, "stage1", 3, 1) == 0
