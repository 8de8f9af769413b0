"""Transformer block: pre-norm residual attention and feed-forward; equivariant; regularisers."""

from __future__ import annotations

import pytest
import torch

from eqv2.nn.attention import GraphAttention
from eqv2.nn.block import TransformerBlock
from eqv2.nn.context import SphereGrids
from eqv2.nn.feed_forward import FeedForward
from eqv2.so3 import CoefficientLayout
from tests.nn.symmetry import EXACT, NUM_EDGE_SCALARS, Graph, features, random_rotation, rotate

LAYOUT = CoefficientLayout(2, 1)
GRIDS = SphereGrids.build(layout=LAYOUT, resolution=8, dtype=torch.float64, device="cpu")


def _block(norm_type: str = "rms_norm_sh", **regularisers) -> TransformerBlock:
    torch.manual_seed(0)
    lmax, mmax = LAYOUT.lmax, LAYOUT.mmax
    attention = GraphAttention(
        4, 6, 2, 3, 2, 4, lmax, mmax, 10, [NUM_EDGE_SCALARS, 8, 8], use_gate_act=True
    )
    ffn = FeedForward(4, 6, 4, lmax, use_gate_act=True)
    return TransformerBlock(attention, ffn, norm_type, lmax, 4, **regularisers).double().eval()


@pytest.mark.parametrize("norm_type", ["layer_norm", "layer_norm_sh", "rms_norm_sh"])
def test_equivariant(norm_type):
    """Gate activations throughout: exact for any rotation with recomputed edge frames."""
    block, graph, R = _block(norm_type), Graph(), random_rotation(6)
    x = features(graph.num_nodes, LAYOUT.lmax, 4, seed=1)
    out = block(x, graph.context(LAYOUT), GRIDS)
    rotated = block(rotate(x, R), graph.context(LAYOUT, R), GRIDS)
    torch.testing.assert_close(rotated, rotate(out, R), rtol=0, atol=EXACT)


def test_two_residual_branches():
    block, graph = _block(), Graph()
    x, edges = features(graph.num_nodes, LAYOUT.lmax, 4, seed=2), graph.context(LAYOUT)
    h = x + block.ga(block.norm_1(x), edges, GRIDS)
    want = h + block.ffn(block.norm_2(h), GRIDS)
    torch.testing.assert_close(block(x, edges, GRIDS), want, rtol=0, atol=0)


def test_regularisers_only_in_training():
    block, graph = _block(drop_path_rate=0.5, proj_drop=0.5), Graph()
    x, edges = features(graph.num_nodes, LAYOUT.lmax, 4, seed=3), graph.context(LAYOUT)
    plain = _block()
    torch.testing.assert_close(block.eval()(x, edges, GRIDS), plain(x, edges, GRIDS))
    torch.manual_seed(1)
    trained = block.train()(x, edges, GRIDS)
    assert not torch.allclose(trained, plain(x, edges, GRIDS))
