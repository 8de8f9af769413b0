"""Point-wise and spherical activations used by attention and feed-forward layers.

Features have shape (batch, coefficients, channels). Activations that act on the sphere take
the grid matrices as arguments: ``to_grid`` (G, n) samples n coefficients on G grid points,
``from_grid`` (n, G) integrates back. Coefficient 0 is always l = 0 (in l-major and m-major
order alike), which the separable and gate variants treat as the scalar channel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SmoothLeakyReLU(nn.Module):
    """x·(1+a)/2 + x·(1−a)/2·(2σ(x) − 1): a smooth leaky ReLU (negative slope a)."""

    def __init__(self, negative_slope: float = 0.2) -> None:
        super().__init__()
        self.alpha = negative_slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = ((1 + self.alpha) / 2) * x
        x2 = ((1 - self.alpha) / 2) * x * (2 * torch.sigmoid(x) - 1)
        return x1 + x2


def s2_activation(x: torch.Tensor, to_grid: torch.Tensor, from_grid: torch.Tensor) -> torch.Tensor:
    """SiLU applied point-wise on the sphere: from_grid · SiLU(to_grid · x).

    x: (B, n, C); to_grid: (G, n); from_grid: (n, G). Returns (B, n, C).
    """
    grid = torch.matmul(to_grid, x)  # (B, G, C)
    return torch.matmul(from_grid, F.silu(grid))


def separable_s2_activation(
    scalars: torch.Tensor, x: torch.Tensor, to_grid: torch.Tensor, from_grid: torch.Tensor
) -> torch.Tensor:
    """S2 activation for all degrees, with the l = 0 output replaced by SiLU(scalars).

    scalars: (B, C) dedicated scalar channels; x: (B, n, C).
    """
    out = s2_activation(x, to_grid, from_grid)
    return torch.cat((F.silu(scalars).unsqueeze(1), out[:, 1:]), dim=1)


def gate_activation(gates: torch.Tensor, x: torch.Tensor, gate_index: torch.Tensor) -> torch.Tensor:
    """Gate activation: SiLU on l = 0, σ(gate of degree l) times each l > 0 coefficient.

    gates: (B, lmax · C) one gate per degree l ≥ 1 and channel; x: (B, n, C);
    gate_index: (n − 1,) which gate row (l − 1) scales coefficient k ≥ 1.
    """
    num_channels = x.shape[-1]
    g = torch.sigmoid(gates).view(gates.shape[0], -1, num_channels).index_select(1, gate_index)
    return torch.cat((F.silu(x[:, :1]), x[:, 1:] * g), dim=1)
