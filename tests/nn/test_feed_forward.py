"""Feed-forward network: float64 rotation equivariance of every activation variant.

The gate variant is exactly equivariant. Variants that sample the sphere (S2, separable S2,
grid MLP) are exact for the rotations that map the grid onto itself (turns about +y by
multiples of 2π/long) and equivariant up to the grid's aliasing otherwise.
"""

from __future__ import annotations

import math

import pytest
import torch

from eqv2.nn.context import SphereGrids
from eqv2.nn.feed_forward import FeedForward
from eqv2.so3 import CoefficientLayout
from tests.nn.symmetry import EXACT, features, random_rotation, rotate, y_rotation

LAYOUT = CoefficientLayout(3)
RESOLUTION = 8  # 8 longitudes: turns by 45 degrees about +y permute the grid
VARIANTS = {
    "separable_s2": {},
    "s2": {"use_sep_s2_act": False},
    "gate": {"use_gate_act": True},
    "grid_mlp": {"use_grid_mlp": True},
    "grid_mlp_no_scalar_branch": {"use_grid_mlp": True, "use_sep_s2_act": False},
}


def _ffn(**options) -> FeedForward:
    torch.manual_seed(0)
    return FeedForward(4, 6, 5, LAYOUT.lmax, **options).double().eval()


def _grids() -> SphereGrids:
    return SphereGrids.build(
        layout=LAYOUT, resolution=RESOLUTION, dtype=torch.float64, device="cpu"
    )


@pytest.mark.parametrize("variant", VARIANTS)
def test_equivariant_under_the_grid_symmetry(variant):
    ffn, x = _ffn(**VARIANTS[variant]), features(5, LAYOUT.lmax, 4, seed=1)
    out = ffn(x, _grids())
    assert out.shape == (5, LAYOUT.num_coefficients, 5)
    for k in (1, 3):
        R = y_rotation(2 * math.pi * k / RESOLUTION)
        torch.testing.assert_close(ffn(rotate(x, R), _grids()), rotate(out, R), rtol=0, atol=EXACT)


def test_gate_variant_equivariant_for_any_rotation():
    ffn, x, R = _ffn(use_gate_act=True), features(5, LAYOUT.lmax, 4, seed=2), random_rotation(8)
    torch.testing.assert_close(
        ffn(rotate(x, R), _grids()), rotate(ffn(x, _grids()), R), rtol=0, atol=EXACT
    )


#: aliasing error / largest output on this coarse grid, measured 0.105 and 0.0075; rotating
#: the output by the wrong rotation (Rᵀ) gives 0.95 and 0.15
ALIASING = {"separable_s2": 0.15, "grid_mlp": 0.03}


@pytest.mark.parametrize("variant", ALIASING)
def test_sampled_variants_alias_but_stay_close_for_any_rotation(variant):
    """Off the grid's symmetry the error is aliasing: small against the output, not zero."""
    ffn, x, R = _ffn(**VARIANTS[variant]), features(5, LAYOUT.lmax, 4, seed=3), random_rotation(9)
    out = ffn(x, _grids()).detach()
    error = (ffn(rotate(x, R), _grids()) - rotate(out, R)).abs().max()
    assert 0 < error < ALIASING[variant] * out.abs().max()
