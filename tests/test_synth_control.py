import numpy as np
import pytest

from pixelnn.errors import ConfigError
from pixelnn.synth.control import ExemplarSet, transfer_labels


def test_example_image_selects_its_own_exemplar_first(model, tiny_run):
    _, x, y, _ = tiny_run
    for n in (1, 4):
        assert model.like_ids(y[n], 1).tolist() == [n]
    ids = model.like_ids(y[2], 3)
    assert len(ids) == 3 and 2 in ids


def test_like_restriction_keeps_correspondences_inside_the_liked_set(model, tiny_run):
    _, x, y, _ = tiny_run
    liked = set(model.like_ids(y[5], 2).tolist())
    res = model.synthesize(x[0], grid="2:1:whole,1:1:3", like=y[5], like_k=2)
    for cand in res.candidates:
        assert set(np.unique(cand.corr.exemplar).tolist()) <= liked


def test_each_region_copies_only_from_its_own_exemplars(model, tiny_run):
    _, x, _, _ = tiny_run
    left = np.zeros((32, 32), bool)
    left[:, :16] = True
    top_right = np.zeros((32, 32), bool)
    top_right[:8, 20:] = True
    res = model.synthesize(
        x[0],
        grid="1:1:5,2:1:whole",
        ids=[5],
        regions=[ExemplarSet(ids=[1], mask=left), ExemplarSet(labels=["dog"], mask=top_right)],
    )
    rest = ~left & ~top_right
    for cand in res.candidates:
        ex = cand.corr.exemplar
        assert (ex[left] == 1).all()
        assert set(np.unique(ex[top_right]).tolist()) <= {2, 3, 4}
        assert (ex[rest] == 5).all()
    assert [r.tolist() for r in res.region_neighbours][0] == [1]


@pytest.mark.parametrize(
    "region, message",
    [
        (ExemplarSet(ids=[1]), "needs a mask"),
        (ExemplarSet(ids=[1], mask=np.ones((16, 16), bool)), r"must be \(32, 32\)"),
        (ExemplarSet(ids=[1], mask=np.zeros((32, 32), bool)), "selects no pixel"),
        (ExemplarSet(labels=["cat"], ids=[3], mask=np.ones((32, 32), bool)), "leaves no exemplar"),
    ],
)
def test_bad_regions_are_clear_errors(model, tiny_run, region, message):
    with pytest.raises(ConfigError, match=message):
        model.synthesize(tiny_run[1][0], grid="1:1:1", regions=[region])


def test_label_transfer_follows_the_correspondences(model, tiny_run):
    _, x, _, _ = tiny_run
    rng = np.random.default_rng(0)
    label_maps = rng.integers(0, 5, size=(6, 32, 32))
    own = model.synthesize(x[3], grid="1:1:5").candidates[0]
    assert np.array_equal(transfer_labels(own.corr, label_maps), label_maps[3])
    other = model.synthesize(np.ascontiguousarray(x[3][::-1]), grid="3:1:whole").candidates[0]
    c = other.corr
    assert np.array_equal(transfer_labels(c, lambda ids: label_maps[ids]), label_maps[c.exemplar, c.sy, c.sx])
    with pytest.raises(ConfigError, match="label images"):
        transfer_labels(c, np.zeros((6, 8, 8), int))
