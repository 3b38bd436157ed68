"""Fast pixel matching for many exemplars at once, on (reduced) descriptors in pixel-major layout.

Vocabulary as in pixel_match: q (H, W, d) query descriptors, E (K, H, W, d) the K exemplars'; a
match per window is (sim (K, H, W), j (K, H, W)) with j = sy * W + sx.

- `match_local_blocks` (exact): small windows by blocks. The query is cut into B x B blocks; each
  block is compared with the (B + 2r)^2 exemplar pixels around it in one batched matrix product
  (regions cut by one strided copy), and each window's best is read from the columns of its own
  offsets, nearest first. More flops than a per-offset loop, but dense products are what the CPU
  does fast.
- `match_whole_coarse_to_fine` (approximate): whole-image windows. Descriptors are average-pooled
  by `factor`, matched exhaustively at the coarse level (a (HW/f^2)^2 product), and each query
  pixel is then compared exactly with the pixels of its `top` best coarse cells, grown by `halo`
  (defaults 3 and 1: on CelebA 89% of matches equal the exhaustive search on the same descriptors,
  mean similarity loss 0.0015; docs/benchmarks.md).
- `match_all`: every window; the whole-image answer is also never worse than the exact 5 x 5 one.

On the CPU, the small windows and the fine step of the whole-image search run as compiled loops
(search/cpu_kernels.py), which skip the region copies and the products outside each window (7x and
3.5x faster for 11 exemplars at 96 x 96); the batched tensor code below serves other devices. Both
give the same answers (tests/test_search_fast_match.py).

Ties prefer the offset nearest the query pixel (its own position first), as pixel_match does; a
`tie` tolerance makes near-equal similarities ties too (for float16-rounded descriptors).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from ..threads import threaded
from . import cpu_kernels as kernels
from .pixel_match import WHOLE, offsets


def _bounds(window: int) -> tuple[int, int]:
    return -(window // 2), (window - 1) // 2


def _regions(t: torch.Tensor, size: int, stride: int, pad: int, rows: int, cols: int) -> torch.Tensor:
    """(N, H, W, d) -> (N, rows*cols, size*size, d): the size x size patch every `stride` pixels,
    starting at -pad, zero outside the image; one strided copy (pixel-major layout kept)."""
    N, H, W, d = t.shape
    need_h = (rows - 1) * stride + size
    need_w = (cols - 1) * stride + size
    x = F.pad(t, (0, 0, pad, max(need_w - W - pad, 0), pad, max(need_h - H - pad, 0)))  # (N, H', W', d)
    sN, sH, sW, sd = x.stride()
    view = x.as_strided((N, rows, cols, size, size, d), (sN, stride * sH, stride * sW, sH, sW, sd))
    return view.reshape(N, rows * cols, size * size, d)


@lru_cache(maxsize=32)
def _local_geometry(H: int, W: int, B: int, r: int, windows: tuple[int, ...], device: str = "cpu"):
    """Per window: region positions (B*B, n_w) each block pixel compares with (nearest offset
    first), the source row/column of every (block, position), and which lie inside the image."""
    R = B + 2 * r
    nby, nbx = -(-H // B), -(-W // B)
    py, px = torch.arange(B).repeat_interleave(B), torch.arange(B).repeat(B)  # (B*B,) pixel in block
    by = torch.arange(nby).repeat_interleave(nbx).view(-1, 1, 1)  # (nb, 1, 1)
    bx = torch.arange(nbx).repeat(nby).view(-1, 1, 1)
    out = {}
    for w in windows:
        offs = torch.tensor(offsets(w))  # (n_w, 2), nearest first
        pos = (py.view(-1, 1) + r + offs[:, 0]) * R + px.view(-1, 1) + r + offs[:, 1]  # (B*B, n_w)
        sy = by * B + py.view(1, -1, 1) + offs[:, 0]  # (nb, B*B, n_w)
        sx = bx * B + px.view(1, -1, 1) + offs[:, 1]
        valid = (sy >= 0) & (sy < H) & (sx >= 0) & (sx < W)
        out[w] = (pos, (sy.clamp(0, H - 1) * W + sx.clamp(0, W - 1)), valid)
    qy = by.view(-1, 1) * B + py.view(1, -1)  # (nb, B*B)
    qx = bx.view(-1, 1) * B + px.view(1, -1)
    out = {w: tuple(t.to(device) for t in v) for w, v in out.items()}
    return nby, nbx, out, qy.to(device), qx.to(device), ((qy < H) & (qx < W)).to(device)


def match_local_blocks(
    q: torch.Tensor, E: torch.Tensor, windows: list[int], block: int = 8, tie: float = 0.0
) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Exact best match within each small window, for all K exemplars; see module docstring.

    tie: similarities within `tie` of the best count as equal, and the nearest of them wins.
    """
    if q.device.type == "cpu":
        return _local_cpu(q, E, windows, tie)
    return _local_tensors(q, E, windows, block, tie)


