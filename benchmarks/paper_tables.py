#!/usr/bin/env python
"""The paper's Table 1 on real data: PixelNN beside stage 1, global NN and pix2pix, five domains.

Per domain it trains what is missing (stage 1 + bank with `pixelnn train`, the pix2pix baseline
with `pixelnn train-pix2pix`, the same --minutes for both), runs `pixelnn evaluate` on the first
--limit validation inputs, then assembles every finished domain into

    results/paper_tables/table.md, table.json     the whole table (git-ignored, like all of results/)
    docs/results.md, docs/results/*-frequency.png numbers and plots only (no photos from the data)

Each domain lives in results/paper_tables/DOMAIN/ (pixelnn/, pix2pix/, eval/, steps/). A finished
step writes steps/STEP.json (atomically); a rerun skips finished steps and resumes unfinished ones
(training resumes from its checkpoint, evaluation from its per-input cache). Delete a step file to
redo that step. It can run for hours:

    nohup .venv/bin/python benchmarks/paper_tables.py > results/paper_tables.log 2>&1 &
    .venv/bin/python benchmarks/paper_tables.py --domains faces-lowres edges2shoes --minutes 2 \
--limit 8   # a quick look
    .venv/bin/python benchmarks/paper_tables.py --table-only        # re-assemble the tables from finished domains
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from pixelnn.bank.stage1 import fold_folder
from pixelnn.evaluate.methods import FACE_METRICS, LABELS
from pixelnn.fileio import atomic_path, write_json, write_text
from pixelnn.synth.coherence import COPY_MODES, DEFAULT_COPY

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Domain:
    title: str
    train: str  # folders relative to --data-root
    val: str
    data: tuple[str, ...]  # data options shared by train, train-pix2pix and evaluate
    labels: str | None = None  # --labels for training (a CSV relative to --data-root, or path:N)
    paper: str = ""  # the matching experiment of the paper
    faces: bool = False  # photos of faces: also the normal-error columns and the face-found rate


DOMAINS = {
    "faces-lowres": Domain(
        "Faces 12x12 -> 96x96 (CelebA)",
        "celeba/train",
        "celeba/val",
        ("--signal", "lowres"),
        "celeba/train_identity.csv",
        "12x12 faces to 96x96",
        faces=True,
    ),
    "faces-edges": Domain(
        "Faces, edges -> RGB (CelebA, HED edges)",
        "celeba/train",
        "celeba/val",
        ("--signal", "edges"),
        "celeba/train_identity.csv",
        "edges-to-faces",
        faces=True,
    ),
    "faces-normals": Domain(
        "Faces, normals -> RGB (CelebA, face-mesh normals)",
        "celeba/train",
        "celeba/val",
        ("--signal", "normals"),
        "celeba/train_identity.csv",
        "normals-to-faces",
        faces=True,
    ),
    "edges2shoes": Domain(
        "Edges -> shoes (pix2pix edges2shoes)",
        "edges2shoes/train",
        "edges2shoes/val",
        ("--pairs", "BtoA"),
        None,
        "edges-to-shoes",
    ),
    "edges2handbags": Domain(
        "Edges -> handbags (pix2pix edges2handbags)",
        "edges2handbags/train",
        "edges2handbags/val",
        ("--pairs", "BtoA"),
        None,
        "edges-to-handbags",
    ),
    "pets-edges": Domain(
        "Cats and dogs, edges -> RGB (HED edges)",
        "pets/train",
        "pets/val",
        ("--signal", "edges"),
        "path:1",
        "edges-to-cats-and-dogs",
    ),
}
METHOD_ORDER = ("stage1", "global", "pix2pix", "pixelnn")  # table columns / rows, pix2pix beside PixelNN
PER_OUTPUT = ("psnr", "ssim", "consistency_psnr", "edge_ap", "spectrum_dist", "seam", *FACE_METRICS)
PER_METHOD = (
    "diversity_l1",
    "diversity_l1_top10",
    "diversity_deep",
    "spectrum_gap",
    "frechet",
    "frechet_top1",
    "face_found_top10",
)
SELECTION_NAMES = {"rand1": "Rand-1", "top1": "Top-1", "oracle": "Oracle"}
# The paper's Table 1, edge AP (Rand-1, Oracle), Edges-to-RGB half. Its pix2pix row is one sample (no Rand-1).
# Edges there come from PixelNet, pets are Oxford-IIIT head crops: the context for our rows, not the same test.
PAPER_EDGE_AP = {
    "faces-edges": {"pix2pix": (0.35, 0.35), "pixelnn": (0.38, 0.41)},
    "pets-edges": {"pix2pix": (0.78, 0.81), "pixelnn": (0.77, 0.89)},
}

# The paper's Table 1, human faces: Mean, Median, RMSE (degrees), % within 11.25, 22.5 and 30 degrees of the
# normals estimated on the output against those of the real photo, and edge AP; (Rand-1, Oracle) per method.
# Its pix2pix "Rand-1" is its one sample. Its normals and edges come from PixelNet, ours from MediaPipe's face
# mesh and HED: the context for our rows, not the same test.
PAPER_FACE_NORMALS = {
    "faces-normals": {
        "pix2pix": ((17.2, 14.3, 21.0, 37.2, 74.7, 86.8, 0.34), (15.8, 13.1, 19.4, 41.9, 78.5, 89.3, 0.34)),
        "pixelnn": ((12.8, 10.4, 16.0, 54.2, 86.6, 94.1, 0.38), (10.8, 8.7, 13.5, 63.7, 91.6, 96.7, 0.42)),
    },
    "faces-edges": {
        "pix2pix": ((12.1, 9.6, 15.5, 58.1, 88.1, 94.7, 0.35), (11.5, 9.1, 14.6, 61.1, 89.7, 95.6, 0.35)),
        "pixelnn": ((13.3, 10.6, 16.8, 52.9, 85.0, 92.9, 0.38), (11.3, 9.0, 14.4, 61.6, 90.0, 95.7, 0.41)),
    },
}
NORMAL_COLUMNS = ("normal_mean", "normal_median", "normal_rmse", "normal_11", "normal_22", "normal_30", "edge_ap")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def pixelnn_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "pixelnn.cli", *args]


class Runner:
    def __init__(self, opts) -> None:
        self.opts = opts
        self.root = Path(opts.out)
        self.data = Path(opts.data_root)

    def folder(self, name: str) -> Path:
        return self.root / name

    def _labels(self, d: Domain) -> list[str]:
        if d.labels is None:
            return []
        label = d.labels if d.labels.startswith("path") else str(self.data / d.labels)
        return ["--labels", label]

    def step(self, name: str, domain: str, settings: dict, command: list[str]) -> bool:
        """Run one step unless steps/NAME.json says it finished with the same settings; True if done."""
        marker = self.folder(domain) / "steps" / f"{name}.json"
        if marker.exists():
            done = json.loads(marker.read_text())
            if done.get("settings") == settings:
                log(f"{domain}: {name} already done ({done.get('minutes_taken', 0):.1f} min); skipping")
                return True
            log(
                f"{domain}: {name} was done with {done.get('settings')}, now {settings}: "
                "running it again (resumes where it can)"
            )
        log(f"{domain}: {name}: {' '.join(command[2:])}")
        t0 = time.time()
        code = subprocess.call(command, cwd=REPO)
        if code != 0:
            log(f"{domain}: {name} FAILED (exit code {code}); rerun this script to resume")
            return False
        write_json(
            marker,
            {
                "settings": settings,
                "command": command[2:],
                "minutes_taken": (time.time() - t0) / 60,
                "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
            },
        )
        log(f"{domain}: {name} done in {(time.time() - t0) / 60:.1f} min")
        return True

    def domain(self, name: str) -> bool:
        d, o = DOMAINS[name], self.opts
        base = self.folder(name)
        train, val = str(self.data / d.train), str(self.data / d.val)
        for path in (train, val):
            if not Path(path).is_dir():
                log(f"{name}: {path} not found; skipping this domain")
                return False
        model, p2p, ev = base / "pixelnn", base / "pix2pix", base / "eval"
        budget = {"minutes": o.minutes, "size": o.size, "train_limit": o.train_limit, "descriptors": o.descriptors}
        folds = {"folds": o.folds} if o.folds else {}  # absent without folds: runs made before them stay valid
        precision = ["--precision", o.stage1_precision] if o.stage1_precision != "auto" else []
        stage1_precision = {"stage1_precision": o.stage1_precision} if precision else {}  # for the command line
        stage1_settings = {**budget, **folds, **({"precision": o.stage1_precision} if precision else {})}
        common = [
            *d.data,
            *self._labels(d),
            "--size",
            str(o.size),
            *(["--limit", str(o.train_limit)] if o.train_limit else []),
        ]
        ok = self.step(
            "stage1",
            name,
            stage1_settings,
            pixelnn_cli(
                "train",
                "--data",
                train,
                *common,
                "--val",
                val,
                "--out",
                str(model),
                "--minutes",
                str(o.minutes),
                *precision,
                *(["--descriptors", str(o.descriptors)] if o.descriptors else []),
                *(["--folds", str(o.folds)] if o.folds else []),
            ),
        )
        ok = ok and self.step(
            "pix2pix",
            name,
            budget,
            pixelnn_cli(
                "train-pix2pix",
                "--data",
                train,
                *common,
                "--val",
                val,
                "--out",
                str(p2p),
                "--minutes",
                str(o.minutes),
                "--cache",
                str(model / "cache"),
            ),
        )
        if o.train_only:
            return ok
        faces = {"faces": True} if d.faces else {}  # absent for other domains: their finished steps stay valid
        ok = ok and self.step(
            "evaluate",
            name,
            {"limit": o.limit, "seed": o.seed, "copy": o.copy, **budget, **folds, **faces, **stage1_precision},
            pixelnn_cli(
                "evaluate",
                "--model",
                str(model),
                "--pix2pix",
                str(p2p),
                "--data",
                val,
                *d.data,
                "--limit",
                str(o.limit),
                "--seed",
                str(o.seed),
                "--copy",
                o.copy,
                *(["--face-normals", "on"] if d.faces else []),
                "--out",
                str(ev),
            ),
        )
        return ok

    # ------------------------------------------------------------ tables

    def finished(self) -> dict[str, dict]:
        reports = {}
        for name in DOMAINS:
            path = self.folder(name) / "eval" / "report.json"
            if (self.folder(name) / "steps" / "evaluate.json").exists() and path.exists():
                reports[name] = json.loads(path.read_text())
        return reports

    def stage1_facts(self, name: str) -> dict:
        """The stage 1 behind a domain's rows: its normalisation, steps and validation PSNR."""
        run = self.folder(name) / "pixelnn"
        config, metrics = _read(run / "config.json") or {}, _read(run / "metrics.json") or {}
        bank = _read(run / "bank" / "bank.json") or {}
        folds = (bank.get("cross_fit") or {}).get("folds", 0)
        fold_metrics = [_read(fold_folder(run, k) / "metrics.json") or {} for k in range(folds)]
        return {
            "norm": config.get("stage1", {}).get("norm", "batch"),  # configs without the key were BatchNorm
            "steps": metrics.get("training", {}).get("steps"),
            "threads": metrics.get("training", {}).get("cpu", {}).get("threads"),
            "val_psnr": metrics.get("val", {}).get("stage1_psnr"),
            "bank_version": bank.get("version"),
            "folds": [
                {
                    "steps": m.get("training", {}).get("steps"),
                    "pairs": m.get("training", {}).get("pairs"),
                    "val_psnr": m.get("val", {}).get("stage1_psnr"),
                }
                for m in fold_metrics
            ],
        }

    def pix2pix_steps(self, name: str) -> int | None:
        """The training steps of a domain's pix2pix (from its checkpoint's description), if it has one."""
        from pixelnn.baselines.pix2pix.checkpoint import FILENAME
        from pixelnn.regress.checkpoint import read_description

        path = self.folder(name) / "pix2pix" / FILENAME
        return int(read_description(path, "pix2pix")["step"]) if path.exists() else None

    def tables(self) -> None:
        reports = self.finished()
        if not reports:
            log("no finished domain yet: no table written")
            return
        steps = {
            n: {s: _read(self.folder(n) / "steps" / f"{s}.json") for s in ("stage1", "pix2pix", "evaluate")}
            for n in reports
        }
        table = {
            "format": "pixelnn-paper-tables",
            "version": 1,
            "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
            "domains": {
                n: {
                    "title": DOMAINS[n].title,
                    "paper": DOMAINS[n].paper,
                    "report": str((self.folder(n) / "eval" / "report.json").relative_to(self.root)),
                    "training_minutes": (steps[n]["stage1"] or {}).get("settings", {}).get("minutes"),
                    "command": _command(n, (steps[n]["evaluate"] or {}).get("settings", {})),
                    "size": (steps[n]["stage1"] or {}).get("settings", {}).get("size"),
                    "inputs": rep["inputs"],
                    "signal": rep["signal"],
                    "copy": rep.get("meta", {}).get("copy", "eq3"),
                    "metrics": rep["metrics"],
                    "methods": rep["methods"],
                    "versus": rep.get("versus"),
                    "bank": rep.get("bank"),
                    "stage1": self.stage1_facts(n),
                    "pix2pix_steps": self.pix2pix_steps(n),
                }
                for n, rep in reports.items()
            },
        }
        longer = Path(self.opts.longer) / "table.json" if self.opts.longer else None
        if longer is not None and longer.exists():
            table["longer"] = {n: d for n, d in json.loads(longer.read_text())["domains"].items() if n in reports}
            table["longer_out"] = _relative(Path(self.opts.longer))
        out = self.root
        write_json(out / "table.json", table)
        write_text(out / "table.md", render(table, figure_dir=None))
        docs = Path(self.opts.docs)
        table = carry(table, _read(docs / "results" / "table.json"))
        plots = {}
        for n in table["domains"]:
            src = self.folder(n) / "eval" / "figures" / "frequency.png"  # a plot, no photo
            dst = docs / "results" / f"{n}-frequency.png"
            if n in reports and src.exists():
                with atomic_path(dst) as tmp:
                    shutil.copyfile(src, tmp)
            if dst.exists():
                plots[n] = f"results/{n}-frequency.png"
        write_json(docs / "results" / "table.json", table)
        write_text(docs / "results.md", render(table, figure_dir=plots))
        write_json(docs / "results.json", results_json(table))
        log(
            f"tables: {out / 'table.md'}, {out / 'table.json'}, {docs / 'results.md'} ({len(table['domains'])} domains)"
        )


