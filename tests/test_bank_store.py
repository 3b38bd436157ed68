import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import smooth_textures
from pixelnn.bank import store
from pixelnn.bank.bank import Bank
from pixelnn.data.signals import lowres
from pixelnn.errors import BankError, ConfigError
from pixelnn.regress.unet import Stage1Config, UNet
from pixelnn.synth.pipeline import PixelNN
from pixelnn.workflow import index_arrays, write_run

NAMES = [f"new/{i}.png" for i in range(7)]
LABELS = ["cat", None, "dog", "dog/terrier", "doge", "cat", "dog"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def pairs():
    y = smooth_textures(7, 32, seed=11)
    return lowres(y, 4), y


def _index(run, bank, x, y, lo, hi, allow_duplicates=False):
    return index_arrays(
        run,
        x[lo:hi],
        y[lo:hi],
        NAMES[lo:hi],
        LABELS[lo:hi],
        bank=bank,
        progress=False,
        allow_duplicates=allow_duplicates,
    )


@pytest.fixture(scope="module")
def grown(tiny_run, pairs, tmp_path_factory):
    """A bank of the tiny run's model grown in two index runs (4 then 3 exemplars); read-only for tests."""
    run = tiny_run[0]
    x, y = pairs
    bank = tmp_path_factory.mktemp("grown") / "bank"
    first = _index(run, bank, x, y, 0, 4)
    second = _index(run, bank, x, y, 4, 7)
    return run, bank, first, second


@pytest.fixture
def bank_copy(grown, tmp_path):
    """A writable copy of the grown bank."""
    return shutil.copytree(grown[1], tmp_path / "bank")


def _manifest(bank):
    return json.loads((bank / store.MANIFEST).read_text())


def test_growing_a_bank_appends_a_shard_without_retraining(grown, pairs):
    run, bank, first, second = grown
    x, y = pairs
    assert first["count"] == 4 and [s["count"] for s in first["shards"]] == [4]
    assert second["count"] == 7
    assert [(s["name"], s["count"]) for s in second["shards"]] == [("shard-000", 4), ("shard-001", 3)]
    assert _manifest(bank) == second
    assert second["model_fingerprint"] == first["model_fingerprint"]
    assert sorted(p.name for p in bank.iterdir()) == ["bank.json", "bank.lock", "shard-000", "shard-001"]

    opened = Bank.open(bank)
    assert len(opened) == 7
    assert opened.names == NAMES
    assert opened.labels == LABELS
    assert opened.index.ntotal == 7
    # ids run across shards in manifest order
    assert np.array_equal(opened.gather("y", [3, 4, 6, 0]), y[[3, 4, 6, 0]])
    assert np.array_equal(opened.gather("x", np.arange(7)), x)
    with pytest.raises(ConfigError, match=r"0\.\.6"):
        opened.gather("y", [7])


def test_new_exemplars_are_found_and_copied_exactly(grown, pairs):
    run, bank, _, _ = grown
    x, y = pairs
    model = PixelNN.load(run, bank=bank)
    assert len(model.bank) == 7
    for new_id in (4, 5, 6):
        result = model.synthesize(x[new_id], grid="1:1:1")
        assert result.neighbours[0] == new_id
        cand = result.candidates[0]
        assert np.array_equal(cand.image, y[new_id].astype(np.float32) / 255.0)
        assert (cand.corr.exemplar == new_id).all()


def test_a_bank_opens_from_its_own_folder_alone(grown, pairs, tmp_path):
    run, bank, _, _ = grown
    x, y = pairs
    moved = shutil.copytree(bank, tmp_path / "elsewhere" / "my bank")
    opened = Bank.open(moved)
    assert len(opened) == 7 and opened.names == NAMES
    assert np.array_equal(opened.gather("y", np.arange(7)), y)
    assert np.array_equal(opened.gather("x", np.arange(7)), x)
    f = opened.gather("f", np.arange(7))
    assert f.dtype == np.uint8 and f.shape == (7, 32, 32, 3)  # version 2: f(x_n) in 8 bits
    # and it still works with its model
    result = PixelNN.load(run, bank=moved).synthesize(x[5], grid="1:1:1")
    assert np.array_equal(result.candidates[0].image, y[5].astype(np.float32) / 255.0)


def test_a_bank_built_by_another_model_is_refused(grown, pairs, tmp_path, bank_copy):
    run, _, _, _ = grown
    x, y = pairs
    other = tmp_path / "other-run"
    torch.manual_seed(1)
    model = UNet(Stage1Config(in_channels=3, input_size=8, size=32, width=8, levels=2, residual=True)).eval()
    write_run(other, model, {"signal": "lowres", "factor": 4, "size": 32, "backbone": "vgg16-hed"})
    before = (bank_copy / store.MANIFEST).read_text()
    with pytest.raises(BankError, match="model_fingerprint"):
        _index(other, bank_copy, x, y, 0, 2)
    assert (bank_copy / store.MANIFEST).read_text() == before
    assert sorted(p.name for p in bank_copy.iterdir()) == ["bank.json", "bank.lock", "shard-000", "shard-001"]
    with pytest.raises(BankError, match="model_fingerprint") as err:
        PixelNN.load(other, bank=bank_copy)
    assert "pixelnn index" in str(err.value)


def test_a_manifest_of_another_version_is_refused(bank_copy, pairs, grown):
    m = _manifest(bank_copy)
    m["version"] = 99
    (bank_copy / store.MANIFEST).write_text(json.dumps(m))
    with pytest.raises(BankError, match="version") as err:
        Bank.open(bank_copy)
    assert "99" in str(err.value)
    x, y = pairs
    with pytest.raises(BankError, match="version"):  # and it is not appended to either
        _index(grown[0], bank_copy, x, y, 0, 1)
    assert _manifest(bank_copy)["version"] == 99


def test_a_manifest_of_another_format_is_refused(bank_copy):
    m = _manifest(bank_copy)
    m["format"] = "something-else"
    (bank_copy / store.MANIFEST).write_text(json.dumps(m))
    with pytest.raises(BankError, match="not a PixelNN exemplar bank"):
        Bank.open(bank_copy)
    (bank_copy / store.MANIFEST).write_text("{ not json")
    with pytest.raises(BankError, match="not a readable bank manifest"):
        Bank.open(bank_copy)


def test_a_missing_manifest_says_how_to_build_a_bank(tmp_path, tiny_run):
    empty = tmp_path / "nothing"
    empty.mkdir()
    with pytest.raises(BankError, match="pixelnn index"):
        Bank.open(empty)
    with pytest.raises(BankError, match="pixelnn index"):
        PixelNN.load(tiny_run[0], bank=tmp_path / "does-not-exist")


@pytest.mark.parametrize("damage", ["delete", "empty", "header-only", "short-data", "meta"])
def test_a_damaged_shard_is_named(bank_copy, damage):
    path = bank_copy / "shard-001" / "y.npy"
    raw = path.read_bytes()
    if damage == "delete":
        path.unlink()
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "header-only":
        path.write_bytes(raw[:40])
    elif damage == "short-data":
        path.write_bytes(raw[: len(raw) - 100])
    else:
        (bank_copy / "shard-001" / "meta.json").write_text("{truncated")
    with pytest.raises(BankError, match="shard-001") as err:
        Bank.open(bank_copy)
    assert "missing or corrupt" in str(err.value)


def test_a_shard_count_that_disagrees_with_the_manifest_is_refused(bank_copy):
    m = _manifest(bank_copy)
    m["shards"][1]["count"] = 5
    m["count"] = 9
    (bank_copy / store.MANIFEST).write_text(json.dumps(m))
    with pytest.raises(BankError, match=r"shard-001 holds 3 exemplars, its manifest says 5"):
        Bank.open(bank_copy)


def test_a_shard_with_arrays_of_different_lengths_is_refused(bank_copy):
    g = np.load(bank_copy / "shard-000" / "global.npy")
    np.save(bank_copy / "shard-000" / "global.npy", g[:2])
    with pytest.raises(BankError, match="shard-000"):
        Bank.open(bank_copy)


def test_an_interrupted_shard_write_leaves_the_bank_as_it_was(bank_copy, grown, pairs, monkeypatch):
    x, y = pairs
    before = (bank_copy / store.MANIFEST).read_bytes()
    real_save, calls = np.save, []

    def failing_save(file, arr, *args, **kwargs):
        calls.append(str(file))
        if len(calls) > 1:
            raise OSError("No space left on device")
        return real_save(file, arr, *args, **kwargs)

    monkeypatch.setattr(store.np, "save", failing_save)
    with pytest.raises(OSError, match="No space"):
        _index(grown[0], bank_copy, x, y, 0, 3, allow_duplicates=True)
    monkeypatch.setattr(store.np, "save", real_save)

    assert len(calls) == 2 and "/.staging-" in calls[0]  # it did start writing the new shard
    assert (bank_copy / store.MANIFEST).read_bytes() == before
    assert sorted(p.name for p in bank_copy.iterdir()) == ["bank.json", "bank.lock", "shard-000", "shard-001"]
    opened = Bank.open(bank_copy)
    assert len(opened) == 7 and opened.names == NAMES

    # the next run goes through and takes the next shard name
    m = _index(grown[0], bank_copy, x, y, 0, 3, allow_duplicates=True)
    assert m["count"] == 10 and m["shards"][-1] == {"name": "shard-002", "count": 3, "desc": False}
    assert len(Bank.open(bank_copy)) == 10


def test_a_leftover_shard_folder_not_in_the_manifest_is_ignored_then_replaced(bank_copy, grown, pairs):
    x, y = pairs
    # a run that renamed its shard into place but died before writing the manifest
    leftover = bank_copy / "shard-002"
    leftover.mkdir()
    (leftover / "y.npy").write_bytes(b"junk")
    assert len(Bank.open(bank_copy)) == 7
    m = _index(grown[0], bank_copy, x, y, 5, 7, allow_duplicates=True)
    assert m["count"] == 9
    opened = Bank.open(bank_copy)
    assert opened.names[7:] == NAMES[5:7]
    assert np.array_equal(opened.gather("y", [7, 8]), y[5:7])


def _memory_bank(tmp_path, labels):
    """A bank on disk with arbitrary arrays: enough for the label and id bookkeeping."""
    n = len(labels)
    manifest = store.new_manifest("fp", "vgg16-hed", 4, "lowres", (1, 1, 3), 2)
    g = np.tile(np.array([[1.0, 0.0]], np.float16), (n, 1))
    shard = store.Shard(
        np.zeros((n, 4, 4, 3), np.uint8),
        np.zeros((n, 4, 4, 3), np.uint8),
        np.zeros((n, 1, 1, 3), np.uint8),
        g,
        [f"{i}.png" for i in range(n)],
        list(labels),
    )
    store.write_shard(tmp_path / "b", manifest, shard)
    return Bank.open(tmp_path / "b")


def test_ids_with_labels_matches_a_label_and_the_labels_below_it(tmp_path):
    bank = _memory_bank(tmp_path, ["dog", "doge", "dog/terrier", None, "cat", "dog/terrier/small", "Dog"])
    assert bank.ids_with_labels(["dog"]).tolist() == [0, 2, 5]
    assert bank.ids_with_labels(["dog/terrier"]).tolist() == [2, 5]
    assert bank.ids_with_labels(["doge"]).tolist() == [1]
    assert bank.ids_with_labels(["cat", "doge"]).tolist() == [1, 4]
    assert bank.ids_with_labels(["Dog"]).tolist() == [6]
    with pytest.raises(ConfigError) as err:
        bank.ids_with_labels(["horse"])
    message = str(err.value)
    assert "horse" in message
    for known in ("cat", "dog", "doge", "dog/terrier"):
        assert known in message
    with pytest.raises(ConfigError, match="no exemplar has label do"):
        bank.ids_with_labels(["do"])  # a prefix of a name is not a parent label


def test_ids_with_labels_on_a_bank_without_labels(tmp_path):
    bank = _memory_bank(tmp_path, [None, None, None])
    with pytest.raises(ConfigError, match="has no labels"):
        bank.ids_with_labels(["dog"])


@pytest.mark.parametrize("version", [1, 2])
def test_a_bank_with_reduced_descriptors_grows_with_its_own_projection(tiny_run, pairs, tmp_path, version):
    from pixelnn.synth.pipeline import PixelNN
    from pixelnn.workflow import index_arrays

    run = tiny_run[0]
    x, y = pairs
    bank = tmp_path / "bank"
    index_arrays(run, x[:4], y[:4], NAMES[:4], LABELS[:4], bank=bank, descriptors=8, progress=False, version=version)
    files = {name: np.load(bank / name) for name in store.encoding_files(store.read_manifest(bank))}
    with pytest.raises(BankError, match="stores 8-d reduced descriptors"):  # fixed when the bank was made
        index_arrays(run, x[4:], y[4:], NAMES[4:], LABELS[4:], bank=bank, descriptors=99, progress=False)
    manifest = index_arrays(run, x[4:], y[4:], NAMES[4:], LABELS[4:], bank=bank, progress=False)
    for name, array in files.items():  # the bank's projection (and codebooks), not new ones
        assert np.array_equal(np.load(bank / name), array)
    assert manifest["version"] == version and all(s["desc"] for s in manifest["shards"])
    opened = Bank.open(bank)
    if version == 1:
        assert manifest["descriptors"] == {"dim": 8, "dtype": "float16"}
        assert opened.gather("desc", [0, 6]).shape == (2, 32, 32, 8)
    else:
        setting = manifest["descriptors"]
        assert setting["dtype"] == "pq" and setting["levels"] == [[4, 8], [2, 8], [1, 1]]
        assert opened.gather("desc", [0, 6]).shape == (2, 8 * 8 * 8 + 16 * 16 * 8 + 32 * 32 * 1)
    assert opened.descriptors([0, 6]).shape == (2, 32, 32, 8)
    model = PixelNN.load(run, bank=bank)
    assert model.search == "fast"
    for n in (1, 5):
        cand = model.synthesize(x[n], grid="1:1:whole").candidates[0]
        assert (cand.corr.exemplar == n).all()
        assert np.array_equal(cand.image, y[n].astype(np.float32) / 255.0)


def test_a_shard_write_is_flushed_to_disk_before_and_after_its_rename(tmp_path, monkeypatch):
    import pixelnn.fileio as fileio

    synced = []
    monkeypatch.setattr(
        fileio, "fsync_path", lambda p: synced.append((Path(p), (tmp_path / "b" / "shard-000").exists()))
    )
    _memory_bank(tmp_path, ["a", "b"])
    root, shard = tmp_path / "b", tmp_path / "b" / "shard-000"
    files = {p.name for p, _ in synced if p.suffix in (".npy", ".json") and p.parent.name == "shard"}
    assert files == {"f.npy", "y.npy", "x.npy", "global.npy", "meta.json"}  # every shard file ...
    assert all(not renamed for p, renamed in synced if p.name in files)  # ... before the rename
    staged_dir = [i for i, (p, _) in enumerate(synced) if p.name == "shard"]
    root_after = [i for i, (p, renamed) in enumerate(synced) if p == root and renamed]
    assert staged_dir and root_after and staged_dir[0] < root_after[0]  # the folder, then the rename
    assert any(p.name.startswith(".bank.json.") for p, _ in synced)  # the manifest too
    assert shard.is_dir()


def test_finite_check_reads_a_mapped_file_in_chunks_and_names_the_bad_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "FINITE_CHECK_ROWS", 3)  # several chunks, the last one short
    g = np.ones((10, 4), np.float32)
    g[4, 1], g[9, 0] = np.nan, np.inf  # one bad row in the second chunk, one in the last
    path = tmp_path / "global.npy"
    np.save(path, g)
    mapped = np.load(path, mmap_mode="r")
    with pytest.raises(BankError, match=r"NaN or infinite values in 2 row\(s\) \(first: 4\)"):
        store._check_finite(path, mapped)
    with pytest.raises(BankError, match=r"in 2 row\(s\) \(first: 4\)"):
        store._check_finite(path, g)  # the same answer for an array in memory
    np.save(path, np.ones((10, 4), np.float32))
    store._check_finite(path, np.load(path, mmap_mode="r"))  # finite: no error
