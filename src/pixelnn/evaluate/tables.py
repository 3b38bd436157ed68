"""report.json and report.md of an evaluation: the tables and what every number means."""

from __future__ import annotations

import math
from pathlib import Path

from ..fileio import write_json, write_text
from .methods import LABELS, per_candidate_metrics
from .metrics import BETTER

FORMAT = "pixelnn-evaluation"
VERSION = 3  # 2: Top-1 beside Rand-1 and Oracle; seams; Top-1 Fréchet; diversity of the top 10. 3: bank spread

# name -> (column title, unit, definition)
PER_OUTPUT = {
    "psnr": (
        "PSNR",
        "dB",
        "10 log10(1 / MSE) against the real photo, over all pixels and "
        "channels of the uint8 output / 255; MSE floored at 1e-10 (100 dB).",
    ),
    "ssim": (
        "SSIM",
        "",
        "skimage.metrics.structural_similarity(output, photo, "
        "channel_axis=-1, data_range=1), default 7x7 uniform window.",
    ),
    "consistency_psnr": (
        "input consistency",
        "dB",
        "PSNR of the output downsampled by the factor (PIL bicubic, "
        "exactly as the 12x12 inputs are made) against the input.",
    ),
    "edge_ap": (
        "edge AP",
        "",
        "HED edge probabilities of the output (scores) against HED edges of the real photo thresholded "
        "at 0.5 (labels), no non-maximum suppression, every pixel a sample; average precision = sum "
        "over distinct score thresholds of (R_k - R_{k-1}) P_k (the mean precision at each true "
        "positive when scores are distinct). Inputs whose photo has no edge pixel are left out.",
    ),
    "spectrum_dist": (
        "spectrum dist",
        "",
        "mean over radii r = 1..S/2 of |log10 P_out(r) - log10 P_photo(r)|, P the radially averaged power spectrum of "
        "the grayscale image (see spectrum gap), against the same input's real photo.",
    ),
    "seam": (
        "seam",
        "",
        "over all right and down neighbour pairs of output pixels, the mean of max(0, |RGB "
        "step in the output| - |RGB step between the same pixels of the photo|) (L1, images "
        "in [0, 1]), counted only where the two pixels were copied from different sources "
        "(another exemplar or another offset); 0 for a coherent copy. Methods that copy only.",
    ),
}
SET = {
    "diversity_l1": (
        "diversity L1",
        "mean over pairs of an input's candidates of their mean absolute pixel "
        "difference (images in [0, 1]), averaged over inputs; 0 for one output.",
    ),
    "diversity_deep": (
        "diversity deep",
        "mean over pairs of candidates of the mean over pixels of 1 - cosine between their VGG-16 (HED weights) "
        "hypercolumn descriptors (conv1_2..conv5_3 upsampled, each layer L2-normalised, concatenated); pairs "
        "among a random subset of 10 candidates per input (fixed seed); averaged over inputs.",
    ),
    "spectrum_gap": (
        "spectrum gap",
        "mean over radii of |mean log10 spectrum of the method's outputs (all candidates of all inputs) - mean "
        "log10 spectrum of the real photos|; spectrum: grayscale (ITU-R 601 luma) minus its mean, |FFT|^2 / (H W), "
        "averaged over rings of integer radius r cycles per image, log10, averaged over images in the log domain.",
    ),
    "diversity_l1_top10": (
        "diversity L1, top 10",
        "diversity L1 among the 10 best-ranked candidates of each input (rank score from the input alone).",
    ),
    "frechet_top1": (
        "Fréchet (EffNet), Top-1",
        "the Fréchet distance below, of the Top-1 outputs (the "
        "best-ranked candidate per input) instead of the Rand-1 ones.",
    ),
    "frechet": (
        "Fréchet (EffNet)",
        "Fréchet distance between Gaussians fitted to EfficientNet-Lite0 (ImageNet) pooled head features (1280-d) of "
        "the Rand-1 outputs and of the real photos (one image per input each); scipy.linalg.sqrtm. NOT comparable to "
        "published FID (another network, other sizes, few samples: strongly biased upwards for small sets).",
    ),
}
_NORMALS = (
    "the angle between the unit normals estimated on the output and on the real photo with the same estimator "
    "(MediaPipe's face mesh, 468 landmarks triangulated on the image plane, vertex normals interpolated per "
    "pixel; data/face_normals.py), over the pixels where both have a normal; outputs without a face are left out"
)
for _name, _title, _unit, _what in (
    ("normal_mean", "normals: mean", "°", "mean of"),
    ("normal_median", "normals: median", "°", "median of"),
    ("normal_rmse", "normals: RMSE", "°", "root mean square of"),
    ("normal_11", "normals: within 11.25°", "%", "percent of pixels within 11.25° in"),
    ("normal_22", "normals: within 22.5°", "%", "percent of pixels within 22.5° in"),
    ("normal_30", "normals: within 30°", "%", "percent of pixels within 30° in"),
):
    PER_OUTPUT[_name] = (_title, _unit, f"{_what} {_NORMALS} (the paper's Table 1 statistic).")
