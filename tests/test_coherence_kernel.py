"""The compiled coherence prior (synth/coherence.coherent) against a plain numpy statement of the same rule."""

import numpy as np
import pytest

from pixelnn.synth import coherence as C

DIRS = C.DIRS


def continued(rank, j, owner, dy, dx):
    """For every pixel p, its neighbour n = p - (dy, dx)'s source continued to p: (valid, rank, j)."""
    H, W = rank.shape
    valid = np.zeros((H, W), bool)
    r_out, j_out = np.zeros_like(rank), np.zeros_like(j)
    for y in range(H):
        for x in range(W):
            ny, nx = y - dy, x - dx
            if not (0 <= ny < H and 0 <= nx < W) or owner[ny, nx] != owner[y, x]:
                continue
            sy, sx = j[ny, nx] // W + dy, j[ny, nx] % W + dx
            if 0 <= sy < H and 0 <= sx < W:
                valid[y, x], r_out[y, x], j_out[y, x] = True, rank[ny, nx], sy * W + sx
    return valid, r_out, j_out


def agreement(rank, j, owner, r_opt, j_opt):
    """How many of each pixel's 4 neighbours p + e copy the option's source continued by e."""
    H, W = rank.shape
    count = np.zeros((H, W), np.int64)
    for y in range(H):
        for x in range(W):
            sy, sx = j_opt[y, x] // W, j_opt[y, x] % W
            for dy, dx in DIRS:
                qy, qx = y + dy, x + dx
                if not (0 <= qy < H and 0 <= qx < W and 0 <= sy + dy < H and 0 <= sx + dx < W):
                    continue
                count[y, x] += (
                    rank[qy, qx] == r_opt[y, x]
                    and j[qy, qx] == j_opt[y, x] + dy * W + dx
                    and owner[qy, qx] == owner[y, x]
                )
    return count


def reference(sim, rank, j, owner, Q, table, tau, passes):
    """The prior stated with whole arrays: each colour of the checkerboard moves at once."""
    H, W = rank.shape
    best = sim.copy()
    sim, rank, j = sim.copy(), rank.copy(), j.copy()
    colour = (np.arange(H)[:, None] + np.arange(W)[None, :]) % 2
    pixels = np.arange(H * W).reshape(H, W)
    for _ in range(passes):
        for c in (0, 1):
            found = [continued(rank, j, owner, dy, dx) for dy, dx in DIRS]
            valid = np.stack([v for v, _, _ in found]) & (colour == c)
            rr, jj = np.stack([rank] + [r for _, r, _ in found]), np.stack([j] + [q for _, _, q in found])
            s = np.full((5, H, W), -np.inf, np.float32)
            s[0] = sim
            s[1:][valid] = np.einsum(
                "nd,nd->n", Q[np.broadcast_to(pixels, valid.shape)[valid]], table[rr[1:][valid], jj[1:][valid]]
            )
            ok = s >= best - tau
            votes = np.stack([agreement(rank, j, owner, rr[k], jj[k]) for k in range(5)]).astype(np.float32)
            k = np.where(ok, votes * 4.0 + s, -np.inf).argmax(0)[None]
            new = [np.take_along_axis(a, k, 0)[0] for a in (s, rr, jj)]
            move = colour == c
            sim, rank, j = (np.where(move, n, o) for n, o in zip(new, (sim, rank, j)))
    return sim, rank, j