def carry(table: dict, kept: dict | None) -> dict:
    """The table with the domains of `kept` (docs/results/table.json: the docs' own copy of the last table)
    that it lacks, each marked with the date of the run it comes from ("carried"), in DOMAINS order: the docs
    keep every domain when a run redoes only some."""
    if not kept:
        return table
    domains = dict(table["domains"])
    for n, d in kept.get("domains", {}).items():
        if n not in domains:
            domains[n] = {**d, "carried": d.get("carried") or kept["generated"]}
    order = [n for n in DOMAINS if n in domains] + [n for n in domains if n not in DOMAINS]
    # a longer run stays beside the run it was set against: only where that domain is carried too
    carried_longer = {n: d for n, d in (kept.get("longer") or {}).items() if n not in table["domains"]}
    longer = {**carried_longer, **(table.get("longer") or {})}
    return {**table, "domains": {n: domains[n] for n in order}, **({"longer": longer} if longer else {})}


COPY_WORDS = {
    "eq3": "each pixel's best match, Eq. 3",
    "coherent": "the coherence prior",
    "vote": "patch voting",
    "coherent-vote": "the coherence prior and patch voting",
    "matched": "the coherence prior and the share of voting that matches the sources' spectrum",
}


def _copy_modes(domains: dict) -> str:
    """How the domains' PixelNN candidates were copied, e.g. 'the coherence prior, `--copy coherent`'."""
    modes = {}
    for n, d in domains.items():
        modes.setdefault(d.get("copy", "eq3"), []).append(n)
    if len(modes) == 1:
        mode = next(iter(modes))
        return f"{COPY_WORDS.get(mode, mode)}, `--copy {mode}`"
    return "; ".join(f"`--copy {m}` for {', '.join(names)}" for m, names in modes.items())


