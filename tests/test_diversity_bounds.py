"""benchmarks/diversity_bounds.py: the pruned neighbour search and diversity by scale, on made-up data."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def bounds():
    sys.path.insert(0, str(BENCHMARKS))  # it imports its sibling coherence.py
    spec = importlib.util.spec_from_file_location("diversity_bounds", BENCHMARKS / "diversity_bounds.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.path.remove(str(BENCHMARKS))


def test_pruning_moves_near_copies_of_a_kept_neighbour_to_the_end(bounds):
    # exemplar 1 is a near copy of exemplar 0; 2..5 point elsewhere
    rows = np.array([[1, 0, 0], [0.99, 0.14, 0], [0.6, 0.8, 0], [0.6, 0, 0.8], [0.5, -0.6, 0.62], [0.4, 0.5, -0.77]])
    query = np.array([1.0, 0.3, 0.3]) / np.linalg.norm([1.0, 0.3, 0.3])
    unit = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    sims = unit @ query

    def search(xq, k, subset=None):
        order = np.argsort(-sims)[:k]
        return sims[order][None].astype(np.float32), order[None]

    pruned = bounds.pruned_search(search, lambda ids: rows[ids])
    _, nearest = search(None, 2)
    _, kept = pruned(None, 2)
    first, other = nearest[0]
    assert {first, other} == {0, 1}  # the plain search returns both copies
    assert kept[0][0] == first and other not in kept[0] and len(kept[0]) == 2
    _, all_ids = pruned(None, 6)
    assert sorted(all_ids[0].tolist()) == list(range(6))  # pruned ones fill up, nothing is lost


def test_diversity_by_scale_separates_fine_detail_from_what_differs_coarsely(bounds, tmp_path):
    base = np.full((8, 8, 3), 120, np.uint8)
    checker = (np.indices((8, 8)).sum(0) % 2 * 40 - 20)[..., None]  # zero mean over every 2x2 block
    speckled = np.stack([base, (base + checker).astype(np.uint8)])  # differ in detail only
    shifted = np.stack([base, base + 40])  # differ everywhere, coarsely
    (tmp_path / "cache").mkdir()
    np.savez(tmp_path / "cache" / "cand-00000.npz", pix2pix=speckled, pixelnn=shifted)
    table = bounds.by_scale(tmp_path, factors=(1, 2, 4))
    assert table["pix2pix"][1] == pytest.approx(20 / 255, rel=1e-5) and table["pix2pix"][2] == pytest.approx(
        0, abs=1e-6
    )
    assert all(table["pixelnn"][k] == pytest.approx(40 / 255, rel=1e-5) for k in (1, 2, 4))
    with pytest.raises(SystemExit, match="no cached candidates"):
        bounds.by_scale(tmp_path / "elsewhere")
