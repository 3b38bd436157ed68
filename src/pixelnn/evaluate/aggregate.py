"""An evaluation's tables from its inputs' metrics: Rand-1 / Top-1 / Oracle means, diversity,
spectra, Fréchet distances, and PixelNN against pix2pix with bootstrap intervals."""

from __future__ import annotations

import numpy as np

from . import metrics as M
from .methods import per_candidate_metrics


def aggregate(per_input: list[dict], methods: list[str], signal: str, faces: bool = False) -> dict:
    """Rand-1 / Oracle means per method and metric, diversity, spectra, Fréchet distances."""
    table: dict[str, dict] = {}
    real_spec = np.mean([p["real__spectrum"] for p in per_input], axis=0)  # (R,)
    real_feat = np.stack([p["real__feat"] for p in per_input])  # (N, 1280)
    spectra = {"real": real_spec}
    for m in methods:
        rand = [int(p[f"{m}__rand1"]) for p in per_input]
        top = [int(p[f"{m}__top1"]) for p in per_input]
        row: dict = {
            "candidates": int(round(np.mean([int(p[f"{m}__n"]) for p in per_input]))),
            "rand1": {},
            "top1": {},
            "oracle": {},
        }
        for metric in per_candidate_metrics(signal, faces):
            if f"{m}__{metric}" not in per_input[0]:
                continue
            sel = M.select([p[f"{m}__{metric}"] for p in per_input], rand, M.BETTER[metric], top)
            for k in ("rand1", "top1", "oracle"):
                row[k][metric] = sel[k]
        row["diversity_l1"] = float(np.mean([p[f"{m}__div_l1"] for p in per_input]))
        row["diversity_l1_top10"] = float(np.mean([p[f"{m}__div_l1_top"] for p in per_input]))
        row["diversity_deep"] = float(np.mean([p[f"{m}__div_deep"] for p in per_input]))
        if faces:
            row["face_found_top10"] = float(np.mean([p[f"{m}__face_found_top"] for p in per_input]))
        mean_spec = np.sum([p[f"{m}__spectrum_sum"] for p in per_input], axis=0) / np.sum(
            [p[f"{m}__n"] for p in per_input]
        )
        spectra[m] = mean_spec
        row["spectrum_gap"] = float(M.spectrum_distance(mean_spec, real_spec))
        feats = np.stack([p[f"{m}__feat"] for p in per_input])
        row["frechet"] = M.frechet_distance(feats, real_feat) if len(per_input) >= 2 else float("nan")
        feats = np.stack([p[f"{m}__feat_top1"] for p in per_input])
        row["frechet_top1"] = M.frechet_distance(feats, real_feat) if len(per_input) >= 2 else float("nan")
        table[m] = row
    summary = {"methods": table, "spectra": {k: v.tolist() for k, v in spectra.items()}}
    if "pixelnn" in methods and "pix2pix" in methods:
        summary["versus"] = versus(per_input, signal, faces=faces)
    return summary


def versus(per_input: list[dict], signal: str, a: str = "pixelnn", b: str = "pix2pix", faces: bool = False) -> dict:
    """Method a against method b, per metric: the mean per-input difference signed so that positive
    means a is better, with its paired 95% bootstrap interval (Rand-1 and Oracle for per-output metrics)."""
    out: dict[str, dict] = {}
    for metric in per_candidate_metrics(signal, faces):
        if any(f"{m}__{metric}" not in per_input[0] for m in (a, b)):
            continue
        better = M.BETTER[metric]
        picks = []
        for m in (a, b):
            values = [p[f"{m}__{metric}"] for p in per_input]
            rand, oracle = M.chosen(values, [int(p[f"{m}__rand1"]) for p in per_input], better)
            picks.append(
                {"rand1": rand, "top1": M.top1(values, [int(p[f"{m}__top1"]) for p in per_input]), "oracle": oracle}
            )
        out[metric] = {
            sel: M.paired_interval(picks[0][sel], picks[1][sel], better) for sel in ("rand1", "top1", "oracle")
        }
    for metric, key in (("diversity_l1", "div_l1"), ("diversity_deep", "div_deep")):
        va, vb = (np.array([p[f"{m}__{key}"] for p in per_input], np.float64) for m in (a, b))
        out[metric] = {"set": M.paired_interval(va, vb, "higher")}
    return out
