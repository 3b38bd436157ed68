import pytest
import torch

from pixelnn.features.hypercolumn import pixel_descriptors
from pixelnn.features.projection import fit_projection, project_taps, sample_hypercolumns, sample_pixels


def taps(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, c, s, s, generator=g) for c, s in ((8, 16), (16, 8), (32, 4))]


def test_projecting_layers_at_their_resolution_equals_projecting_the_hypercolumn():
    t = taps()
    basis = fit_projection(torch.randn(500, 56), 12)
    h = pixel_descriptors(t, (16, 16), normalize_first=True)  # (2, 56, 16, 16)
    direct = torch.nn.functional.normalize(torch.einsum("bdhw,kd->bhwk", h, basis), dim=-1)
    assert torch.allclose(project_taps(t, basis, (16, 16)), direct, atol=1e-5)


def test_fitted_basis_is_orthonormal_and_keeps_the_dominant_directions():
    g = torch.Generator().manual_seed(1)
    strong = torch.nn.functional.normalize(torch.randn(3, 20, generator=g), dim=1)
    x = torch.randn(2000, 3, generator=g) @ (10 * strong) + 0.1 * torch.randn(2000, 20, generator=g)
    basis = fit_projection(x, 3)
    assert torch.allclose(basis @ basis.T, torch.eye(3), atol=1e-4)
    # the strong directions lie in the span of the basis
    residual = strong - (strong @ basis.T) @ basis
    assert residual.norm(dim=1).max() < 0.05


def test_dot_products_survive_a_full_rank_projection():
    x = torch.nn.functional.normalize(torch.randn(300, 10), dim=1)
    basis = fit_projection(x, 10)
    assert torch.allclose((x @ basis.T) @ (x @ basis.T).T, x @ x.T, atol=1e-4)


def test_sample_pixels_takes_columns_of_the_descriptor_map():
    desc = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    s = sample_pixels(desc, 5, torch.Generator().manual_seed(0))
    assert s.shape == (10, 3)
    flat = desc.flatten(2).permute(0, 2, 1).reshape(-1, 3)
    assert all((flat == row).all(1).any() for row in s)


def test_a_dimension_beyond_the_descriptor_size_is_a_config_error():
    """Found while fuzzing `pixelnn index --descriptors 100000`: a ValueError and a traceback."""
    from pixelnn.errors import ConfigError

    for dim in (0, 57, 10**20):
        with pytest.raises(ConfigError, match=rf"1\.\.56 dimensions .* got {dim}"):
            fit_projection(torch.randn(50, 56), dim)


def _reference_projection(t, basis, size):
    """The straightforward form: the per-layer-normalised hypercolumn at full size, projected, renormalised."""
    h = pixel_descriptors(t, size, normalize_first=True)  # (B, D, H, W)
    return torch.nn.functional.normalize(torch.einsum("bdhw,kd->bhwk", h, basis), dim=-1)


@pytest.mark.parametrize("size", [(16, 16), (13, 11)])
def test_projection_of_channels_last_taps_matches_the_reference_with_zero_pixels_kept_zero(size):
    g = torch.Generator().manual_seed(3)
    H, W = size
    shapes = [(8, H, W), (16, (H + 1) // 2, (W + 1) // 2), (32, (H + 3) // 4, (W + 3) // 4)]
    t = [torch.relu(torch.randn(2, c, h, w, generator=g)) for c, h, w in shapes]
    for tap in t:
        tap[:, :, 0, 0] = 0  # a pixel where a ReLU layer is all zero: no division by zero
    basis = fit_projection(torch.randn(500, 56, generator=g), 12)
    ref = _reference_projection(t, basis, size)
    for taps in (t, [x.contiguous(memory_format=torch.channels_last) for x in t]):
        out = project_taps(taps, basis, size)
        assert out.shape == (2, H, W, 12) and out.is_contiguous()
        assert torch.isfinite(out).all()
        assert torch.allclose(out, ref, atol=1e-5)


@pytest.mark.parametrize(("size", "sides"), [((16, 16), (16, 8, 4, 2)), ((13, 13), (13, 7, 4, 1))])
def test_sampled_hypercolumns_are_the_pixels_of_the_full_map(size, sides):
    g = torch.Generator().manual_seed(4)
    t = [torch.randn(3, c, s, s, generator=g) for c, s in zip((8, 16, 32, 4), sides)]
    full = sample_pixels(pixel_descriptors(t, size, normalize_first=True), 40, torch.Generator().manual_seed(5))
    sampled = sample_hypercolumns(t, size, 40, torch.Generator().manual_seed(5))
    assert sampled.shape == full.shape == (3 * 40, 60)
    assert torch.allclose(sampled, full, atol=1e-6)
