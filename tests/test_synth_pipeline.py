from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from conftest import smooth_textures
from pixelnn.errors import ConfigError
from pixelnn.search.pixel_match import WHOLE
from pixelnn.spectra import log_spectra, spectrum_distance
from pixelnn.synth.coherence import COPY_MODES, MATCH_SHARES, blended, uses_votes, vote_weights
from pixelnn.synth.compose import rebuild
from pixelnn.synth.grid import Spec, paper72
from pixelnn.synth.pipeline import PixelNN


@pytest.fixture(scope="module", params=["exact", "fast"])
def model(request, tiny_run, tmp_path_factory):
    """The tiny model with the exact search, and with a bank of 16-d reduced descriptors (fast)."""
    run, x, y, labels = tiny_run
    if request.param == "exact":
        return PixelNN.load(run)
    from pixelnn.workflow import index_arrays

    bank = tmp_path_factory.mktemp("fast") / "bank"
    index_arrays(run, x, y, [f"im{i}.png" for i in range(len(y))], labels, bank=bank, descriptors=16, progress=False)
    model = PixelNN.load(run, bank=bank)
    assert model.search == "fast"
    return model


@pytest.mark.parametrize("window", [1, 3, 5, WHOLE])
def test_training_input_returns_its_own_target_with_identity_correspondence(model, tiny_run, window):
    _, x, y, _ = tiny_run
    for n in (0, 3):
        result = model.synthesize(x[n], grid=[Spec(1, 1, window)])
        cand = result.candidates[0]
        assert result.neighbours[0] == n
        assert np.array_equal(cand.image, y[n].astype(np.float32) / 255.0)
        H, W = y.shape[1:3]
        assert (cand.corr.exemplar == n).all()
        assert np.array_equal(cand.corr.sy, np.repeat(np.arange(H)[:, None], W, 1))
        assert np.array_equal(cand.corr.sx, np.repeat(np.arange(W)[None, :], H, 0))


@pytest.mark.parametrize("copy", COPY_MODES)
def test_outputs_rebuild_from_their_correspondences(model, tiny_run, copy):
    _, x, y, _ = tiny_run
    query = np.ascontiguousarray(x[2][::-1])  # flipped: not in the bank
    result = model.synthesize(query, copy=copy)
    assert result.candidates
    f_bank = model.bank.stage1(np.arange(len(model.bank)))
    y_bank = model.bank.gather("y", np.arange(len(model.bank))).astype(np.float32) / 255
    voted = 0
    for cand in result.candidates:
        c = cand.corr
        assert (c.weights is not None) == uses_votes(copy)
        if copy != "matched":
            assert cand.voted == (1.0 if uses_votes(copy) else None)
        rebuilt = rebuild(c, result.stage1, lambda ids: f_bank[ids], lambda ids: y_bank[ids])
        assert np.allclose(rebuilt, cand.image, atol=1e-6), str(cand.spec)
        plain = np.clip(result.stage1 + y_bank[c.exemplar, c.sy, c.sx] - f_bank[c.exemplar, c.sy, c.sx], 0, 1)
        voted += not np.allclose(plain, cand.image, atol=1e-6)
    if copy != "matched":  # voting changes some candidates; copying alone changes none
        assert (voted > 0) == copy.endswith("vote")


def test_matched_copy_takes_the_share_of_voting_closest_to_its_sources_spectrum(model, tiny_run):
    _, x, _, _ = tiny_run
    query = np.ascontiguousarray(x[5][:, ::-1])
    result = model.synthesize(query, copy="matched", rank=False)
    f_bank = model.bank.stage1(np.arange(len(model.bank)))
    y_bank = model.bank.gather("y", np.arange(len(model.bank))).astype(np.float32) / 255
    sources = log_spectra(y_bank)
    bank = (result.stage1, f_bank.__getitem__, y_bank.__getitem__)
    for cand in result.candidates:
        c = cand.corr
        full = vote_weights(c.sy.astype(np.int64) * c.sy.shape[1] + c.sx)
        share = [s for s in MATCH_SHARES if np.allclose(blended(full, s), c.weights, atol=1e-6)]
        assert len(share) >= 1, str(cand.spec)
        target = np.bincount(c.exemplar.ravel(), minlength=len(y_bank)) / c.exemplar.size @ sources
        gaps = [
            spectrum_distance(log_spectra(rebuild(replace(c, weights=blended(full, s)), *bank)), target)
            for s in MATCH_SHARES
        ]
        assert gaps[list(MATCH_SHARES).index(share[0])] <= min(gaps) + 1e-9, str(cand.spec)
        assert cand.voted == pytest.approx(share[0])  # the share is reported with the candidate


