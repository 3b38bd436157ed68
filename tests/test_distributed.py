"""Building a bank and synthesizing a folder on a local Ray cluster (127.0.0.1, 2 CPUs), against one process.

Tasks run in Ray's worker processes, so a test changes what they do through the cluster's
worker_process_setup_hook (`_worker_setup` below, imported by every worker): it arms a stage_shard
that kills its worker midway through writing a shard, once, when the test creates the file `armed`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import ray  # pinned in requirements-test.lock: without it these tests fail, they do not skip
import torch
from PIL import Image

from conftest import smooth_textures, write_photos
from pixelnn import cli
from pixelnn.bank import stage1, store
from pixelnn.bank.bank import Bank
from pixelnn.data.signals import lowres
from pixelnn.regress import checkpoint
from pixelnn.workflow import index_arrays, write_run

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SRC = Path(os.environ.get("PIXELNN_TEST_SRC", Path(__file__).resolve().parents[1] / "src"))
TESTS = Path(__file__).resolve().parent
KILL_DIR = "PIXELNN_TEST_KILL_DIR"
FLOAT16_STEP = 2.0**-11


def _worker_setup() -> None:
    """Run by every Ray worker at start: store.stage_shard dies midway once the test arms it."""
    from pixelnn.bank import store as worker_store

    real = worker_store.stage_shard

    def stage_shard(folder: Path, shard) -> None:
        armed = Path(os.environ[KILL_DIR]) / "armed"
        try:
            os.rename(armed, armed.with_name("fired"))  # one task claims it
        except FileNotFoundError:
            return real(folder, shard)
        folder.mkdir(exist_ok=True)
        np.save(folder / "f.npy", np.asarray(shard.f)[:1])  # a partial shard
        os._exit(1)

    worker_store.stage_shard = stage_shard


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A local Ray cluster for this module: (its address, the folder of the kill switch)."""
    kill = tmp_path_factory.mktemp("kill")
    os.environ[KILL_DIR] = str(kill)
    # Ray starts its workers with nice 15: on a machine busy with other work they would barely run
    os.environ["RAY_worker_niceness"] = "0"
    paths = os.pathsep.join([str(SRC), str(TESTS)])
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        logging_level="WARNING",
        _node_ip_address="127.0.0.1",
        runtime_env={
            "env_vars": {"PYTHONPATH": paths, KILL_DIR: str(kill)},
            "worker_process_setup_hook": "test_distributed._worker_setup",
        },
    )
    yield ray.get_runtime_context().gcs_address, kill
    ray.shutdown()
    del os.environ["RAY_worker_niceness"], os.environ[KILL_DIR]


@pytest.fixture(scope="module")
def pairs():
    y = smooth_textures(40, 32, seed=41)
    return lowres(y, 4), y


NAMES = [f"p/{i:02d}.png" for i in range(40)]
LABELS = [f"c{i % 3}" if i % 5 else None for i in range(40)]


def _index(run, bank, x, y, rows=slice(None), **kw):
    names, labels = np.array(NAMES, object)[rows].tolist(), np.array(LABELS, object)[rows].tolist()
    return index_arrays(run, x[rows], y[rows], names, labels, bank=bank, progress=False, descriptors=8, **kw)


@pytest.fixture(scope="module")
def reference(tiny_run, pairs, tmp_path_factory):
    """The bank of the 40 pairs built in this process in one chunk."""
    x, y = pairs
    bank = tmp_path_factory.mktemp("ref") / "bank"
    _index(tiny_run[0], bank, x, y)
    return bank


