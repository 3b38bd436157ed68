"""Every method's candidates for one input of an evaluation (what OUT/cache/cand-NNNNN.npz holds).

'global' (Eq. 2: the 10 nearest exemplars copied whole) is taken out of the same synthesize call
as 'pixelnn': its candidates are the 1:r:1 candidates of the paper72 grid.
"""

from __future__ import annotations

import numpy as np

from ..baselines.pix2pix.sample import sample
from ..pixels import to_uint8
from ..synth import grid as grids
from ..synth import rank as ranking
from ..synth.coherence import DEFAULT_COPY
from . import metrics as M
from .methods import N_CORR, N_SAMPLES


def global_indices(specs: list[grids.Spec], k: int = 10) -> list[int]:
    """Positions in `specs` of the global-match candidates 1:r:1, r = 1..k, in rank order (those present)."""
    where = {s: i for i, s in enumerate(specs)}
    return [where[s] for s in grids.global_matches(k) if s in where]


def candidates(
    model,
    x: np.ndarray,
    i: int,
    generator=None,
    seed: int = 0,
    n_samples: int = N_SAMPLES,
    y: np.ndarray | None = None,
    copy: str = DEFAULT_COPY,
) -> dict:
    """Every method's candidates for input i: {method: (n, S, S, 3) uint8}, best ranked first for
    PixelNN, with 'score__METHOD' (n,) the rank score from the input alone (synth/rank.py, the same
    function for every method; pix2pix has no correspondences, so its agreement with x and f(x) alone), 'seam__pixelnn'
    and 'seam__global' (n,) the seams against the photo y (metrics.seam_step), 'specs', and for the
    first inputs the correspondences of two PixelNN candidates ('corr_rand1_*', 'corr_composite_*'):
    the Rand-1 one and the one drawn from the most exemplars (the first such in rank order)."""
    result = model.synthesize(x, copy=copy)  # the paper72 grid, best first; its 1:r:1 candidates are the global method
    specs = [c.spec for c in result.candidates]
    images = to_uint8(np.stack([c.image for c in result.candidates]))  # (n, S, S, 3)
    glob = global_indices(specs)
    scores = np.array([c.score.total for c in result.candidates])
    out = {
        "stage1": to_uint8(result.stage1)[None],
        "global": images[glob],
        "pixelnn": images,
        "specs": np.array([str(s) for s in specs]),
        "score__stage1": np.zeros(1),
        "score__global": scores[glob],
        "score__pixelnn": scores,
    }
    if y is not None:
        photo = y.astype(np.float64) / 255.0
        seams = np.array(
            [M.seam_step(c.image, photo, c.corr.exemplar, c.corr.sy, c.corr.sx) for c in result.candidates]
        )
        out.update({"seam__pixelnn": seams, "seam__global": seams[glob]})
    if generator is not None:
        out["pix2pix"] = to_uint8(sample(generator, x, n_samples, seed=_torch_seed(seed, i)))
        out["score__pix2pix"] = ranking.combine(ranking.input_parts(out["pix2pix"], x, result.stage1))
    if i < N_CORR:
        sources = [len(c.corr.shares()) for c in result.candidates]
        picks = {"rand1": M.rand1_index(seed, "pixelnn", i, len(specs)), "composite": int(np.argmax(sources))}
        for kind, k in picks.items():
            corr = result.candidates[k].corr
            out.update(
                {
                    f"corr_{kind}_index": np.array(k),
                    f"corr_{kind}_exemplar": corr.exemplar,
                    f"corr_{kind}_sy": corr.sy,
                    f"corr_{kind}_sx": corr.sx,
                    f"corr_{kind}_sim": corr.sim,
                }
            )
    return out


def _torch_seed(seed: int, i: int) -> int:
    return (seed * 1_000_003 + i) % (2**63)
