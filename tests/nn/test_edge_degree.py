"""Edge-degree embedding: m = 0 radial coefficients rotated back and summed; equivariant."""

from __future__ import annotations

import pytest
import torch

from eqv2.nn.edge_degree import EdgeDegreeEmbedding
from eqv2.so3 import CoefficientLayout
from tests.nn.symmetry import EXACT, NUM_EDGE_SCALARS, Graph, random_rotation, rotate

LAYOUT = CoefficientLayout(3, 2)


def _embedding(atom_edge: bool = True) -> EdgeDegreeEmbedding:
    torch.manual_seed(0)
    layer = EdgeDegreeEmbedding(4, LAYOUT.lmax, 10, [NUM_EDGE_SCALARS, 8, 8], atom_edge, 2.5)
    return layer.double()


@pytest.mark.parametrize("atom_edge", [True, False])
def test_equivariant_with_recomputed_frames(atom_edge):
    """Only m = 0 is non-zero in the edge frame, so the roll about the edge does not matter."""
    layer, graph, R = _embedding(atom_edge), Graph(), random_rotation(4)
    out = layer(graph.context(LAYOUT))
    assert out.shape == (graph.num_nodes, LAYOUT.num_coefficients, 4)
    assert out[:, 1:].abs().max() > 1e-3  # l > 0 features are created
    torch.testing.assert_close(layer(graph.context(LAYOUT, R)), rotate(out, R), rtol=0, atol=EXACT)


def test_sum_over_incoming_edges_divided_by_the_rescale_factor():
    layer, graph = _embedding(), Graph()
    edges = graph.context(LAYOUT)
    out = layer(edges)
    radial = layer.rad_func.forward_edges(
        edges.scalars, layer.source_embedding, layer.target_embedding, edges.src_z, edges.dst_z
    ).view(-1, LAYOUT.lmax + 1, 4)
    per_edge = torch.bmm(edges.from_edge[:, :, : LAYOUT.lmax + 1], radial)
    node = 1
    want = per_edge[edges.dst == node].sum(dim=0) / 2.5
    torch.testing.assert_close(out[node], want, rtol=0, atol=1e-13)
