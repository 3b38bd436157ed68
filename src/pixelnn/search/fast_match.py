"""Fast pixel matching for many exemplars at once, on (reduced) descriptors in pixel-major layout.

Vocabulary as in pixel_match: q (H, W, d) query descriptors, E (K, H, W, d) the K exemplars'; a
match per window is (sim (K, H, W), j (K, H, W)) with j = sy * W + sx.

- `match_local_blocks` (exact): small windows by blocks. The query is cut into B x B blocks; each
  block is compared with the (B + 2r)^2 exemplar pixels around it in one batched matrix product,
  and every window's argmax is read off with a mask. More flops than a per-offset loop but each
  is a dense product, which is what the CPU does fast.
- `match_whole_coarse_to_fine` (approximate): whole-image windows. Descriptors are average-pooled
  by `factor`, matched exhaustively at the coarse level (a (HW/f^2)^2 product), and each query
  pixel is then compared exactly with the pixels of its `top` best coarse cells, grown by `halo`.

Ties prefer the query pixel's own position, as pixel_match does.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

from .pixel_match import WHOLE


def _bounds(window: int) -> tuple[int, int]:
    return -(window // 2), (window - 1) // 2


@lru_cache(maxsize=32)
def _block_geometry(H: int, W: int, B: int, r: int):
    """Index tensors shared by every query of one size (cached)."""
    R = B + 2 * r
    nby, nbx = -(-H // B), -(-W // B)
    by = torch.arange(nby).repeat_interleave(nbx)  # (nb,)
    bx = torch.arange(nbx).repeat(nby)
    qy = by.view(-1, 1) * B + torch.arange(B).repeat_interleave(B).view(1, -1)  # (nb, B*B) query rows
    qx = bx.view(-1, 1) * B + torch.arange(B).repeat(B).view(1, -1)
    sy = by.view(-1, 1) * B - r + torch.arange(R).repeat_interleave(R).view(1, -1)  # (nb, R*R) source rows
    sx = bx.view(-1, 1) * B - r + torch.arange(R).repeat(R).view(1, -1)
    valid = (sy >= 0) & (sy < H) & (sx >= 0) & (sx < W)
    dy = sy.unsqueeze(1) - qy.unsqueeze(2)  # (nb, B*B, R*R) offsets source - query
    dx = sx.unsqueeze(1) - qx.unsqueeze(2)
    qvalid = (qy < H) & (qx < W)
    return nby, nbx, qy, qx, sy, sx, valid, dy, dx, qvalid


def _blocks(t: torch.Tensor, size: int, stride: int, pad: int) -> torch.Tensor:
    """(N, H, W, d) -> (N, nb, size*size, d) patches of side `size` every `stride` pixels."""
    N, H, W, d = t.shape
    x = t.permute(0, 3, 1, 2)  # (N, d, H, W)
    Hp = -(-H // stride) * stride
    Wp = -(-W // stride) * stride
    x = F.pad(x, (pad, pad + Wp - W, pad, pad + Hp - H))
    cols = F.unfold(x, kernel_size=size, stride=stride)  # (N, d*size*size, nb)
    return cols.view(N, d, size * size, -1).permute(0, 3, 2, 1)


def match_local_blocks(q: torch.Tensor, E: torch.Tensor, windows: list[int], block: int = 8) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Exact best match within each small window, for all K exemplars; see module docstring."""
    H, W, d = q.shape
    K = E.shape[0]
    r = max(max(-_bounds(w)[0], _bounds(w)[1]) for w in windows)
    B = block
    nby, nbx, qy, qx, sy, sx, valid, dy, dx, qvalid = _block_geometry(H, W, B, r)
    qb = _blocks(q[None], B, B, 0)[0]  # (nb, B*B, d)
    eb = _blocks(E, B + 2 * r, B, r)  # (K, nb, R*R, d)
    sims = torch.matmul(qb.unsqueeze(0), eb.transpose(-1, -2))  # (K, nb, B*B, R*R)
    self_pos = (r + (qy - qy[:, :1])) * (B + 2 * r) + r + (qx - qx[:, :1])  # (nb, B*B) own pixel in region
    out = {}
    for w in windows:
        lo, hi = _bounds(w)
        allowed = (dy >= lo) & (dy <= hi) & (dx >= lo) & (dx <= hi) & valid.unsqueeze(1)  # (nb, B*B, R*R)
        s = sims.masked_fill(~allowed, -torch.inf)
        best, arg = s.max(dim=-1)  # (K, nb, B*B)
        own = s.gather(-1, self_pos.expand(K, -1, -1).unsqueeze(-1)).squeeze(-1)
        arg = torch.where(own >= best, self_pos.expand(K, -1, -1), arg)
        best = torch.maximum(best, own)
        j_y = torch.gather(sy.expand(K, -1, -1), 2, arg)  # (K, nb, B*B)
        j_x = torch.gather(sx.expand(K, -1, -1), 2, arg)
        out[w] = (_unblock(best, qy, qx, qvalid, H, W), _unblock(j_y * W + j_x, qy, qx, qvalid, H, W))
    return out


