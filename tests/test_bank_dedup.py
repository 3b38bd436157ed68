"""Re-indexing is idempotent: exemplars already in a bank (same input and target bytes) are skipped."""

import json
import logging

import numpy as np
import pytest

from conftest import smooth_textures
from pixelnn import cli
from pixelnn.bank import store
from pixelnn.bank.bank import Bank
from pixelnn.data.signals import lowres
from pixelnn.workflow import index_arrays

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NAMES = [f"d/{i}.png" for i in range(6)]


@pytest.fixture(scope="module")
def pairs():
    y = smooth_textures(6, 32, seed=21)
    return lowres(y, 4), y


def _index(run, bank, x, y, idx, **kw):
    idx = list(idx)
    return index_arrays(
        run, x[idx], y[idx], [NAMES[i] for i in idx], [None] * len(idx), bank=bank, progress=False, **kw
    )


def _files(bank):
    return {p.relative_to(bank).as_posix(): p.stat().st_mtime_ns for p in sorted(bank.rglob("*"))}


def test_indexing_the_same_images_twice_changes_nothing(tiny_run, pairs, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="pixelnn")
    run = tiny_run[0]
    x, y = pairs
    bank = tmp_path / "bank"
    first = _index(run, bank, x, y, range(4))
    before = _files(bank)
    manifest = (bank / store.MANIFEST).read_bytes()
    second = _index(run, bank, x, y, range(4))
    assert second == first and second["count"] == 4
    assert (bank / store.MANIFEST).read_bytes() == manifest
    assert _files(bank) == before  # not a file touched
    assert "skipped 4 of 4 exemplars already in the bank" in caplog.text
    meta = json.loads((bank / "shard-000" / "meta.json").read_text())
    assert meta["hashes"] == store.exemplar_hashes(x[:4], y[:4]) and len(set(meta["hashes"])) == 4


def test_allow_duplicates_adds_them_again(tiny_run, pairs, tmp_path):
    run = tiny_run[0]
    x, y = pairs
    bank = tmp_path / "bank"
    _index(run, bank, x, y, range(3))
    m = _index(run, bank, x, y, range(3), allow_duplicates=True)
    assert m["count"] == 6 and len(m["shards"]) == 2
    opened = Bank.open(bank)
    assert opened.names == NAMES[:3] * 2
    assert np.array_equal(opened.gather("y", range(6)), np.concatenate([y[:3], y[:3]]))


def test_a_mix_of_old_and_new_adds_only_the_new(tiny_run, pairs, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="pixelnn")
    run = tiny_run[0]
    x, y = pairs
    bank = tmp_path / "bank"
    _index(run, bank, x, y, [0, 1, 2])
    m = _index(run, bank, x, y, [4, 1, 3, 0])
    assert m["count"] == 5 and [s["count"] for s in m["shards"]] == [3, 2]
    assert "skipped 2 of 4" in caplog.text
    opened = Bank.open(bank)
    assert opened.names == [NAMES[i] for i in (0, 1, 2, 4, 3)]
    assert np.array_equal(opened.gather("x", range(5)), x[[0, 1, 2, 4, 3]])
    assert opened.shards[1].hashes == store.exemplar_hashes(x[[4, 3]], y[[4, 3]])


def test_a_bank_written_before_hashes_loads_and_is_deduplicated_from_its_arrays(tiny_run, pairs, tmp_path):
    run = tiny_run[0]
    x, y = pairs
    bank = tmp_path / "bank"
    _index(run, bank, x, y, [0, 1, 2])
    meta_file = bank / "shard-000" / "meta.json"
    meta = json.loads(meta_file.read_text())
    del meta["hashes"]
    meta_file.write_text(json.dumps(meta))
    assert len(Bank.open(bank)) == 3 and Bank.open(bank).shards[0].hashes is None
    m = _index(run, bank, x, y, [2, 5, 0])
    assert m["count"] == 4 and Bank.open(bank).names == [NAMES[i] for i in (0, 1, 2, 5)]


def test_a_hash_list_of_the_wrong_length_is_refused(tiny_run, pairs, tmp_path):
    run = tiny_run[0]
    x, y = pairs
    bank = tmp_path / "bank"
    _index(run, bank, x, y, [0, 1])
    meta_file = bank / "shard-000" / "meta.json"
    meta = json.loads(meta_file.read_text())
    meta["hashes"] = meta["hashes"][:1]
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(store.BankError, match="shard-000"):
        Bank.open(bank)


def test_the_index_verb_has_allow_duplicates():
    args = cli.build_parser().parse_args(["index", "--model", "m", "--data", "d", "--allow-duplicates"])
    assert args.allow_duplicates is True
    args = cli.build_parser().parse_args(["index", "--model", "m", "--data", "d"])
    assert args.allow_duplicates is False


def test_descriptors_for_an_existing_bank_must_match_what_it_stores(tmp_path):
    from pixelnn.errors import BankError
    from pixelnn.regress.unet import Stage1Config, UNet
    from pixelnn.workflow import write_run

    write_run(
        tmp_path,
        UNet(Stage1Config(3, 8, 32, width=8, levels=2, residual=True)),
        {"signal": "lowres", "factor": 4, "size": 32, "backbone": "vgg16-hed"},
    )
    y = smooth_textures(6, 32, seed=11)
    x = lowres(y, 4)
    index_arrays(tmp_path, x[:4], y[:4], [f"a{i}" for i in range(4)], [None] * 4, descriptors=16, progress=False)
    with pytest.raises(BankError, match=r"stores 16-d reduced descriptors; --descriptors 8 applies only to a new bank"):
        index_arrays(tmp_path, x[4:], y[4:], ["b0", "b1"], [None] * 2, descriptors=8, progress=False)
    manifest = index_arrays(tmp_path, x[4:], y[4:], ["b0", "b1"], [None] * 2, descriptors=16, progress=False)
    assert manifest["count"] == 6
