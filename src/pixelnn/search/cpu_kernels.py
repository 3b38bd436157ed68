"""The fast search's two matchers as compiled loops, for the CPU (search/fast_match.py calls them there).

Same answers as the tensor versions in fast_match (which serve other devices): the same candidate
source pixels, visited in the same order, the first best kept. They skip what the tensor versions
spend most of their time on: copying overlapping regions, the products for offsets outside a
pixel's window, and the masking and gathers that pick the window's best out of them. Each call
handles one exemplar and releases the GIL, so the exemplars of a query run on parallel threads.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True, fastmath=True)
def dot(q, e):
    """The dot product of two float32 vectors (the compiled loops' similarity; synth/coherence.py uses it too)."""
    acc = np.float32(0.0)
    for i in range(q.shape[0]):
        acc += q[i] * e[i]
    return acc


@numba.njit(cache=True, nogil=True)
def local_best(q, e, lo, hi, order, starts, tie, out_sim, out_j):
    """Best source of every query pixel within each small window, for one exemplar.

    q, e (H, W, d) float32 unit descriptors. Offsets span [lo, hi] in both axes; window w's offsets,
    nearest first, are `order[starts[w]:starts[w + 1]]`, as flat indices (dy - lo) * span + dx - lo.
    Out of the image offsets are skipped. tie: the first offset within `tie` of the best wins.
    Writes out_sim (n_windows, H, W) float32 and out_j (n_windows, H, W) int64 (j = sy * W + sx).
    """
    H, W, _ = q.shape
    span = hi - lo + 1
    s = np.empty(span * span, np.float32)
    inside = np.empty(span * span, np.bool_)
    for y in range(H):
        for x in range(W):
            for a in range(span):
                sy = y + lo + a
                for b in range(span):
                    sx = x + lo + b
                    k = a * span + b
                    inside[k] = 0 <= sy < H and 0 <= sx < W
                    if inside[k]:
                        s[k] = dot(q[y, x], e[sy, sx])
            for w in range(len(starts) - 1):
                best, arg = -np.inf, -1
                for i in range(starts[w], starts[w + 1]):
                    k = order[i]
                    if inside[k] and s[k] > best:
                        best, arg = s[k], k
                if tie > 0:
                    for i in range(starts[w], starts[w + 1]):
                        k = order[i]
                        if inside[k] and s[k] >= best - tie:
                            arg = k
                            break
                out_sim[w, y, x] = s[arg]
                out_j[w, y, x] = (y + lo + arg // span) * W + x + lo + arg % span


@numba.njit(cache=True, nogil=True)
def whole_fine(q, e, cells, factor, halo, out_sim, out_j):
    """The fine step of the coarse-to-fine whole-image search, for one exemplar.

    cells (h*w, t): per query cell (row-major cells of side `factor`), its best coarse source cells,
    best first. Every query pixel of a cell is compared with the pixels of those cells grown by
    `halo`, cell by cell, each region row by row, out of the image skipped; the first best wins.
    Writes out_sim (H, W) float32 and out_j (H, W) int64.
    """
    H, W, _ = q.shape
    w_cells = (W + factor - 1) // factor
    R = factor + 2 * halo
    for ci in range(cells.shape[0]):
        cy, cx = ci // w_cells * factor, ci % w_cells * factor
        for py in range(cy, min(cy + factor, H)):
            for px in range(cx, min(cx + factor, W)):
                best, best_j = -np.inf, 0
                for t in range(cells.shape[1]):
                    c = cells[ci, t]
                    ry, rx = c // w_cells * factor - halo, c % w_cells * factor - halo
                    for sy in range(max(ry, 0), min(ry + R, H)):
                        for sx in range(max(rx, 0), min(rx + R, W)):
                            v = dot(q[py, px], e[sy, sx])
                            if v > best:
                                best, best_j = v, sy * W + sx
                out_sim[py, px] = best
                out_j[py, px] = best_j