def _local_tensors(
    q: torch.Tensor, E: torch.Tensor, windows: list[int], block: int = 8, tie: float = 0.0
) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """match_local_blocks by batched products (any device)."""
    H, W, d = q.shape
    K = E.shape[0]
    r = max(max(-_bounds(w)[0], _bounds(w)[1]) for w in windows)
    B = block
    nby, nbx, geo, qy, qx, qvalid = _local_geometry(H, W, B, r, tuple(sorted(set(windows))), str(q.device))
    qb = _regions(q[None], B, B, 0, nby, nbx)[0]  # (nb, B*B, d)
    eb = _regions(E, B + 2 * r, B, r, nby, nbx)  # (K, nb, R*R, d)
    sims = torch.matmul(qb, eb.transpose(-1, -2))  # (K, nb, B*B, R*R)
    out = {}
    for w in windows:
        pos, src, valid = geo[w]
        s = sims.gather(-1, pos.expand(K, sims.shape[1], -1, -1))  # (K, nb, B*B, n_w)
        s = s.masked_fill(~valid, -torch.inf)
        best, arg = s.max(dim=-1)  # first of equal maxima: the nearest offset
        if tie > 0:
            arg = (s >= best.unsqueeze(-1) - tie).int().argmax(dim=-1)  # the nearest near-maximum
            best = s.gather(-1, arg.unsqueeze(-1)).squeeze(-1)
        j = src.expand(K, -1, -1, -1).gather(-1, arg.unsqueeze(-1)).squeeze(-1)  # (K, nb, B*B)
        out[w] = (_unblock(best, qy, qx, qvalid, H, W), _unblock(j, qy, qx, qvalid, H, W))
    return out


def _local_cpu(q: torch.Tensor, E: torch.Tensor, windows: list[int], tie: float):
    """match_local_blocks by compiled loops (search/cpu_kernels.py), one thread per exemplar."""
    H, W, _ = q.shape
    lo, hi = min(_bounds(w)[0] for w in windows), max(_bounds(w)[1] for w in windows)
    span = hi - lo + 1
    order = [(dy - lo) * span + dx - lo for w in windows for dy, dx in offsets(w)]
    starts = np.cumsum([0] + [w * w for w in windows])
    qn, En = (t.float().contiguous().numpy() for t in (q, E))
    sims = np.empty((len(windows), len(En), H, W), np.float32)
    js = np.empty((len(windows), len(En), H, W), np.int64)
    order, starts = np.asarray(order, np.int64), np.asarray(starts, np.int64)

    def one(k: int) -> None:
        kernels.local_best(qn, En[k], lo, hi, order, starts, np.float32(tie), sims[:, k], js[:, k])

    threaded(one, list(range(len(En))))
    return {w: (torch.from_numpy(sims[i]), torch.from_numpy(js[i])) for i, w in enumerate(windows)}


def _unblock(v: torch.Tensor, qy, qx, qvalid, H: int, W: int) -> torch.Tensor:
    """(K, nb, B*B) values per block pixel -> (K, H, W)."""
    K = v.shape[0]
    out = torch.empty((K, H * W), dtype=v.dtype, device=v.device)
    out[:, (qy * W + qx)[qvalid]] = v[:, qvalid]
    return out.view(K, H, W)


def pool_descriptors(t: torch.Tensor, factor: int) -> torch.Tensor:
    """(N, H, W, d) -> (N, H/f, W/f, d): mean over f x f cells, renormalised to unit length."""
    x = F.avg_pool2d(t.permute(0, 3, 1, 2), factor, ceil_mode=True)
    return F.normalize(x, dim=1).permute(0, 2, 3, 1)


