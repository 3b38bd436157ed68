"""The residual pyramid of product quantisers of compact banks: codes, round trips, the nearest centroid."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pixelnn.bank import codec

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def smooth_maps(n: int, size: int, d: int, seed: int = 0, noise: float = 0.05) -> np.ndarray:
    """(n, size, size, d) unit descriptors varying slowly across the image, like reduced hypercolumns."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.randn(n, d, size // 8, size // 8, generator=gen)
    up = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    maps = up + noise * torch.randn(n, d, size, size, generator=gen)
    return F.normalize(maps, dim=1).permute(0, 2, 3, 1).numpy()


def test_codes_are_one_row_of_bytes_per_exemplar_level_after_level():
    c = codec.fit_codec(smooth_maps(4, 32, 16))
    assert c.levels == ((4, 16), (2, 16), (1, 1)) == codec.levels_for(16)
    assert c.dim == 16
    codes = c.encode(torch.from_numpy(smooth_maps(3, 32, 16, seed=1)))
    assert codes.dtype == torch.uint8 and codes.shape == (3, 8 * 8 * 16 + 16 * 16 * 16 + 32 * 32 * 1) == (
        3,
        c.code_length(32),
    )
    assert codec.code_length(96) == 24 * 24 * 16 + 48 * 48 * 16 + 96 * 96 * 1 == 6 * 96 * 96  # 6 bytes a pixel


def test_round_trip_error_is_small_on_smooth_descriptors_and_each_level_reduces_it():
    maps = smooth_maps(8, 32, 16)
    x = torch.from_numpy(smooth_maps(4, 32, 16, seed=2))  # not seen in training
    errors = []
    for k in range(1, 4):  # the first k levels
        c = codec.fit_codec(maps, codec.levels_for(16)[:k])
        decoded = c.decode(c.encode(x), 32)
        assert decoded.shape == x.shape and decoded.dtype == torch.float32
        errors.append(((decoded - x) ** 2).sum(-1).mean().item())  # x has unit rows: relative squared error
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.01
    assert F.cosine_similarity(decoded, x, dim=-1).mean().item() > 0.995


def test_maps_of_few_distinct_blocks_round_trip_exactly():
    """With at most 256 distinct block means and nothing left for the finer levels, all are exact."""
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(10, 8)).astype(np.float32)
    blocks = vectors[rng.integers(0, 10, (5, 1, 1))].repeat(16, axis=1).repeat(16, axis=2)  # constant images
    c = codec.fit_codec(blocks)
    np.testing.assert_allclose(c.decode(c.encode(torch.from_numpy(blocks)), 16).numpy(), blocks, atol=1e-5)


def test_pq_encode_picks_the_nearest_centroid_of_each_sub_vector():
    rng = np.random.default_rng(4)
    centroids = rng.normal(size=(4, 256, 3)).astype(np.float32)
    x = torch.from_numpy(rng.normal(size=(1000, 12)).astype(np.float32))
    codes = codec.pq_encode(x, centroids).numpy()
    subs = x.numpy().reshape(1000, 4, 1, 3)
    nearest = ((subs - centroids[None]) ** 2).sum(-1).argmin(-1)  # (1000, 4) brute force
    np.testing.assert_array_equal(codes, nearest)
    decoded = codec.pq_decode(torch.from_numpy(codes), centroids).numpy()
    np.testing.assert_array_equal(decoded.reshape(1000, 4, 3), centroids[np.arange(4), nearest])


def test_a_size_that_is_not_a_multiple_of_the_blocks_has_partial_blocks():
    maps = np.ascontiguousarray(smooth_maps(3, 16, 8)[:, :10, :10])  # 10 x 10: blocks of 4, 4 and 2
    c = codec.fit_codec(maps)
    codes = c.encode(torch.from_numpy(maps))
    assert codes.shape == (3, 3 * 3 * 8 + 5 * 5 * 8 + 10 * 10 * 1)
    decoded = c.decode(codes, 10)
    assert decoded.shape == (3, 10, 10, 8)
    assert F.cosine_similarity(decoded, torch.from_numpy(maps), dim=-1).min() > 0.8


def test_the_rotation_is_orthogonal_and_balances_the_sub_vectors_variance():
    rng = np.random.default_rng(5)
    x = (rng.normal(size=(5000, 16)) * np.geomspace(4, 0.1, 16)).astype(np.float32)  # energy in the first dims
    r = codec.fit_rotation(x, 4)
    np.testing.assert_allclose(r @ r.T, np.eye(16), atol=1e-5)
    before = x.reshape(-1, 4, 4).var(axis=0).sum(-1)
    after = (x @ r.T).reshape(-1, 4, 4).var(axis=0).sum(-1)
    assert after.max() / after.min() < 3 < 300 < before.max() / before.min()


def test_a_rotated_codec_codes_the_rotated_maps():
    maps = smooth_maps(4, 16, 8)
    rotation, c = codec.fit_rotated_codec(maps)
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(8), atol=1e-5)
    rotated = torch.from_numpy(maps @ rotation.T)
    assert F.cosine_similarity(c.decode(c.encode(rotated), 16), rotated, dim=-1).mean() > 0.99


def test_decoding_refuses_codes_of_another_length():
    c = codec.fit_codec(smooth_maps(2, 16, 8))
    with pytest.raises(ValueError, match="codes of 9 bytes per exemplar"):
        c.decode(torch.zeros((1, 9), dtype=torch.uint8), 16)
