"""Edge-degree embedding: initial l > 0 node features from the radial function of each edge."""

from __future__ import annotations

import torch
from torch import nn

from eqv2.nn.chunking import chunk_bounds, run_chunk
from eqv2.nn.context import EdgeContext
from eqv2.nn.radial import RadialMLP, atom_edge_embeddings
from eqv2.nn.segment import segment_sum


class EdgeDegreeEmbedding(nn.Module):
    """Σ over incoming edges of D(R_ij)ᵀ · [radial(edge), 0, ...] / avg_degree.

    (times the edge's cut-off envelope in smooth mode).

    The radial MLP produces the m = 0 coefficients of every degree in the edge frame (where the
    edge's own spherical harmonics are non-zero only at m = 0); rotating them back to the
    global frame and summing gives each atom an equivariant summary of its neighbourhood.
    Parameter names match the reference's ``EdgeDegreeEmbedding``.
    """

    def __init__(
        self,
        sphere_channels: int,
        lmax: int,
        max_num_elements: int,
        edge_channels: list[int],
        use_atom_edge_embedding: bool,
        rescale_factor: float,
    ) -> None:
        super().__init__()
        self.sphere_channels = sphere_channels
        self.lmax = lmax
        self.source_embedding, self.target_embedding, edge_channels = atom_edge_embeddings(
            use_atom_edge_embedding, max_num_elements, edge_channels
        )
        self.rad_func = RadialMLP([*edge_channels, (lmax + 1) * sphere_channels])
        self.rescale_factor = rescale_factor

    def bytes_per_edge(self, dtype: torch.dtype) -> int:
        """Working memory of one edge's intermediates in ``forward`` (for chunk sizes)."""
        hidden = self.rad_func.net[0].out_features
        floats = 3 * hidden + (self.lmax + 1 + (self.lmax + 1) ** 2) * self.sphere_channels
        return floats * torch.finfo(dtype).bits // 8

    def forward(self, edges: EdgeContext) -> torch.Tensor:
        """(N, (lmax+1)², C) embedding; edges in chunks when ``edges.chunking`` says so."""
        num_edges = edges.num_edges
        size = edges.chunking.chunk_size(self.bytes_per_edge(edges.scalars.dtype))
        if size >= num_edges:
            out = segment_sum(self._rotated(edges), edges.dst, edges.num_nodes)
        else:
            out = None
            for start, stop in chunk_bounds(num_edges, size):
                chunk = edges.edge_slice(start, stop)
                rotated = run_chunk(self._rotated, chunk)
                if out is None:
                    out = rotated.new_zeros((edges.num_nodes, *rotated.shape[1:]))
                out.index_add_(0, chunk.dst, rotated)
        return out / self.rescale_factor

    def _rotated(self, edges: EdgeContext) -> torch.Tensor:
        """Each edge's contribution in the global frame: (E, (lmax+1)², C)."""
        radial = self.rad_func.forward_edges(
            edges.scalars,
            self.source_embedding,
            self.target_embedding,
            edges.src_z,
            edges.dst_z,
        )
        if edges.envelope is not None:  # smooth mode: each edge fades out at the cut-off
            radial = radial * edges.envelope.to(radial.dtype).unsqueeze(1)
        m0 = radial.view(radial.shape[0], self.lmax + 1, self.sphere_channels)
        # only the m = 0 columns (the first lmax+1 of the m-major layout) are non-zero
        return torch.bmm(edges.from_edge[:, :, : self.lmax + 1], m0)
