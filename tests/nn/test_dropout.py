"""Regularisers: stochastic depth per structure, channel dropout that keeps equivariance."""

from __future__ import annotations

import pytest
import torch

from eqv2.nn.dropout import EquivariantDropout, GraphDropPath
from tests.nn.symmetry import EXACT, features, random_rotation, rotate


def test_drop_path_drops_whole_structures_and_rescales():
    layer = GraphDropPath(0.5).train()
    x = torch.ones(6, 4, 3, dtype=torch.float64)
    batch = torch.tensor([0, 0, 1, 1, 2, 2])
    torch.manual_seed(0)
    out = layer(x, batch, 3)
    for b in range(3):
        values = out[batch == b].unique()
        assert values.numel() == 1 and float(values) in (0.0, 2.0)  # kept branches scaled 1/(1-p)
    assert torch.equal(layer.eval()(x, batch, 3), x)
    assert "drop_prob=0.5" in repr(layer)


def test_drop_path_keeps_the_expectation():
    layer = GraphDropPath(0.3).train()
    x = torch.ones(4000, 1, 1, dtype=torch.float64)
    torch.manual_seed(0)
    out = layer(x, torch.arange(4000), 4000)
    assert abs(float(out.mean()) - 1.0) < 0.05


@pytest.mark.parametrize("seed", [0, 1])
def test_equivariant_dropout_drops_channels_and_commutes_with_rotations(seed):
    layer = EquivariantDropout(0.5).train()
    x, R = features(5, 2, 8, seed=seed), random_rotation(seed)
    torch.manual_seed(seed)
    out = layer(x)
    torch.manual_seed(seed)
    out_rot = layer(rotate(x, R))
    torch.testing.assert_close(out_rot, rotate(out, R), rtol=0, atol=EXACT)
    dropped = out.abs().sum(dim=1) == 0  # (node, channel) dropped in all coefficients at once
    kept = torch.isclose(out, 2.0 * x).all(dim=1)
    assert bool((dropped | kept).all()) and dropped.any() and kept.any()
    assert torch.equal(layer.eval()(x), x)
