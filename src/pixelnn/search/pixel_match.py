"""Exact pixel matching: for every query pixel, the most similar exemplar pixel inside a window.

Descriptors are unit norm, so similarity is a dot product. Vocabulary: q (D, H, W) the query's
pixel descriptors, e (D, H, W) one exemplar's; a match is (sim (H, W), j (H, W)) with j the flat
source index sy * W + sx. A window of size T covers offsets -(T // 2) .. (T - 1) // 2 around the
pixel, clipped at the image border; WHOLE means every pixel of the exemplar.

Two exact implementations, tested against each other:
- `match_local`: one pass over the window's offsets (local correlation), for small windows;
- `match_dense`: chunked matrix products with the argmax fused per chunk, so the P x P similarity
  matrix is never held whole; it also takes any window through a mask.
Ties go to the offset nearest the pixel itself (then the smaller index).
"""

from __future__ import annotations

import torch

WHOLE = 0  # window size meaning "the whole image"
LOCAL_MAX = 11  # windows up to this size use match_local


def offsets(window: int) -> list[tuple[int, int]]:
    """(dy, dx) offsets of a window, nearest first, so that ties keep the nearest pixel."""
    lo, hi = -(window // 2), (window - 1) // 2
    offs = [(dy, dx) for dy in range(lo, hi + 1) for dx in range(lo, hi + 1)]
    return sorted(offs, key=lambda o: (o[0] ** 2 + o[1] ** 2, o))


def match_local(q: torch.Tensor, e: torch.Tensor, windows: list[int]) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Best match per pixel for several small windows at once (they share the offset pass)."""
    D, H, W = q.shape
    biggest = max(windows)
    r = biggest // 2 + 1
    ep = torch.nn.functional.pad(e, (r, r, r, r))  # zero padding: out-of-image offsets masked below
    dev = q.device
    ys = torch.arange(H, device=dev).view(H, 1).expand(H, W)
    xs = torch.arange(W, device=dev).view(1, W).expand(H, W)
    best = {
        w: (torch.full((H, W), -torch.inf, device=dev), torch.zeros((H, W), dtype=torch.long, device=dev))
        for w in windows
    }
    for dy, dx in offsets(biggest):
        shifted = ep[:, r + dy : r + dy + H, r + dx : r + dx + W]
        sim = (q * shifted).sum(0)  # (H, W)
        sy, sx = ys + dy, xs + dx
        valid = (sy >= 0) & (sy < H) & (sx >= 0) & (sx < W)
        sim = torch.where(valid, sim, torch.full_like(sim, -torch.inf))
        j = sy.clamp(0, H - 1) * W + sx.clamp(0, W - 1)
        for w in windows:
            lo, hi = -(w // 2), (w - 1) // 2
            if lo <= dy <= hi and lo <= dx <= hi:
                bsim, bj = best[w]
                better = sim > bsim
                best[w] = (torch.where(better, sim, bsim), torch.where(better, j, bj))
    return best


def _window_mask(rows: torch.Tensor, H: int, W: int, window: int) -> torch.Tensor:
    """(c, P) bool: for query pixels `rows`, which exemplar pixels lie inside their window."""
    lo, hi = -(window // 2), (window - 1) // 2
    qy, qx = (rows // W).view(-1, 1), (rows % W).view(-1, 1)
    p = torch.arange(H * W, device=rows.device)
    dy, dx = (p // W).view(1, -1) - qy, (p % W).view(1, -1) - qx
    return (dy >= lo) & (dy <= hi) & (dx >= lo) & (dx <= hi)


def match_dense(
    q: torch.Tensor, e: torch.Tensor, window: int = WHOLE, chunk: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """Best match per pixel by chunked matrix products; exact for any window."""
    D, H, W = q.shape
    P = H * W
    qf, ef = q.reshape(D, P), e.reshape(D, P)
    sims, idx = torch.empty(P, device=q.device), torch.empty(P, dtype=torch.long, device=q.device)
    p = torch.arange(P, device=q.device)
    for start in range(0, P, chunk):
        rows = p[start : start + chunk]
        s = qf[:, rows].T @ ef  # (c, P)
        if window != WHOLE:
            s.masked_fill_(~_window_mask(rows, H, W, window), -torch.inf)
        # ties: prefer the pixel itself, as match_local does
        self_sim = s[torch.arange(len(rows), device=q.device), rows]
        m, j = s.max(dim=1)
        keep_self = self_sim >= m
        sims[rows] = torch.where(keep_self, self_sim, m)
        idx[rows] = torch.where(keep_self, rows, j)
    return sims.view(H, W), idx.view(H, W)


def match(q: torch.Tensor, e: torch.Tensor, windows: list[int]) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Best match for each window: small windows share one local pass, others use match_dense."""
    if q.shape != e.shape or q.ndim != 3:
        raise ValueError(
            f"query and exemplar descriptors must both be (D, H, W); got {tuple(q.shape)} and {tuple(e.shape)}"
        )
    small = [w for w in windows if w != WHOLE and w <= LOCAL_MAX]
    out = match_local(q, e, small) if small else {}
    for w in windows:
        if w not in out:
            out[w] = match_dense(q, e, w)
    return out
