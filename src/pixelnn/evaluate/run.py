"""The evaluation job: each method's candidates per input, their metrics, Rand-1 / Oracle, report, figures.

    OUT/cache/cand-00000.npz      the candidates of input 0 for every method (uint8), resumable
    OUT/cache/metrics-00000.npz   the per-candidate metrics of input 0, resumable
    OUT/figures/*.png             comparison grid, multiple outputs, frequency plot, correspondences
    OUT/report.json, report.md    the tables and the definitions of the metrics

Methods: 'stage1' (f(x), one output), 'global' (Eq. 2: the 10 nearest exemplars copied whole; these
are the candidates 1:r:1 of the paper72 grid, so they are taken out of the same synthesize call),
'pixelnn' (the 72 candidates of the paper72 grid) and 'pix2pix' (n_samples generator calls with
dropout active). Every file is written atomically; a cache file whose key (model, bank, pix2pix
weights, seed, sample count, input and photo) differs is recomputed.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..errors import ConfigError
from ..fileio import write_npz
from ..synth import grid as grids
from ..synth import rank as ranking
from ..synth.compose import Correspondence
from ..synth.coherence import DEFAULT_COPY
from . import metrics as M

METHODS = ("stage1", "global", "pixelnn", "pix2pix")
LABELS = {"stage1": "stage 1 f(x)", "global": "global NN (Eq. 2)", "pixelnn": "PixelNN", "pix2pix": "pix2pix"}
N_SAMPLES = 72
DEEP_SUBSET = 10  # candidates per input (fixed seed) whose pairs give the deep-feature diversity
N_CORR = 3  # inputs whose PixelNN correspondences (Rand-1 and the most composite candidate) are kept for figures
KEPT_CORR = ("rand1", "composite")  # the cache's corr_<kind>_* fields
CACHE_VERSION = 3  # 2: candidates ranked, with scores and seams; 3: ranking by consistency and match
METRICS_VERSION = 2  # 2: Top-1, seams, Fréchet of the Top-1 outputs, diversity of the top 10
TOP_N = 10  # the best-ranked candidates whose diversity is reported


@dataclass
class Evaluation:
    """What evaluate_to_folder computed (also written to report.json)."""

    report: dict
    out: Path
    figures: list[Path] = field(default_factory=list)


def global_indices(specs: list[grids.Spec], k: int = 10) -> list[int]:
    """Positions in `specs` of the global-match candidates 1:r:1, r = 1..k, in rank order (those present)."""
    where = {s: i for i, s in enumerate(specs)}
    return [where[s] for s in grids.global_matches(k) if s in where]


def weights_hash(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _sha(*arrays: np.ndarray) -> str:
    h = hashlib.sha1()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def _read_npz(path: Path, key: str) -> dict | None:
    """The arrays of a cache file if it exists, is readable and carries `key`; else None."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if "key" not in z.files or str(z["key"]) != key:
                return None
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError):
        return None


# ---------------------------------------------------------------- candidates


