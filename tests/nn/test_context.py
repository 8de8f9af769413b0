"""Per-forward context: `EdgeContext.build` and `SphereGrids.build`, the one place each is made."""

from __future__ import annotations

import pytest
import torch

from eqv2.nn.context import EdgeContext, SphereGrids, message_rows
from eqv2.so3 import CoefficientLayout, edge_frames, edge_rotation
from tests.nn.symmetry import Graph, edge_scalars, random_rotation

LAYOUT = CoefficientLayout(3, 2)


def test_edge_context_fields():
    graph = Graph()
    edges = graph.context(LAYOUT)
    src, dst = graph.edge_index
    vec = graph.edge_vec()
    E, S, K = src.shape[0], LAYOUT.num_coefficients, LAYOUT.num_edge_coefficients
    assert torch.equal(edges.src, src) and torch.equal(edges.dst, dst)
    assert torch.equal(edges.src_z, graph.atomic_numbers[src])
    assert torch.equal(edges.dst_z, graph.atomic_numbers[dst])
    torch.testing.assert_close(
        edges.scalars, edge_scalars(vec.norm(dim=1), edges.src_z, edges.dst_z)
    )
    to_edge, from_edge = edge_rotation(edge_frames(vec), LAYOUT.lmax, LAYOUT.mmax)
    assert edges.to_edge.shape == (E, K, S) and edges.from_edge.shape == (E, S, K)
    torch.testing.assert_close(edges.to_edge, to_edge, rtol=0, atol=0)
    torch.testing.assert_close(edges.from_edge, from_edge, rtol=0, atol=0)
    assert torch.equal(edges.message_index, message_rows(src, dst, S))
    assert (edges.num_nodes, edges.num_graphs) == (5, 2)


def _build(graph: Graph, **options) -> EdgeContext:
    return EdgeContext.build(
        layout=LAYOUT,
        edge_index=graph.edge_index,
        edge_vec=graph.edge_vec(),
        atomic_numbers=graph.atomic_numbers,
        batch=graph.batch,
        num_graphs=2,
        edge_scalars=edge_scalars,
        **options,
    )


def test_given_frames_replace_computed_ones_and_roll_is_passed_on():
    graph = Graph()
    frames = edge_frames(graph.edge_vec()) @ random_rotation(1).T  # any rotation works here
    given = _build(graph, rotation=frames)
    torch.testing.assert_close(given.to_edge, edge_rotation(frames, LAYOUT.lmax, LAYOUT.mmax)[0])
    random = _build(graph, roll="random")
    assert not torch.allclose(random.to_edge, _build(graph).to_edge)
    with pytest.raises(ValueError, match="roll"):
        _build(graph, roll="sideways")


def test_build_takes_keywords_only():
    with pytest.raises(TypeError):
        EdgeContext.build(LAYOUT)  # type: ignore[misc]


def test_sphere_grids_are_exact_casts_of_the_layout_grids():
    grids = SphereGrids.build(layout=LAYOUT, resolution=10, dtype=torch.float32, device="cpu")
    assert grids.edge.to_grid.dtype == torch.float32
    assert grids.edge.to_grid.shape == (100, LAYOUT.num_edge_coefficients)
    assert grids.node.from_grid.shape == (LAYOUT.num_coefficients, 100)
    exact = LAYOUT.edge_grid(10)
    assert torch.equal(grids.edge.to_grid, exact.to_grid.float())
    assert (grids.differentiable_twice, grids.memory_saving) == (False, False)