def _stage1_cell(domain: dict) -> str:
    facts = domain.get("stage1") or {}
    names = {"batch": "BatchNorm", "group": "GroupNorm", "none": "none"}
    steps = facts.get("steps")
    cell = f"{names.get(facts.get('norm'), '?')}, {steps if steps is not None else '?'}"
    folds = facts.get("folds") or []
    if folds:
        cell += f"; bank cross-fitted by {len(folds)} folds of {'/'.join(str(f['steps']) for f in folds)}"
    return cell


def _compact(domains: dict) -> str:
    """The domains whose banks are in the compact format (version 2), for the intro."""
    names = [n for n, d in domains.items() if (d.get("stage1") or {}).get("bank_version") == 2]
    return ", ".join(names) or "none"


def _cross_fit_lines(domains: dict) -> list[str]:
    """What the intro says of the domains whose banks are cross-fitted (none: nothing)."""
    folded = {n: len((d.get("stage1") or {}).get("folds") or []) for n, d in domains.items()}
    folded = {n: k for n, k in folded.items() if k}
    if not folded:
        return []
    return [
        f"Banks cross-fitted ({', '.join(f'{n}: `--folds {k}`' for n, k in folded.items())}): each exemplar's",
        "stored f(x_k) comes from a fold model that trained, for as many epochs as stage 1, on the pairs outside",
        "its fold, so stage 1 on a new input and the copied residuals y_k - f(x_k) are alike. The folds' training",
        "is K - 1 times stage 1's, on top of the minutes in the table; pix2pix gets no such extra",
        '(docs/benchmarks.md, "Cross-fitted banks").',
    ]


