"""The metrics of one input's candidates (what OUT/cache/metrics-NNNNN.npz holds): per candidate
PSNR, SSIM, edge AP, spectrum distance, seams; per method diversity, spectra and features."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..pixels import psnr
from . import metrics as M
from .methods import DEEP_SUBSET, METHODS, TOP_N


def _tensor(images_uint8: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images_uint8)).permute(0, 3, 1, 2).float() / 255.0


@torch.no_grad()
def edges_and_taps(
    vgg, images_uint8: np.ndarray, keep: np.ndarray, batch: int = 16
) -> tuple[np.ndarray, list[torch.Tensor]]:
    """One pass of the HED VGG-16 over images (n, S, S, 3) uint8: HED edge probabilities (n, S, S)
    (the same computation as VGG16HED.edges) and the five taps of the images `keep` (sorted indices)."""
    edges, kept = [], []
    for start in range(0, len(images_uint8), batch):
        x = _tensor(images_uint8[start : start + batch])
        taps = vgg(x)
        sides = [
            F.interpolate(d(t), size=x.shape[-2:], mode="bilinear", align_corners=False) for d, t in zip(vgg.dsn, taps)
        ]
        edges.append(torch.sigmoid(vgg.fuse(torch.cat(sides, dim=1)))[:, 0])
        sel = torch.from_numpy(keep[(keep >= start) & (keep < start + len(x))] - start)
        if len(sel):
            kept.append([t[sel] for t in taps])
    taps = [torch.cat(level) for level in zip(*kept)] if kept else []
    return torch.cat(edges).numpy(), taps


def distinct_images(groups: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """The distinct images among groups of images [(n_g, H, W, 3)]: (U, H, W, 3), in order of first
    appearance, and for each group the position of each of its images in them [(n_g,)]."""
    where: dict[bytes, int] = {}
    firsts: list[np.ndarray] = []
    index = []
    for group in groups:
        for im in group:
            if im.tobytes() not in where:
                where[im.tobytes()] = len(firsts)
                firsts.append(im)
        index.append(np.array([where[im.tobytes()] for im in group], np.int64))
    return np.stack(firsts), index


def vgg_outputs(y: np.ndarray, cands: dict, subsets: dict) -> tuple[np.ndarray, dict, dict]:
    """One pass of the HED VGG-16 over the photo y (S, S, 3) and every distinct candidate of the input
    (the global candidates are PixelNN ones): the photo's HED edges (S, S); per method, its candidates'
    edges (n, S, S) and the five taps of its candidates `subsets[method]` (sorted indices)."""
    from ..features.vgg_hed import pretrained

    methods = list(subsets)
    images, index = distinct_images([y[None]] + [cands[m] for m in methods])
    keep = np.unique(np.concatenate([index[k + 1][subsets[m]] for k, m in enumerate(methods)]))
    edges, taps = edges_and_taps(pretrained(), images, keep)
    method_edges, method_taps = {}, {}
    for k, m in enumerate(methods):
        method_edges[m] = edges[index[k + 1]]
        rows = torch.from_numpy(np.searchsorted(keep, index[k + 1][subsets[m]]))
        method_taps[m] = [t[rows] for t in taps]
    return edges[index[0][0]], method_edges, method_taps


def face_metrics(y: np.ndarray, cands: dict, methods: list[str]) -> dict[str, np.ndarray]:
    """The face metrics of every method's candidates against the photo y (S, S, 3) uint8: METHOD__NAME (n,)
    for NAME in methods.FACE_METRICS. Normals are estimated once per distinct image (data/face_normals.py);
    the angular statistics are NaN for an output without a face, and for every output when the photo has none."""
    from ..data import face_normals

    images, index = distinct_images([y[None]] + [cands[m] for m in methods])
    maps = face_normals.estimate(images)
    stats = face_normals.compare(maps, maps.normals[0], maps.mask[0])  # {name: (U,)}, per distinct image
    return {f"{m}__{name}": v[index[k + 1]] for k, m in enumerate(methods) for name, v in stats.items()}


def input_metrics(
    cands: dict, x: np.ndarray, y: np.ndarray, i: int, signal: str, factor: int, seed: int = 0, faces: bool = False
) -> dict:
    """Metrics of every method's candidates (uint8 (n, S, S, 3)) for input i with photo y (S, S, 3) uint8.

    Returns flat arrays named METHOD__NAME: per candidate psnr, ssim, edge_ap, spectrum_dist
    (consistency_psnr for lowres) (n,); div_l1, div_deep, rand1, n (scalars); spectrum_sum (R,), the
    sum of the candidates' log spectra; feat (1280,), EfficientNet-Lite0 features of the Rand-1
    candidate. Plus real__spectrum (R,) and real__feat (1280,). With faces, the face metrics (face_metrics)
    and face_found_top, the share of the TOP_N best-ranked candidates in which a face is found.
    """
    from ..features.efficientnet import pooled_features

    real = y.astype(np.float64) / 255.0  # (S, S, 3)
    S = y.shape[0]
    methods = [m for m in METHODS if m in cands]
    subsets = {m: deep_subset(seed, i, len(cands[m])) for m in methods}
    real_edges, edges, taps = vgg_outputs(y, cands, subsets)
    real_spec = M.log_spectra(real[None])[0]  # (R,)
    out: dict[str, np.ndarray] = {"real__spectrum": real_spec}
    if faces:
        out.update(face_metrics(y, cands, methods))
    picks = [y]
    for m in methods:
        imgs = cands[m]  # (n, S, S, 3) uint8
        f = imgs.astype(np.float64) / 255.0
        n = len(imgs)
        out[f"{m}__psnr"] = psnr(f, real)
        out[f"{m}__ssim"] = M.ssim(f, real)
        out[f"{m}__edge_ap"] = M.edge_ap(edges[m], real_edges)
        if signal == "lowres":
            out[f"{m}__consistency_psnr"] = M.consistency_psnr(f, x, factor)
        spectra = M.log_spectra(f)  # (n, R)
        out[f"{m}__spectrum_dist"] = M.spectrum_distance(spectra, real_spec)
        out[f"{m}__spectrum_sum"] = spectra.sum(0)
        out[f"{m}__n"] = np.array(n)
        score = np.asarray(cands[f"score__{m}"], np.float64)
        out[f"{m}__score"] = score
        if f"seam__{m}" in cands:
            out[f"{m}__seam"] = np.asarray(cands[f"seam__{m}"], np.float64)
        best = np.argsort(-score, kind="stable")  # best ranked first, ties in grid order
        out[f"{m}__top1"] = np.array(best[0])
        out[f"{m}__div_l1"] = np.array(M.pairwise_l1(f))
        out[f"{m}__div_l1_top"] = np.array(M.pairwise_l1(f[best[:TOP_N]]))
        if faces:
            out[f"{m}__face_found_top"] = np.array(out[f"{m}__face_found"][best[:TOP_N]].mean())
        if len(subsets[m]) >= 2:
            out[f"{m}__div_deep"] = np.array(M.mean_pair_distance(M.hypercolumn_similarity(taps[m], (S, S))))
        else:
            out[f"{m}__div_deep"] = np.array(0.0)
        r = M.rand1_index(seed, m, i, n)
        out[f"{m}__rand1"] = np.array(r)
        picks += [imgs[r], imgs[best[0]]]
    feats = pooled_features(_tensor(np.stack(picks))).numpy()  # (1 + 2 methods, 1280)
    out["real__feat"] = feats[0]
    for k, m in enumerate(methods):
        out[f"{m}__feat"], out[f"{m}__feat_top1"] = feats[2 * k + 1], feats[2 * k + 2]
    return out


def deep_subset(seed: int, i: int, n: int) -> np.ndarray:
    """The candidates of input i (sorted indices, at most DEEP_SUBSET of n) whose pairs give the deep diversity."""
    return np.sort(np.random.default_rng([seed, i, 7]).permutation(n)[:DEEP_SUBSET])
