"""The table assembly of benchmarks/paper_tables.py on a hand-made report (no training)."""

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "paper_tables.py"


@pytest.fixture(scope="module")
def tables():
    spec = importlib.util.spec_from_file_location("paper_tables", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["paper_tables"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    del sys.modules["paper_tables"]


def method(label, psnr, ap, spectrum, diversity, frechet):
    return {
        "label": label,
        "candidates": 72,
        "rand1": {"psnr": psnr[0], "edge_ap": ap[0], "spectrum_dist": spectrum[0]},
        "oracle": {"psnr": psnr[1], "edge_ap": ap[1], "spectrum_dist": spectrum[1]},
        "diversity_l1": diversity,
        "frechet": frechet,
    }


def domain(title):
    metrics = {
        "psnr": {"title": "PSNR", "better": "higher", "unit": "dB", "kind": "per output", "definition": "d"},
        "edge_ap": {"title": "edge AP", "better": "higher", "kind": "per output", "definition": "d"},
        "spectrum_dist": {"title": "spectrum dist", "better": "lower", "kind": "per output", "definition": "d"},
        "diversity_l1": {
            "title": "diversity L1",
            "better": "higher (more varied outputs)",
            "kind": "per method",
            "definition": "d",
        },
        "frechet": {"title": "Fréchet", "better": "lower", "kind": "per method", "definition": "d"},
    }
    methods = {
        "pixelnn": method("PixelNN", (19.0, 21.0), (0.70, 0.90), (0.30, 0.10), 0.08, 900.0),
        "pix2pix": method("pix2pix", (20.0, 20.5), (0.80, 0.85), (0.20, 0.20), 0.03, 1000.0),
    }
    versus = {  # as report.json stores it: keys sorted
        "edge_ap": {"oracle": {"low": 0.01, "high": 0.09}, "rand1": {"low": -0.2, "high": 0.05}},
        "psnr": {"oracle": {"low": -0.1, "high": 1.2}, "rand1": {"low": -1.5, "high": -0.4}},
        "diversity_l1": {"set": {"low": 0.02, "high": 0.07}},
    }
    return {
        "title": title,
        "paper": "",
        "report": "x/eval/report.json",
        "training_minutes": 10,
        "size": 96,
        "inputs": 5,
        "signal": "edges",
        "metrics": metrics,
        "methods": methods,
        "versus": versus,
    }


def test_versus_signs_favour_pixelnn_when_positive(tables):
    lines = tables.versus_section({"pets-edges": domain("Pets")})
    row = next(line for line in lines if line.startswith("| Pets"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # \\* where the bootstrap interval excludes 0
    assert cells[1] == "-1.00\\* / +0.50"  # PSNR: worse at random, better as oracle
    assert cells[2] == "-0.100 / +0.050\\*"  # edge AP
    assert cells[3] == "-0.100 / +0.100"  # spectrum distance is lower-better: 0.30 vs 0.20 is a loss; no interval
    assert cells[4] == "+0.050\\*"  # diversity
    assert cells[5] == "+100.0"  # Fréchet lower-better
    assert cells[6] == "5 of 8"


def test_paper_section_only_for_domains_the_paper_has(tables):
    assert tables.paper_section({"edges2shoes": domain("Shoes")}) == []
    lines = tables.paper_section({"pets-edges": domain("Pets")})
    assert "| Pets | PixelNN | 0.77 / 0.89 | 0.70 / 0.90 | 96 | 10 |" in lines
    assert "| Pets | pix2pix | 0.78 / 0.81 | 0.80 / 0.85 | 96 | 10 |" in lines


def test_render_has_every_section(tables):
    table = {"generated": "now", "domains": {"pets-edges": domain("Pets"), "edges2shoes": domain("Shoes")}}
    text = tables.render(table, figure_dir=None)
    for heading in ("## Edge AP", "## Beside the paper's Table 1", "## PixelNN against pix2pix", "## Pets", "## Shoes"):
        assert heading in text


def test_the_command_reproduces_the_settings(tables):
    settings = {"limit": 50, "seed": 0, "minutes": 10.0, "size": 96, "train_limit": None, "descriptors": 64}
    assert (
        tables._command("pets-edges", settings)
        == "python benchmarks/paper_tables.py --domains pets-edges --minutes 10 --limit 50"
    )
    quick = {**settings, "size": 64, "train_limit": 200, "minutes": 2.5}
    assert tables._command("edges2shoes", quick).endswith("--minutes 2.5 --limit 50 --size 64 --train-limit 200")


def ranked_domain(title):
    d = domain(title)
    for m, top in (
        ("pixelnn", {"psnr": 20.4, "edge_ap": 0.86, "spectrum_dist": 0.15}),
        ("pix2pix", {"psnr": 20.1, "edge_ap": 0.81, "spectrum_dist": 0.2}),
    ):
        d["methods"][m]["top1"] = top
    d["methods"]["pixelnn"].update(spectrum_gap=0.05, frechet_top1=800.0)
    d["methods"]["pix2pix"].update(spectrum_gap=0.10, frechet_top1=950.0)
    d["versus"]["psnr"]["top1"] = {"low": 0.1, "high": 0.5}
    return d


def test_top1_sits_between_rand1_and_oracle_in_every_table(tables):
    d = ranked_domain("Shoes")
    assert tables.triple(d["methods"]["pixelnn"], "edge_ap") == "0.700 / 0.860 / 0.900"
    assert tables.triple(domain("Old")["methods"]["pixelnn"], "edge_ap") == "0.700 / 0.900"  # reports without Top-1
    row = next(line for line in tables.versus_section({"edges2shoes": d}) if line.startswith("| Shoes"))
    assert "-1.00\\* / +0.30\\* / +0.50" in row  # PSNR: Rand-1 / Top-1 (interval excludes 0) / Oracle


def test_targets_name_each_check_and_results_json_has_the_documented_shape(tables):
    d = ranked_domain("Shoes")
    row = next(line for line in tables.targets_section({"edges2shoes": d}) if line.startswith("| Shoes"))
    cells = [c.strip() for c in row.strip("|").split("|")][1:]
    assert cells[0] == "0.860 vs 0.800 ✓"  # Top-1 edge AP against pix2pix's Rand-1
    assert cells[1] == "20.40 vs 20.00 ✓"
    assert cells[2] == "0.900 vs 0.850 ✓"
    assert cells[3] == "0.050 vs 0.100 ✓"
    assert cells[4] == "2.67x ✓"
    assert cells[5:] == ["n/a", "n/a"]  # no global NN and no bank spread in this report
    d["methods"]["global"] = method("global NN", (18.0, 19.0), (0.7, 0.8), (0.2, 0.1), 0.045, 800.0)
    d["methods"]["global"]["top1"] = d["methods"]["global"]["rand1"]
    d["bank"] = {"residual_spread": 0.12, "exemplars": 500, "pairs": 3000}
    assert tables.targets_section({"edges2shoes": d})[-1].endswith("| 2.67x ✓ | 1.50x | 4.00x |")
    d["methods"]["pixelnn"]["top1"]["psnr"] = 19.0
    assert "19.00 vs 20.00 ✗" in tables.targets_section({"edges2shoes": d})[-1]
    out = tables.results_json({"generated": "now", "domains": {"edges2shoes": d}})
    entry = out["domains"]["edges2shoes"]["pixelnn"]
    assert entry["edge_ap"] == {"rand1": 0.70, "top1": 0.86, "oracle": 0.90}
    assert entry["frechet"] == {"rand1": 900.0, "top1": 800.0} and entry["diversity_l1"] == {"set": 0.08}
    assert out["bank_residual_spread"] == {"edges2shoes": 0.12}


def test_a_longer_run_is_set_beside_its_domain_and_copy_modes_are_named(tables):
    near, far = ranked_domain("Faces"), ranked_domain("Faces")
    far["training_minutes"] = 60
    far["command"] = "python benchmarks/paper_tables.py --domains faces-lowres --minutes 60 --limit 50"
    far["stage1"] = {"norm": "group", "steps": 6500, "threads": 1}
    far["pix2pix_steps"] = 4000
    far["methods"]["pixelnn"]["rand1"]["edge_ap"] = 0.75
    lines = tables.budget_section({"faces-lowres": near}, {"faces-lowres": far})
    assert "## Faces: 10 against 60 training minutes" in lines
    rows = [line for line in lines if line.startswith("| 10 ") or line.startswith("| 60 ")]
    assert len(rows) == 4  # pix2pix and PixelNN at each budget (no stage-1 row in this report)
    assert rows[2].startswith("| 60 | pix2pix | 4000 |")
    assert rows[3].startswith("| 60 | PixelNN | 6500 | 0.750 / 0.860 / 0.900 |")
    assert not any("residual spread" in line for line in lines)  # these reports have none
    near["bank"], far["bank"] = {"residual_spread": 0.07}, {"residual_spread": 0.06}
    spread = [line for line in tables.budget_section({"faces-lowres": near}, {"faces-lowres": far}) if "spread" in line]
    assert spread and "0.0700 after 10 minutes and 0.0600 after 60" in spread[0]
    assert rows[0].startswith("| 10 | pix2pix | ? |")  # steps not known for this one
    assert any("Threads per training run: ? and 1" in line for line in lines)
    assert any("--minutes 60 --limit 50 --out DIR`" in line for line in lines)
    assert tables.budget_section({"faces-lowres": near}, {}) == []
    near["copy"], far["copy"] = "coherent", "matched"
    assert tables._copy_modes({"a": near}) == "the coherence prior, `--copy coherent`"
    assert tables._copy_modes({"a": near, "b": far}) == "`--copy coherent` for a; `--copy matched` for b"
    text = tables.render({"generated": "now", "domains": {"faces-lowres": near}, "longer": {"faces-lowres": far}}, None)
    assert "10 against 60 training minutes" in text and "`--copy coherent`" in text


def test_cross_fitted_banks_are_named_in_the_command_the_cell_and_the_intro(tables):
    settings = {"limit": 50, "seed": 0, "minutes": 10.0, "size": 96, "train_limit": None, "descriptors": 64}
    assert tables._command("edges2shoes", {**settings, "folds": 2}).endswith("--minutes 10 --limit 50 --folds 2")
    d = ranked_domain("Shoes")
    d["stage1"] = {"norm": "batch", "steps": 2676, "folds": [{"steps": 1357}, {"steps": 1319}]}
    assert tables._stage1_cell(d) == "BatchNorm, 2676; bank cross-fitted by 2 folds of 1357/1319"
    plain = ranked_domain("Faces")
    assert tables._cross_fit_lines({"faces-lowres": plain}) == []
    intro = " ".join(tables._cross_fit_lines({"faces-lowres": plain, "edges2shoes": d}))
    assert intro.startswith("Banks cross-fitted (edges2shoes: `--folds 2`)") and "faces" not in intro


def face_domain(title):
    """ranked_domain with the face metrics: PixelNN's Top-1 beats pix2pix's Rand-1 on mean angular error."""
    d = ranked_domain(title)
    face = {
        "pixelnn": {"rand1": (14.0, 0.9), "top1": (12.0, 1.0), "oracle": (9.0, 1.0), "top10": 0.95},
        "pix2pix": {"rand1": (13.0, 1.0), "top1": (13.5, 1.0), "oracle": (11.0, 1.0), "top10": 0.9},
    }
    for m, sels in face.items():
        for sel in ("rand1", "top1", "oracle"):
            mean, found = sels[sel]
            d["methods"][m][sel].update(
                normal_mean=mean,
                normal_median=mean - 2,
                normal_rmse=mean + 3,
                normal_11=50.0,
                normal_22=80.0,
                normal_30=90.0,
                face_found=found,
            )
        d["methods"][m]["face_found_top10"] = sels["top10"]
    for k in ("normal_mean", "face_found"):
        better = "lower" if k == "normal_mean" else "higher"
        d["metrics"][k] = {"title": k, "better": better, "kind": "per output", "definition": "d"}
    return d


def test_normals_section_sets_the_paper_beside_ours_and_checks_the_targets(tables):
    assert tables.normals_section({"edges2shoes": ranked_domain("Shoes")}) == []  # no face metrics: no section
    lines = tables.normals_section({"faces-normals": face_domain("Normals")})
    ours = next(line for line in lines if line.startswith("| Normals | PixelNN"))
    assert "| 14.0 / 12.0 / 9.0 |" in ours and ours.endswith("| 0.90 / 1.00 / 1.00 | 0.95 |")
    paper = next(line for line in lines if line.startswith("| Normals | paper: PixelNN"))
    assert "| 12.8 / 10.8 | 10.4 / 8.7 |" in paper and "| 0.38 / 0.42 |" in paper
    target = [c.strip() for c in lines[-1].strip("|").split("|")][1:]
    assert target == ["12.0 vs 13.0 ✓", "0.860 vs 0.800 ✓", "9.0 vs 11.0 ✓", "0.900 vs 0.850 ✓", "0.95 vs 0.90 ✓"]
    d = face_domain("Normals")
    d["methods"]["pixelnn"]["face_found_top10"] = 0.5
    assert tables.normals_section({"faces-normals": d})[-1].endswith("| 0.50 vs 0.90 ✗ |")
    out = tables.results_json({"generated": "now", "domains": {"faces-normals": d}})
    assert out["domains"]["faces-normals"]["pixelnn"]["normal_mean"] == {"rand1": 14.0, "top1": 12.0, "oracle": 9.0}
    assert out["domains"]["faces-normals"]["pixelnn"]["face_found_top10"] == {"set": 0.5}


def test_domains_a_run_does_not_redo_are_carried_with_their_date(tables):
    new = {"generated": "today", "domains": {"faces-normals": face_domain("Normals")}}
    kept = {
        "generated": "last week",
        "domains": {"edges2shoes": ranked_domain("Shoes"), "faces-normals": domain("Old normals")},
        "longer": {"edges2shoes": ranked_domain("Shoes 60"), "faces-normals": domain("Old normals 60")},
    }
    kept["longer"]["edges2shoes"]["command"] = "python benchmarks/paper_tables.py --domains edges2shoes --minutes 60"
    table = tables.carry(new, kept)
    assert list(table["domains"]) == ["faces-normals", "edges2shoes"]  # in DOMAINS order
    assert table["domains"]["faces-normals"]["title"] == "Normals"  # the new run wins
    assert (
        table["domains"]["edges2shoes"]["carried"] == "last week" and "carried" not in table["domains"]["faces-normals"]
    )
    assert list(table["longer"]) == ["edges2shoes"]  # a longer run only beside the run it was set against
    assert tables.carry(new, None) is new
    text = tables.render(table, figure_dir=None)
    assert "Carried unchanged from the run of last week (not rerun by the run above): edges2shoes." in text


def test_a_carried_verdict_marks_a_difference_without_its_interval(tables):
    versus = {"psnr": {"rand1": {"mean": 1.0, "low": None, "high": None, "significant": True}}}
    assert tables._significant(versus, "psnr", ("rand1",)) == ["\\*"]
    versus["psnr"]["rand1"]["significant"] = False
    assert tables._significant(versus, "psnr", ("rand1",)) == [""]