def candidates(model, x: np.ndarray, i: int, generator=None, seed: int = 0, n_samples: int = N_SAMPLES,
               y: np.ndarray | None = None, copy: str = DEFAULT_COPY) -> dict:
    """Every method's candidates for input i: {method: (n, S, S, 3) uint8}, best ranked first for
    PixelNN, with 'score__METHOD' (n,) the rank score from the input alone (synth/rank.py, the same
    function for every method; pix2pix has no correspondences, so consistency alone), 'seam__pixelnn'
    and 'seam__global' (n,) the seams against the photo y (metrics.seam_step), 'specs', and for the
    first inputs the correspondences of two PixelNN candidates ('corr_rand1_*', 'corr_composite_*'):
    the Rand-1 one and the one drawn from the most exemplars (the first such in rank order)."""
    result = model.synthesize(x, copy=copy)  # the paper72 grid, best first; its 1:r:1 candidates are the global method
    specs = [c.spec for c in result.candidates]
    images = M.to_uint8(np.stack([c.image for c in result.candidates]))  # (n, S, S, 3)
    glob = global_indices(specs)
    scores = np.array([c.score.total for c in result.candidates])
    out = {
        "stage1": M.to_uint8(result.stage1)[None],
        "global": images[glob],
        "pixelnn": images,
        "specs": np.array([str(s) for s in specs]),
        "score__stage1": np.zeros(1),
        "score__global": scores[glob],
        "score__pixelnn": scores,
    }
    if y is not None:
        photo = y.astype(np.float64) / 255.0
        seams = np.array([M.seam_step(c.image, photo, c.corr.exemplar, c.corr.sy, c.corr.sx) for c in result.candidates])
        out.update({"seam__pixelnn": seams, "seam__global": seams[glob]})
    if generator is not None:
        from .pix2pix import sample

        out["pix2pix"] = M.to_uint8(sample(generator, x, n_samples, seed=_torch_seed(seed, i)))
        out["score__pix2pix"] = ranking.combine({"consistency": ranking.consistency(out["pix2pix"], x)})
    if i < N_CORR:
        sources = [len(c.corr.shares()) for c in result.candidates]
        picks = {"rand1": M.rand1_index(seed, "pixelnn", i, len(specs)), "composite": int(np.argmax(sources))}
        for kind, k in picks.items():
            corr = result.candidates[k].corr
            out.update({f"corr_{kind}_index": np.array(k), f"corr_{kind}_exemplar": corr.exemplar, f"corr_{kind}_sy": corr.sy,
                        f"corr_{kind}_sx": corr.sx, f"corr_{kind}_sim": corr.sim})
    return out


def _torch_seed(seed: int, i: int) -> int:
    return (seed * 1_000_003 + i) % (2**63)


# ---------------------------------------------------------------- metrics of one input


def _tensor(images_uint8: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images_uint8)).permute(0, 3, 1, 2).float() / 255.0


@torch.no_grad()
def edges_and_taps(vgg, images_uint8: np.ndarray, keep: np.ndarray, batch: int = 16) -> tuple[np.ndarray, list[torch.Tensor]]:
    """One pass of the HED VGG-16 over images (n, S, S, 3) uint8: HED edge probabilities (n, S, S)
    (the same computation as VGG16HED.edges) and the five taps of the images `keep` (sorted indices)."""
    edges, kept = [], []
    for start in range(0, len(images_uint8), batch):
        x = _tensor(images_uint8[start : start + batch])
        taps = vgg(x)
        sides = [F.interpolate(d(t), size=x.shape[-2:], mode="bilinear", align_corners=False) for d, t in zip(vgg.dsn, taps)]
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


def input_metrics(cands: dict, x: np.ndarray, y: np.ndarray, i: int, signal: str, factor: int, seed: int = 0) -> dict:
    """Metrics of every method's candidates (uint8 (n, S, S, 3)) for input i with photo y (S, S, 3) uint8.

    Returns flat arrays named METHOD__NAME: per candidate psnr, ssim, edge_ap, spectrum_dist
    (consistency_psnr for lowres) (n,); div_l1, div_deep, rand1, n (scalars); spectrum_sum (R,), the
    sum of the candidates' log spectra; feat (1280,), EfficientNet-Lite0 features of the Rand-1
    candidate. Plus real__spectrum (R,) and real__feat (1280,).
    """
    from ..features.efficientnet import pooled_features

    real = y.astype(np.float64) / 255.0  # (S, S, 3)
    S = y.shape[0]
    methods = [m for m in METHODS if m in cands]
    subsets = {m: deep_subset(seed, i, len(cands[m])) for m in methods}
    real_edges, edges, taps = vgg_outputs(y, cands, subsets)
    real_spec = M.log_spectra(real[None])[0]  # (R,)
    out: dict[str, np.ndarray] = {"real__spectrum": real_spec}
    picks = [y]
    for m in methods:
        imgs = cands[m]  # (n, S, S, 3) uint8
        f = imgs.astype(np.float64) / 255.0
        n = len(imgs)
        out[f"{m}__psnr"] = M.psnr(f, real)
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