def unit(a):
    return (a / np.linalg.norm(a, axis=-1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("seed, regions", [(0, False), (1, False), (2, True)])
def test_the_kernel_makes_the_same_choices_as_the_array_statement(seed, regions):
    rng = np.random.default_rng(seed)
    H, W, R, d = 9, 11, 4, 6
    Q = unit(rng.normal(size=(H * W, d)))
    # exemplars that look like the query, shifted: continuations are often nearly as good
    table = unit(Q[None] + 0.6 * rng.normal(size=(R, H * W, d)))
    rank = rng.integers(0, R, (H, W))
    j = rng.integers(0, H * W, (H, W))
    owner = (np.arange(W)[None, :] >= W // 2).repeat(H, 0).astype(np.int64) if regions else np.zeros((H, W), np.int64)
    sim = np.einsum("pd,pd->p", Q, table[rank.ravel(), j.ravel()]).reshape(H, W).astype(np.float32)
    want = reference(sim, rank, j, owner, Q, table, tau=0.2, passes=3)
    got = C.coherent(sim, rank, j, owner, Q, table, tau=0.2, passes=3)
    assert not np.array_equal(want[1] * H * W + want[2], rank * H * W + j)  # the prior moved pixels
    assert np.array_equal(got[1], want[1]) and np.array_equal(got[2], want[2])
    assert np.allclose(got[0], want[0], atol=1e-5)
    assert (got[0] >= sim - 0.2 - 1e-6).all()  # nobody gave up more than tau


def test_seam_cost_is_the_mean_pair_cost_written_out():
    from pixelnn.synth.rank import seam_cost

    rng = np.random.default_rng(3)
    H, W = 7, 8
    residual = rng.normal(size=(3, H * W, 3)).astype(np.float32)
    rank = rng.integers(0, 3, (H, W))
    j = rng.integers(0, H * W, (H, W))
    j[:, :4] = np.arange(H * W).reshape(H, W)[:, :4]  # a coherent part: its inner pairs cost 0
    rank[:, :4] = 1
    costs = []
    for y in range(H):
        for x in range(W):
            for dy, dx in ((0, 1), (1, 0)):
                if y + dy >= H or x + dx >= W:
                    continue
                p, q = (rank[y, x], j[y, x]), (rank[y + dy, x + dx], j[y + dy, x + dx])
                own_p, own_q = residual[p], residual[q]
                step = np.abs(own_p - own_q).sum()
                ok_p = p[1] // W + dy < H and p[1] % W + dx < W
                ok_q = q[1] // W - dy >= 0 and q[1] % W - dx >= 0
                from_p = np.abs(residual[p[0], p[1] + dy * W + dx] - own_q).sum() if ok_p else step
                from_q = np.abs(residual[q[0], q[1] - dy * W - dx] - own_p).sum() if ok_q else step
                costs.append((from_p + from_q) / 2)
    assert seam_cost(rank, j, residual) == pytest.approx(np.mean(costs), rel=1e-6)
    coherent = np.arange(H * 4).reshape(H, 4)
    assert seam_cost(np.ones((H, 4), np.int64), coherent, residual[:, : H * 4]) == 0


def test_compiled_voting_equals_its_array_statement():
    rng = np.random.default_rng(4)
    H, W, K = 8, 9, 3
    residual = rng.normal(size=(K, H * W, 3)).astype(np.float32)
    rank = rng.integers(0, K, (H, W))
    j = rng.integers(0, H * W, (H, W))
    j[:, :4] = np.arange(H * W).reshape(H, W)[:, :4]  # columns 0-3 copied from one source at one offset
    rank[:, :4] = 1
    zeros = np.zeros((H, W), np.int64)
    want_w = np.zeros((H, W, 9), np.float32)
    for k, (dy, dx) in enumerate(C.VOTE_OFFSETS):
        want_w[:, :, k] = continued(zeros, j, zeros, -dy, -dx)[0]
    want_w /= want_w.sum(-1, keepdims=True)
    own = residual[rank, j]
    want = np.zeros((H, W, 3), np.float32)
    for k, (dy, dx) in enumerate(C.VOTE_OFFSETS):  # the neighbour at p + (dy, dx), its source continued to p
        valid, rr, jj = continued(rank, j, zeros, -dy, -dx)
        want += np.where(valid, want_w[:, :, k], 0.0).astype(np.float32)[..., None] * np.where(
            valid[..., None], residual[rr, jj] - own, 0.0
        )
    weights = C.vote_weights(j)
    assert np.array_equal(weights, want_w)
    got = C.vote_correction(rank, j, residual, weights)
    assert np.allclose(got, want, atol=1e-6) and np.abs(got).max() > 0
    assert np.array_equal(got[:, 1:3], np.zeros((H, 2, 3), np.float32))  # inside the coherent part: nothing to add


def test_matched_share_picks_the_output_with_the_detail_of_the_target():
    """Smooth images plus noise of 5 amplitudes: the target is the spectrum of another image with the
    4th amplitude (other noise), so the 4th output is the closest whatever the noise draws."""
    from pixelnn.spectra import log_spectra

    rng = np.random.default_rng(7)
    yy, xx = np.meshgrid(np.linspace(0, 1, 48), np.linspace(0, 1, 48), indexing="ij")
    smooth = np.repeat((0.5 + 0.3 * np.sin(3 * yy + 2 * xx))[..., None], 3, -1)
    amplitudes = [0.0, 0.02, 0.05, 0.1, 0.2]
    outputs = np.stack([np.clip(smooth + a * rng.standard_normal(smooth.shape), 0, 1) for a in amplitudes])
    target = log_spectra(np.clip(smooth + 0.1 * rng.standard_normal(smooth.shape), 0, 1))
    assert C.matched_share(outputs, target) == 3
    assert C.matched_share(outputs[:3], target) == 2  # the closest left


def test_blended_weights_keep_the_rest_on_the_own_source():
    j = np.arange(36, dtype=np.int64).reshape(6, 6)  # every pixel copies its own position: all 9 continue
    w = C.vote_weights(j)
    half = C.blended(w, 0.5)
    assert np.allclose(half.sum(-1), 1.0)
    assert np.allclose(half[2, 2, C.OWN], 0.5 + 0.5 / 9) and np.allclose(half[2, 2, 0], 0.5 / 9)
    assert np.array_equal(C.blended(w, 1.0), w)
    own = C.blended(w, 0.0)
    assert np.all(own[..., C.OWN] == 1) and own.sum() == 36