PER_OUTPUT["face_found"] = (
    "face found",
    "",
    "1 if MediaPipe's face mesh finds a face in the output, else 0: whether it is a face at all, not patchwork; "
    "averaged over inputs, the share of outputs with a face.",
)
FACE_SET = {
    "face_found_top10": (
        "face found, top 10",
        "the share of the 10 best-ranked candidates of each input (rank score from the input alone) in which a face "
        "is found, averaged over inputs.",
    ),
}
SET_BETTER = {
    "face_found_top10": "higher (more outputs are faces)",
    "diversity_l1": "higher (more varied outputs)",
    "diversity_l1_top10": "higher (more varied outputs)",
    "diversity_deep": "higher (more varied outputs)",
    "spectrum_gap": "lower",
    "frechet": "lower",
    "frechet_top1": "lower",
}


def _clean(v):
    """NaN and infinities -> None (JSON has no NaN); recursively."""
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def build(
    summary: dict,
    methods: list[str],
    signal: str,
    factor: int,
    n_inputs: int,
    seed: int,
    n_samples: int,
    meta: dict,
    figures: list[Path],
    out: Path,
    bank: dict | None = None,
    faces: bool = False,
) -> dict:
    names = per_candidate_metrics(signal, faces)
    definitions = {
        k: {
            "title": PER_OUTPUT[k][0],
            "unit": PER_OUTPUT[k][1],
            "better": BETTER[k],
            "kind": "per output (Rand-1 / Top-1 / Oracle)",
            "definition": PER_OUTPUT[k][2],
        }
        for k in names
    }
    per_method = {**SET, **(FACE_SET if faces else {})}
    definitions.update(
        {
            k: {"title": t, "better": SET_BETTER[k], "kind": "per method", "definition": d}
            for k, (t, d) in per_method.items()
        }
    )
    return _clean(
        {
            "format": FORMAT,
            "version": VERSION,
            "inputs": n_inputs,
            "seed": seed,
            "signal": signal,
            "factor": factor if signal == "lowres" else None,
            "pix2pix_samples": n_samples if "pix2pix" in methods else None,
            "meta": meta,
            "selection": {
                "rand1": (
                    "one candidate per input drawn at random (numpy default_rng([seed, crc32(method), input index])), "
                    "the same draw for every metric"
                ),
                "top1": (
                    "per input the candidate ranked first by its score from the input alone (synth/rank.py; "
                    "never the photo), the same for every metric"
                ),
                "oracle": "per input the best candidate for THAT metric (highest, or lowest where lower is better)",
            },
            "metrics": definitions,
            "order": list(methods),  # report.json is written with sorted keys
            "methods": {m: {"label": LABELS[m], **summary["methods"][m]} for m in methods},
            "spectra": summary["spectra"],
            "versus": summary.get("versus"),  # PixelNN minus pix2pix per metric, with bootstrap intervals
            "bank": bank,  # the bank's residual spread (metrics.residual_spread): a scale for the diversities
            "figures": [str(Path(p).relative_to(out)) for p in figures],
        }
    )


def _fmt(v, unit: str = "") -> str:
    if v is None:
        return "n/a"
    return f"{v:.2f}" if unit in ("dB", "°", "%") or abs(v) >= 10 else f"{v:.4f}"