# ---------------------------------------------------------------- aggregation


def per_candidate_metrics(signal: str) -> list[str]:
    """Per-output metrics of an evaluation (seam: only methods that copy, see metrics.seam_step)."""
    names = ["psnr", "ssim", "edge_ap", "spectrum_dist", "seam"]
    return names[:2] + ["consistency_psnr"] + names[2:] if signal == "lowres" else names


def aggregate(per_input: list[dict], methods: list[str], signal: str) -> dict:
    """Rand-1 / Oracle means per method and metric, diversity, spectra, Fréchet distances."""
    table: dict[str, dict] = {}
    real_spec = np.mean([p["real__spectrum"] for p in per_input], axis=0)  # (R,)
    real_feat = np.stack([p["real__feat"] for p in per_input])  # (N, 1280)
    spectra = {"real": real_spec}
    for m in methods:
        rand = [int(p[f"{m}__rand1"]) for p in per_input]
        top = [int(p[f"{m}__top1"]) for p in per_input]
        row: dict = {"candidates": int(round(np.mean([int(p[f"{m}__n"]) for p in per_input]))), "rand1": {}, "top1": {}, "oracle": {}}
        for metric in per_candidate_metrics(signal):
            if f"{m}__{metric}" not in per_input[0]:
                continue
            sel = M.select([p[f"{m}__{metric}"] for p in per_input], rand, M.BETTER[metric], top)
            for k in ("rand1", "top1", "oracle"):
                row[k][metric] = sel[k]
        row["diversity_l1"] = float(np.mean([p[f"{m}__div_l1"] for p in per_input]))
        row["diversity_l1_top10"] = float(np.mean([p[f"{m}__div_l1_top"] for p in per_input]))
        row["diversity_deep"] = float(np.mean([p[f"{m}__div_deep"] for p in per_input]))
        mean_spec = np.sum([p[f"{m}__spectrum_sum"] for p in per_input], axis=0) / np.sum([p[f"{m}__n"] for p in per_input])
        spectra[m] = mean_spec
        row["spectrum_gap"] = float(M.spectrum_distance(mean_spec, real_spec))
        feats = np.stack([p[f"{m}__feat"] for p in per_input])
        row["frechet"] = M.frechet_distance(feats, real_feat) if len(per_input) >= 2 else float("nan")
        feats = np.stack([p[f"{m}__feat_top1"] for p in per_input])
        row["frechet_top1"] = M.frechet_distance(feats, real_feat) if len(per_input) >= 2 else float("nan")
        table[m] = row
    summary = {"methods": table, "spectra": {k: v.tolist() for k, v in spectra.items()}}
    if "pixelnn" in methods and "pix2pix" in methods:
        summary["versus"] = versus(per_input, signal)
    return summary


def versus(per_input: list[dict], signal: str, a: str = "pixelnn", b: str = "pix2pix") -> dict:
    """Method a against method b, per metric: the mean per-input difference signed so that positive
    means a is better, with its paired 95% bootstrap interval (Rand-1 and Oracle for per-output metrics)."""
    out: dict[str, dict] = {}
    for metric in per_candidate_metrics(signal):
        if any(f"{m}__{metric}" not in per_input[0] for m in (a, b)):
            continue
        better = M.BETTER[metric]
        picks = []
        for m in (a, b):
            values = [p[f"{m}__{metric}"] for p in per_input]
            rand, oracle = M.chosen(values, [int(p[f"{m}__rand1"]) for p in per_input], better)
            picks.append({"rand1": rand, "top1": M.top1(values, [int(p[f"{m}__top1"]) for p in per_input]), "oracle": oracle})
        out[metric] = {sel: M.paired_interval(picks[0][sel], picks[1][sel], better) for sel in ("rand1", "top1", "oracle")}
    for metric, key in (("diversity_l1", "div_l1"), ("diversity_deep", "div_deep")):
        va, vb = (np.array([p[f"{m}__{key}"] for p in per_input], np.float64) for m in (a, b))
        out[metric] = {"set": M.paired_interval(va, vb, "higher")}
    return out


