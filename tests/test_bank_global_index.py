"""The bank's global index: exact below a size limit, a saved memory-mapped IVF index above it.

The limit is lowered so that banks of a few thousand random clustered unit vectors get an IVF index.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from pixelnn.bank import global_index as gi
from pixelnn.bank import store
from pixelnn.bank.bank import Bank
from pixelnn.bank.global_index_build import save_global_index
from pixelnn.errors import BankError

G = 96  # descriptor size; PCA to 32 dimensions is exercised with pca_dim=32
LIMIT = 500


def clustered(n: int, seed: int, centres: int = 40) -> np.ndarray:
    """(n, G) unit vectors around random centres, like descriptors of images of a few kinds."""
    rng = np.random.default_rng(seed)
    c = np.random.default_rng(99).normal(size=(centres, G))
    x = c[rng.integers(0, centres, n)] + 0.6 * rng.normal(size=(n, G))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def add_shard(root, g: np.ndarray, labels=None, version: int = store.VERSION) -> dict:
    """A shard of global descriptors g (stored as float16, or float32 in version 1) and blank images."""
    n = len(g)
    manifest = store.new_manifest("fp", "vgg16-hed", 4, "lowres", (1, 1, 3), G)
    encoding = store.Encoding(version)
    shard = store.Shard(
        np.zeros((n, 4, 4, 3), encoding.f_dtype),
        np.zeros((n, 4, 4, 3), np.uint8),
        np.zeros((n, 1, 1, 3), np.uint8),
        g.astype(encoding.global_dtype),
        [f"{i}.png" for i in range(n)],
        labels or [None] * n,
        hashes=[f"{root.name}-{len(g)}-{i}-{g[i, 0]}" for i in range(n)],
    )
    return store.write_shard(root, manifest, shard, encoding)


@pytest.fixture(scope="module")
def ivf_bank(tmp_path_factory):
    """A 3,000-exemplar bank in two shards with a saved IVF index (PCA to 32 dimensions)."""
    root = tmp_path_factory.mktemp("bank") / "b"
    add_shard(root, clustered(2000, 0))
    add_shard(root, clustered(1000, 1))
    meta = save_global_index(root, flat_limit=LIMIT, pca_dim=32)
    return root, meta


def recall(truth: np.ndarray, found: np.ndarray) -> float:
    return float(np.mean([len(set(t) & set(f)) / len(t) for t, f in zip(truth, found)]))


@pytest.mark.parametrize("version", [1, 2])
def test_a_small_bank_saves_nothing_and_searches_exactly(tmp_path, version, monkeypatch):
    monkeypatch.setattr(gi, "CHUNK", 128)  # float16 descriptors are searched CHUNK rows at a time
    root = tmp_path / "b"
    g = clustered(300, 0)
    add_shard(root, g, version=version)
    assert save_global_index(root, flat_limit=LIMIT) is None
    assert not (root / gi.META).exists()
    bank = Bank.open(root)
    assert bank.index.blocks[0].dtype == (np.float32 if version == 1 else np.float16)
    sims, ids = bank.search(g[:5], 3)
    assert bank.index.kind == "flat" and ids[:, 0].tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(sims[:, 0], 1.0, atol=1e-5 if version == 1 else 1e-3)  # float16: 3 digits
    truth = np.argsort(-(g[:5] @ g.astype(bank.index.blocks[0].dtype).astype(np.float32).T), axis=1)[:, :3]
    np.testing.assert_array_equal(ids, truth)  # across chunks of 128 rows too


def test_a_large_bank_saves_an_ivf_index_with_recall_at_10_of_at_least_095(ivf_bank):
    root, meta = ivf_bank
    assert meta["kind"] == "ivf" and meta["count"] == 3000 and meta["description"].startswith("PCA32,IVF")
    assert (root / meta["file"]).stat().st_size == meta["bytes"] == json.loads((root / gi.META).read_text())["bytes"]
    bank = Bank.open(root)
    assert bank.index.kind == "ivf" and bank.index.covered == 3000
    xq = clustered(200, 7)  # held-out queries
    _, truth = bank.index.exact(xq, 10)
    sims, ids = bank.search(xq, 10)
    assert recall(truth, ids) >= 0.95
    exact = np.einsum("qd,qkd->qk", xq, bank.index.rows(ids.ravel()).reshape(len(xq), 10, G))
    np.testing.assert_allclose(sims, exact, atol=1e-5)  # re-ranked: the similarities are exact
    assert (np.diff(sims, axis=1) <= 1e-6).all()


def test_the_saved_index_is_memory_mapped_and_answers_like_the_built_one(ivf_bank):
    root, meta = ivf_bank
    xq = clustered(50, 8)
    first = Bank.open(root).search(xq, 10)
    again = Bank.open(root)
    assert again.index.path == root / meta["file"]
    np.testing.assert_array_equal(again.search(xq, 10)[1], first[1])
    maps = open("/proc/self/maps").read()
    assert str((root / meta["file"]).resolve()) in maps  # the file is mapped, not read into memory


@pytest.mark.parametrize("size", [30, 2500])
def test_a_subset_search_returns_only_subset_ids(ivf_bank, size, monkeypatch):
    root, _ = ivf_bank
    monkeypatch.setattr(gi, "EXACT_SUBSET", 1000)  # 30: exact over the subset; 2500: the IVF index, filtered
    bank = Bank.open(root)
    subset = np.sort(np.random.default_rng(3).choice(3000, size, replace=False))
    xq = clustered(40, 9)
    sims, ids = bank.search(xq, 10, subset)
    assert np.isin(ids, subset).all()
    _, truth = bank.index.exact_subset(xq, 10, subset)
    assert recall(truth, ids) >= 0.95


def test_a_subset_smaller_than_k_pads_with_minus_one(ivf_bank):
    bank = Bank.open(ivf_bank[0])
    sims, ids = bank.search(clustered(2, 9), 5, np.array([4, 2500]))
    assert sorted(ids[0][:2]) == [4, 2500] and (ids[:, 2:] == -1).all()


def test_a_shard_added_after_the_index_is_searched_and_then_saved(ivf_bank, tmp_path, caplog):
    import shutil

    root = tmp_path / "b"
    shutil.copytree(ivf_bank[0], root)
    extra = clustered(400, 5)
    add_shard(root, extra)
    with caplog.at_level(logging.WARNING, logger="pixelnn.bank"):
        bank = Bank.open(root)
    assert "holds 3000 of 3400" in caplog.text and bank.index.covered == 3000
    sims, ids = bank.search(extra[:20], 1)
    assert ids[:, 0].tolist() == list(range(3000, 3020))  # found by the exact search of the new shard
    old_file = ivf_bank[1]["file"]
    meta = save_global_index(root, flat_limit=LIMIT, pca_dim=32)
    assert meta["count"] == 3400 and meta["trained_on"] == 3000  # extended, not retrained
    assert not (root / old_file).exists() and (root / meta["file"]).exists()
    again = Bank.open(root)
    assert again.index.covered == 3400
    assert again.search(extra[:20], 1)[1][:, 0].tolist() == list(range(3000, 3020))


def test_an_old_bank_without_index_opens_and_searches_exactly(ivf_bank, tmp_path, caplog, monkeypatch):
    import shutil

    root = tmp_path / "b"
    shutil.copytree(ivf_bank[0], root)
    (root / gi.META).unlink()
    monkeypatch.setattr(gi, "FLAT_LIMIT", LIMIT)
    with caplog.at_level(logging.WARNING, logger="pixelnn.bank"):
        bank = Bank.open(root)
    assert bank.index.kind == "flat" and "`pixelnn index` on the bank saves one" in caplog.text
    xq = clustered(5, 4)
    np.testing.assert_array_equal(bank.search(xq, 10)[1], bank.index.exact(xq, 10)[1])


@pytest.mark.parametrize("damage", ["truncate", "garbage", "missing", "json"])
def test_a_damaged_index_is_named_and_rebuilt_by_pixelnn_index(ivf_bank, tmp_path, damage):
    import shutil

    root = tmp_path / "b"
    shutil.copytree(ivf_bank[0], root)
    path = root / ivf_bank[1]["file"]
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:1000])
    elif damage == "garbage":
        path.write_bytes(b"\0" * path.stat().st_size)
    elif damage == "missing":
        path.unlink()
    else:
        path = root / gi.META
        path.write_text("{")
    with pytest.raises(BankError) as err:
        Bank.open(root)
    assert str(path) in str(err.value) and "rerun `pixelnn index`" in str(err.value)
    meta = save_global_index(root, flat_limit=LIMIT, pca_dim=32)
    assert meta["count"] == 3000 and Bank.open(root).index.kind == "ivf"


def test_an_index_listing_other_shards_is_refused(ivf_bank, tmp_path):
    import shutil

    root = tmp_path / "b"
    shutil.copytree(ivf_bank[0], root)
    meta = json.loads((root / gi.META).read_text())
    meta["shards"][0]["count"] = 1999
    (root / gi.META).write_text(json.dumps(meta))
    with pytest.raises(BankError, match="not the first shards of bank.json"):
        Bank.open(root)


def test_nlist_keeps_39_training_rows_per_cell():
    from pixelnn.bank.global_index_build import nlist_for

    assert nlist_for(3000) == 64 and nlist_for(200_000) == 2048 and nlist_for(50_000) == 1024


def test_verify_names_an_index_file_that_changed(ivf_bank, tmp_path):
    import shutil

    root = tmp_path / "b"
    shutil.copytree(ivf_bank[0], root)
    assert gi.verify_index(root) == []
    path = root / ivf_bank[1]["file"]
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    (problem,) = gi.verify_index(root)
    assert str(path) in problem and "rerun `pixelnn index`" in problem


def test_pixelnn_index_saves_the_index_and_synthesis_uses_it(tiny_run, tmp_path, monkeypatch):
    """index_arrays (what `pixelnn index` runs) saves an IVF index above the limit; a bank exemplar
    given as a query still finds itself first, within a label restriction too."""
    from pixelnn.synth.grid import Spec
    from pixelnn.synth.pipeline import PixelNN
    from pixelnn.workflow import index_arrays

    run, x, y, labels = tiny_run
    monkeypatch.setattr(gi, "FLAT_LIMIT", 2)
    bank = tmp_path / "bank"
    index_arrays(run, x, y, [f"im{i}.png" for i in range(len(y))], labels, bank=bank, progress=False)
    assert json.loads((bank / gi.META).read_text())["count"] == 6
    model = PixelNN.load(run, bank=bank)
    assert model.bank.index.kind == "ivf"
    for n in (0, 3):
        assert model.synthesize(x[n], grid=[Spec(1, 1, 1)]).neighbours[0] == n
    assert model.synthesize(x[3], grid=[Spec(1, 1, 1)], labels=["dog"]).neighbours[0] == 3


def test_an_index_replaced_while_a_reader_opens_it_is_read_again(ivf_bank, tmp_path, monkeypatch):
    """A writer renames a new index in and removes the old file between a reader's reading of
    global-index.json and its opening of the file: the reader reads global-index.json again."""
    import shutil

    root = tmp_path / "b"
    shutil.copytree(ivf_bank[0], root)
    meta = json.loads((root / gi.META).read_text())
    opened = gi._open_saved

    def writer_came_first(root_, meta_, manifest):
        if meta_["file"] == meta["file"]:
            (root / meta["file"]).rename(root / "global-ivf-3000-newer.faiss")
            (root / gi.META).write_text(json.dumps({**meta, "file": "global-ivf-3000-newer.faiss"}))
        return opened(root_, meta_, manifest)

    monkeypatch.setattr(gi, "_open_saved", writer_came_first)
    assert Bank.open(root).index.path == root / "global-ivf-3000-newer.faiss"


def test_rows_come_from_the_files_opened_even_after_the_bank_folder_is_replaced(ivf_bank, tmp_path):
    import shutil

    root = tmp_path / "b"
    shutil.copytree(ivf_bank[0], root)
    bank = Bank.open(root)
    before = bank.index.rows(np.array([5, 2500]))
    root.rename(tmp_path / "old")
    add_shard(root, clustered(3000, 11))  # another bank now at the same path
    np.testing.assert_array_equal(bank.index.rows(np.array([5, 2500])), before)
