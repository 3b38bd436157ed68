"""Evaluation metrics as pure functions on arrays (numpy unless said otherwise).

Images are float arrays in [0, 1], (H, W, 3) or stacked (N, H, W, 3). Every function documents its
shapes. Which direction is better is given by BETTER (used by the Rand-1 / Oracle selection).

Definitions (the report repeats them):
- psnr (pixels.psnr, shared with training): 10 log10(1 / MSE) over all pixels and channels, MSE floored
  at 1e-10 (identical images: 100 dB).
- ssim: skimage.metrics.structural_similarity(channel_axis=-1, data_range=1), its defaults otherwise
  (7x7 uniform window).
- edge AP: HED edge probabilities of the output are the scores, HED edges of the real photo
  thresholded at 0.5 (no non-maximum suppression) the labels, every pixel one sample; AP is the area
  under the step precision-recall curve, sum_k (R_k - R_{k-1}) P_k over the distinct score thresholds
  (tied scores form one threshold). Without ties this is the mean of the precision at each true
  positive. NaN when the real photo has no edge pixel.
- consistency (lowres inputs): PSNR of the output downsampled by the factor (PIL bicubic, as
  data.signals.lowres, after rounding to uint8) against the input.
- diversity L1: mean over pairs of an input's candidates of their mean absolute pixel difference.
- residual spread (of a bank): mean over random pairs of exemplars of mean |r_a - r_b|, r = y - f(x):
  what two candidates copying whole residuals of unrelated exemplars would differ by (before clipping).
- diversity deep: mean over pairs of the mean over pixels of 1 - cosine between the two candidates'
  VGG-16 hypercolumn descriptors (features.hypercolumn.pixel_descriptors of the HED VGG-16 taps).
- spectrum (pixelnn.spectra, shared with synthesis): grayscale (ITU-R 601 luma), minus its mean,
  |FFT|^2 / (H W), averaged over rings of integer radius r = 1 .. min(H, W) // 2 (cycles per image),
  then log10. Spectra of several images are averaged in the log domain. Spectrum distance: mean over
  radii of |log10 P_a(r) - log10 P_b(r)|.
- Fréchet distance: |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)) of two feature sets
  (scipy.linalg.sqrtm), on EfficientNet-Lite0 pooled features. Not comparable with published FID.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..spectra import grayscale, log_spectra, spectrum_distance  # noqa: F401  (metrics of this module)

EDGE_THRESHOLD = 0.5
GRAM_CHUNK = 1 << 16  # values per float32 partial sum in layer_similarity

# per-candidate metrics and which direction is better
BETTER = {
    "psnr": "higher",
    "ssim": "higher",
    "edge_ap": "higher",
    "consistency_psnr": "higher",
    "spectrum_dist": "lower",
    "seam": "lower",
    "normal_mean": "lower",
    "normal_median": "lower",
    "normal_rmse": "lower",
    "normal_11": "higher",
    "normal_22": "higher",
    "normal_30": "higher",
    "face_found": "higher",
}


# ---------------------------------------------------------------- fidelity


def ssim(images: np.ndarray, target: np.ndarray) -> np.ndarray:
    """SSIM of images (N, H, W, 3) against target (H, W, 3), data range 1: (N,)."""
    from skimage.metrics import structural_similarity

    target = np.asarray(target, np.float64)
    return np.array(
        [structural_similarity(np.asarray(im, np.float64), target, channel_axis=-1, data_range=1.0) for im in images],
        np.float64,
    )


def consistency_psnr(images: np.ndarray, x: np.ndarray, factor: int) -> np.ndarray:
    """Input consistency of outputs (N, S, S, 3) float with a low-resolution input x (S/f, S/f, 3) uint8: (N,).

    The outputs are rounded to uint8 and downsampled exactly as the inputs were made (data.signals.lowres).
    """
    from ..synth.rank import lowres_agreement  # the ranking's consistency part: one implementation

    images = np.asarray(images)
    if images.shape[1] // np.asarray(x).shape[0] != factor:
        raise ValueError(f"outputs {images.shape[1:3]} are not {factor}x the input {np.asarray(x).shape[:2]}")
    return lowres_agreement(images, x)


# ---------------------------------------------------------------- edges


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """AP of scores (P,) for binary labels (P,): sum over distinct thresholds of (R_k - R_{k-1}) P_k.

    Scores are sorted descending; tied scores are one threshold (so the result does not depend on
    the order of ties). NaN when there is no positive label.
    """
    scores = np.asarray(scores, np.float64).ravel()
    labels = np.asarray(labels).ravel().astype(bool)
    n_pos = int(labels.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    tp = np.cumsum(y)  # (P,) true positives among the first k+1
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last index of each run of tied scores
    tp = tp[last].astype(np.float64)
    precision = tp / (last + 1)
    recall = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def average_precision_rows(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """average_precision of every row of scores (N, P) against the same labels (P,): (N,), all rows at once.

    The same sum regrouped: a run of tied scores holding t positives adds t / n_pos times its
    precision, so AP is the mean over positives of the precision at the end of the positive's run.
    """
    scores = np.asarray(scores, np.float64).reshape(len(scores), -1)
    labels = np.asarray(labels).ravel().astype(bool)
    n_pos = int(labels.sum())
    if n_pos == 0:
        return np.full(len(scores), np.nan)
    order = np.argsort(-scores, axis=1)  # not stable: the order within a run of ties does not matter
    s, y = np.take_along_axis(scores, order, 1), labels[order]  # (N, P) each, descending scores
    P = s.shape[1]
    run_end = np.where(np.diff(s, axis=1, append=np.inf) != 0, np.arange(P), P - 1)  # own index at a run's end
    run_end = np.minimum.accumulate(run_end[:, ::-1], axis=1)[:, ::-1]  # (N, P) last index of each one's run
    precision = np.take_along_axis(np.cumsum(y, axis=1), run_end, 1) / (run_end + 1.0)
    return (precision * y).sum(1) / n_pos


def edge_ap(edges: np.ndarray, real_edges: np.ndarray, threshold: float = EDGE_THRESHOLD) -> np.ndarray:
    """Edge AP of edge probabilities (N, H, W) of outputs against the real photo's (H, W): (N,)."""
    labels = np.asarray(real_edges) >= threshold  # (H, W) bool
    return average_precision_rows(np.asarray(edges), labels)