# ---------------------------------------------------------------- the job


def _key(*parts) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def evaluate_to_folder(
    model,
    x: np.ndarray,
    y: np.ndarray,
    names: list[str],
    out: Path,
    generator=None,
    seed: int = 0,
    n_samples: int = N_SAMPLES,
    meta: dict | None = None,
    progress: bool = True,
    copy: str = DEFAULT_COPY,
) -> Evaluation:
    """Evaluate a PixelNN model (and a pix2pix generator) on inputs x (N, h, w, c) with photos y (N, S, S, 3).

    Resumes from OUT/cache; writes OUT/report.json, OUT/report.md and OUT/figures/*.png.
    """
    from . import figures, report

    out = Path(out)
    if len(x) == 0:
        raise ConfigError("no validation inputs to evaluate")
    if len(x) != len(y) or len(names) != len(x):
        raise ConfigError("inputs, photos and names differ in number")
    signal = model.config["signal"]
    factor = int(model.config.get("factor", 8))
    S = model.model.cfg.size
    if y.shape[1:] != (S, S, 3):
        raise ConfigError(f"the photos are {y.shape[1:]}, this model makes {(S, S, 3)}")
    if generator is not None:
        gcfg = generator.cfg
        if (gcfg.input_size, gcfg.input_size, gcfg.in_channels) != model.input_shape or gcfg.size != S:
            raise ConfigError(
                f"the pix2pix model takes {gcfg.input_size}x{gcfg.input_size}x{gcfg.in_channels} inputs to {gcfg.size}x{gcfg.size} "
                f"outputs; the PixelNN model {model.input_shape} to {S}x{S}: train both on the same data"
            )
    methods = [m for m in METHODS if m != "pix2pix" or generator is not None]
    run_key = [
        CACHE_VERSION,
        model.bank.manifest.get("model_fingerprint"),
        model.bank.manifest.get("count"),
        weights_hash(generator) if generator is not None else None,
        seed,
        n_samples,
        copy,
    ]
    cache = out / "cache"
    per_input = []
    kept: list[dict] = []  # the candidates of the first inputs, for figures
    bar = tqdm(range(len(x)), desc="evaluating", unit="input", disable=not progress)
    for i in bar:
        ckey = _key(run_key, _sha(x[i], y[i]))
        cand_path = cache / f"cand-{i:05d}.npz"
        cands = _read_npz(cand_path, ckey)
        if cands is None or (i < N_CORR and any(corr_of(cands, kind) is None for kind in KEPT_CORR)):
            bar.set_postfix_str("synthesizing")
            cands = candidates(model, x[i], i, generator, seed, n_samples, y[i], copy)
            write_npz(cand_path, key=np.array(ckey), **cands)
        mkey = _key(ckey, METRICS_VERSION)
        met_path = cache / f"metrics-{i:05d}.npz"
        met = _read_npz(met_path, mkey)
        if met is None:
            bar.set_postfix_str("metrics")
            met = input_metrics(cands, x[i], y[i], i, signal, factor, seed)
            write_npz(met_path, key=np.array(mkey), **met)
        per_input.append(met)
        if i < figures.N_SHOWN:
            kept.append(cands)
    bar.close()
    summary = aggregate(per_input, methods, signal)
    fig_paths = figures.write_all(out / "figures", model, kept, x, y, per_input, summary, methods, seed)
    rep = report.build(summary, methods, signal, factor, len(x), seed, n_samples, meta or {}, fig_paths, out)
    report.write(out, rep)
    return Evaluation(rep, out, fig_paths)


def corr_of(cands: dict, kind: str) -> tuple[int, Correspondence] | None:
    """(candidate index, correspondence) of a PixelNN candidate kept in a candidate cache (kind: one of
    KEPT_CORR), if any."""
    f = f"corr_{kind}_"
    if f + "exemplar" not in cands:
        return None
    corr = Correspondence(cands[f + "exemplar"], cands[f + "sy"], cands[f + "sx"], cands[f + "sim"])
    return int(cands[f + "index"]), corr
