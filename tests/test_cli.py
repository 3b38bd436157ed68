import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import smooth_textures, write_photos
from pixelnn.bank.bank import Bank
from pixelnn.cli import _check_counts as cli_checks
from pixelnn.cli import build_parser, main
from pixelnn.data.notice import DataWarning

# 12 photos in nested folders with awkward names; sorted, the first two are 'a b/c.d&e.png', 'a b/f (1).png'
PHOTOS = [
    "a b/c.d&e.png",
    "a b/f (1).png",
    "a b/sub dir/g#h.png",
    "a b/sub dir/i+j.PNG",
    "it's/k.png",
    "it's/l;m.png",
    "n/o/p.png",
    "n/o/q.png",
    "n/r.png",
    "z_top.png",
    "ü/ß.png",
    "ü/%20.png",
]
COMMON = ["--signal", "lowres", "--size", "32", "--factor", "4"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _photos(folder, names, seed):
    return write_photos(folder, names, 32, seed)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """`pixelnn train` on a 12-photo folder: (exit code, data folder, model folder)."""
    root = tmp_path_factory.mktemp("cli")
    data = _photos(root / "photos", PHOTOS, seed=21)
    run = root / "run"
    code = main(
        [
            "train",
            "--data",
            str(data),
            *COMMON,
            "--labels",
            "path",
            "--minutes",
            "0.03",
            "--width",
            "8",
            "--out",
            str(run),
        ]
    )
    return code, data, run


def _fails(capsys, argv, verb, *phrases):
    """Run the CLI expecting a user error: exit 2, one 'pixelnn VERB: error:' line, no traceback."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"pixelnn {verb}: error: " in err
    assert "Traceback" not in err
    for phrase in phrases:
        assert phrase in err, err
    return err


def _png(path):
    return np.asarray(Image.open(path))


def test_train_writes_a_complete_model_folder(trained):
    code, data, run = trained
    assert code == 0
    for name in ("config.json", "stage1.safetensors", "metrics.json", "bank/bank.json"):
        assert (run / name).is_file(), name
    config = json.loads((run / "config.json").read_text())
    assert config["signal"] == "lowres" and config["size"] == 32 and config["factor"] == 4
    assert config["stage1"]["input_size"] == 8 and config["stage1"]["width"] == 8
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["train"]) == {"stage1_psnr", "bicubic_psnr", "mean_image_psnr"}
    assert all(np.isfinite(v) for v in metrics["train"].values())
    assert json.loads((run / "bank/bank.json").read_text())["count"] == 12
    bank = Bank.open(run / "bank")
    assert bank.names == sorted(PHOTOS)
    assert bank.labels[bank.names.index("a b/sub dir/g#h.png")] == "a b/sub dir"
    assert bank.labels[bank.names.index("z_top.png")] is None
    assert not (run / ".bank-new").exists() and not (run / ".bank-old").exists()


def test_train_writes_a_model_card(trained):
    _, data, run = trained
    card = (run / "README.md").read_text()
    metrics = json.loads((run / "metrics.json").read_text())
    assert f"| data | {data} |" in card and "| input signal | lowres (photos downsampled by 4) |" in card
    t = metrics["training"]
    assert f"{t['steps']} steps, {t['epochs']:g} epochs over 12 training pairs" in card
    assert f"| train | {metrics['train']['stage1_psnr']:.2f} dB |" in card
    assert "12 exemplars in 1 shard(s) at `bank/`" in card


def test_synthesize_from_a_data_folder_writes_pages_and_correspondences(trained, tmp_path):
    _, data, run = trained
    out = tmp_path / "out"
    assert (
        main(
            [
                "synthesize",
                "--model",
                str(run),
                "--data",
                str(data),
                "--limit",
                "2",
                "--grid",
                "1:1:1,3:1:whole",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert folders == ["a_b_c_d_e", "a_b_f__1_"]
    for folder, exemplar in zip(folders, (0, 1)):
        d = out / folder
        for name in (
            "input.png",
            "stage1.png",
            "target.png",
            "index.html",
            "cand-00_1-1-1.png",
            "cand-01_3-1-whole.png",
        ):
            assert (d / name).is_file(), (folder, name)
        assert _png(d / "input.png").shape == (32, 32, 3)
        corrs = sorted(d.glob("*.corr.npz"))
        assert [p.name for p in corrs] == ["cand-00_1-1-1.corr.npz", "cand-01_3-1-whole.corr.npz"]
        assert len(list(d.glob("*.corr.png"))) == 2
        for path in corrs:
            with np.load(path) as z:
                assert sorted(z.files) == ["exemplar", "sim", "sx", "sy", "weights"]  # the default copy votes
                assert all(z[k].shape == (32, 32) for k in ("exemplar", "sim", "sx", "sy"))
                assert z["weights"].shape == (32, 32, 9)
                assert ((z["exemplar"] >= 0) & (z["exemplar"] < 12)).all()
        # a training photo is its own first neighbour: 1:1:1 copies it back exactly
        with np.load(d / "cand-00_1-1-1.corr.npz") as z:
            assert (z["exemplar"] == exemplar).all()
        # to within one 8-bit step: the query's f(x), computed alone, may round differently from the
        # bank's batched f(x_k) by a float16 step at a few pixels (bank.build.stage1_outputs)
        step = np.abs(_png(d / "cand-00_1-1-1.png").astype(int) - _png(d / "target.png").astype(int))
        assert step.max() <= 1 and (step > 0).mean() < 0.01
        page = (d / "index.html").read_text()
        assert "cand-01_3-1-whole.corr.png" in page
    index = (out / "index.html").read_text()
    assert all(f"{f}/index.html" in index for f in folders)


def test_synthesize_from_a_photo(trained, tmp_path):
    _, _, run = trained
    photo = tmp_path / "my photo.png"
    Image.fromarray(smooth_textures(1, 48, seed=4)[0][:40]).save(photo)  # 40x48, not square
    out = tmp_path / "out2"
    code = main(["synthesize", "--model", str(run), str(photo), "--from-photo", "--grid", "global", "--out", str(out)])
    assert code == 0
    d = out / "my_photo"
    assert _png(d / "target.png").shape == (32, 32, 3)
    assert _png(d / "input.png").shape == (32, 32, 3)  # the 8x8 input, enlarged for display
    assert len(list(d.glob("cand-*.corr.npz"))) == 10  # 'global': the 10 nearest exemplars, copied whole
    assert len([p for p in d.glob("cand-*.png") if ".corr" not in p.name]) == 10
    assert "my_photo/index.html" in (out / "index.html").read_text()


def test_synthesize_keeps_inputs_whose_names_clean_to_the_same_folder(trained, tmp_path):
    _, _, run = trained
    write_photos(tmp_path, ["p/in.png", "q/in.bmp"], 8, seed=8)  # both are 'in' once cleaned
    signals = smooth_textures(2, 8, seed=8)
    out = tmp_path / "out"
    code = main(
        [
            "synthesize",
            "--model",
            str(run),
            str(tmp_path / "p"),
            str(tmp_path / "q"),
            "--grid",
            "1:1:1",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    folders = sorted(p for p in out.iterdir() if p.is_dir())
    assert [f.name for f in folders] == ["in", "in-2"]
    inputs = sorted(_png(f / "input.png")[::4, ::4].tobytes() for f in folders)  # display is 4x nearest
    assert inputs == sorted(im.tobytes() for im in signals)


def test_index_grows_the_bank_of_a_trained_model(trained, tmp_path, capsys):
    _, _, run = trained
    run = shutil.copytree(run, tmp_path / "run")
    more = _photos(tmp_path / "more", ["x/1.png", "x/2.png", "y.png"], seed=31)
    assert main(["index", "--model", str(run), "--data", str(more), *COMMON]) == 0
    bank = Bank.open(run / "bank")
    assert len(bank) == 15 and len(bank.manifest["shards"]) == 2
    assert "15 exemplars in 2 shard(s)" in (run / "README.md").read_text()  # index updates the model card
    assert bank.names[12:] == ["x/1.png", "x/2.png", "y.png"]
    # a rerun adds nothing: size and factor default to the model's (not to the 96 / 8 of a fresh
    # model), so the same photos give the same exemplars, which are in the bank already
    capsys.readouterr()
    assert main(["index", "--model", str(run), "--data", str(more)]) == 0
    assert "skipped 3 of 3 exemplars already in the bank" in capsys.readouterr().out
    assert len(Bank.open(run / "bank")) == 15
    assert main(["index", "--model", str(run), "--data", str(more), "--quiet"]) == 0
    assert capsys.readouterr().out == ""  # --quiet: warnings and errors only
    assert main(["index", "--model", str(run), "--data", str(more), "--allow-duplicates"]) == 0
    bank = Bank.open(run / "bank")
    assert len(bank) == 18 and bank.names[15:] == bank.names[12:15]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU: --device cuda would work")
@pytest.mark.parametrize("verb", ["synthesize", "serve", "evaluate"])
def test_device_cuda_without_a_gpu_is_a_clear_error(capsys, tiny_run, tmp_path, verb):
    extra = {
        "synthesize": ["--data", str(tmp_path), "--out", str(tmp_path / "o")],
        "serve": ["--port", "0"],
        "evaluate": ["--data", str(tmp_path), "--out", str(tmp_path / "o")],
    }[verb]
    _fails(
        capsys,
        [verb, "--model", str(tiny_run[0]), *extra, "--device", "cuda"],
        verb,
        "sees no CUDA GPU",
        "--device cpu",
    )


def test_train_refuses_a_data_folder_that_does_not_exist(capsys, tmp_path):
    _fails(
        capsys,
        ["train", "--data", str(tmp_path / "nope"), *COMMON, "--out", str(tmp_path / "r")],
        "train",
        "nope",
        "not found",
    )


def test_train_asks_for_a_signal_for_a_photo_folder(capsys, tmp_path):
    data = _photos(tmp_path / "d", ["a.png"], seed=1)
    _fails(capsys, ["train", "--data", str(data), "--out", str(tmp_path / "r")], "train", "--signal")


def test_train_refuses_a_folder_without_images(capsys, tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "notes.txt").write_text("no images here")
    _fails(
        capsys,
        ["train", "--data", str(tmp_path / "d"), *COMMON, "--out", str(tmp_path / "r")],
        "train",
        "no image files",
    )


def test_a_model_folder_without_config_is_refused(capsys, tmp_path):
    (tmp_path / "m").mkdir()
    photo = _photos(tmp_path, ["p.png"], seed=1) / "p.png"
    _fails(
        capsys,
        ["synthesize", "--model", str(tmp_path / "m"), str(photo), "--out", str(tmp_path / "o")],
        "synthesize",
        "config.json",
        "pixelnn train",
    )
    _fails(capsys, ["index", "--model", str(tmp_path / "m"), "--data", str(tmp_path)], "index", "config.json")


def test_synthesize_refuses_a_missing_input_image(capsys, trained, tmp_path):
    _, _, run = trained
    _fails(
        capsys,
        ["synthesize", "--model", str(run), str(tmp_path / "ghost.png"), "--out", str(tmp_path / "o")],
        "synthesize",
        "ghost.png",
        "no such file",
    )


@pytest.mark.parametrize(
    "extra, phrases",
    [
        (["--grid", "x:y"], ["bad candidate 'x:y'", "n:first:window"]),
        (["--restrict", "horse"], ["no exemplar has label horse", "a b"]),
        (["--ids", "3,99"], ["exemplar ids must be in 0..11"]),
        (["--ids", "3,seven"], ["--ids", "'3,seven'"]),
        (["--ids", "3,\u0661"], ["--ids", "'3,\u0661'"]),
    ],
)
def test_synthesize_refuses_bad_options(capsys, trained, tmp_path, extra, phrases):
    _, data, run = trained
    out = tmp_path / "o"
    _fails(
        capsys,
        ["synthesize", "--model", str(run), "--data", str(data), "--limit", "1", *extra, "--out", str(out)],
        "synthesize",
        *phrases,
    )
    assert not (out / "index.html").exists()


def test_index_refuses_data_of_another_signal(capsys, trained, tmp_path):
    _, data, run = trained
    before = (run / "bank" / "bank.json").read_text()
    _fails(
        capsys, ["index", "--model", str(run), "--data", str(data), "--pairs", "BtoA"], "index", "'lowres'", "'pairs'"
    )
    assert (run / "bank" / "bank.json").read_text() == before


def test_training_skips_a_truncated_jpeg_and_says_so(capsys, tmp_path):
    data = _photos(tmp_path / "d", [f"{i}.png" for i in range(5)], seed=2)
    jpeg = data / "broken.jpg"
    Image.fromarray(smooth_textures(1, 64, seed=9)[0]).save(jpeg, format="JPEG", quality=90)
    raw = jpeg.read_bytes()
    jpeg.write_bytes(raw[: len(raw) // 2])
    run = tmp_path / "run"
    with pytest.warns(DataWarning, match=r"skipped 1 of 6 images.*broken\.jpg"):
        code = main(
            [
                "train",
                "--data",
                str(data),
                *COMMON,
                "--minutes",
                "0.005",
                "--width",
                "8",
                "--no-index",
                "--out",
                str(run),
            ]
        )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "data: 5 training pairs" in captured.out
    assert (run / "stage1.safetensors").is_file() and (run / "metrics.json").is_file()
    assert not (run / "bank").exists()  # --no-index


VERBS = sorted(build_parser()._subparsers._group_actions[0].choices)


def help_examples(text: str) -> list[list[str]]:
    """The command lines after 'examples:' in a help text, as argv lists without 'pixelnn'
    (continuation lines ending in a backslash joined, # comments dropped)."""
    lines = text.split("examples:", 1)[1].replace("\\\n", " ").splitlines()
    return [shlex.split(line, comments=True)[1:] for line in lines if line.strip().startswith("pixelnn ")]


def test_every_verb_is_checked():
    assert VERBS == [
        "compact",
        "convert",
        "demo",
        "evaluate",
        "index",
        "serve",
        "setup-weights",
        "synthesize",
        "train",
        "train-pix2pix",
        "verify",
    ]


@pytest.mark.parametrize("verb", VERBS)
def test_help_of_every_verb_has_examples_the_parser_accepts(capsys, verb):
    with pytest.raises(SystemExit) as exit_:
        main([verb, "--help"])
    assert exit_.value.code == 0
    examples = help_examples(capsys.readouterr().out)
    assert examples, f"`pixelnn {verb} --help` shows no example"
    parser = build_parser()
    for argv in examples:
        assert argv[0] == verb, argv
        args = parser.parse_args(argv)  # an example the parser refuses exits (SystemExit 2) and fails here
        assert args.verb == verb
        cli_checks(args)  # and its numbers are ones the verb accepts


def test_synthesize_defaults_to_the_paper_72_candidates():
    from pixelnn.synth.grid import paper72, parse

    args = build_parser().parse_args(["synthesize", "--model", "m", "x.png", "--out", "o"])
    assert args.grid == "paper72" and len(parse(args.grid)) == 72 == len(set(paper72()))


def test_demo_page_states_the_training_it_did_and_the_baseline(tmp_path):
    from pixelnn.demo import run_demo

    page = run_demo(tmp_path, steps=3, minutes=None, n_train=16, n_inputs=1, precision="fp32", held_out_per_class=2)
    text = page.read_text()
    metrics = json.loads((tmp_path / "model" / "metrics.json").read_text())
    assert metrics["training"]["steps"] == 3
    assert "3 steps" in text and "mean training image" in text
    assert f"{metrics['val']['stage1_psnr']:.2f} dB" in text and f"{metrics['val']['mean_image_psnr']:.2f} dB" in text
    assert "<table" in text and "precision" in text and "fp32" in text
    assert len([p for p in (tmp_path / "results").glob("*/cand-*.png") if ".corr" not in p.name]) == 72


@pytest.mark.parametrize(
    "extra, phrases",
    [
        (["--grid", "1:1:0"], ["bad candidate '1:1:0'", "window >= 1"]),
        (["--grid", "5:1:99999,1:1:1", "--limit", "1"], []),  # a huge window is the whole image: runs
        (["--like-k", "0"], ["--like-k must be at least 1, got 0"]),
        (["--limit", "-1"], ["--limit must be at least 1, got -1"]),
        (["--limit", "0"], ["--limit must be at least 1, got 0"]),
        (["--grid", "1:3:1", "--ids", "1"], ["no candidate can be made", "(1 chosen ids) has 1 exemplar(s)", "1:3:1"]),
    ],
)
def test_synthesize_requests_beyond_reason_are_clear_errors(capsys, trained, tmp_path, extra, phrases):
    _, data, run = trained
    out = tmp_path / "o"
    argv = ["synthesize", "--model", str(run), "--data", str(data), "--limit", "1", *extra, "--out", str(out)]
    if not phrases:
        assert main(argv) == 0, capsys.readouterr().err
        assert (out / "index.html").is_file()
        return
    _fails(capsys, argv, "synthesize", *phrases)
    assert not (out / "index.html").exists()


def test_synthesize_refuses_an_out_that_is_a_file_or_not_writable_before_work(capsys, trained, tmp_path):
    _, data, run = trained
    afile = tmp_path / "file"
    afile.write_text("x")
    base = ["synthesize", "--model", str(run), "--data", str(data), "--limit", "1", "--out"]
    _fails(capsys, [*base, str(afile)], "synthesize", "is a file, not a folder")
    _fails(capsys, [*base, str(afile / "sub")], "synthesize", "cannot create the folder")
    locked = tmp_path / "locked"
    locked.mkdir()
    # root may write anywhere, so the permission check itself is made to see a read-only folder
    real_access = os.access
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "access", lambda p, mode: False if Path(p) == locked else real_access(p, mode))
        _fails(capsys, [*base, str(locked)], "synthesize", "not writable")


def test_synthesize_from_a_folder_skips_hidden_and_unreadable_files_and_says_so(capsys, trained, tmp_path):
    _, data, run = trained
    inputs = _photos(tmp_path / "in", ["a.png", "b.png"], seed=3)
    (inputs / ".hidden.png").write_bytes(b"not an image")
    (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = tmp_path / "o"
    # a new process, so that the CLI's own warning format is seen (pytest records warnings itself)
    argv = ["synthesize", "--model", str(run), str(inputs), "--grid", "1:1:1", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-m", "pixelnn.cli", *argv], capture_output=True, text=True, env=env, timeout=300
    )
    err = done.stderr
    assert done.returncode == 0, err
    assert "warning: skipped 1 of 3 input images that could not be read: broken.png" in err
    assert ".hidden" not in err and "Traceback" not in err
    assert "warn_data(" not in err and "DataWarning" not in err  # no Python source line, no class name
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["a", "b"]


def test_train_refuses_an_out_that_is_a_file_before_reading_data(capsys, tmp_path):
    afile = tmp_path / "run"
    afile.write_text("x")
    _fails(
        capsys,
        ["train", "--data", str(tmp_path / "nowhere"), *COMMON, "--out", str(afile)],
        "train",
        "is a file, not a folder",
    )


@pytest.mark.parametrize(
    "verb, extra, phrase",
    [
        ("train", ["--batch", "0"], "--batch must be at least 1, got 0"),
        ("train", ["--steps", "-1"], "--steps must be at least 0, got -1"),
        ("train", ["--epochs", "-2"], "--epochs must be at least 0, got -2"),
        ("train", ["--minutes", "0"], "--minutes must be a finite number above 0, got 0.0"),
        ("train", ["--minutes", "nan"], "--minutes must be a finite number above 0, got nan"),
        ("train", ["--minutes", "1e309"], "--minutes must be a finite number above 0, got inf"),
        ("train", ["--weight-decay", "-0.1"], "--weight-decay must be a finite number 0 or more"),
        ("train", ["--width", "0"], "--width must be at least 1"),
        ("train", ["--width", "100000"], "--width must be at most 1024, got 100000"),
        ("train-pix2pix", ["--ndf", "5000"], "--ndf must be at most 1024"),
        ("serve", ["--threads", "1000000"], "--threads must be at most 256"),
        ("train", ["--size", "100000"], "--size must be in 8..4096, got 100000"),
        ("train", ["--size", "0"], "--size must be in 8..4096, got 0"),
        ("train", ["--factor", "64"], "--factor must be at most --size (32), got 64"),
        ("train", ["--factor", "0"], "--factor must be at least 1, got 0"),
        ("train", ["--descriptors", "0"], "--descriptors must be at least 1"),
        ("train-pix2pix", ["--ngf", "0"], "--ngf must be at least 1"),
        ("evaluate", ["--seed", "-1"], "--seed must be at least 0, got -1"),
        ("evaluate", ["--samples", "0"], "--samples must be at least 1"),
        ("demo", ["--train", "0"], "--train must be at least 1"),
        ("demo", ["--inputs", "-3"], "--inputs must be at least 1"),
        ("serve", ["--port", "70000"], "--port must be in 0..65535, got 70000"),
        ("serve", ["--threads", "0"], "--threads must be at least 1"),
    ],
)
def test_numbers_the_jobs_cannot_use_are_refused_before_any_work(capsys, tmp_path, verb, extra, phrase):
    """Found by tests/test_hostile.py: these reached the long jobs unchecked (--batch 0 then crashed
    with 'range() arg 3 must not be zero'; --size 100000 would allocate without bound)."""
    out = ["--out", str(tmp_path / "out")]
    argv = {
        "train": ["train", "--data", str(tmp_path), *COMMON, *out, *extra],
        "train-pix2pix": ["train-pix2pix", "--data", str(tmp_path), *COMMON, *out, *extra],
        "evaluate": ["evaluate", "--model", str(tmp_path), "--data", str(tmp_path), *out, *extra],
        "demo": ["demo", *out, *extra],
        "serve": ["serve", "--model", str(tmp_path), *extra],
    }[verb]
    _fails(capsys, argv, verb, phrase)
    assert not (tmp_path / "out").exists()  # refused before the output folder is made


def test_index_with_more_descriptor_dimensions_than_the_backbone_has_is_refused(capsys, trained, tmp_path):
    """Found while fuzzing the CLI: `--descriptors 100000` ended in a ValueError traceback."""
    _, data, run = trained
    bank = tmp_path / "bank"
    _fails(
        capsys,
        ["index", "--model", str(run), "--data", str(data), *COMMON, "--bank", str(bank), "--descriptors", "100000"],
        "index",
        "--descriptors",
        "got 100000",
    )
    assert not (bank / "manifest.json").exists()
