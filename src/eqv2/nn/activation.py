"""Point-wise and spherical activations used by attention and feed-forward layers.

Features have shape (batch, coefficients, channels). Activations that act on the sphere take
a `SphereGrid` that samples the n coefficients on grid points and integrates back.
Coefficient 0 is always l = 0 (in l-major and m-major
order alike), which the separable and gate variants treat as the scalar channel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from eqv2.nn.precision import autocast_dtype
from eqv2.so3 import GridMatrices


class SmoothLeakyReLU(nn.Module):
    """x·(1+a)/2 + x·(1−a)/2·(2σ(x) − 1): a smooth leaky ReLU (negative slope a)."""

    def __init__(self, negative_slope: float = 0.2) -> None:
        super().__init__()
        self.alpha = negative_slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = ((1 + self.alpha) / 2) * x
        x2 = ((1 - self.alpha) / 2) * x * (2 * torch.sigmoid(x) - 1)
        return x1 + x2


#: Grid rows (item, channel pairs) processed at a time: the (rows × G) grid block stays in cache
#: between the projection, the SiLU and the projection back.
GRID_CHUNK = 2048


#: Sampling ``to_grid (G, n)`` and integration ``from_grid (n, G)`` matrices of a grid
#: (`eqv2.so3.CoefficientLayout` makes them).
SphereGrid = GridMatrices


class _GridSiLU(torch.autograd.Function):
    """SiLU(X · to_gridᵀ) · from_gridᵀ for X of shape (M, n), in row chunks.

    Rows (not columns) of n coefficients: with n ≈ 19 the GEMMs run faster with the small
    dimension innermost and contiguous. Grid values are never stored: backward recomputes them
    chunk by chunk, which costs one extra projection and saves G/n times the input's memory
    (G ≈ 17 n for EquiformerV2).
    """

    @staticmethod
    def forward(ctx, rows, to_grid, from_grid):  # type: ignore[override]
        out = rows.new_empty(rows.shape[0], from_grid.shape[0])
        for start in range(0, rows.shape[0], GRID_CHUNK):
            block = slice(start, start + GRID_CHUNK)
            values = F.silu(torch.mm(rows[block], to_grid.T), inplace=True)
            torch.mm(values, from_grid.T, out=out[block])
        ctx.save_for_backward(rows, to_grid, from_grid)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):  # type: ignore[override]
        rows, to_grid, from_grid = ctx.saved_tensors
        grad_in = torch.empty_like(rows)
        for start in range(0, rows.shape[0], GRID_CHUNK):
            block = slice(start, start + GRID_CHUNK)
            values = torch.mm(rows[block], to_grid.T)
            grad_values = torch.mm(grad_out[block], from_grid)
            grad_values = torch.ops.aten.silu_backward(grad_values, values)  # one fused pass
            torch.mm(grad_values, to_grid, out=grad_in[block])
        return grad_in, None, None


def s2_activation(
    x: torch.Tensor, grid: SphereGrid, differentiable_twice: bool = False
) -> torch.Tensor:
    """SiLU applied point-wise on the sphere: project x to the grid, SiLU, project back.

    x: (B, n, C). Returns (B, n, C) (a transposed view). By default grid values are recomputed
    in backward instead of stored; ``differentiable_twice=True`` uses plain autograd ops instead
    (needed when forces are −dE/dx and are themselves trained).
    """
    low = autocast_dtype(x)
    if low is not None and not differentiable_twice:
        # autocast does not reach inside the custom kernel: give it one dtype explicitly
        with torch.autocast(x.device.type, enabled=False):
            grid = SphereGrid(grid.to_grid.to(low), grid.from_grid.to(low))
            return s2_activation(x.to(low), grid)
    batch, n, channels = x.shape
    # All (item, channel) pairs as rows: a few large GEMMs instead of B small ones.
    rows = x.transpose(1, 2).reshape(batch * channels, n)
    if differentiable_twice:
        out = torch.mm(F.silu(torch.mm(rows, grid.to_grid.T)), grid.from_grid.T)
    else:
        out = _GridSiLU.apply(rows, grid.to_grid, grid.from_grid)
    return out.view(batch, channels, n).transpose(1, 2)


def separable_s2_activation(
    scalars: torch.Tensor, x: torch.Tensor, grid: SphereGrid, differentiable_twice: bool = False
) -> torch.Tensor:
    """S2 activation for all degrees, with the l = 0 output replaced by SiLU(scalars).

    scalars: (B, C) dedicated scalar channels; x: (B, n, C).
    """
    out = s2_activation(x, grid, differentiable_twice)
    # split (not out[:, 1:]): its backward concatenates instead of zero-filling a full tensor
    _, rest = out.split([1, out.shape[1] - 1], dim=1)
    return torch.cat((F.silu(scalars).unsqueeze(1), rest), dim=1)


def gate_activation(gates: torch.Tensor, x: torch.Tensor, gate_index: torch.Tensor) -> torch.Tensor:
    """Gate activation: SiLU on l = 0, σ(gate of degree l) times each l > 0 coefficient.

    gates: (B, lmax · C) one gate per degree l ≥ 1 and channel; x: (B, n, C);
    gate_index: (n − 1,) which gate row (l − 1) scales coefficient k ≥ 1.
    """
    num_channels = x.shape[-1]
    num_gates = gates.shape[1] // num_channels  # explicit: -1 is ambiguous for B = 0
    g = torch.sigmoid(gates).view(gates.shape[0], num_gates, num_channels)
    g = g.index_select(1, gate_index)
    scalar, rest = x.split([1, x.shape[1] - 1], dim=1)
    return torch.cat((F.silu(scalar), rest * g), dim=1)
