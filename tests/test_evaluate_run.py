import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import smooth_textures, write_photos
from pixelnn.cli import main
from pixelnn.evaluate import cache, candidates, input_metrics
from pixelnn.evaluate import metrics as M
from pixelnn.evaluate.figures import farthest_point, labelled_grid
from pixelnn.synth.grid import global_matches
from pixelnn.synth.pipeline import PixelNN

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_global_method_taken_from_the_paper72_result_equals_a_separate_global_call(tiny_run):
    root, x, _, _ = tiny_run
    model = PixelNN.load(root)
    query = np.ascontiguousarray(x[1][:, ::-1])  # not in the bank
    full = model.synthesize(query)
    alone = model.synthesize(query, grid="global", rank=False)
    picked = candidates.global_indices([c.spec for c in full.candidates])
    assert [full.candidates[i].spec for i in picked] == [c.spec for c in alone.candidates]
    assert [c.spec for c in alone.candidates] == global_matches(10)[: len(model.bank)]
    for i, cand in zip(picked, alone.candidates):
        assert np.array_equal(full.candidates[i].image, cand.image)
        assert np.array_equal(full.candidates[i].corr.exemplar, cand.corr.exemplar)


def test_farthest_point_picks_the_distinct_images():
    base = np.stack([np.full((4, 4, 3), v) for v in (0.0, 0.3, 1.0)])
    images = base[[0, 0, 1, 2, 2, 1, 0]]  # three distinct images, repeated
    pick = farthest_point(images, 3)
    assert sorted(images[pick][:, 0, 0, 0].tolist()) == [0.0, 0.3, 1.0]
    assert pick[:2] == [0, 3]  # the two most different come first
    assert farthest_point(images[:2], 7) == [0, 1]


def test_labelled_grid_size():
    rows = [("a", [np.zeros((8, 8, 3), np.uint8)] * 3), ("b", [np.zeros((4, 4, 1), np.uint8)])]
    grid = labelled_grid(rows, 16, header=["x", "y", "z"])
    assert grid.shape[2] == 3 and grid.shape[1] > 3 * 16 and grid.shape[0] > 2 * 16


