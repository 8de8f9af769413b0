"""Distance features: the Gaussian basis and the radial MLP that turns edge scalars into weights."""

from __future__ import annotations

import torch
from torch import nn

from eqv2.nn.norm import LayerNorm

#: The reference's Gaussian basis always has 600 centres, whatever `num_distance_basis` says.
NUM_GAUSSIANS = 600
GAUSSIAN_WIDTH_SCALE = 2.0


class GaussianBasis(nn.Module):
    """exp(coeff · (d − μ_k)²) for 600 centres μ_k evenly spaced on [0, cutoff].

    The width is ``GAUSSIAN_WIDTH_SCALE`` times the spacing, as in the reference's
    ``GaussianSmearing(0, cutoff, 600, 2.0)``. Centres are computed in float64 and cast to the
    module's dtype, so float64 models see exact centres.
    """

    def __init__(self, cutoff: float, num_basis: int = NUM_GAUSSIANS) -> None:
        super().__init__()
        offset = torch.linspace(0.0, cutoff, num_basis, dtype=torch.float64)
        self.coeff = -0.5 / (GAUSSIAN_WIDTH_SCALE * (offset[1] - offset[0])).item() ** 2
        self.num_output = num_basis
        self.register_buffer("offset", offset, persistent=False)

    def forward(self, distance: torch.Tensor) -> torch.Tensor:
        diff = distance.view(-1, 1) - self.offset.view(1, -1).to(distance.dtype)
        return torch.exp(self.coeff * diff.pow(2))


class RadialMLP(nn.Module):
    """Linear → LayerNorm → SiLU → ... → Linear over the channel list ``[in, h1, ..., out]``.

    The layers live in ``net`` so parameter names match the reference
    (``net.0`` Linear, ``net.1`` LayerNorm, ``net.3`` Linear, ...).
    """

    def __init__(self, channels: list[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(1, len(channels)):
            layers.append(nn.Linear(channels[i - 1], channels[i], bias=True))
            if i < len(channels) - 1:
                layers.append(LayerNorm(channels[i]))
                layers.append(nn.SiLU())
        self.net = nn.Sequential(*layers)
        self.in_features = channels[0]
        self.out_features = channels[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def forward_edges(
        self,
        scalars: torch.Tensor,
        source_embedding: nn.Embedding | None = None,
        target_embedding: nn.Embedding | None = None,
        source_z: torch.Tensor | None = None,
        target_z: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The MLP applied to ``[scalars, source_embedding(Z_j), target_embedding(Z_i)]``.

        Equal to ``forward`` on the concatenation, but the embedding part of the first Linear
        is applied to the (num_elements, dim) embedding tables and gathered per edge, which
        skips the (E, dim) concatenation and two thirds of that GEMM's work.
        """
        if source_embedding is None or target_embedding is None:
            return self.net(scalars)
        first = self.net[0]
        dim = source_embedding.embedding_dim
        w_rbf, w_src, w_tgt = first.weight.split([scalars.shape[1], dim, dim], dim=1)
        hidden = torch.addmm(first.bias, scalars, w_rbf.T)
        hidden = hidden + (source_embedding.weight @ w_src.T).index_select(0, source_z)
        hidden = hidden + (target_embedding.weight @ w_tgt.T).index_select(0, target_z)
        return self.net[1:](hidden)


def atom_edge_embeddings(
    enabled: bool, max_num_elements: int, edge_channels: list[int]
) -> tuple[nn.Embedding | None, nn.Embedding | None, list[int]]:
    """Source and target element embeddings appended to a radial MLP's edge scalars.

    Returns the two embeddings (or None when disabled) and the radial MLP's channel list with
    its input widened by them. Initialised U(±0.001) as in the reference.
    """
    edge_channels = list(edge_channels)
    if not enabled:
        return None, None, edge_channels
    dim = edge_channels[-1]
    source, target = nn.Embedding(max_num_elements, dim), nn.Embedding(max_num_elements, dim)
    nn.init.uniform_(source.weight, -0.001, 0.001)
    nn.init.uniform_(target.weight, -0.001, 0.001)
    edge_channels[0] += 2 * dim
    return source, target, edge_channels