def _unblock(v: torch.Tensor, qy, qx, qvalid, H: int, W: int) -> torch.Tensor:
    """(K, nb, B*B) values per block pixel -> (K, H, W)."""
    K = v.shape[0]
    out = torch.empty((K, H * W), dtype=v.dtype)
    flat = (qy * W + qx)[qvalid]
    out[:, flat] = v[:, qvalid]
    return out.view(K, H, W)


def pool_descriptors(t: torch.Tensor, factor: int) -> torch.Tensor:
    """(N, H, W, d) -> (N, H/f, W/f, d): mean over f x f cells, renormalised to unit length."""
    x = F.avg_pool2d(t.permute(0, 3, 1, 2), factor, ceil_mode=True)
    return F.normalize(x, dim=1).permute(0, 2, 3, 1)


def match_whole_coarse_to_fine(q: torch.Tensor, E: torch.Tensor, factor: int = 4, top: int = 3, halo: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Approximate best match over the whole image for all K exemplars: (sim, j), each (K, H, W)."""
    H, W, d = q.shape
    K = E.shape[0]
    qc, ec = pool_descriptors(q[None], factor)[0], pool_descriptors(E, factor)  # (h, w, d), (K, h, w, d)
    h, w = qc.shape[:2]
    coarse = torch.matmul(qc.reshape(1, h * w, d), ec.reshape(K, h * w, d).transpose(1, 2))  # (K, hw, hw)
    cells = coarse.topk(min(top, h * w), dim=-1).indices  # (K, hw, t) best coarse source cells
    R = factor + 2 * halo
    # candidate source pixels: each chosen cell grown by the halo, clipped to the image
    oy = torch.arange(R).repeat_interleave(R) - halo  # (R*R,)
    ox = torch.arange(R).repeat(R) - halo
    cy = (cells // w) * factor  # (K, hw, t)
    cx = (cells % w) * factor
    sy = (cy.unsqueeze(-1) + oy).clamp(0, H - 1).flatten(2)  # (K, hw, t*R*R)
    sx = (cx.unsqueeze(-1) + ox).clamp(0, W - 1).flatten(2)
    src = sy * W + sx
    # query pixels of each coarse cell
    qy = torch.arange(h).repeat_interleave(w).view(-1, 1) * factor + torch.arange(factor).repeat_interleave(factor).view(1, -1)
    qx = torch.arange(w).repeat(h).view(-1, 1) * factor + torch.arange(factor).repeat(factor).view(1, -1)
    qvalid = (qy < H) & (qx < W)
    qidx = (qy.clamp(max=H - 1) * W + qx.clamp(max=W - 1))  # (hw, f*f)
    qf = q.reshape(H * W, d)[qidx]  # (hw, f*f, d)
    sims, best_j = [], []
    for k in range(K):  # one exemplar at a time keeps the gathered block small
        ek = E[k].reshape(H * W, d)[src[k]]  # (hw, t*R*R, d)
        s = torch.matmul(qf, ek.transpose(1, 2))  # (hw, f*f, t*R*R)
        own = (src[k].unsqueeze(1) == qidx.unsqueeze(2))  # the pixel itself among the candidates
        s_own = torch.where(own, s, torch.full_like(s, -torch.inf)).amax(-1)
        best, arg = s.max(-1)
        j = src[k].gather(1, arg)  # (hw, f*f)
        keep_own = s_own >= best
        sims.append(torch.where(keep_own, s_own, best))
        best_j.append(torch.where(keep_own, qidx, j))
    sim = torch.stack(sims)
    jj = torch.stack(best_j)
    out_s = torch.empty((K, H * W), dtype=sim.dtype)
    out_j = torch.empty((K, H * W), dtype=torch.long)
    flat = qidx[qvalid]
    out_s[:, flat] = sim[:, qvalid]
    out_j[:, flat] = jj[:, qvalid]
    return out_s.view(K, H, W), out_j.view(K, H, W)


SEED_WINDOW = 5  # the whole-image search also keeps the exact best of this neighbourhood


def match_all(q: torch.Tensor, E: torch.Tensor, windows: list[int], **whole_options) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Every window for every exemplar: small windows exactly by blocks, WHOLE coarse-to-fine.

    The whole-image answer is the better of coarse-to-fine and the exact 5 x 5 neighbourhood, so
    it is never worse than any window up to 5 (as the exact whole-image match is never worse).
    """
    small = sorted({w for w in windows if w != WHOLE} | ({SEED_WINDOW} if WHOLE in windows else set()))
    local = match_local_blocks(q, E, small) if small else {}
    out = {w: local[w] for w in windows if w != WHOLE}
    if WHOLE in windows:
        sim, j = match_whole_coarse_to_fine(q, E, **whole_options)
        seed_sim, seed_j = local[SEED_WINDOW]
        better = seed_sim > sim
        out[WHOLE] = (torch.where(better, seed_sim, sim), torch.where(better, seed_j, j))
    return out