@pytest.fixture(scope="module")
def evaluated(tiny_run, tmp_path_factory):
    """`pixelnn train-pix2pix` (a few steps) and `pixelnn evaluate` on 2 validation photos."""
    root = tmp_path_factory.mktemp("evaluate")
    val = write_photos(root / "val", ["v0.png", "v1.png"], 32, seed=11)
    p2p = root / "p2p"
    code = main(
        [
            "train-pix2pix",
            "--data",
            str(val),
            "--signal",
            "lowres",
            "--size",
            "32",
            "--factor",
            "4",
            "--ngf",
            "4",
            "--ndf",
            "4",
            "--batch",
            "2",
            "--steps",
            "3",
            "--minutes",
            "5",
            "--out",
            str(p2p),
        ]
    )
    assert code == 0
    out = root / "out"
    args = [
        "evaluate",
        "--model",
        str(tiny_run[0]),
        "--pix2pix",
        str(p2p),
        "--data",
        str(val),
        "--samples",
        "5",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    return out, args


def test_evaluate_writes_every_method_and_metric(evaluated):
    out, _ = evaluated
    rep = json.loads((out / "report.json").read_text())
    assert rep["format"] == "pixelnn-evaluation" and rep["inputs"] == 2 and rep["signal"] == "lowres"
    per_output = ["psnr", "ssim", "consistency_psnr", "edge_ap", "spectrum_dist"]
    per_method = ["diversity_l1", "diversity_l1_top10", "diversity_deep", "spectrum_gap", "frechet", "frechet_top1"]
    assert set(rep["metrics"]) == set(per_output + ["seam"] + per_method)
    assert rep["order"] == ["stage1", "global", "pixelnn", "pix2pix"] and set(rep["methods"]) == set(rep["order"])
    counts = {m: row["candidates"] for m, row in rep["methods"].items()}
    assert counts == {"stage1": 1, "global": 6, "pixelnn": 44, "pix2pix": 5}  # a 6-exemplar bank: 44 of the 72
    for m, row in rep["methods"].items():
        for k in per_output:
            r, t, o = row["rand1"][k], row["top1"][k], row["oracle"][k]
            assert r is not None and t is not None and o is not None and np.isfinite([r, t, o]).all(), (m, k)
            for v in (r, t):  # the Oracle is at least as good as any other choice
                assert (o >= v - 1e-9) if rep["metrics"][k]["better"] == "higher" else (o <= v + 1e-9), (m, k)
        # seams: only for the methods that copy; a whole-image copy (global NN) has none
        assert ("seam" in row["rand1"]) == (m in ("global", "pixelnn")), m
        for k in per_method:
            assert row[k] is not None and np.isfinite(row[k]), (m, k)
    assert rep["methods"]["global"]["oracle"]["seam"] == 0.0
    stage1 = rep["methods"]["stage1"]
    assert stage1["rand1"] == stage1["oracle"] and stage1["diversity_l1"] == 0.0
    assert rep["methods"]["pixelnn"]["diversity_l1"] > 0 and rep["methods"]["pix2pix"]["diversity_deep"] > 0
    # the bank's scale for diversity: its 6 exemplars, and above 0 (an untrained stage 1 fits nothing)
    assert rep["bank"]["exemplars"] == 6 and rep["bank"]["residual_spread"] > 0
    assert "the bank's residual spread is" in (out / "report.md").read_text()
    assert set(rep["spectra"]) == {"real", "stage1", "global", "pixelnn", "pix2pix"}
    assert all(len(s) == 16 for s in rep["spectra"].values())

    # PixelNN against pix2pix: the mean difference of the two Rand-1 rows, inside its interval
    ap = rep["versus"]["edge_ap"]["rand1"]
    assert ap["mean"] == pytest.approx(
        rep["methods"]["pixelnn"]["rand1"]["edge_ap"] - rep["methods"]["pix2pix"]["rand1"]["edge_ap"]
    )
    assert set(rep["versus"]["psnr"]) == {"rand1", "top1", "oracle"}
    for sels in rep["versus"].values():
        for v in sels.values():
            assert v["low"] - 1e-12 <= v["mean"] <= v["high"] + 1e-12

    md = (out / "report.md").read_text()
    assert "## PixelNN against pix2pix" in md
    for m in rep["methods"].values():
        assert f"| {m['label']} |" in md
    for d in rep["metrics"].values():
        assert d["title"] in md
    assert "not comparable to published FID" in md


def test_evaluate_writes_the_figures(evaluated):
    out, _ = evaluated
    rep = json.loads((out / "report.json").read_text())
    names = {f.split("/")[-1] for f in rep["figures"]}
    corr = {f"correspondence-{i}-{k}.png" for i in (0, 1) for k in ("rand1", "composite")}
    assert {
        "comparison.png",
        "multiple-0.png",
        "multiple-1.png",
        "ranked-0.png",
        "ranked-1.png",
        "frequency.png",
        *corr,
    } <= names
    for f in rep["figures"]:
        with Image.open(out / f) as im:
            assert im.format == "PNG" and im.size[0] > 100
        assert f"]({f})" in (out / "report.md").read_text()


def test_the_composite_correspondence_has_the_most_sources(evaluated):
    out, _ = evaluated
    with np.load(out / "cache" / "cand-00000.npz") as z:
        cands = {k: z[k] for k in z.files}
    rand1, composite = cache.corr_of(cands, "rand1"), cache.corr_of(cands, "composite")
    assert rand1 is not None and composite is not None
    assert (np.diff(cands["score__pixelnn"]) <= 0).all()  # PixelNN's candidates are cached best first
    assert cands["score__pix2pix"].shape == (len(cands["pix2pix"]),)  # pix2pix is ranked by the same function
    n_sources = len(np.unique(composite[1].exemplar))
    assert n_sources >= len(np.unique(rand1[1].exemplar)) and n_sources > 1
    assert str(cands["specs"][composite[0]]).startswith(("3:", "5:"))  # only n > 1 candidates can mix exemplars


def test_a_rerun_resumes_from_the_cache_without_synthesizing(evaluated, monkeypatch):
    out, args = evaluated
    before = json.loads((out / "report.json").read_text())

    def no_synthesis(*a, **k):
        raise AssertionError("synthesize called although every input is cached")

    monkeypatch.setattr(PixelNN, "synthesize", no_synthesis)
    (out / "report.json").unlink()
    assert main(args) == 0
    assert json.loads((out / "report.json").read_text()) == before
    # another seed is another Rand-1 draw and other dropout masks: the cached candidates are not reused
    with pytest.raises(AssertionError, match="synthesize called"):
        main([*args[:-2], "--seed", "1", "--out", str(out)])


def test_evaluate_refuses_a_pix2pix_of_another_shape(tiny_run, tmp_path, capsys):
    val = write_photos(tmp_path / "val", ["v0.png", "v1.png"], 32, seed=12)
    p2p = tmp_path / "p2p"
    assert (
        main(
            [
                "train-pix2pix",
                "--data",
                str(val),
                "--signal",
                "edges",
                "--size",
                "32",
                "--ngf",
                "4",
                "--ndf",
                "4",
                "--batch",
                "2",
                "--steps",
                "1",
                "--out",
                str(p2p),
            ]
        )
        == 0
    )
    code = main(
        [
            "evaluate",
            "--model",
            str(tiny_run[0]),
            "--pix2pix",
            str(p2p),
            "--data",
            str(val),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 2
    assert "train both on the same data" in capsys.readouterr().err


def test_one_vgg_pass_gives_the_hed_edges_and_the_taps_of_the_subset():
    from pixelnn.features.vgg_hed import hed_edges, pretrained

    images = smooth_textures(5, 32, seed=13)
    keep = np.array([1, 4])
    edges, taps = input_metrics.edges_and_taps(pretrained(), images, keep, batch=3)
    t = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    assert edges.shape == (5, 32, 32)
    assert np.allclose(edges, hed_edges(t)[:, 0].numpy(), atol=1e-5)
    with torch.no_grad():
        ref = pretrained()(t[keep])
    assert len(taps) == 5 and all(torch.allclose(a, b, atol=1e-4) for a, b in zip(taps, ref))


def test_distinct_images_are_found_across_groups():
    images = smooth_textures(4, 8, seed=14)
    groups = [images[[0, 1]], images[[2, 1, 0, 2]], images[[3]]]
    unique, index = input_metrics.distinct_images(groups)
    assert len(unique) == 4 and [i.tolist() for i in index] == [[0, 1], [2, 1, 0, 2], [3]]
    for group, where in zip(groups, index):
        assert np.array_equal(unique[where], group)


def test_one_vgg_pass_over_distinct_images_equals_a_pass_per_method():
    """vgg_outputs (the photo and every distinct candidate in one pass) against the former path: the
    photo alone through hed_edges and each method's candidates through edges_and_taps on their own."""
    from pixelnn.features.vgg_hed import hed_edges, pretrained

    pool = smooth_textures(12, 32, seed=15)
    y = pool[0]
    cands = {"stage1": pool[1:2], "global": pool[[3, 5, 7]], "pixelnn": pool[2:9], "pix2pix": pool[9:12]}
    subsets = {m: input_metrics.deep_subset(0, 4, len(c)) for m, c in cands.items()}
    real_edges, edges, taps = input_metrics.vgg_outputs(y, cands, subsets)
    assert np.allclose(real_edges, hed_edges(input_metrics._tensor(y[None]))[0, 0].numpy(), rtol=0, atol=1e-6)
    for m, imgs in cands.items():
        ref_edges, ref_taps = input_metrics.edges_and_taps(pretrained(), imgs, subsets[m])
        assert edges[m].shape == (len(imgs), 32, 32)
        assert np.allclose(edges[m], ref_edges, rtol=0, atol=1e-6), m
        assert len(taps[m]) == 5 and all(
            torch.allclose(a, b, rtol=1e-5, atol=1e-3) for a, b in zip(taps[m], ref_taps)
        ), m  # values up to ~1e3
        # and so the metrics made of them
        assert np.allclose(M.edge_ap(edges[m], real_edges), M.edge_ap(ref_edges, real_edges), rtol=0, atol=1e-6), m
        if len(subsets[m]) >= 2:
            deep, ref_deep = (M.mean_pair_distance(M.hypercolumn_similarity(t, (32, 32))) for t in (taps[m], ref_taps))
            assert deep == pytest.approx(ref_deep, abs=1e-6), m
