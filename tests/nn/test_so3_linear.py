"""SO3Linear: one weight per degree shared by its orders, bias on l = 0 only; equivariant."""

from __future__ import annotations

import pytest
import torch

from eqv2.nn.so3_linear import SO3Linear
from tests.nn.symmetry import EXACT, features, random_rotation, rotate


@pytest.mark.parametrize("lmax", [0, 1, 3])
def test_equivariant(lmax):
    torch.manual_seed(0)
    layer = SO3Linear(4, 3, lmax).double()
    torch.nn.init.normal_(layer.bias)
    x, R = features(6, lmax, 4, seed=1), random_rotation(2)
    torch.testing.assert_close(layer(rotate(x, R)), rotate(layer(x), R), rtol=0, atol=EXACT)


def test_one_weight_per_degree_and_bias_on_l0_only():
    torch.manual_seed(0)
    layer = SO3Linear(2, 5, 2).double()
    torch.nn.init.normal_(layer.bias)
    x = features(3, 2, 2, seed=0)
    out = layer(x)
    assert out.shape == (3, 9, 5)
    degree = [0, 1, 1, 1, 2, 2, 2, 2, 2]
    for k, l in enumerate(degree):
        want = x[:, k] @ layer.weight[l].T + (layer.bias if k == 0 else 0.0)
        torch.testing.assert_close(out[:, k], want, rtol=0, atol=1e-13)
    assert "lmax=2" in repr(layer)


def test_wrong_channels_are_refused():
    layer = SO3Linear(4, 3, 1).double()
    with pytest.raises(RuntimeError):
        layer(features(2, 1, 5, seed=0))
