"""EquiformerV3's SwiGLU-S² activation and SwiGLU grid MLP: definition and equivariance.

A point-wise product of two functions of degree ≤ L has degree ≤ 2L, so projecting it back
onto degrees ≤ L integrates degree ≤ 3L: a grid with more than 3L latitudes and longitudes
makes the activation exactly equivariant (checked below); a coarser one aliases (measured in
``docs/equivariance.md``).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from eqv2.nn.activations import make_activation
from eqv2.nn.activations.swiglu_s2 import grid_product
from eqv2.nn.attention import GraphAttention
from eqv2.nn.context import SphereGrids
from eqv2.nn.feed_forward import FeedForward
from eqv2.so3 import CoefficientLayout
from tests.nn.symmetry import (
    EXACT,
    NUM_EDGE_SCALARS,
    Graph,
    features,
    random_rotation,
    rotate,
    y_rotation,
)

LAYOUT = CoefficientLayout(2)
#: more than 3·lmax = 6 points in both angles: the product's projection is exact
FINE = 8
COARSE = 6


def _node_grid(resolution):
    return LAYOUT.node_grid(resolution, torch.float64)


def test_swiglu_s2_definition():
    act = make_activation("swiglu_s2", LAYOUT.degree_index())
    assert act.expansion == 2 and act.num_scalars(3) == 9
    grid = _node_grid(FINE)
    x, s = features(4, LAYOUT.lmax, 6, seed=1), torch.randn(4, 9, dtype=torch.float64)
    out = act(s, x, grid)
    # by hand: values on the grid, product of the halves, back, gate, SwiGLU added at l = 0
    values = torch.einsum("gn,bnc->bgc", grid.to_grid, x)
    back = torch.einsum("ng,bgc->bnc", grid.from_grid, values[..., :3] * values[..., 3:])
    expected = back * torch.sigmoid(s[:, 6:]).unsqueeze(1)
    expected[:, 0] += F.silu(s[:, :3]) * s[:, 3:6]
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("resolution, exact", [(FINE, True), (COARSE, False)])
def test_swiglu_s2_equivariance(resolution, exact):
    act = make_activation("swiglu_s2", LAYOUT.degree_index())
    x, s = features(5, LAYOUT.lmax, 8, seed=2), torch.randn(5, 12, dtype=torch.float64)
    grid = _node_grid(resolution)
    out = act(s, x, grid)
    R = y_rotation(2 * math.pi * 3 / resolution)  # maps the grid onto itself: always exact
    torch.testing.assert_close(act(s, rotate(x, R), grid), rotate(out, R), rtol=0, atol=EXACT)
    R = random_rotation(4)
    error = (act(s, rotate(x, R), grid) - rotate(out, R)).abs().max() / out.abs().max()
    if exact:
        assert error < 1e-12
    else:  # the coarse grid aliases the degree-6 integrand (0.25, 0.38 measured in two draws)
        assert 1e-2 < error < 1.0


def test_grid_product_is_differentiable_twice():
    grid = _node_grid(FINE)
    x = torch.randn(2, LAYOUT.num_coefficients, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda t: grid_product(t, grid), (x,))


def _grids(resolution):
    return SphereGrids.build(
        layout=LAYOUT, resolution=resolution, dtype=torch.float64, device="cpu"
    )


@pytest.mark.parametrize("activation", ["swiglu_grid_mlp", "swiglu_s2"])
def test_feed_forward_equivariant_on_a_fine_grid(activation):
    torch.manual_seed(0)
    ffn = FeedForward(4, 6, 5, LAYOUT.lmax, activation=activation).double().eval()
    widths = {n: tuple(p.shape) for n, p in ffn.named_parameters()}
    if activation == "swiglu_grid_mlp":
        assert widths["scalar_mlp.linear.weight"] == (12, 4)
        assert widths["grid_mlp.grid_linear_1.weight"] == (12, 6)
        assert widths["grid_mlp.gating_linear.weight"] == (6, 4)
    else:  # the first SO(3) linear makes both halves; 3H gating scalars
        assert widths["so3_linear_1.weight"] == (3, 12, 4)
        assert widths["gating_linear.weight"] == (18, 4)
    x, R = features(5, LAYOUT.lmax, 4, seed=3), random_rotation(6)
    out = ffn(x, _grids(FINE))
    torch.testing.assert_close(ffn(rotate(x, R), _grids(FINE)), rotate(out, R), rtol=0, atol=EXACT)


def test_attention_with_swiglu_s2_equivariant_with_carried_frames():
    layout = CoefficientLayout(2, 1)
    torch.manual_seed(0)
    layer = GraphAttention(
        4, 6, 2, 3, 2, 5, 2, 1, 10, [NUM_EDGE_SCALARS, 8, 8], activation="swiglu_s2"
    ).double()
    # the first SO(2) convolution emits both halves (2H) and 3H scalars besides the logits
    assert layer.so2_conv_1.fc_m0.out_features == 2 * 6 * 3 + 2 * 3 + 3 * 6
    graph, R = Graph(), random_rotation(11)
    grids = SphereGrids.build(layout=layout, resolution=8, dtype=torch.float64, device="cpu")
    x = features(graph.num_nodes, 2, 4, seed=2)
    out = layer.eval()(x, graph.context(layout), grids)
    rotated = layer(rotate(x, R), graph.context(layout, R, carry=True), grids)
    torch.testing.assert_close(rotated, rotate(out, R), rtol=0, atol=EXACT)
