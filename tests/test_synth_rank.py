"""Ranking from the input alone and the copying modes, on small arrays made here."""

import numpy as np
import pytest

from pixelnn.data.signals import lowres
from pixelnn.errors import ConfigError
from pixelnn.synth import coherence as C
from pixelnn.synth import rank as R


def smooth_photo(seed: int = 0, size: int = 32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.random((4, 4, 3))
    return np.kron(small, np.ones((size // 4, size // 4, 1))).astype(np.float32)


def test_low_resolution_consistency_prefers_the_candidate_that_downsamples_to_the_input():
    photo = smooth_photo()
    x = lowres((photo[None] * 255 + 0.5).astype(np.uint8), 8)[0]
    wrong = np.roll(photo, 8, axis=1)  # the same content in the wrong place
    darker = photo * 0.7
    scores = R.consistency(np.stack([photo, wrong, darker]), x)
    assert scores[0] > 40 and scores[0] > scores[1] and scores[0] > scores[2]


def test_structure_agreement_prefers_edges_where_the_sketch_has_lines():
    sketch = np.full((32, 32, 1), 255, np.uint8)
    sketch[:, 15:17] = 0  # one dark vertical line
    right = np.zeros((32, 32, 3), np.float32)
    right[:, 16:] = 1.0  # an edge along the line
    wrong = np.zeros((32, 32, 3), np.float32)
    wrong[16:, :] = 1.0  # a horizontal edge elsewhere
    flat = np.full((32, 32, 3), 0.5, np.float32)
    agree = R.consistency(np.stack([right, wrong, flat]), sketch)
    assert agree[0] > 0.5 > agree[1] and agree[2] == 0.0  # a flat image has no structure to agree with


def test_stage1_part_prefers_the_colours_of_f_and_only_for_inputs_of_the_output_size():
    f = smooth_photo(1)
    sketch = np.full((32, 32, 1), 255, np.uint8)
    sketch[:, 15:17] = 0
    recoloured = f[..., ::-1].copy()  # the same layout in other colours
    detailed = np.clip(f + 0.05 * np.random.default_rng(2).standard_normal(f.shape), 0, 1).astype(np.float32)
    parts = R.input_parts(np.stack([recoloured, detailed, f]), sketch, f)
    assert set(parts) == {"consistency", "stage1"}
    assert parts["stage1"][2] > parts["stage1"][1] > parts["stage1"][0]  # fine noise costs little, colour much
    assert set(R.input_parts(np.stack([f]), sketch)) == {"consistency"}  # no f(x) given: no stage1 part
    x = lowres((f[None] * 255 + 0.5).astype(np.uint8), 8)[0]
    assert set(R.input_parts(np.stack([f, recoloured]), x, f)) == {"consistency"}  # x gives the colours itself


def test_seam_cost_is_zero_for_one_coherent_source_and_grows_with_a_cut():
    H = W = 8
    residual = np.random.default_rng(0).normal(size=(2, H * W, 3)).astype(np.float32)
    j = np.arange(H * W).reshape(H, W)
    rank = np.zeros((H, W), np.int64)
    assert R.seam_cost(rank, j, residual) == 0.0
    assert R.seam_cost(rank, (j + 1) % (H * W), residual) > 0  # wraps at row ends: cuts at the last column
    cut = rank.copy()
    cut[:, 4:] = 1
    assert R.seam_cost(cut, j, residual) > 0
    right, down = R.incoherent_pairs(cut, j)
    assert right.sum() == H and down.sum() == 0  # one vertical cut of H pairs


def test_totals_standardise_the_counted_parts_and_order_keeps_ties_in_grid_order():
    parts = {
        "consistency": np.array([30.0, 32.0, 31.0]),
        "match": np.array([0.5, 0.6, 0.9]),
        "seam": np.array([0, -9.0, -9.0]),
    }
    totals = R.combine(parts)
    assert totals.argmax() == 2 and totals[0] < totals[1]  # the seam part is not counted
    scores = R.scores(parts)
    assert scores[1].parts() == {"consistency": 32.0, "match": 0.6, "seam": -9.0}
    assert R.order([R.Score(1.0, 0), R.Score(2.0, 0), R.Score(1.0, 0)]) == [1, 0, 2]


def test_vote_changes_nothing_where_every_neighbour_continues_the_same_source():
    H = W = 6
    residual = np.random.default_rng(1).normal(size=(3, H * W, 3)).astype(np.float32)
    j = np.arange(H * W).reshape(H, W)
    rank = np.ones((H, W), np.int64)
    weights = C.vote_weights(j)
    assert weights.shape == (H, W, 9) and np.allclose(weights.sum(-1), 1)
    assert weights[0, 0, 0] == 0  # the up-left neighbour of a corner does not exist
    assert np.array_equal(C.vote_correction(rank, j, residual, weights), np.zeros((H, W, 3), np.float32))
    rank[:, 3:] = 2  # a cut: pixels beside it average the two sources
    corr = C.vote_correction(rank, j, residual, weights)
    assert np.abs(corr[:, [2, 3]]).max() > 0 and np.array_equal(corr[:, [0, 5]], np.zeros((H, 2, 3), np.float32))


def test_coherence_prior_joins_a_source_that_costs_little_and_refuses_one_that_costs_much():
    H, W = 1, 6
    rank = np.array([[0, 1, 0, 1, 0, 1]])
    j = np.arange(W)[None]
    owner = np.zeros((H, W), np.int64)
    sim = np.full((H, W), 0.9, np.float32)
    Q = np.tile(np.array([[1.0, 0.0]], np.float32), (W, 1))

    def everywhere(s):  # every exemplar pixel has similarity s to every query pixel
        return np.tile(np.array([s, np.sqrt(1 - s * s)], np.float32), (2, W, 1))

    s, r, _ = C.coherent(sim, rank, j, owner, Q, everywhere(0.89), tau=0.02)
    assert len(np.unique(r)) == 1 and (s >= 0.9 - 0.02).all()  # one source for the whole row
    s, r, _ = C.coherent(sim, rank, j, owner, Q, everywhere(0.5), tau=0.02)
    assert np.array_equal(r, rank) and np.array_equal(s, sim)  # nothing given up for coherence
    with pytest.raises(ConfigError, match="copy must be one of"):
        C.check_mode("blend")