def same_bank(a: Path, b: Path, projection: bool = True) -> None:
    """Same exemplars in the same order: names, labels, x, y, f, global and (with the same projection)
    reduced descriptors."""
    ba, bb = Bank.open(a), Bank.open(b)
    ids = list(range(len(ba)))
    assert len(ba) == len(bb) == 40 and ba.names == bb.names and ba.labels == bb.labels
    for key in ("x", "y"):
        assert np.array_equal(ba.gather(key, ids), bb.gather(key, ids))
    fa, fb = (np.asarray(bank.gather("f", ids), np.float32) for bank in (ba, bb))
    assert np.abs(fa - fb).max() <= FLOAT16_STEP
    ga = np.concatenate([np.asarray(s.global_) for s in ba.shards])
    gb = np.concatenate([np.asarray(s.global_) for s in bb.shards])
    assert np.allclose(ga, gb, atol=1e-4)
    if not projection:
        return
    assert np.array_equal(store.read_projection(a), store.read_projection(b))
    da = np.concatenate([np.asarray(s.desc, np.float32) for s in ba.shards])
    db = np.concatenate([np.asarray(s.desc, np.float32) for s in bb.shards])
    assert np.abs(da - db).max() <= 4 * FLOAT16_STEP * max(1.0, np.abs(da).max())


def leftovers(bank: Path) -> list[str]:
    listed = {s["name"] for s in store.read_manifest(bank)["shards"]}
    return sorted(p.name for p in bank.iterdir() if p.name.startswith(".") or (p.is_dir() and p.name not in listed))


def test_chunks_in_one_process_give_the_bank_of_one_chunk(tiny_run, pairs, reference, tmp_path):
    x, y = pairs
    m = _index(tiny_run[0], tmp_path / "bank", x, y, chunk=16)
    assert [s["count"] for s in m["shards"]] == [16, 16, 8]
    same_bank(reference, tmp_path / "bank")


def test_a_ray_built_bank_equals_the_single_process_one(cluster, tiny_run, pairs, reference, tmp_path):
    x, y = pairs
    m = _index(tiny_run[0], tmp_path / "bank", x, y, chunk=16, ray="auto")
    assert [s["count"] for s in m["shards"]] == [16, 16, 8]
    same_bank(reference, tmp_path / "bank")
    assert leftovers(tmp_path / "bank") == []


def test_a_ray_built_cross_fitted_bank_equals_the_single_process_one(cluster, tiny_run, pairs, tmp_path):
    """The fold models travel with the plan: Ray tasks store each f(x_k) from the fold that left it out."""
    x, y = pairs
    run = tmp_path / "run"
    shutil.copytree(tiny_run[0], run, ignore=shutil.ignore_patterns("bank"))
    main_model = checkpoint.load_model(run / checkpoint.FILENAME)
    for k in (0, 1):
        torch.manual_seed(100 + k)  # two other (untrained) networks of the same shape
        folder = stage1.fold_folder(run, k)
        write_run(folder, type(main_model)(main_model.cfg).eval(), json.loads((run / "config.json").read_text()))
        (folder / "metrics.json").write_text(json.dumps({"fold": stage1.fold_record(k, 2)}))
    _index(run, tmp_path / "local", x, y, chunk=16)
    m = _index(run, tmp_path / "ray", x, y, chunk=16, ray="auto")
    assert m["cross_fit"]["folds"] == 2
    same_bank(tmp_path / "local", tmp_path / "ray")
    which = stage1.fold_of(store.exemplar_hashes(x, y), 2)
    folds = stage1.load_folds(run, main_model)
    stored = Bank.open(tmp_path / "ray").stage1(list(range(40)))
    expect = np.stack([stage1.stage1_outputs(folds[k], x[i : i + 1], progress=False)[0] for i, k in enumerate(which)])
    assert 0 < which.sum() < 40 and np.abs(stored - expect.astype(np.float32)).max() <= 1 / 255  # uint8 storage


def test_a_killed_task_is_retried_and_leaves_no_partial_shard(cluster, tiny_run, pairs, reference, tmp_path):
    kill = cluster[1]
    (kill / "armed").touch()
    x, y = pairs
    _index(tiny_run[0], tmp_path / "bank", x, y, chunk=16, ray="auto")
    assert (kill / "fired").exists() and not (kill / "armed").exists()  # a task did die
    same_bank(reference, tmp_path / "bank")
    assert leftovers(tmp_path / "bank") == []