def test_whole_image_window_beats_smaller_windows_in_similarity(model, tiny_run):
    _, x, _, _ = tiny_run
    query = np.ascontiguousarray(x[4][:, ::-1])
    res = model.synthesize(query, grid=[Spec(1, 1, w) for w in (1, 3, 5, WHOLE)], copy="eq3", rank=False)
    sims = {c.spec.window: c.corr.sim for c in res.candidates}
    for w in (1, 3, 5):
        assert (sims[WHOLE] >= sims[w] - 1e-5).all()
    # window 1 copies only from the same position
    c1 = res.candidates[0].corr
    H, W = c1.sy.shape
    assert np.array_equal(c1.sy, np.repeat(np.arange(H)[:, None], W, 1))


def test_label_restriction_keeps_every_correspondence_inside_the_subset(model, tiny_run):
    _, x, _, labels = tiny_run
    res = model.synthesize(x[0], grid="5:1:whole,3:1:3", labels=["dog"])
    allowed = {i for i, lab in enumerate(labels) if lab and (lab == "dog" or lab.startswith("dog/"))}
    assert allowed == {2, 3, 4}
    assert set(res.neighbours.tolist()) <= allowed
    for cand in res.candidates:
        assert set(np.unique(cand.corr.exemplar).tolist()) <= allowed


def test_exemplar_id_restriction_and_empty_restriction(model, tiny_run):
    _, x, _, _ = tiny_run
    res = model.synthesize(x[0], grid="3:1:5", ids=[1, 5])
    assert set(np.unique(res.candidates[0].corr.exemplar).tolist()) <= {1, 5}
    with pytest.raises(ConfigError, match="no exemplar"):
        model.synthesize(x[0], grid="1:1:1", labels=["cat"], ids=[2])
    with pytest.raises(ConfigError, match="no exemplar has label"):
        model.synthesize(x[0], grid="1:1:1", labels=["horse"])


def test_wrong_input_shape_names_the_expected_shape(model):
    with pytest.raises(ConfigError, match=r"\(8, 8, 3\)"):
        model.synthesize(np.zeros((12, 12, 3), np.uint8))


def test_default_grid_gives_the_paper_72_candidates_with_a_bank_of_11_exemplars(tiny_run, tmp_path):
    """paper72 reaches down to the 11th neighbour: a bank of 11 keeps every one of its 72 candidates."""
    from pixelnn.workflow import index_arrays

    run = tiny_run[0]
    y = smooth_textures(11, 32, seed=40)
    x = np.stack([np.asarray(Image.fromarray(im).resize((8, 8))) for im in y])
    bank = tmp_path / "bank11"
    index_arrays(run, x, y, [f"b{i}.png" for i in range(11)], [None] * 11, bank=bank, progress=False)
    res = PixelNN.load(run, bank=bank).synthesize(x[0], rank=False)
    assert len(res.candidates) == 72 and res.notes == []
    assert [c.spec for c in res.candidates] == paper72() and len(set(paper72())) == 72


def test_default_grid_drops_the_candidates_a_small_bank_cannot_reach(model, tiny_run):
    # the tiny bank has 6 exemplars: candidates whose first rank is beyond 6 are dropped
    _, x, _, _ = tiny_run
    res = model.synthesize(x[1])
    expected = [s for s in paper72() if s.first <= 6]
    assert sorted(c.spec for c in res.candidates) == sorted(expected)
    in_grid_order = model.synthesize(x[1], rank=False)
    assert [c.spec for c in in_grid_order.candidates] == expected


def test_candidates_come_best_first_each_with_its_spec_and_score(model, tiny_run):
    _, x, _, _ = tiny_run
    query = np.ascontiguousarray(x[3][::-1])
    res = model.synthesize(query)
    totals = [c.score.total for c in res.candidates]
    assert totals == sorted(totals, reverse=True)
    assert set(res.candidates[0].score.parts()) == {"consistency", "seam", "match"}
    # the same scores whatever the order: ranking only sorts
    unranked = model.synthesize(query, rank=False)
    by_spec = {c.spec: c.score.total for c in unranked.candidates}
    assert {c.spec: c.score.total for c in res.candidates} == pytest.approx(by_spec)
    # a candidate copied whole from one exemplar (1:r:1) has no seam
    whole_copies = [c for c in res.candidates if c.spec.n == 1 and c.spec.window == 1]
    assert whole_copies and all(c.score.seam == 0 for c in whole_copies)


