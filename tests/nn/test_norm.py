"""Equivariant normalisations: exact rotation equivariance, the statistics they promise."""

from __future__ import annotations

import pytest
import torch

from eqv2.nn.norm import EquivariantLayerNormSH, LayerNorm, make_norm
from tests.nn.symmetry import EXACT, features, random_rotation, rotate

NORMS = ["layer_norm", "layer_norm_sh", "rms_norm_sh"]


def _norm(norm_type: str, lmax: int = 3, channels: int = 4) -> torch.nn.Module:
    torch.manual_seed(0)
    norm = make_norm(norm_type, lmax, channels).double()
    with torch.no_grad():  # non-trivial affine parameters
        for p in norm.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return norm


@pytest.mark.parametrize("norm_type", NORMS)
def test_equivariant(norm_type):
    norm, x, R = _norm(norm_type), 3.0 * features(5, 3, 4, seed=1), random_rotation(3)
    torch.testing.assert_close(norm(rotate(x, R)), rotate(norm(x), R), rtol=0, atol=EXACT)


@pytest.mark.parametrize("norm_type", NORMS)
def test_scale_invariant(norm_type):
    """Normalised: multiplying the input by a constant changes nothing (once eps is negligible)."""
    norm = make_norm(norm_type, 2, 6).double()
    x = features(4, 2, 6, seed=2)
    torch.testing.assert_close(norm(1e6 * x), norm(1e3 * x), rtol=0, atol=1e-9)


def test_layer_norm_sh_balanced_statistics():
    """Unit affine: l = 0 is a LayerNorm; over l > 0 the degree-balanced mean square is 1."""
    lmax, channels = 3, 5
    norm = EquivariantLayerNormSH(lmax, channels, eps=0.0).double()
    x = features(4, lmax, channels, seed=4)
    out = norm(x)
    torch.testing.assert_close(
        out[:, 0], torch.nn.functional.layer_norm(x[:, 0], (channels,), eps=0.0), rtol=0, atol=1e-12
    )
    per_degree = [out[:, l * l : (l + 1) ** 2].pow(2).mean(dim=(1, 2)) for l in range(1, lmax + 1)]
    balanced = torch.stack(per_degree, dim=1).mean(dim=1)
    torch.testing.assert_close(balanced, torch.ones_like(balanced), rtol=0, atol=1e-12)


def test_unknown_norm_type_names_the_choices():
    with pytest.raises(ValueError, match="layer_norm_sh"):
        make_norm("batch_norm", 2, 4)


def test_layer_norm_is_nn_layer_norm():
    ln = LayerNorm(6).double()
    x = torch.randn(3, 6, dtype=torch.float64)
    torch.testing.assert_close(ln(x), torch.nn.functional.layer_norm(x, (6,)))