def markdown(rep: dict) -> str:
    names = [k for k, d in rep["metrics"].items() if d["kind"].startswith("per output")]
    arrows = {"higher": "↑", "lower": "↓"}
    lines = [
        "# PixelNN evaluation",
        "",
        f"{rep['inputs']} validation inputs, signal `{rep['signal']}`"
        + (f" (factor {rep['factor']})" if rep["factor"] else "")
        + f", seed {rep['seed']}.",
    ]
    for k, v in rep["meta"].items():
        lines.append(f"- {k}: `{v}`")
    lines += [
        "",
        "## Per-output metrics: Rand-1 / Top-1 / Oracle (Rand-1 and Oracle as the paper's Table 1)",
        "",
        "Rand-1: "
        + rep["selection"]["rand1"]
        + ". Top-1: "
        + rep["selection"]["top1"]
        + ". Oracle: "
        + rep["selection"]["oracle"]
        + ".",
        "",
        "| method | outputs per input | "
        + " | ".join(f"{rep['metrics'][k]['title']} {arrows[rep['metrics'][k]['better']]}" for k in names)
        + " |",
        "|---|---:|" + "---:|" * len(names),
    ]
    for row in (rep["methods"][m] for m in rep["order"]):
        cells = [
            " / ".join(_fmt(row[sel].get(k), rep["metrics"][k].get("unit", "")) for sel in ("rand1", "top1", "oracle"))
            for k in names
        ]
        lines.append(f"| {row['label']} | {row['candidates']} | " + " | ".join(cells) + " |")
    set_names = [k for k, d in rep["metrics"].items() if d["kind"] == "per method"]
    lines += [
        "",
        "## Diversity and distribution (per method)",
        "",
        "| method | "
        + " | ".join(
            f"{rep['metrics'][k]['title']} {arrows[rep['metrics'][k]['better'].split()[0]]}" for k in set_names
        )
        + " |",
        "|---|" + "---:|" * len(set_names),
    ]
    for row in (rep["methods"][m] for m in rep["order"]):
        lines.append(f"| {row['label']} | " + " | ".join(_fmt(row.get(k)) for k in set_names) + " |")
    lines += spread_lines(rep)
    lines += ["", "The Fréchet distance here is **not comparable to published FID numbers**."]
    lines += versus_lines(rep)
    lines += ["", "## Definitions", ""]
    for d in rep["metrics"].values():
        unit = f" ({d['unit']})" if d.get("unit") else ""
        lines.append(f"- **{d['title']}**{unit}, {d['kind']}, better: {d['better']}. {d['definition']}")
    if rep["figures"]:
        lines += ["", "## Figures", ""]
        for f in rep["figures"]:
            lines += [f"![{Path(f).stem}]({f})", ""]
    return "\n".join(lines) + "\n"


def spread_lines(rep: dict) -> list[str]:
    """The bank's residual spread, as a scale for the diversity L1 column (if the report has it)."""
    bank = rep.get("bank")
    if not bank:
        return []
    return [
        "",
        f"For scale: the bank's residual spread is {_fmt(bank['residual_spread'])}, the mean |r_a - r_b| over "
        f"{bank['pairs']} random pairs of {bank['exemplars']} exemplars (r = y - f(x), the residual candidates copy). "
        "Copies of unrelated exemplars' whole residuals would be about this diverse; neighbours of one input, "
        "which resemble each other, less.",
    ]


def versus_lines(rep: dict) -> list[str]:
    """PixelNN minus pix2pix with 95% bootstrap intervals, positive = PixelNN better (if both ran)."""
    if not rep.get("versus"):
        return []
    lines = [
        "",
        "## PixelNN against pix2pix",
        "",
        "Mean per-input difference, signed so that a positive number means PixelNN is better, with its paired",
        "95% bootstrap interval over the inputs (2000 resamples).",
        "",
        "| metric | selection | difference | 95% interval |",
        "|---|---|---:|---:|",
    ]
    for k, sels in rep["versus"].items():
        for sel, v in sels.items():
            mean, low, high = (_fmt(v[x], rep["metrics"][k].get("unit", "")) for x in ("mean", "low", "high"))
            name = {"rand1": "Rand-1", "top1": "Top-1", "oracle": "Oracle", "set": "per input"}[sel]
            lines.append(f"| {rep['metrics'][k]['title']} | {name} | {mean} | [{low}, {high}] |")
    return lines


def write(out: Path, rep: dict) -> None:
    """report.md first, report.json last: a finished report.json means a finished evaluation."""
    write_text(Path(out) / "report.md", markdown(rep))
    write_json(Path(out) / "report.json", rep)