def test_coherence_prior_joins_sources_and_gives_up_little_similarity(model, tiny_run):
    from pixelnn.synth.coherence import COHERENCE_TAU
    from pixelnn.synth.rank import incoherent_pairs

    _, x, _, _ = tiny_run
    query = np.ascontiguousarray(x[0][:, ::-1])
    grid = "3:1:whole,5:1:whole,3:1:5"
    plain = {c.spec: c.corr for c in model.synthesize(query, grid=grid, copy="eq3").candidates}
    joined = {c.spec: c.corr for c in model.synthesize(query, grid=grid, copy="coherent").candidates}
    broken = {}
    for spec, c in plain.items():
        j_plain, j_joined = (m.sy.astype(int) * m.sx.shape[1] + m.sx for m in (c, joined[spec]))
        n_plain = sum(int(b.sum()) for b in incoherent_pairs(c.exemplar, j_plain))
        n_joined = sum(int(b.sum()) for b in incoherent_pairs(joined[spec].exemplar, j_joined))
        broken[spec] = (n_plain, n_joined)
        assert (joined[spec].sim >= c.sim - COHERENCE_TAU - 1e-5).all()  # no pixel gives up more than tau
    assert all(after <= before for before, after in broken.values())
    assert sum(after for _, after in broken.values()) < sum(before for before, _ in broken.values())


def test_another_backbone_chosen_by_name_gives_the_same_guarantees(tiny_run, tmp_path):
    from pixelnn.workflow import index_arrays

    run, x, y, labels = tiny_run
    names = [f"im{i}.png" for i in range(len(y))]
    manifest = index_arrays(
        run, x, y, names, labels, backbone="efficientnet-lite0", bank=tmp_path / "bank", progress=False
    )
    assert manifest["backbone"] == "efficientnet-lite0" and manifest["global_dim"] == 320 * 9
    model = PixelNN.load(run, bank=tmp_path / "bank")
    res = model.synthesize(x[2], grid="1:1:5,1:1:whole")
    for cand in res.candidates:
        assert (cand.corr.exemplar == 2).all()
        assert np.array_equal(cand.image, y[2].astype(np.float32) / 255.0)


def test_fast_search_refuses_a_bank_without_reduced_descriptors(tiny_run):
    with pytest.raises(ConfigError, match="--descriptors"):
        PixelNN.load(tiny_run[0], search="fast")
    assert PixelNN.load(tiny_run[0]).search == "exact"


def test_device_choice_is_checked(tiny_run):
    import torch

    assert PixelNN.load(tiny_run[0], device="auto").device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="unknown device"):
        PixelNN.load(tiny_run[0], device="tpu7")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA"):
            PixelNN.load(tiny_run[0], device="cuda")


def test_a_huge_window_is_the_whole_image_answered_quickly_without_gigabytes(model, tiny_run):
    import time
    import tracemalloc

    _, x, _, _ = tiny_run
    model.synthesize(x[0], grid="1:1:1")  # warm up: the descriptor probe and the backbone
    tracemalloc.start()
    t0 = time.perf_counter()
    res = model.synthesize(x[0], grid="1:1:99999,1:1:63")
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert [c.spec for c in res.candidates] == [Spec(1, 1, WHOLE)] * 2
    whole = model.synthesize(x[0], grid="1:1:whole").candidates[0]
    assert np.array_equal(res.candidates[0].image, whole.image)
    assert seconds < 10 and peak < 200 * 2**20


def test_budget_and_grid_are_checked_before_any_work(model, tiny_run, monkeypatch):
    _, x, _, _ = tiny_run
    monkeypatch.setattr(model, "stage1", lambda x: pytest.fail("stage 1 ran for a refused grid"))
    monkeypatch.setattr("pixelnn.synth.grid.MAX_SEARCH_BYTES", 1000)
    with pytest.raises(ConfigError, match=r"pixel search would need about .* GiB for 32x32 outputs; the limit is"):
        model.synthesize(x[0], grid="1:1:3")


def test_candidates_beyond_the_restricted_set_are_refused_or_dropped_with_a_message(model, tiny_run):
    _, x, _, _ = tiny_run
    with pytest.raises(ConfigError, match=r"\(1 chosen ids\) has 1 exemplar\(s\).*1:3:1"):
        model.synthesize(x[0], grid="1:3:1", ids=[1])
    with pytest.warns(UserWarning, match=r"dropped candidate\(s\) 1:3:1: the exemplar set \(2 chosen ids\) has only 2"):
        res = model.synthesize(x[0], grid="1:1:1,1:3:1", ids=[1, 4])
    assert [str(c.spec) for c in res.candidates] == ["1:1:1"]
    assert res.notes == ["dropped candidate(s) 1:3:1: the exemplar set (2 chosen ids) has only 2 exemplar(s)"]
    assert model.synthesize(x[0], grid="1:1:1").notes == []


def test_like_k_below_1_is_a_clear_error(model, tiny_run):
    _, x, y, _ = tiny_run
    with pytest.raises(ConfigError, match="like_k .* must be at least 1, got 0"):
        model.synthesize(x[0], grid="1:1:1", like=y[0], like_k=0)
