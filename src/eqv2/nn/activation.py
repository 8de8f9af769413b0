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


#: Grid columns processed at a time: the (G, chunk) grid block stays in cache between the
#: projection, the SiLU and the projection back.
GRID_CHUNK = 4096


class _GridSiLU(torch.autograd.Function):
    """from_grid · SiLU(to_grid · X) for X of shape (n, M), in column chunks.

    The (G, M) grid values are never stored: backward recomputes them chunk by chunk, which
    costs one extra small GEMM and saves G/n times the input's memory (G ≈ 17 n for
    EquiformerV2's grids).
    """

    @staticmethod
    def forward(ctx, columns, to_grid, from_grid):  # type: ignore[override]
        out = columns.new_empty(from_grid.shape[0], columns.shape[1])
        for start in range(0, columns.shape[1], GRID_CHUNK):
            block = slice(start, start + GRID_CHUNK)
            grid = F.silu(torch.mm(to_grid, columns[:, block]), inplace=True)
            torch.mm(from_grid, grid, out=out[:, block])
        ctx.save_for_backward(columns, to_grid, from_grid)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):  # type: ignore[override]
        columns, to_grid, from_grid = ctx.saved_tensors
        grad_in = torch.empty_like(columns)
        for start in range(0, columns.shape[1], GRID_CHUNK):
            block = slice(start, start + GRID_CHUNK)
            grid = torch.mm(to_grid, columns[:, block])
            sig = torch.sigmoid(grid)
            dsilu = sig.mul_(grid.mul_(1 - sig).add_(1))  # σ(g)·(1 + g·(1 − σ(g)))
            grad_grid = torch.mm(from_grid.T, grad_out[:, block]).mul_(dsilu)
            torch.mm(to_grid.T, grad_grid, out=grad_in[:, block])
        return grad_in, None, None


def s2_activation(
    x: torch.Tensor,
    to_grid: torch.Tensor,
    from_grid: torch.Tensor,
    differentiable_twice: bool = False,
) -> torch.Tensor:
    """SiLU applied point-wise on the sphere: from_grid · SiLU(to_grid · x).

    x: (B, n, C); to_grid: (G, n); from_grid: (n, G). Returns (B, n, C). By default the grid
    values are recomputed in backward instead of stored; ``differentiable_twice=True`` uses
    plain autograd ops instead (needed when forces are −dE/dx and are themselves trained).
    """
    batch, n, channels = x.shape
    # All (item, channel) pairs as columns: a few large GEMMs instead of B small ones.
    columns = x.transpose(0, 1).reshape(n, batch * channels)
    if differentiable_twice:
        out = torch.matmul(from_grid, F.silu(torch.matmul(to_grid, columns)))
    else:
        out = _GridSiLU.apply(columns, to_grid, from_grid)
    return out.view(n, batch, channels).transpose(0, 1)


def separable_s2_activation(
    scalars: torch.Tensor,
    x: torch.Tensor,
    to_grid: torch.Tensor,
    from_grid: torch.Tensor,
    differentiable_twice: bool = False,
) -> torch.Tensor:
    """S2 activation for all degrees, with the l = 0 output replaced by SiLU(scalars).

    scalars: (B, C) dedicated scalar channels; x: (B, n, C).
    """
    out = s2_activation(x, to_grid, from_grid, differentiable_twice)
    return torch.cat((F.silu(scalars).unsqueeze(1), out[:, 1:]), dim=1)


def gate_activation(gates: torch.Tensor, x: torch.Tensor, gate_index: torch.Tensor) -> torch.Tensor:
    """Gate activation: SiLU on l = 0, σ(gate of degree l) times each l > 0 coefficient.

    gates: (B, lmax · C) one gate per degree l ≥ 1 and channel; x: (B, n, C);
    gate_index: (n − 1,) which gate row (l − 1) scales coefficient k ≥ 1.
    """
    num_channels = x.shape[-1]
    g = torch.sigmoid(gates).view(gates.shape[0], -1, num_channels).index_select(1, gate_index)
    return torch.cat((F.silu(x[:, :1]), x[:, 1:] * g), dim=1)
