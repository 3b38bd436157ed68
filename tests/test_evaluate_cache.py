"""The evaluation's cache keys are on disk already: they must not change unless a version is bumped."""

import numpy as np
import torch

from pixelnn.evaluate import cache
from pixelnn.hashing import weights_hash


def test_cache_keys_are_the_ones_earlier_evaluations_wrote(monkeypatch):
    assert cache.run_key({"model_fingerprint": "f", "count": 3}, None, 0, 72, "coherent")[0] == cache.CACHE_VERSION
    monkeypatch.setattr(cache, "CACHE_VERSION", 3)  # the helpers give version 3's keys as it wrote them
    torch.manual_seed(0)
    generator = torch.nn.Conv2d(1, 2, 1)
    x = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    y = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    assert weights_hash(generator) == "766d96896becb1df"
    run = cache.run_key({"model_fingerprint": "f", "count": 3}, None, 0, 72, "coherent")
    assert run == [3, "f", 3, None, 0, 72, "coherent"]
    key = cache.candidates_key(run, x, y)
    assert key == "10ce7e2eb3790a9c0520"  # values of the evaluation before its cache helpers moved here
    assert cache.metrics_key(key) == "0fba84ca26fdacc1fc29"


def test_a_file_with_another_key_or_none_reads_as_missing(tmp_path):
    path = cache.candidates_path(tmp_path, 0)
    assert path.name == "cand-00000.npz" and cache.read(path, "k") is None
    np.savez(path, key=np.array("k"), a=np.ones(2))
    assert cache.read(path, "other") is None
    assert np.array_equal(cache.read(path, "k")["a"], np.ones(2))
    path.write_bytes(b"not a zip")
    assert cache.read(path, "k") is None
