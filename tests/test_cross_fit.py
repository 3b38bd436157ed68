"""Cross-fitted banks (`pixelnn train --folds K`): every stored f(x_k) comes from a fold model that
never trained on that pair; queries keep the model itself."""

import json
import shutil

import numpy as np
import pytest

from conftest import write_photos
from pixelnn.bank import stage1
from pixelnn.bank.bank import Bank
from pixelnn.bank.store import exemplar_hashes
from pixelnn.cli import main
from pixelnn.data.options import DataOptions
from pixelnn.errors import BankError
from pixelnn.evaluate.cache import run_key
from pixelnn.regress import checkpoint
from pixelnn.workflow import index_arrays

pytestmark = pytest.mark.usefixtures("one_torch_thread")
COMMON = ["--signal", "lowres", "--size", "32", "--factor", "4", "--width", "8"]


@pytest.fixture(scope="module")
def folded(tmp_path_factory):
    """A model folder trained for 30 steps on 24 photos, with 2 fold models and its cross-fitted bank."""
    root = tmp_path_factory.mktemp("folds")
    data = write_photos(root / "photos", [f"p{i:02d}.png" for i in range(24)], 32, seed=5)
    run = root / "run"
    code = main(
        ["train", "--data", str(data), *COMMON, "--steps", "30", "--batch", "4", "--out", str(run), "--folds", "2"]
    )
    assert code == 0
    return data, run


def _training_pairs(data):
    from pixelnn.commands import load_data

    opts = DataOptions(data=data, signal="lowres", size=32, factor=4)
    return load_data(opts, data)


def test_folds_split_by_content_and_train_for_as_many_epochs(folded):
    _, run = folded
    main_steps = json.loads((run / "metrics.json").read_text())["training"]["steps"]
    assert main_steps == 30
    pairs = 0
    for k in (0, 1):
        metrics = json.loads((stage1.fold_folder(run, k) / "metrics.json").read_text())
        assert metrics["fold"] == {"index": k, "of": 2}
        t = metrics["training"]
        assert 0 < t["pairs"] < 24
        assert t["steps"] == round(30 * t["pairs"] / 24)  # the same passes over its pairs as the model
        pairs += t["pairs"]
    assert pairs == 24  # each pair is left out by exactly one fold (K = 2: each fold trains on the other's)


def test_the_bank_stores_each_pair_from_the_fold_that_left_it_out(folded):
    data, run = folded
    bank = Bank.open(run / "bank")
    assert bank.manifest["cross_fit"]["folds"] == 2
    assert "cross-fitted: each from the one of 2 fold models" in (run / "README.md").read_text()
    prepared = _training_pairs(data)
    which = stage1.fold_of(exemplar_hashes(prepared.x, prepared.y), 2)
    assert set(which) == {0, 1}
    main_model = checkpoint.load_model(run / checkpoint.FILENAME)
    folds = [checkpoint.load_model(stage1.fold_folder(run, k) / checkpoint.FILENAME) for k in (0, 1)]
    stored = bank.stage1([bank.names.index(n) for n in prepared.names])

    def f(model, i):
        return stage1.stage1_outputs(model, prepared.x[i : i + 1], progress=False)[0].astype(np.float32)

    for i in range(len(prepared.x)):
        # the fold model that left pair i out, to within the bank's rounding; not the other, not the model
        assert np.abs(stored[i] - f(folds[which[i]], i)).max() <= 1 / 255 + 1e-3, i
        assert np.abs(stored[i] - f(folds[1 - which[i]], i)).max() > 2 / 255, i
        assert np.abs(stored[i] - f(main_model, i)).max() > 2 / 255, i


def test_a_bank_keeps_one_origin_of_its_outputs(folded, tmp_path):
    data, run = folded
    prepared = _training_pairs(data)
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("cache"))
    shutil.rmtree(copy / "folds")  # the same model without its folds
    with pytest.raises(BankError, match="from 2 fold models, but this run would compute them with the model itself"):
        index_arrays(copy, prepared.x[:2], prepared.y[:2], ["new-a", "new-b"], [None, None], progress=False)


def test_unfinished_or_partial_folds_are_refused(folded, tmp_path):
    _, run = folded
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("cache", "bank"))
    main_model = checkpoint.load_model(copy / checkpoint.FILENAME)
    metrics = copy / "folds/1/metrics.json"
    record = json.loads(metrics.read_text())
    del record["fold"]
    metrics.write_text(json.dumps(record))
    with pytest.raises(BankError, match="fold 1 of 2 .* is not finished"):
        stage1.load_folds(copy, main_model)
    shutil.rmtree(copy / "folds/1")
    with pytest.raises(BankError, match="not 0 .. K-1 with K >= 2"):
        stage1.load_folds(copy, main_model)


def test_cross_fitted_candidates_get_their_own_cache_key(folded):
    _, run = folded
    manifest = Bank.open(run / "bank").manifest
    plain = {k: v for k, v in manifest.items() if k != "cross_fit"}
    assert run_key(manifest, None, 0, 72, "matched") != run_key(plain, None, 0, 72, "matched")


def test_one_fold_is_refused_before_any_work(tmp_path, capsys):
    code = main(["train", "--data", str(tmp_path), *COMMON, "--out", str(tmp_path / "run"), "--folds", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "--folds must be at least 2" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_a_folder_made_before_zero_head_existed_resumes_and_gets_folds(folded, tmp_path):
    """`pixelnn train --folds` on a finished folder whose config.json predates the 'zero_head' key."""
    data, run = folded
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("folds", "bank"))
    config = json.loads((copy / "config.json").read_text())
    del config["stage1"]["zero_head"]
    (copy / "config.json").write_text(json.dumps(config))
    argv = ["train", "--data", str(data), *COMMON, "--steps", "30", "--batch", "4", "--out", str(copy)]
    assert main([*argv, "--folds", "2"]) == 0
    assert Bank.open(copy / "bank").manifest["cross_fit"]["folds"] == 2
    config["stage1"]["width"] = 16  # another network is still refused
    (copy / "config.json").write_text(json.dumps(config))
    assert main(argv) == 2


def test_training_other_folds_replaces_the_old_ones(folded, tmp_path):
    data, run = folded
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("bank"))
    argv = ["train", "--data", str(data), *COMMON, "--steps", "30", "--batch", "4", "--out", str(copy)]
    assert main([*argv, "--folds", "3"]) == 0
    assert sorted(p.name for p in (copy / "folds").iterdir()) == ["0", "1", "2"]
    assert Bank.open(copy / "bank").manifest["cross_fit"]["folds"] == 3
    records = [json.loads((stage1.fold_folder(copy, k) / "metrics.json").read_text())["fold"] for k in range(3)]
    assert records == [{"index": k, "of": 3} for k in range(3)]
