"""What an evaluation compares and measures: the methods, their labels, the per-output metrics and
the fixed counts. A leaf module: the job, the tables and the figures all read it, it reads none of them."""

from __future__ import annotations

METHODS = ("stage1", "global", "pixelnn", "pix2pix")
LABELS = {"stage1": "stage 1 f(x)", "global": "global NN (Eq. 2)", "pixelnn": "PixelNN", "pix2pix": "pix2pix"}
N_SAMPLES = 72
DEEP_SUBSET = 10  # candidates per input (fixed seed) whose pairs give the deep-feature diversity
N_CORR = 3  # inputs whose PixelNN correspondences (Rand-1 and the most composite candidate) are kept for figures
KEPT_CORR = ("rand1", "composite")  # the cache's corr_<kind>_* fields
TOP_N = 10  # the best-ranked candidates whose diversity is reported
SPREAD_EXEMPLARS, SPREAD_PAIRS = 500, 3000  # bank exemplars (fixed seed) and their random pairs for the residual spread


# per-output metrics of face evaluations (--face-normals): the angular error between the normals estimated
# on the output and on the photo (data/face_normals.py), the paper's six statistics, and whether a face is found
FACE_METRICS = ("normal_mean", "normal_median", "normal_rmse", "normal_11", "normal_22", "normal_30", "face_found")


def per_candidate_metrics(signal: str, faces: bool = False) -> list[str]:
    """Per-output metrics of an evaluation (seam: only methods that copy, see metrics.seam_step; the face
    metrics with faces)."""
    names = ["psnr", "ssim", "edge_ap", "spectrum_dist", "seam"]
    names = names[:2] + ["consistency_psnr"] + names[2:] if signal == "lowres" else names
    return names + list(FACE_METRICS) if faces else names
