import pytest
import torch

from pixelnn.features.hypercolumn import pixel_descriptors
from pixelnn.features.projection import fit_projection, project_taps, sample_pixels


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
