"""Compact banks (format version 2) beside version-1 banks, and `pixelnn compact`, which converts one."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pixelnn.bank import compact, store
from pixelnn.bank import global_index as gi
from pixelnn.bank.bank import Bank
from pixelnn.cli import main
from pixelnn.errors import BankError, ConfigError
from pixelnn.features.projection import project_taps
from pixelnn.synth.pipeline import PixelNN
from pixelnn.workflow import index_arrays

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DIM = 16


@pytest.fixture(scope="module")
def banks(tiny_run, tmp_path_factory):
    """The tiny run's exemplars in a version-1 bank with DIM-dim descriptors, its compact copy, and a
    version-2 bank built directly."""
    run, x, y, labels = tiny_run
    base = tmp_path_factory.mktemp("compact")
    names = [f"im{i}.png" for i in range(len(y))]
    for name, version in (("v1", 1), ("v2", 2)):
        index_arrays(run, x, y, names, labels, bank=base / name, descriptors=DIM, progress=False, version=version)
    compact.compact_bank(base / "v1", base / "copy", progress=False)
    return {name: base / name for name in ("v1", "v2", "copy")}


def manifest_96(version: int) -> dict:
    """The manifest of a 96 x 96 bank of edge maps (one channel) with 64-d descriptors, like faces-edges."""
    m = store.new_manifest("fp", "vgg16-hed", 96, "edges", (96, 96, 1), 4608, version)
    v2 = {"dim": 64, "dtype": "pq", "levels": [[4, 16], [2, 16], [1, 1]]}
    m["descriptors"] = {"dim": 64, "dtype": "float16"} if version == 1 else v2
    return m


def test_a_96_pixel_compact_exemplar_takes_at_most_150_kb_and_a_version_1_one_1_26_mb():
    assert store.bytes_per_exemplar(manifest_96(1)) == 1_290_240  # f 55 KB, desc 1.18 MB, global 18 KB, y, x
    compact_bytes = store.bytes_per_exemplar(manifest_96(2))
    assert compact_bytes == 27_648 * 2 + 9_216 + 9_216 + 55_296 <= 150_000  # f and y, x, global, codes
    assert 200_000 * compact_bytes < 30e9  # 200,000 exemplars in under 30 GB


def test_a_new_bank_is_compact_and_its_files_hold_what_the_format_says(banks, tiny_run):
    manifest = store.read_manifest(banks["v2"])
    assert manifest["version"] == 2 and manifest["descriptors"]["dtype"] == "pq"
    shard = banks["v2"] / "shard-000"
    n = manifest["count"]
    arrays = {p.stem: np.load(p, mmap_mode="r") for p in shard.glob("*.npy")}
    assert {k: a.dtype for k, a in arrays.items()} == {
        "f": np.uint8,
        "y": np.uint8,
        "x": np.uint8,
        "global": np.float16,
        "desc": np.uint8,
    }
    data = sum(a.nbytes for a in arrays.values())
    assert data == n * store.bytes_per_exemplar(manifest)
    headers = sum(p.stat().st_size for p in shard.glob("*.npy")) - data
    assert 0 < headers <= 5 * 128  # nothing else in the files
    assert data < n * store.bytes_per_exemplar(store.read_manifest(banks["v1"])) / 2.5  # 32 x 32, 16-d


def test_a_version_1_bank_is_read_and_queried_as_before(banks, tiny_run):
    """Version 1: f in float16, float32 global descriptors, float16 pixel descriptors; a query's
    f(x) and descriptors are rounded to float16 as they always were."""
    _, x, _, _ = tiny_run
    model = PixelNN.load(tiny_run[0], bank=banks["v1"])
    assert model.bank.manifest["version"] == 1 and model.search == "fast"
    shard = model.bank.shards[0]
    assert (shard.f.dtype, shard.global_.dtype, shard.desc.dtype) == (np.float16, np.float32, np.float16)
    np.testing.assert_array_equal(model.bank.stage1([2, 4]), np.asarray(shard.f[[2, 4]], np.float32))
    np.testing.assert_array_equal(model.bank.descriptors([2]).numpy(), np.asarray(shard.desc[[2]], np.float32))
    fq = model.stage1(x[1])
    np.testing.assert_array_equal(fq, fq.astype(np.float16).astype(np.float32))
    q, _ = model.describe_query(fq)
    with torch.no_grad():
        taps = model.backbone(torch.from_numpy(fq).permute(2, 0, 1)[None])
    before = F.normalize(project_taps(taps, model.basis, fq.shape[:2])[0].half().float(), dim=-1)  # the old code
    torch.testing.assert_close(q, before, rtol=0, atol=0)


def test_a_compact_query_is_coded_like_the_exemplars(banks, tiny_run):
    _, x, _, _ = tiny_run
    model = PixelNN.load(tiny_run[0], bank=banks["v2"])
    fq = model.stage1(x[1])
    np.testing.assert_array_equal(fq * 255, np.rint(fq * 255))  # f(x) in 8 bits, as the bank stores f(x_n)
    q, _ = model.describe_query(fq)
    stored = F.normalize(model.bank.descriptors([1])[0], dim=-1)
    # the exemplar's own codes, but for a few block codes that the backbone's rounding (one image
    # here, a batch in the bank, in bf16 where the CPU has it natively) tips over, which move the
    # pixels around those blocks a little
    assert (q == stored).all(dim=-1).float().mean() > 0.5
    assert (q * stored).sum(-1).min() > 0.999


def test_the_compact_copy_keeps_every_exemplar_and_its_order(banks):
    old, new = Bank.open(banks["v1"]), Bank.open(banks["copy"])
    assert new.manifest["version"] == 2 and new.manifest["count"] == old.manifest["count"]
    assert [s["name"] for s in new.manifest["shards"]] == [s["name"] for s in old.manifest["shards"]]
    assert (new.names, new.labels) == (old.names, old.labels)
    assert new.shards[0].hashes == old.shards[0].hashes
    ids = np.arange(len(old))
    for key in ("x", "y"):
        np.testing.assert_array_equal(new.gather(key, ids), old.gather(key, ids))
    np.testing.assert_allclose(new.stage1(ids), old.stage1(ids), atol=0.5 / 255 + 1e-6)
    np.testing.assert_allclose(new.gather("global_", ids).astype(np.float32), old.gather("global_", ids), atol=1e-3)
    a = F.normalize(old.descriptors(ids), dim=-1)  # (n, S, S, d), in the old basis
    b = F.normalize(new.descriptors(ids), dim=-1)  # in the rotated basis of the copy
    rotation = torch.from_numpy(new.encoding.basis @ old.encoding.basis.T)
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(DIM), atol=1e-4)
    assert F.cosine_similarity(a @ rotation.T, b, dim=-1).mean() > 0.97


def test_the_compact_copy_answers_like_the_old_bank(banks, tiny_run):
    _, x, _, _ = tiny_run
    run = tiny_run[0]
    old, new = PixelNN.load(run, bank=banks["v1"]), PixelNN.load(run, bank=banks["copy"])
    query = np.ascontiguousarray(x[2][::-1])  # flipped: not in the bank
    a, b = old.synthesize(query, grid="1:1:5,3:1:3", rank=False), new.synthesize(query, grid="1:1:5,3:1:3", rank=False)
    np.testing.assert_array_equal(a.neighbours, b.neighbours)
    np.testing.assert_allclose(a.neighbour_sims, b.neighbour_sims, atol=2e-3)
    for ca, cb in zip(a.candidates, b.candidates):
        assert abs(ca.corr.sim.mean() - cb.corr.sim.mean()) < 0.02
        assert (ca.corr.exemplar == cb.corr.exemplar).mean() > 0.8
        assert np.abs(ca.image - cb.image).mean() < 0.06


def test_compact_refuses_a_compact_bank_and_an_existing_destination(banks, tmp_path):
    with pytest.raises(ConfigError, match="already in the compact format"):
        compact.compact_bank(banks["v2"], tmp_path / "again", progress=False)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "file").write_text("mine")
    with pytest.raises(ConfigError, match="exists and is not an empty folder"):
        compact.compact_bank(banks["v1"], tmp_path / "full", progress=False)
    assert (tmp_path / "full" / "file").read_text() == "mine"


def test_an_interrupted_conversion_leaves_no_bank_and_no_temporary_folder(banks, tmp_path, monkeypatch):
    real = compact._convert_shard

    def fail_after(*args, **kwargs):
        real(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(compact, "_convert_shard", fail_after)
    with pytest.raises(KeyboardInterrupt):
        compact.compact_bank(banks["v1"], tmp_path / "out", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_the_cli_writes_a_compact_copy_that_verifies(banks, tiny_run, tmp_path, capsys):
    run = tiny_run[0]
    assert main(["compact", str(banks["v1"]), "--out", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert "KB per exemplar in" in out
    assert main(["verify", "--model", str(run), "--bank", str(tmp_path / "c")]) == 0
    assert "is intact" in capsys.readouterr().out
    assert main(["compact", str(tmp_path / "c"), "--out", str(tmp_path / "d")]) == 2
    assert "already in the compact format" in capsys.readouterr().err


def test_a_large_bank_is_converted_with_its_global_index_rebuilt(tmp_path, monkeypatch):
    from test_bank_global_index import LIMIT, add_shard, clustered

    monkeypatch.setattr(gi, "FLAT_LIMIT", LIMIT)
    monkeypatch.setattr(compact, "ROWS", 256)  # several chunks per shard
    g = clustered(1200, 0)
    add_shard(tmp_path / "old", g[:700], version=1)
    add_shard(tmp_path / "old", g[700:], version=1)
    compact.compact_bank(tmp_path / "old", tmp_path / "new", progress=False)
    meta = json.loads((tmp_path / "new" / gi.META).read_text())
    assert meta["kind"] == "ivf" and meta["count"] == 1200 and meta["recall_at_10"] >= 0.95
    bank = Bank.open(tmp_path / "new")
    assert bank.index.kind == "ivf" and bank.shards[1].global_.dtype == np.float16
    np.testing.assert_array_equal(bank.index.rows(np.arange(1200)), g.astype(np.float16).astype(np.float32))
    xq = clustered(50, 7)
    _, truth = bank.index.exact(xq, 10)
    _, ids = bank.search(xq, 10)
    assert np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, ids)]) >= 0.95


def test_saving_a_model_with_a_compact_bank_copies_its_codebooks(banks, tiny_run, tmp_path):
    _, x, _, _ = tiny_run
    model = PixelNN.load(tiny_run[0], bank=banks["v2"])
    out = model.save(tmp_path / "saved")
    names = store.encoding_files(model.bank.manifest)
    assert names == ["projection.npy", "codebook-0.npy", "codebook-1.npy", "codebook-2.npy"]
    assert all((out / "bank" / name).read_bytes() == (banks["v2"] / name).read_bytes() for name in names)
    again = PixelNN.load(out)
    a, b = model.synthesize(x[3], grid="1:1:5"), again.synthesize(x[3], grid="1:1:5")
    np.testing.assert_array_equal(a.candidates[0].image, b.candidates[0].image)


def test_an_evaluation_cache_tells_a_bank_from_its_compact_copy(banks):
    from pixelnn.evaluate.cache import run_key

    old, new = store.read_manifest(banks["v1"]), store.read_manifest(banks["copy"])
    assert (old["model_fingerprint"], old["count"]) == (new["model_fingerprint"], new["count"])
    assert run_key(old, None, 0, 72, "eq3") != run_key(new, None, 0, 72, "eq3")
    assert len(run_key(old, None, 0, 72, "eq3")) == 7  # version-1 keys as before: their caches stay valid


def test_a_bank_in_the_first_compact_layout_is_refused_with_what_to_do(banks, tmp_path):
    """The first version-2 layout (5-byte codes: pixel codes, then block codes) is named, not called damaged."""
    import shutil

    old = tmp_path / "old"
    shutil.copytree(banks["v2"], old)
    manifest = json.loads((old / store.MANIFEST).read_text())
    sums = {"projection.npy": "0" * 64, "codebook-block.npy": "0" * 64, "codebook-pixel.npy": "0" * 64}
    first = {"block": 4, "block_bytes": 16, "pixel_bytes": 4}
    manifest["descriptors"] = {"dim": DIM, "dtype": "pq", **first, "sha256": sums}
    (old / store.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BankError, match="first compact layout.*`pixelnn index`.*`pixelnn compact`"):
        Bank.open(old)
