"""DeNS force encoding: forces → an equivariant l ≤ lmax signal; the l = 0 bias everywhere."""

from __future__ import annotations

import torch

from eqv2.nn.force_encoding import ForceEmbedding
from tests.nn.symmetry import EXACT, random_rotation, rotate


def _embedding() -> ForceEmbedding:
    torch.manual_seed(0)
    layer = ForceEmbedding(6, 3).double()
    torch.nn.init.normal_(layer.bias)
    return layer


def test_encoding_rotates_with_the_forces():
    layer, R = _embedding(), random_rotation(1)
    forces = torch.randn(4, 3, dtype=torch.float64)
    like = torch.zeros(4, 16, 6, dtype=torch.float64)
    out = layer.encode(forces, 4, like)
    assert out.shape == (4, 16, 6)
    torch.testing.assert_close(
        layer.encode(forces @ R.T, 4, like), rotate(out, R), rtol=0, atol=EXACT
    )


def test_no_forces_gives_the_bias_at_l0_only():
    layer = _embedding()
    out = layer.encode(None, 3, torch.zeros(3, 16, 6, dtype=torch.float64))
    torch.testing.assert_close(out[:, 0], layer.bias.expand(3, 6), rtol=0, atol=0)
    assert out[:, 1:].abs().max() == 0


def test_encoding_scales_with_the_force_magnitude():
    """Y(f̂)·|f|/√3: doubling the forces doubles the signal (before the bias)."""
    layer = _embedding()
    like = torch.zeros(2, 16, 6, dtype=torch.float64)
    forces = torch.randn(2, 3, dtype=torch.float64)
    bias = layer.encode(None, 2, like)
    one, two = layer.encode(forces, 2, like) - bias, layer.encode(2 * forces, 2, like) - bias
    torch.testing.assert_close(two, 2 * one, rtol=0, atol=1e-13)
