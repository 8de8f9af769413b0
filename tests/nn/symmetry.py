"""Helpers for the layers' own float64 symmetry tests: rotations, rotated features, edges.

A layer is equivariant when ``layer(D(R) x, R·edges) = D(R) layer(x, edges)`` for node features
``x (N, (lmax+1)², C)`` (l-major) rotated by the Wigner-D matrix of ``eqv2.so3``. Layers acting
in edge frames are given frames either recomputed from the rotated edges (then the roll about
each edge differs, which only roll-invariant layers absorb exactly) or *carried*: ``frames(v) Rᵀ``
for the rotated edges, the same edge frame seen from the rotated world (exact for every layer).
"""

from __future__ import annotations

import torch

from eqv2.nn.context import EdgeContext
from eqv2.so3 import CoefficientLayout, edge_frames, wigner_d

#: float64 rounding over a few layers of small sizes
EXACT = 1e-10
DTYPE = torch.float64


def random_rotation(seed: int) -> torch.Tensor:
    """A proper rotation (3, 3), float64, from the QR decomposition of a Gaussian matrix."""
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=DTYPE))
    q = q * torch.sign(torch.diagonal(r))
    return q if torch.det(q) > 0 else -q


def y_rotation(angle: float) -> torch.Tensor:
    """Rotation by ``angle`` about +y (the polar axis), (3, 3) float64."""
    c, s = torch.cos(torch.tensor(angle, dtype=DTYPE)), torch.sin(torch.tensor(angle, dtype=DTYPE))
    return torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]], dtype=DTYPE)


def rotate(x: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """``D(R) x`` for l-major features ``x (N, (lmax+1)², C)``."""
    lmax = round(x.shape[1] ** 0.5) - 1
    return torch.einsum("ij,njc->nic", wigner_d(rotation, lmax), x)


def features(num_nodes: int, lmax: int, channels: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(num_nodes, (lmax + 1) ** 2, channels, generator=g, dtype=DTYPE)


class Graph:
    """A small random graph: 5 nodes in 2 structures, every ordered pair within a structure."""

    def __init__(self, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.pos = 2.0 * torch.randn(5, 3, generator=g, dtype=DTYPE)
        self.batch = torch.tensor([0, 0, 0, 1, 1])
        self.atomic_numbers = torch.tensor([1, 6, 8, 6, 8])
        pairs = [
            (j, i) for i in range(5) for j in range(5) if i != j and self.batch[i] == self.batch[j]
        ]
        self.edge_index = torch.tensor(pairs).T  # (source, target)

    @property
    def num_nodes(self) -> int:
        return int(self.pos.shape[0])

    def edge_vec(self, rotation: torch.Tensor | None = None) -> torch.Tensor:
        src, dst = self.edge_index
        vec = self.pos[src] - self.pos[dst]
        return vec if rotation is None else vec @ rotation.T

    def context(
        self, layout: CoefficientLayout, rotation: torch.Tensor | None = None, carry: bool = False
    ) -> EdgeContext:
        """Edges of the graph rotated by ``rotation`` (frames carried along if ``carry``)."""
        frames = None
        if carry and rotation is not None:
            frames = edge_frames(self.edge_vec()) @ rotation.T
        return EdgeContext.build(
            layout=layout,
            edge_index=self.edge_index,
            edge_vec=self.edge_vec(rotation),
            atomic_numbers=self.atomic_numbers,
            batch=self.batch,
            num_graphs=2,
            edge_scalars=edge_scalars,
            rotation=frames,
        )


#: Channels of `edge_scalars`
NUM_EDGE_SCALARS = 3


def edge_scalars(distance: torch.Tensor, source_z: torch.Tensor, target_z: torch.Tensor):
    """Invariant edge features: functions of the distance and both elements."""
    return torch.stack((distance, 1.0 / distance, (source_z - target_z).to(distance.dtype)), 1)