def _carried_lines(domains: dict) -> list[str]:
    """What the intro says of the domains carried from an earlier run (none: nothing)."""
    runs: dict[str, list[str]] = {}
    for n, d in domains.items():
        if d.get("carried"):
            runs.setdefault(d["carried"], []).append(n)
    return [
        f"Carried unchanged from the run of {date} (not rerun by the run above): {', '.join(names)}."
        for date, names in runs.items()
    ]


def _command(domain: str, settings: dict) -> str:
    """The command line of this script that reproduces a domain from its evaluate step's settings."""
    words = ["python benchmarks/paper_tables.py", "--domains", domain]
    parser = build_parser()
    for key in ("minutes", "limit", "descriptors", "seed", "size", "train_limit", "copy", "folds", "stage1_precision"):
        if key in settings and settings[key] != parser.get_default(key):
            words += [
                f"--{key.replace('_', '-')}",
                f"{settings[key]:g}" if isinstance(settings[key], float) else str(settings[key]),
            ]
    return " ".join(words)


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def _f(v, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def selections(row: dict) -> tuple[str, ...]:
    """The selections a method row has: Rand-1, Top-1 (reports since the ranking) and Oracle."""
    return tuple(k for k in ("rand1", "top1", "oracle") if k in row)


def triple(row: dict | None, metric: str, digits: int = 3) -> str:
    """'Rand-1 / Top-1 / Oracle' of one metric for one method row ('n/a' where missing)."""
    if row is None or all(row[sel].get(metric) is None for sel in selections(row)):
        return "n/a"
    return " / ".join(_f(row[sel].get(metric), digits) for sel in selections(row))


def results_json(table: dict) -> dict:
    """docs/results.json: {"domains": {DOMAIN: {METHOD: {METRIC: {"rand1", "top1", "oracle"}}}}}; per-method
    metrics as {"set": value}, the Fréchet distance as {"rand1", "top1"} (of the Rand-1 and Top-1 outputs);
    beside the domains, "bank_residual_spread": {DOMAIN: value} (a scale for diversity L1, where reported)."""
    out = {"generated": table["generated"], "domains": {}, "bank_residual_spread": {}}
    for n, d in table["domains"].items():
        methods = {}
        for m in METHOD_ORDER:
            row = d["methods"].get(m)
            if row is None:
                continue
            entry = {
                k: {sel: row[sel].get(k) for sel in ("rand1", "top1", "oracle")}
                for k in PER_OUTPUT
                if k in row["rand1"]
            }
            entry.update({k: {"set": row.get(k)} for k in PER_METHOD if k in row and not k.startswith("frechet")})
            entry["frechet"] = {"rand1": row.get("frechet"), "top1": row.get("frechet_top1")}
            methods[m] = entry
        out["domains"][n] = methods
        if d.get("bank"):
            out["bank_residual_spread"][n] = d["bank"]["residual_spread"]
    return out


def targets_section(domains: dict) -> list[str]:
    """The ranking issue's targets per domain: PixelNN Top-1 against pix2pix Rand-1 (edge AP, PSNR),
    Oracle against Oracle (edge AP), spectrum gap, diversity."""
    rows = []
    for d in domains.values():
        a, b = d["methods"].get("pixelnn"), d["methods"].get("pix2pix")
        if a is None or b is None or "top1" not in a:
            continue
        checks = [
            a["top1"]["edge_ap"] >= b["rand1"]["edge_ap"],
            a["top1"]["psnr"] >= b["rand1"]["psnr"],
            a["oracle"]["edge_ap"] >= b["oracle"]["edge_ap"],
            a["spectrum_gap"] <= b["spectrum_gap"],
            a["diversity_l1"] >= 2 * b["diversity_l1"],
        ]
        cells = [
            f"{_f(a['top1']['edge_ap'])} vs {_f(b['rand1']['edge_ap'])}",
            f"{_f(a['top1']['psnr'], 2)} vs {_f(b['rand1']['psnr'], 2)}",
            f"{_f(a['oracle']['edge_ap'])} vs {_f(b['oracle']['edge_ap'])}",
            f"{_f(a['spectrum_gap'])} vs {_f(b['spectrum_gap'])}",
            _over_pix2pix(a, b),
        ]
        marked = [f"{c} {'✓' if ok else '✗'}" for c, ok in zip(cells, checks)]
        scale = [_over_pix2pix(d["methods"].get("global"), b), _over_pix2pix(d.get("bank"), b, "residual_spread")]
        rows.append(f"| {d['title']} | " + " | ".join([*marked, *scale]) + " |")
    if not rows:
        return []
    return [
        "",
        "## Targets: PixelNN against pix2pix",
        "",
        "✓ where PixelNN meets the target. Top-1 is ranked from the input alone (never the photo). The last",
        "two columns are for scale, not targets, both over pix2pix's diversity L1: that of global NN (Eq. 2, the",
        "10 nearest exemplars' whole residuals copied onto f(x)), and the bank's residual spread (the mean L1",
        "between the whole residuals of two random exemplars, what copies of unrelated exemplars would differ by).",
        "",
        "| domain | edge AP: Top-1 vs pix2pix Rand-1 | PSNR: Top-1 vs pix2pix Rand-1 | edge AP: Oracle vs Oracle "
        "| spectrum gap (lower) | diversity L1, PixelNN / pix2pix (target 2x) | global NN / pix2pix "
        "| residual spread / pix2pix |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
    ]


def _over_pix2pix(row: dict | None, pix2pix: dict, key: str = "diversity_l1") -> str:
    """row[key] over pix2pix's diversity L1, as '1.80x' ('n/a' without both)."""
    if not row or not row.get(key) or not pix2pix.get("diversity_l1"):
        return "n/a"
    return f"{row[key] / pix2pix['diversity_l1']:.2f}x"


def render(table: dict, figure_dir: dict | None) -> str:
    """Markdown of the whole table; figure_dir (domain -> plot path) adds the frequency plots (docs)."""
    domains = table["domains"]
    lines = [
        "# PixelNN beside pix2pix on real data (the paper's Table 1)",
        "",
        (
            f"Generated {table['generated']} by `benchmarks/paper_tables.py`. "
            "Per domain: stage 1 and pix2pix trained on the"
        ),
        (
            "same training set at the same size with the same wall-clock budget on CPU, "
            "the bank built from that training set;"
        ),
        "metrics on the first validation inputs. Rand-1: one candidate per input at random (fixed seed); Top-1: the",
        "candidate ranked first by a score from the input alone (agreement with the input; for edge inputs, with",
        "stage 1's colours at 1/8 size; for PixelNN, the mean similarity of its copied pixels; never the photo), the",
        "same function for every method; Oracle: the best",
        "candidate per input for that metric. PixelNN has the 72 candidates of the authors' grid (copied with",
        f"{_copy_modes(domains)}), pix2pix 72 samples",
        "with dropout active, global NN the 10 nearest exemplars (Eq. 2), stage 1 one output. Budgets are far smaller",
        "than the paper's, so absolute numbers are not the paper's; the comparison is between methods.",
        "The stage-1 column gives each domain's normalisation and the steps its budget allowed. Edge inputs get",
        'BatchNorm since the comparison in docs/benchmarks.md ("Stage-1 normalisation"). Banks built since',
        f"format version 2 ({_compact(domains)} here) are compact; the others are version 1, whose Table-1 metrics",
        'the compact copy matches within bootstrap noise (docs/benchmarks.md, "Compact banks").',
        *_cross_fit_lines(domains),
        *_carried_lines(domains),
        "",
        "Made by (one line per domain; each resumes or skips what is finished):",
        "",
        "```",
        *[d.get("command", "") for d in domains.values()],
        "```",
        "",
        "## Edge AP, Rand-1 / Top-1 / Oracle (the paper's Table 1 metric; Top-1 is the best-ranked candidate)",
        "",
        "| domain | size | inputs | train min | stage 1 (norm, steps) | "
        + " | ".join(LABELS[m] for m in METHOD_ORDER)
        + " |",
        "|---|---:|---:|---:|---|" + "---:|" * len(METHOD_ORDER),
    ]
    for d in domains.values():
        cells = []
        for m in METHOD_ORDER:
            row = d["methods"].get(m)
            cells.append(triple(row, "edge_ap"))
        lines.append(
            f"| {d['title']} | {d.get('size')} | {d['inputs']} | {d['training_minutes']} | {_stage1_cell(d)} | "
            + " | ".join(cells)
            + " |"
        )
    lines += targets_section(domains)
    lines += paper_section(domains)
    lines += normals_section(domains)
    lines += versus_section(domains)
    lines += budget_section(domains, table.get("longer") or {}, table.get("longer_out", "DIR"))
    for n, d in domains.items():
        metrics = d["metrics"]
        per_output = [k for k in PER_OUTPUT if k in metrics]
        per_method = [k for k in PER_METHOD if k in metrics]
        arrow = {"higher": "↑", "lower": "↓"}
        lines += [
            "",
            f"## {d['title']}",
            "",
            f"{d['inputs']} validation inputs, signal `{d['signal']}`; "
            f"full report: `results/paper_tables/{d['report']}`. "
            "Per-output metrics: Rand-1 / Top-1 / Oracle.",
            "",
            "| method | outputs | "
            + " | ".join(f"{metrics[k]['title']} {arrow.get(metrics[k]['better'], '')}" for k in per_output)
            + " | "
            + " | ".join(metrics[k]["title"] for k in per_method)
            + " |",
            "|---|---:|" + "---:|" * (len(per_output) + len(per_method)),
        ]
        for m in METHOD_ORDER:
            row = d["methods"].get(m)
            if row is None:
                continue
            digits = {k: 2 if metrics[k].get("unit") == "dB" else 3 for k in per_output}
            cells = [triple(row, k, digits[k]) for k in per_output]
            cells += [_f(row.get(k), 3) for k in per_method]
            lines.append(f"| {row['label']} | {row['candidates']} | " + " | ".join(cells) + " |")
        if figure_dir and n in figure_dir:
            lines += ["", f"![{n} frequency spectrum]({figure_dir[n]})"]
    known = {}
    for d in domains.values():
        known.update(d["metrics"])
    lines += ["", "## Metrics", ""]
    for k in (*PER_OUTPUT, *PER_METHOD):
        if k in known:
            v = known[k]
            lines.append(f"- **{v['title']}** ({v['kind']}, better: {v['better']}): {v['definition']}")
    sizes = sorted({d["inputs"] for d in domains.values()})
    lines += [
        "",
        f"The Fréchet distance uses EfficientNet-Lite0 features of {'/'.join(map(str, sizes))} images per set: it is "
        "**not comparable to published FID**.",
    ]
    if figure_dir is not None:
        lines += [
            "",
            "Figures with photos (comparison grids, multiple outputs, correspondences) stay in the git-ignored",
            "`results/paper_tables/DOMAIN/eval/figures/`: the data's photos are not copied into the repository.",
        ]
    return "\n".join(lines) + "\n"


def _relative(path: Path) -> str:
    """A path as the repository sees it, when it is inside the repository."""
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def budget_section(domains: dict, longer: dict, out: str = "DIR") -> list[str]:
    """The same domains trained longer (--longer), row by row beside this table's: how the gap between
    PixelNN and pix2pix moves as both networks get more training."""
    lines = []
    for n, far in longer.items():
        near = domains[n]
        threads = [(d.get("stage1") or {}).get("threads") for d in (near, far)]
        lines += [
            "",
            f"## {near['title']}: {near['training_minutes']:g} against {far['training_minutes']:g} training minutes",
            "",
            f"Both runs: {far['inputs']} validation inputs, the same evaluation. The longer run: `{far['command']}"
            f" --out {out}`. Threads per training run: {threads[0] or '?'} and {threads[1] or '?'}; the steps",
            "are each network's own (PixelNN's are its stage 1's).",
            "",
            "| train min | method | steps | edge AP | PSNR | SSIM | spectrum gap | diversity L1 |",
            "|---:|---|---:|---:|---:|---:|---:|---:|",
        ]
        for d in (near, far):
            for m in ("stage1", "pix2pix", "pixelnn"):
                row = d["methods"].get(m)
                if row is None:
                    continue
                steps = d.get("pix2pix_steps") if m == "pix2pix" else (d.get("stage1") or {}).get("steps")
                lines.append(
                    f"| {d['training_minutes']:g} | {row['label']} | {steps if steps is not None else '?'} "
                    f"| {triple(row, 'edge_ap')} | {triple(row, 'psnr', 2)} | {triple(row, 'ssim')} "
                    f"| {_f(row.get('spectrum_gap'))} | {_f(row.get('diversity_l1'))} |"
                )
        spreads = [(d.get("bank") or {}).get("residual_spread") for d in (near, far)]
        if None not in spreads:
            lines += [
                "",
                f"The bank's residual spread (the scale of the targets table) is {_f(spreads[0], 4)} after "
                f"{near['training_minutes']:g} minutes and {_f(spreads[1], 4)} after {far['training_minutes']:g} "
                "(y - f(x) of the bank's exemplars: what candidates copy).",
            ]
    return lines


def paper_section(domains: dict) -> list[str]:
    """Our edge AP beside the paper's Table 1 (Edges-to-RGB) where the paper has the domain."""
    rows = []
    for n, paper in PAPER_EDGE_AP.items():
        if n not in domains:
            continue
        ours = domains[n]["methods"]
        for m in ("pix2pix", "pixelnn"):
            row = ours.get(m)
            mine = (
                "n/a"
                if row is None
                else f"{_f(row['rand1'].get('edge_ap'), 2)} / {_f(row['oracle'].get('edge_ap'), 2)}"
            )
            rows.append(
                f"| {domains[n]['title']} | {LABELS[m]} | {paper[m][0]:.2f} / {paper[m][1]:.2f} | {mine} |"
                f" {domains[n].get('size')} | {domains[n]['training_minutes']} |"
            )
    if not rows:
        return []
    return [
        "",
        "## Beside the paper's Table 1 (edges -> RGB, edge AP, Rand-1 / Oracle)",
        "",
        "The paper's edges come from PixelNet and its pets are Oxford-IIIT head crops; ours are HED edges and whole",
        (
            "Asirra pet photos, at the size and CPU training minutes given. "
            "Compare the gaps between methods, not the values."
        ),
        "",
        "| domain | method | paper | here | size | train min |",
        "|---|---|---:|---:|---:|---:|",
        *rows,
    ]


def normals_section(domains: dict) -> list[str]:
    """The face domains' normal columns (the paper's Table 1) with the face-found rates, beside the paper's
    figures, and the normals targets: PixelNN Top-1 against pix2pix Rand-1 (mean angular error, edge AP),
    Oracle against Oracle, and the face-found rate of the top 10."""
    faces = {n: d for n, d in domains.items() if "normal_mean" in d["metrics"]}
    if not faces:
        return []
    lines = [
        "",
        "## Faces: the normal columns of the paper's Table 1",
        "",
        "Normals are estimated with one estimator (MediaPipe's face mesh, triangulated and interpolated per pixel,",
        "`data/face_normals.py`) on every output and on the real photo; the angular error is taken over the pixels",
        "where both have a normal, and an output in which no face is found has no angular error (it counts in the",
        "face-found rate). Our cells are Rand-1 / Top-1 / Oracle; the paper's are Rand-1 / Oracle (its pix2pix",
        "Rand-1 is its one sample), with normals and edges from PixelNet: compare gaps between methods, not values.",
        "Cats and dogs have no normal columns: nothing available offline estimates their normals.",
        "",
        "| domain | method | mean ↓ | median ↓ | RMSE ↓ | 11.25° ↑ | 22.5° ↑ | 30° ↑ | edge AP ↑ | face found ↑ "
        "| face found, top 10 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, d in faces.items():
        for m in METHOD_ORDER:
            row = d["methods"].get(m)
            if row is None:
                continue
            cells = [triple(row, k, 3 if k == "edge_ap" else 1) for k in NORMAL_COLUMNS]
            cells += [triple(row, "face_found", 2), _f(row.get("face_found_top10"), 2)]
            lines.append(f"| {d['title']} | {row['label']} | " + " | ".join(cells) + " |")
        for m, (rand, oracle) in PAPER_FACE_NORMALS.get(n, {}).items():
            cells = [f"{a:g} / {b:g}" for a, b in zip(rand, oracle)]
            lines.append(f"| {d['title']} | paper: {LABELS[m]} | " + " | ".join(cells) + " | | |")
    return lines + normals_targets(faces)


def normals_targets(faces: dict) -> list[str]:
    """The normals issue's targets per face domain, as the paper: PixelNN Top-1 against pix2pix Rand-1 on mean
    angular error and edge AP, Oracle against Oracle, PixelNN's top-10 face-found rate against pix2pix's."""
    rows = []
    for d in faces.values():
        a, b = d["methods"].get("pixelnn"), d["methods"].get("pix2pix")
        if a is None or b is None:
            continue
        pairs = [
            (a["top1"]["normal_mean"], b["rand1"]["normal_mean"], "lower", 1),
            (a["top1"]["edge_ap"], b["rand1"]["edge_ap"], "higher", 3),
            (a["oracle"]["normal_mean"], b["oracle"]["normal_mean"], "lower", 1),
            (a["oracle"]["edge_ap"], b["oracle"]["edge_ap"], "higher", 3),
            (a.get("face_found_top10"), b.get("face_found_top10"), "higher", 2),
        ]
        cells = []
        for x, y, better, digits in pairs:
            ok = None if x is None or y is None else (x <= y if better == "lower" else x >= y)
            cells.append(f"{_f(x, digits)} vs {_f(y, digits)} {'' if ok is None else '✓' if ok else '✗'}".strip())
        rows.append(f"| {d['title']} | " + " | ".join(cells) + " |")
    return [
        "",
        "Targets (✓ where PixelNN meets it):",
        "",
        "| domain | mean angular error: Top-1 vs pix2pix Rand-1 (lower) | edge AP: Top-1 vs pix2pix Rand-1 "
        "| mean angular error: Oracle vs Oracle | edge AP: Oracle vs Oracle | face found, top 10: PixelNN vs pix2pix |",
        "|---|---:|---:|---:|---:|---:|",
        *rows,
    ]


def versus_section(domains: dict) -> list[str]:
    """PixelNN minus pix2pix per metric, signed so that a positive number means PixelNN is better."""
    keys = [k for k in (*PER_OUTPUT, *PER_METHOD) if any(k in d["metrics"] for d in domains.values())]
    titles = {}
    for d in domains.values():
        titles.update({k: v["title"] for k, v in d["metrics"].items()})
    lines = [
        "",
        "## PixelNN against pix2pix",
        "",
        "PixelNN's value minus pix2pix's, signed so that **a positive number means PixelNN is better** (for",
        '"lower is better" metrics the sign is flipped). Per-output metrics: Rand-1 / Top-1 / Oracle (Rand-1 / Oracle',
        "for reports made before the ranking). Diversity counts",
        "higher as better, as the paper argues. **\\*** marks a difference whose paired 95% bootstrap interval over",
        "the inputs excludes 0 (spectrum gap and Fréchet are one number per set: no interval).",
        "",
        "| domain | " + " | ".join(titles[k] for k in keys) + " | PixelNN better in |",
        "|---|" + "---:|" * (len(keys) + 1),
    ]
    for d in domains.values():
        a, b = d["methods"].get("pixelnn"), d["methods"].get("pix2pix")
        if a is None or b is None:
            continue
        cells, wins, total = [], 0, 0
        for k in keys:
            meta = d["metrics"].get(k)
            if meta is None:
                cells.append("")
                continue
            sign = 1.0 if meta["better"].startswith("higher") else -1.0
            sels = tuple(x for x in selections(a) if x in b)
            pairs = [(a[x].get(k), b[x].get(k)) for x in sels] if k in PER_OUTPUT else [(a.get(k), b.get(k))]
            deltas = [None if x is None or y is None else sign * (x - y) for x, y in pairs]
            digits = 2 if meta.get("unit") == "dB" else 1 if k.startswith("frechet") else 3
            marks = _significant(d.get("versus"), k, sels if k in PER_OUTPUT else ("set",))
            cells.append(" / ".join("n/a" if v is None else f"{v:+.{digits}f}{mark}" for v, mark in zip(deltas, marks)))
            wins += sum(v > 0 for v in deltas if v is not None)
            total += sum(v is not None for v in deltas)
        lines.append(f"| {d['title']} | " + " | ".join(cells) + f" | {wins} of {total} |")
    return lines


def _significant(versus: dict | None, metric: str, selections: tuple[str, ...]) -> list[str]:
    """Per selection ('rand1', 'oracle' or 'set'): '\\*' where its bootstrap interval excludes 0, else ''."""
    found = (versus or {}).get(metric) or {}
    marks = []
    for sel in selections:
        entry = found.get(sel) or {}
        low, high = entry.get("low"), entry.get("high")
        if low is None and high is None and "significant" in entry:  # a carried table that kept only the verdict
            marks.append("\\*" if entry["significant"] else "")
            continue
        marks.append("\\*" if low is not None and high is not None and (low > 0 or high < 0) else "")
    return marks


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--domains", nargs="+", choices=list(DOMAINS), default=list(DOMAINS), help="domains to run (default: all)"
    )
    p.add_argument(
        "--descriptors",
        type=int,
        default=64,
        help="reduced descriptors in each bank for the fast search (0: exact search, ~30 s per input)",
    )
    p.add_argument(
        "--minutes",
        type=float,
        default=15.0,
        help="training budget per model, the same for stage 1 and pix2pix (default 15)",
    )
    p.add_argument("--limit", type=int, default=100, help="validation inputs per domain (default 100)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--copy", choices=COPY_MODES, default=DEFAULT_COPY, help=f"PixelNN's copy mode (default {DEFAULT_COPY})"
    )
    p.add_argument(
        "--data-root",
        type=Path,
        default=REPO.parent / "shared" / "data",
        help="default: ../shared/data from the repository",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=REPO / "results" / "paper_tables",
        help="default: results/paper_tables (git-ignored)",
    )
    p.add_argument(
        "--docs", type=Path, default=REPO / "docs", help="where results.md and its plots go (default: docs/)"
    )
    p.add_argument(
        "--size", type=int, default=96, help="working size (default 96, as the paper; smaller only for a quick look)"
    )
    p.add_argument("--train-limit", type=int, help="use only the first N training images (a quick look; default: all)")
    p.add_argument(
        "--folds",
        type=int,
        default=0,
        help="cross-fit each bank with K fold models (`pixelnn train --folds K`; their training is K - 1 times "
        "stage 1's, on top of --minutes); default 0: the bank's f(x_k) from stage 1 itself",
    )
    p.add_argument(
        "--stage1-precision",
        choices=["auto", "fp32", "bf16"],
        default="auto",
        help="stage 1's training precision (default auto: the run probes the CPU when it starts, and other work on "
        "the machine can sway the probe); pix2pix always probes",
    )
    p.add_argument("--train-only", action="store_true", help="train stage 1, the bank and pix2pix; evaluate later")
    p.add_argument("--table-only", action="store_true", help="only assemble the tables from finished domains")
    p.add_argument(
        "--longer",
        type=Path,
        help="the --out of a run of some of the same domains with a longer --minutes: its finished domains are "
        "set beside these in a section of their own",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    opts = build_parser().parse_args(argv)
    runner = Runner(opts)
    failed = []
    if not opts.table_only:
        t0 = time.time()
        for name in opts.domains:
            log(f"=== {name}: {DOMAINS[name].title}")
            if not runner.domain(name):
                failed.append(name)
            runner.tables()
        log(f"all done in {(time.time() - t0) / 3600:.2f} h" + (f"; unfinished: {', '.join(failed)}" if failed else ""))
    else:
        runner.tables()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