@lru_cache(maxsize=32)
def _cell_geometry(H: int, W: int, f: int, halo: int, device: str = "cpu"):
    """Coarse cells of side f: for each, its region (the cell grown by `halo`) as flat source
    indices and validity (hw, R*R), and the query pixels it holds (hw, f*f) with their validity."""
    h, w = -(-H // f), -(-W // f)
    R = f + 2 * halo
    cy = torch.arange(h).repeat_interleave(w).view(-1, 1) * f  # (hw, 1)
    cx = torch.arange(w).repeat(h).view(-1, 1) * f
    sy = cy - halo + torch.arange(R).repeat_interleave(R).view(1, -1)  # (hw, R*R)
    sx = cx - halo + torch.arange(R).repeat(R).view(1, -1)
    region_valid = (sy >= 0) & (sy < H) & (sx >= 0) & (sx < W)
    region_src = sy.clamp(0, H - 1) * W + sx.clamp(0, W - 1)
    qy = cy + torch.arange(f).repeat_interleave(f).view(1, -1)  # (hw, f*f)
    qx = cx + torch.arange(f).repeat(f).view(1, -1)
    tensors = (region_src, region_valid, qy, qx, (qy < H) & (qx < W))
    return (h, w, *(t.to(device) for t in tensors))


def match_whole_coarse_to_fine(
    q: torch.Tensor, E: torch.Tensor, factor: int = 4, top: int = 3, halo: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Approximate best match over the whole image for all K exemplars: (sim, j), each (K, H, W)."""
    H, W, d = q.shape
    K = E.shape[0]
    h, w = -(-H // factor), -(-W // factor)
    qc, ec = pool_descriptors(q[None], factor)[0], pool_descriptors(E, factor)  # (h, w, d), (K, h, w, d)
    coarse = torch.matmul(qc.reshape(1, h * w, d), ec.reshape(K, h * w, d).transpose(1, 2))  # (K, hw, hw)
    cells = coarse.topk(min(top, h * w), dim=-1).indices  # (K, hw, t) best coarse source cells
    if q.device.type == "cpu":
        return _whole_fine_cpu(q, E, cells, factor, halo)
    return _whole_fine_tensors(q, E, cells, factor, halo)


def _whole_fine_tensors(q: torch.Tensor, E: torch.Tensor, cells: torch.Tensor, factor: int, halo: int):
    """The fine step of match_whole_coarse_to_fine by batched products (any device)."""
    H, W, d = q.shape
    K = E.shape[0]
    h, w, region_src, region_valid, qy, qx, qvalid = _cell_geometry(H, W, factor, halo, str(q.device))
    R = factor + 2 * halo
    qb = _regions(q[None], factor, factor, 0, h, w)[0]  # (hw, f*f, d) query pixels per cell
    padded = F.pad(E, (0, 0, halo, w * factor + halo - W, halo, h * factor + halo - H))  # (K, H', W', d)
    sK, sH, sW, sd = padded.stride()
    view = padded.as_strided((K, h, w, R, R, d), (sK, factor * sH, factor * sW, sH, sW, sd))  # no copy
    sims, best_j = [], []
    for k in range(K):  # one exemplar at a time keeps the gathered regions small
        c = cells[k]  # (hw, t)
        cand = view[k][c // w, c % w].reshape(h * w, -1, d)  # (hw, t*R*R, d)
        s = torch.matmul(qb, cand.transpose(1, 2))  # (hw, f*f, t*R*R)
        s.masked_fill_(~region_valid[c].reshape(h * w, 1, -1), -torch.inf)
        best, arg = s.max(-1)  # (hw, f*f)
        sims.append(best)
        best_j.append(region_src[c].reshape(h * w, -1).gather(1, arg))
    return _unblock(torch.stack(sims), qy, qx, qvalid, H, W), _unblock(torch.stack(best_j), qy, qx, qvalid, H, W)


def _whole_fine_cpu(q: torch.Tensor, E: torch.Tensor, cells: torch.Tensor, factor: int, halo: int):
    """The fine step of match_whole_coarse_to_fine by compiled loops, one thread per exemplar."""
    H, W, _ = q.shape
    qn, En, cn = q.float().contiguous().numpy(), E.float().contiguous().numpy(), cells.contiguous().numpy()
    sims = np.empty((len(En), H, W), np.float32)
    js = np.empty((len(En), H, W), np.int64)

    def one(k: int) -> None:
        kernels.whole_fine(qn, En[k], cn[k], factor, halo, sims[k], js[k])

    threaded(one, list(range(len(En))))
    return torch.from_numpy(sims), torch.from_numpy(js)


SEED_WINDOW = 5  # the whole-image search also keeps the exact best of this neighbourhood


def match_all(
    q: torch.Tensor, E: torch.Tensor, windows: list[int], tie: float = 0.0, **whole_options
) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Every window for every exemplar: small windows exactly by blocks, WHOLE coarse-to-fine.

    The whole-image answer is the better of coarse-to-fine and the exact 5 x 5 neighbourhood, so
    it is never worse than any window up to 5 (as the exact whole-image match is never worse).
    tie: similarities within `tie` of the best count as equal, and the nearest pixel wins.
    """
    small = sorted({w for w in windows if w != WHOLE} | ({SEED_WINDOW} if WHOLE in windows else set()))
    local = match_local_blocks(q, E, small, tie=tie) if small else {}
    out = {w: local[w] for w in windows if w != WHOLE}
    if WHOLE in windows:
        sim, j = match_whole_coarse_to_fine(q, E, **whole_options)
        seed_sim, seed_j = local[SEED_WINDOW]
        better = seed_sim >= sim - tie  # ties: the nearer pixel, as every other search
        out[WHOLE] = (torch.where(better, seed_sim, sim), torch.where(better, seed_j, j))
    return out