DRIVER = """
import os, sys
import numpy as np
import ray
from conftest import smooth_textures
from pixelnn.bank import store
from pixelnn.data.signals import lowres
from pixelnn.workflow import index_arrays

address, run, bank = sys.argv[1:4]
ray.init(address=address, logging_level="WARNING", runtime_env={"env_vars": {"PYTHONPATH": os.environ["PYTHONPATH"]}})
def die(*args, **kwargs):
    os._exit(3)  # the driver is killed once every chunk is staged, before the commit
store.commit_staged_many = die
y = smooth_textures(40, 32, seed=41)
names = [f"p/{i:02d}.png" for i in range(40)]
labels = [f"c{i % 3}" if i % 5 else None for i in range(40)]
index_arrays(run, lowres(y, 4)[20:], y[20:], names[20:], labels[20:], bank=bank, progress=False, chunk=8, ray=address)
"""


def test_a_driver_killed_before_its_commit_leaves_the_bank_as_it_was(cluster, tiny_run, pairs, reference, tmp_path):
    x, y = pairs
    bank = tmp_path / "bank"
    _index(tiny_run[0], bank, x, y, rows=slice(0, 20))
    before = {p.relative_to(bank).as_posix(): p.read_bytes() for p in bank.rglob("*") if p.is_file()}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(TESTS)])}
    args = [sys.executable, "-c", DRIVER, cluster[0], str(tiny_run[0]), str(bank)]
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 3, done.stderr
    after = {p.relative_to(bank).as_posix(): p.read_bytes() for p in bank.rglob("*") if p.is_file()}
    assert {k: v for k, v in after.items() if not k.startswith(store.STAGING)} == before
    staged = sorted(bank.glob(f"{store.STAGING}*/chunk-*/shard"))
    assert len(staged) == 3  # what the dead driver staged is there, listed nowhere
    assert json.loads((bank / store.MANIFEST).read_text())["count"] == 20
    _index(tiny_run[0], bank, x, y, rows=slice(20, 40), chunk=8, ray="auto")  # the rerun finishes the job
    assert leftovers(bank) == []
    same_bank(reference, bank, projection=False)  # the bank's projection was fitted on its first 20


def _photos(folder: Path, n: int) -> Path:
    return write_photos(folder, [f"{'ab'[i % 2]}/{i:02d}.png" for i in range(n)], 32, seed=43)


def test_the_cli_indexes_a_data_folder_on_ray_as_in_one_process(cluster, tiny_run, tmp_path):
    data = _photos(tmp_path / "photos", 24)
    base = ["index", "--model", str(tiny_run[0]), "--data", str(data), "--signal", "lowres", "--size", "32"]
    base += ["--factor", "4", "--labels", "path", "--quiet"]
    assert cli.main([*base, "--bank", str(tmp_path / "one"), "--chunk", "16"]) == 0
    assert cli.main([*base, "--bank", str(tmp_path / "ray"), "--ray", "auto"]) == 0
    one, many = Bank.open(tmp_path / "one"), Bank.open(tmp_path / "ray")
    assert len(one) == len(many) == 24 and one.names == many.names and one.labels == many.labels
    assert set(many.labels) == {"a", "b"}
    ids = list(range(24))
    assert np.array_equal(one.gather("y", ids), many.gather("y", ids))
    assert np.array_equal(one.gather("x", ids), many.gather("x", ids))
    assert np.abs(np.asarray(one.gather("f", ids), np.float32) - many.gather("f", ids)).max() <= FLOAT16_STEP
    assert cli.main([*base, "--bank", str(tmp_path / "ray"), "--ray", "auto"]) == 0  # a rerun adds nothing
    assert len(Bank.open(tmp_path / "ray")) == 24


