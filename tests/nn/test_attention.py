"""Graph attention: float64 rotation equivariance of every activation variant."""

from __future__ import annotations

import pytest
import torch

from eqv2.nn.attention import GraphAttention
from eqv2.so3 import CoefficientLayout
from tests.nn.symmetry import EXACT, NUM_EDGE_SCALARS, Graph, features, random_rotation, rotate

LAYOUT = CoefficientLayout(2, 1)
VARIANTS = {
    "separable_s2": {},
    "s2": {"use_sep_s2_act": False},
    "gate": {"use_gate_act": True},
    "m_share_rad_no_renorm": {"use_m_share_rad": True, "use_attn_renorm": False},
    "no_atom_edge_embedding": {"use_atom_edge_embedding": False},
}


def _attention(**options) -> GraphAttention:
    torch.manual_seed(0)
    layer = GraphAttention(
        4, 6, 2, 3, 2, 5, LAYOUT.lmax, LAYOUT.mmax, 10, [NUM_EDGE_SCALARS, 8, 8], **options
    )
    return layer.double().eval()


def _grids():
    from eqv2.nn.context import SphereGrids

    return SphereGrids.build(layout=LAYOUT, resolution=8, dtype=torch.float64, device="cpu")


@pytest.mark.parametrize("variant", VARIANTS)
def test_equivariant_with_carried_frames(variant):
    """Exact for every variant when the rotated graph sees the same edge frames."""
    layer, graph, R = _attention(**VARIANTS[variant]), Graph(), random_rotation(11)
    x = features(graph.num_nodes, LAYOUT.lmax, 4, seed=2)
    out = layer(x, graph.context(LAYOUT), _grids())
    assert out.shape == (graph.num_nodes, LAYOUT.num_coefficients, 5)
    rotated = layer(rotate(x, R), graph.context(LAYOUT, R, carry=True), _grids())
    torch.testing.assert_close(rotated, rotate(out, R), rtol=0, atol=EXACT)


def test_gate_variant_equivariant_with_recomputed_frames():
    """The gate activation commutes with the roll about each edge: any frame gives the same."""
    layer, graph, R = _attention(use_gate_act=True), Graph(), random_rotation(12)
    x = features(graph.num_nodes, LAYOUT.lmax, 4, seed=3)
    out = layer(x, graph.context(LAYOUT), _grids())
    rotated = layer(rotate(x, R), graph.context(LAYOUT, R), _grids())
    torch.testing.assert_close(rotated, rotate(out, R), rtol=0, atol=EXACT)


def test_nodes_without_incoming_edges_get_only_the_bias():
    layer, graph = _attention(), Graph()
    edges = graph.context(LAYOUT)
    keep = edges.dst != 0  # node 0 receives nothing
    edges = edges._replace(
        src=edges.src[keep],
        dst=edges.dst[keep],
        src_z=edges.src_z[keep],
        dst_z=edges.dst_z[keep],
        scalars=edges.scalars[keep],
        to_edge=edges.to_edge[keep],
        from_edge=edges.from_edge[keep],
        message_index=edges.message_index.view(-1, 2 * LAYOUT.num_coefficients)[keep].reshape(-1),
    )
    out = layer(features(graph.num_nodes, LAYOUT.lmax, 4, seed=4), edges, _grids())
    torch.testing.assert_close(out[0, 0], layer.proj.bias, rtol=0, atol=0)
    assert out[0, 1:].abs().max() == 0
