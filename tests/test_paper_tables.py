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
    return {"label": label, "candidates": 72, "rand1": {"psnr": psnr[0], "edge_ap": ap[0], "spectrum_dist": spectrum[0]},
            "oracle": {"psnr": psnr[1], "edge_ap": ap[1], "spectrum_dist": spectrum[1]},
            "diversity_l1": diversity, "frechet": frechet}


def domain(title):
    metrics = {
        "psnr": {"title": "PSNR", "better": "higher", "unit": "dB", "kind": "per output", "definition": "d"},
        "edge_ap": {"title": "edge AP", "better": "higher", "kind": "per output", "definition": "d"},
        "spectrum_dist": {"title": "spectrum dist", "better": "lower", "kind": "per output", "definition": "d"},
        "diversity_l1": {"title": "diversity L1", "better": "higher (more varied outputs)", "kind": "per method", "definition": "d"},
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
    return {"title": title, "paper": "", "report": "x/eval/report.json", "training_minutes": 10, "size": 96,
            "inputs": 5, "signal": "edges", "metrics": metrics, "methods": methods, "versus": versus}


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
    assert tables._command("pets-edges", settings) == "python benchmarks/paper_tables.py --domains pets-edges --minutes 10 --limit 50"
    quick = {**settings, "size": 64, "train_limit": 200, "minutes": 2.5}
    assert tables._command("edges2shoes", quick).endswith("--minutes 2.5 --limit 50 --size 64 --train-limit 200")