def test_ray_asked_for_but_not_installed_is_a_clear_error(tiny_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    data = _photos(tmp_path / "photos", 2)
    argv = ["index", "--model", str(tiny_run[0]), "--data", str(data), "--signal", "lowres", "--size", "32"]
    assert cli.main([*argv, "--factor", "4", "--bank", str(tmp_path / "b"), "--ray", "auto"]) == 2
    err = capsys.readouterr().err
    assert "pixelnn index: error: --ray needs Ray, which is not installed" in err
    assert "pip install 'pixelnn[ray]'" in err and "Traceback" not in err
    assert not (tmp_path / "b").exists()


SYNTH = ["--grid", "1:1:1,2:1:3", "--copy", "eq3", "--quiet"]


def _results(out: Path) -> dict[str, object]:
    """Every file of a synthesis output folder: images as arrays, correspondences as dicts of arrays."""
    found = {}
    for path in sorted(out.rglob("*")):
        name = path.relative_to(out).as_posix()
        if path.suffix == ".png":
            found[name] = np.asarray(Image.open(path))
        elif path.suffix == ".npz":
            with np.load(path) as z:
                found[name] = {k: z[k] for k in z.files}
        elif path.is_file():
            found[name] = path.read_text()
    return found


def _same_results(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for name, value in a.items():
        if isinstance(value, dict):
            assert sorted(value) == sorted(b[name]) and all(np.array_equal(value[k], b[name][k]) for k in value), name
        elif isinstance(value, np.ndarray):
            assert np.array_equal(value, b[name]), name
        else:
            assert value == b[name], name


def test_batch_synthesis_on_ray_equals_one_by_one(cluster, tiny_run, tmp_path):
    from pixelnn.synth.pipeline import PixelNN

    run = tiny_run[0]
    data = _photos(tmp_path / "photos", 17)  # more than one chunk of inputs
    argv = ["synthesize", "--model", str(run), "--data", str(data), "--size", "32", "--factor", "4", *SYNTH]
    assert cli.main([*argv, "--out", str(tmp_path / "one")]) == 0
    assert cli.main([*argv, "--out", str(tmp_path / "ray"), "--ray", "auto"]) == 0
    one, many = _results(tmp_path / "one"), _results(tmp_path / "ray")
    assert len([k for k in one if k.endswith(".corr.npz")]) == 17 * 2
    _same_results(one, many)
    # and each folder is what the model makes of its input alone
    model = PixelNN.load(run)
    for folder in ("a_00", "a_16"):
        x = lowres(many[f"{folder}/target.png"][None], 4)[0]
        result = model.synthesize(x, grid="1:1:1,2:1:3", copy="eq3")
        for i, cand in enumerate(result.candidates):
            stem = f"{folder}/cand-{i:02d}_{str(cand.spec).replace(':', '-')}"
            assert np.array_equal(many[f"{stem}.png"], np.round(cand.image * 255).astype(np.uint8))
            assert np.array_equal(many[f"{stem}.corr.npz"]["exemplar"], cand.corr.exemplar)


def test_batch_synthesis_resumes_and_redoes_what_other_settings_made(cluster, tiny_run, tmp_path):
    run = tiny_run[0]
    inputs = write_photos(tmp_path / "inputs", [f"in{i}.png" for i in range(5)], 8, seed=44)
    out = tmp_path / "out"
    argv = ["synthesize", "--model", str(run), str(inputs), "--out", str(out), *SYNTH]
    assert cli.main([*argv, "--ray", "auto"]) == 0
    first = _results(out)
    marks = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/.pixelnn-result")}
    assert sorted(marks) == [f"in{i}" for i in range(5)]
    shutil.rmtree(out / "in3")
    (out / "in1" / ".pixelnn-result").unlink()  # as if killed while writing (an old, unmarked folder)
    assert cli.main(argv) == 0  # one process resumes what Ray began: same settings, same key
    again = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/.pixelnn-result")}
    assert [k for k in sorted(again) if again[k] == marks.get(k)] == ["in0", "in2", "in4"]  # skipped
    _same_results(first, _results(out))
    assert all(f"in{i}/index.html" in (out / "index.html").read_text() for i in range(5))
    other = ["--grid", "1:1:1", "--copy", "eq3", "--quiet"]
    assert cli.main([*argv[: -len(SYNTH)], *other, "--ray", "auto"]) == 0  # other settings: all redone
    assert sorted(p.name for p in out.glob("in0/cand-*.png")) == ["cand-00_1-1-1.corr.png", "cand-00_1-1-1.png"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