# ---------------------------------------------------------------- diversity


def pairwise_l1(images: np.ndarray) -> float:
    """Mean over pairs i < j of mean |images[i] - images[j]|, images (N, H, W, C); 0.0 when N < 2."""
    flat = np.asarray(images, np.float32).reshape(len(images), -1)  # (N, P)
    n = len(flat)
    if n < 2:
        return 0.0
    total = 0.0
    for i in range(n - 1):
        total += float(np.abs(flat[i + 1 :] - flat[i]).mean(1).sum())
    return total / (n * (n - 1) / 2)


def residual_spread(y: np.ndarray, f: np.ndarray, pairs: int, seed: int = 0) -> float:
    """Mean over `pairs` random pairs a != b of exemplars of mean |r_a - r_b|, r = y - f(x) with y, f
    (N, H, W, 3) in [0, 1]: the diversity L1 of two candidates that copy the whole residuals of two
    random exemplars onto one f(x), before clipping. 0.0 when N < 2."""
    n = len(y)
    if n < 2:
        return 0.0
    rng = np.random.default_rng(seed)
    a = rng.integers(0, n, pairs)
    b = (a + rng.integers(1, n, pairs)) % n  # never a itself
    r = (np.asarray(y, np.float32) - np.asarray(f, np.float32)).reshape(n, -1)
    return float(np.mean([np.abs(r[i] - r[j]).mean() for i, j in zip(a, b)]))


