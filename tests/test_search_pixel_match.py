import pytest
import torch

from pixelnn.search.pixel_match import WHOLE, match, match_dense, match_local, offsets


def unit_desc(D=16, H=9, W=11, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(D, H, W, generator=g), dim=0)


def brute_force(q, e, window):
    """Reference: loop over every pixel and every allowed source pixel."""
    D, H, W = q.shape
    lo, hi = -(window // 2), (window - 1) // 2
    sims, idx = torch.empty(H, W), torch.empty(H, W, dtype=torch.long)
    for y in range(H):
        for x in range(W):
            best, bj = -2.0, -1
            for sy in range(H):
                for sx in range(W):
                    if window != WHOLE and not (lo <= sy - y <= hi and lo <= sx - x <= hi):
                        continue
                    s = float(q[:, y, x] @ e[:, sy, sx])
                    if s > best:
                        best, bj = s, sy * W + sx
            sims[y, x], idx[y, x] = best, bj
    return sims, idx


@pytest.mark.parametrize("window", [1, 3, 4, 5, 10, WHOLE])
def test_both_implementations_equal_brute_force(window):
    q, e = unit_desc(seed=1), unit_desc(seed=2)
    ref_sim, ref_j = brute_force(q, e, window)
    dense_sim, dense_j = match_dense(q, e, window, chunk=17)
    assert torch.allclose(dense_sim, ref_sim, atol=1e-5)
    assert torch.equal(dense_j, ref_j)
    if window != WHOLE:
        local_sim, local_j = match_local(q, e, [window])[window]
        assert torch.allclose(local_sim, ref_sim, atol=1e-5)
        assert torch.equal(local_j, ref_j)


def test_window_one_copies_the_same_position():
    q, e = unit_desc(seed=3), unit_desc(seed=4)
    sim, j = match(q, e, [1])[1]
    H, W = q.shape[1:]
    assert torch.equal(j, torch.arange(H * W).view(H, W))
    assert torch.allclose(sim, (q * e).sum(0), atol=1e-6)


def test_larger_windows_never_match_worse():
    q, e = unit_desc(seed=5), unit_desc(seed=6)
    m = match(q, e, [1, 3, 5, WHOLE])
    for small, big in [(1, 3), (3, 5), (5, WHOLE)]:
        assert (m[big][0] >= m[small][0] - 1e-6).all()
    assert (m[WHOLE][0] > m[1][0] + 1e-3).any()  # and the whole image finds strictly better ones


def test_self_match_is_identity_for_every_window():
    q = unit_desc(seed=7)
    H, W = q.shape[1:]
    for w, (sim, j) in match(q, q.clone(), [1, 3, 5, WHOLE]).items():
        assert torch.equal(j, torch.arange(H * W).view(H, W)), w
        assert torch.allclose(sim, torch.ones(H, W), atol=1e-5)


def test_offsets_are_nearest_first_and_sized():
    assert offsets(1) == [(0, 0)]
    assert len(offsets(5)) == 25 and offsets(5)[0] == (0, 0)
    assert len(offsets(10)) == 100 and min(o[0] for o in offsets(10)) == -5 and max(o[0] for o in offsets(10)) == 4


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="must both be"):
        match(unit_desc(H=4), unit_desc(H=5), [1])
