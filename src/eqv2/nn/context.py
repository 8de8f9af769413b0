"""Per-forward quantities shared by every layer: edges, their frames, and sphere grids.

They are computed once per forward pass by the model and handed down, so no layer recomputes
Wigner matrices or grid projections. Plain NamedTuples of tensors keep them traceable.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from eqv2.nn.activation import SphereGrid


class EdgeContext(NamedTuple):
    """Edges of a batch of structures, in the reference's (source j → target i) convention."""

    src: torch.Tensor  #: (E,) source node j of each edge
    dst: torch.Tensor  #: (E,) target node i of each edge (softmax and sums group by it)
    src_z: torch.Tensor  #: (E,) atomic number of each edge's source
    dst_z: torch.Tensor  #: (E,) atomic number of each edge's target
    scalars: torch.Tensor  #: (E, F) invariant edge features (distance basis [+ atom embeddings])
    to_edge: torch.Tensor  #: (E, K, S) global l-major → edge-frame m-major (|m| ≤ mmax)
    from_edge: torch.Tensor  #: (E, S, K) edge-frame m-major → global l-major (rescaled)
    batch: torch.Tensor  #: (N,) structure index of each node
    num_nodes: int
    num_graphs: int


class SphereGrids(NamedTuple):
    """Sphere grids for S2 activations in the edge frame (K coefficients, m-major, |m| ≤ mmax)
    and at the nodes (S = (lmax+1)² coefficients, l-major)."""

    edge: SphereGrid
    node: SphereGrid
    edge_gate_index: torch.Tensor  #: (K − 1,) degree − 1 of edge-frame coefficients 1..K−1
    node_gate_index: torch.Tensor  #: (S − 1,) degree − 1 of node coefficients 1..S−1
    #: use plain autograd ops in S2 activations (needed to train on −dE/dx forces)
    differentiable_twice: bool = False