def hypercolumn_similarity(taps: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """Mean over pixels of the cosine between every two images' hypercolumn descriptors: (M, M) float64.

    taps: [(M, C_l, H_l, W_l)] from fine to coarse. Equal to describing the images with
    features.hypercolumn.pixel_descriptors (D, H, W), then averaging a . b over pixels, but done one
    layer at a time (layer_similarity) so the (M, D, H, W) descriptors are never held at once.
    """
    return sum(layer_similarity(t, size) for t in taps) / len(taps)


def layer_similarity(t: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Mean over pixels of the cosine between every two images' descriptors from one tap t (M, C, h, w)
    upsampled bilinearly to size and L2-normalised per pixel: (M, M) float64.

    The products are float32 sums over chunks of GRAM_CHUNK values, added up in float64 (one float32
    sum over all M C H W values would be off by up to ~1e-4). Coarse taps, whose (M h w)^2
    low-resolution dot products are fewer than the upsampled values, go through
    coarse_layer_similarity instead of being upsampled.
    """
    M, C, h, w = t.shape
    if (M * h * w) ** 2 <= M * C * size[0] * size[1]:
        return coarse_layer_similarity(t, size)
    if (h, w) != tuple(size):
        t = F.interpolate(t, size=size, mode="bilinear", align_corners=False)
    u = F.normalize(t, dim=1).reshape(M, -1)  # (M, C H W), unit norm per pixel
    gram = torch.zeros((M, M), dtype=torch.float64)
    for chunk in u.split(GRAM_CHUNK, dim=1):
        gram += (chunk @ chunk.T).double()
    return gram / (size[0] * size[1])


def bilinear_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in) float64 A with A @ v = F.interpolate(v, n_out, mode='linear', align_corners=False)."""
    eye = torch.eye(n_in, dtype=torch.float64)[None]  # channel k is the unit signal e_k
    return F.interpolate(eye, size=n_out, mode="linear", align_corners=False)[0].T


def coarse_layer_similarity(t: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """layer_similarity without upsampling t (M, C, h, w): (M, M) float64.

    Upsampling is u_a = A_h t_a A_w^T (bilinear_matrix), so the dot product of images a and b at pixel
    (i, j) is D_ab(i, j) = sum A_h[i,y] A_h[i,Y] A_w[j,x] A_w[j,X] <t_a(y, x), t_b(Y, X)> over y, Y, x, X,
    and the cosine is D_ab / (|u_a| |u_b|) with |u_a|^2 = D_aa (norms floored at 1e-12 as in F.normalize).
    """
    M, C, h, w = t.shape
    Ah, Aw = bilinear_matrix(h, size[0]), bilinear_matrix(w, size[1])
    flat = t.permute(0, 2, 3, 1).reshape(M * h * w, C)
    dots = (flat @ flat.T).double().reshape(M, h, w, M, h, w)  # <t_a(y, x), t_b(Y, X)>
    rows = torch.einsum("iy,iY,ayxbYX->aibxX", Ah, Ah, dots)  # (M, H, M, w, w)
    D = torch.einsum("jx,jX,aibxX->abij", Aw, Aw, rows)  # (M, M, H, W)
    norm = torch.diagonal(D).permute(2, 0, 1).sqrt().clamp_min(1e-12)  # (M, H, W)
    return (D / norm[:, None] / norm[None]).mean((2, 3))


def mean_pair_distance(similarity: torch.Tensor | np.ndarray) -> float:
    """Mean over pairs i < j of 1 - similarity[i, j] for an (M, M) matrix; 0.0 when M < 2."""
    s = np.asarray(similarity, np.float64)
    M = len(s)
    if M < 2:
        return 0.0
    iu = np.triu_indices(M, 1)
    return float(np.mean(1.0 - s[iu]))


# ---------------------------------------------------------------- distributions


def frechet_from_stats(mu_a: np.ndarray, cov_a: np.ndarray, mu_b: np.ndarray, cov_b: np.ndarray) -> float:
    """|mu_a - mu_b|^2 + tr(cov_a + cov_b - 2 sqrtm(cov_a cov_b)); mu (D,), cov (D, D)."""
    from scipy.linalg import sqrtm

    root = sqrtm(np.asarray(cov_a, np.float64) @ np.asarray(cov_b, np.float64))
    diff = np.asarray(mu_a, np.float64) - np.asarray(mu_b, np.float64)
    return float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.real(np.trace(root)))


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to feature sets a (N, D) and b (M, D) (N, M >= 2).

    Same value as frechet_from_stats with the sample covariances. When there are fewer samples than
    dimensions, the trace of sqrtm(S_a S_b) is computed with sqrtm of a small matrix: S_a S_b =
    A^T A B^T B / ((N-1)(M-1)) (A, B the centred features) has the same non-zero eigenvalues as
    A B^T B A^T / ((N-1)(M-1)), which is (N, N) (or B A^T A B^T, (M, M), when M < N).
    """
    import warnings

    from scipy.linalg import LinAlgWarning, sqrtm

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"the Fréchet distance needs at least 2 samples per set; got {len(a)} and {len(b)}")
    A, B = a - a.mean(0), b - b.mean(0)  # (N, D), (M, D)
    na, nb, D = len(a) - 1, len(b) - 1, a.shape[1]
    diff = a.mean(0) - b.mean(0)
    tr_a, tr_b = float((A * A).sum() / na), float((B * B).sum() / nb)
    if min(len(a), len(b)) >= D:
        root = np.real(np.trace(sqrtm((A.T @ A / na) @ (B.T @ B / nb))))  # (D, D)
    else:
        C = A @ B.T if len(a) <= len(b) else B @ A.T  # (N, M) or (M, N)
        small = C @ C.T / (na * nb)  # symmetric PSD, singular by construction (centred: rank <= N - 1)
        with warnings.catch_warnings():  # sqrtm warns on singular matrices; sqrt(0) = 0 is exact for PSD ones
            warnings.simplefilter("ignore", LinAlgWarning)
            root = np.real(np.trace(sqrtm((small + small.T) / 2)))
    return float(diff @ diff + tr_a + tr_b - 2.0 * root)


# ---------------------------------------------------------------- Rand-1 / Oracle


def rand1_index(seed: int, method: str, i: int, n: int) -> int:
    """The Rand-1 candidate of input i for a method: a fixed function of (seed, method, i), in 0..n-1."""
    import zlib

    rng = np.random.default_rng([seed, zlib.crc32(method.encode()), i])
    return int(rng.integers(n))


def chosen(values: list[np.ndarray], rand_idx: list[int], better: str) -> tuple[np.ndarray, np.ndarray]:
    """Per input the Rand-1 value and the Oracle value of one metric for one method (NaN where none).

    values: per input, the metric of each candidate (n_i,); rand_idx: per input the Rand-1 candidate;
    better: 'higher' or 'lower'. Oracle takes, per input, the best candidate for THIS metric.
    NaN entries (e.g. AP without real edges) are ignored.
    """
    if better not in ("higher", "lower"):
        raise ValueError(f"better must be 'higher' or 'lower', got {better!r}")
    rand, oracle = np.full(len(values), np.nan), np.full(len(values), np.nan)
    for i, (v, r) in enumerate(zip(values, rand_idx)):
        v = np.asarray(v, np.float64)
        finite = v[np.isfinite(v)]
        if len(finite):
            oracle[i] = finite.max() if better == "higher" else finite.min()
            rand[i] = v[r]
    return rand, oracle


def top1(values: list[np.ndarray], top_idx: list[int]) -> np.ndarray:
    """Per input the value of one metric at the candidate the ranking put first (NaN stays NaN)."""
    return np.array([np.asarray(v, np.float64)[t] for v, t in zip(values, top_idx)], np.float64)


def select(
    values: list[np.ndarray], rand_idx: list[int], better: str, top_idx: list[int] | None = None
) -> dict[str, float]:
    """Rand-1, Top-1 (with top_idx, the ranking's first candidate per input) and Oracle means of one
    metric for one method (see `chosen`); inputs with no finite value are skipped."""
    rand, oracle = chosen(values, rand_idx, better)
    out = {
        "rand1": _nanmean(rand),
        "oracle": _nanmean(oracle),
        "n": int(np.isfinite(oracle).sum()),
    }
    if top_idx is not None:
        out["top1"] = _nanmean(top1(values, top_idx))
    return out


def _nanmean(v: np.ndarray) -> float:
    return float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")


def seam_step(image: np.ndarray, photo: np.ndarray, exemplar: np.ndarray, sy: np.ndarray, sx: np.ndarray) -> float:
    """The seams of one composite against the photo: over all right and down neighbour pairs, the mean of
    max(0, |colour step in the output| - |colour step between the same pixels of the photo|) counted
    only where the two pixels were copied from different sources (another exemplar or another offset).
    L1 over RGB in [0, 1] units; 0 for a coherent copy and for steps the photo has too.

    image, photo (H, W, 3) float in [0, 1]; exemplar, sy, sx (H, W): the correspondence map."""
    from ..synth.rank import incoherent_pairs

    image, photo = np.asarray(image, np.float64), np.asarray(photo, np.float64)
    W = exemplar.shape[1]
    right, down = incoherent_pairs(exemplar, sy.astype(np.int64) * W + sx)
    total = 0.0
    for cut, a, b in ((right, np.s_[:, :-1], np.s_[:, 1:]), (down, np.s_[:-1, :], np.s_[1:, :])):
        step = np.abs(image[a] - image[b]).sum(-1) - np.abs(photo[a] - photo[b]).sum(-1)
        total += float((np.maximum(step, 0.0) * cut).sum())
    return total / (right.size + down.size)


def paired_interval(
    a: np.ndarray, b: np.ndarray, better: str, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> dict:
    """Mean per-input difference a - b, signed so that positive means a is better, with a percentile
    bootstrap interval over inputs (paired: an input's two values are resampled together).

    Inputs where either value is NaN are left out; fewer than two inputs give NaN bounds.
    """
    if better not in ("higher", "lower"):
        raise ValueError(f"better must be 'higher' or 'lower', got {better!r}")
    d = (np.asarray(a, np.float64) - np.asarray(b, np.float64)) * (1.0 if better == "higher" else -1.0)
    d = d[np.isfinite(d)]
    if len(d) < 2:
        return {
            "mean": float(d.mean()) if len(d) else float("nan"),
            "low": float("nan"),
            "high": float("nan"),
            "n": len(d),
        }
    means = d[np.random.default_rng(seed).integers(0, len(d), (n_boot, len(d)))].mean(axis=1)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return {"mean": float(d.mean()), "low": float(low), "high": float(high), "n": len(d)}
