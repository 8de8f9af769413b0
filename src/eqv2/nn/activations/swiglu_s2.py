"""``swiglu_s2``: EquiformerV3's SwiGLU-S² activation (its ``sep-merge_gates2_swiglu``).

For H output channels the input has 2H channels and 3H scalars:

* scalar path: SwiGLU of the first 2H scalars, ``silu(s[:H]) · s[H:2H]`` (B, H);
* gates: ``σ(s[2H:3H])`` (B, H), one invariant gate per channel;
* sphere path: sample x on the grid, multiply the two H-channel halves point-wise (a product
  of two band-limited functions: the many-body "self tensor product"), project back and scale
  every coefficient of channel c by gate c;
* merge: the scalar path is *added* to the l = 0 output (EquiformerV2 replaces it).

Point-wise products on the grid are exact up to the grid's quadrature (the product of two
degree-L functions has degree 2L), so equivariance errors depend on the grid size; see
``docs/equiformer_v3.md``. Plain autograd ops: differentiable twice as they are.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from eqv2.nn.activations.base import SphereActivation
from eqv2.so3 import GridMatrices


def swiglu(x: torch.Tensor) -> torch.Tensor:
    """``silu(a) · b`` for the two halves ``a, b`` of the last dimension of x."""
    a, b = x.chunk(2, dim=-1)
    return F.silu(a) * b


def grid_product(x: torch.Tensor, grid: GridMatrices) -> torch.Tensor:
    """x (B, n, 2H) → from_grid · (to_grid·x[..., :H] ⊙ to_grid·x[..., H:]) (B, n, H)."""
    values = torch.matmul(grid.to_grid, x)  # (B, G, 2H)
    a, b = values.chunk(2, dim=-1)
    return torch.matmul(grid.from_grid, a * b)


class SwiGLUS2Activation(SphereActivation):
    """SwiGLU-S²: gated grid product of two halves plus a SwiGLU scalar path added at l = 0."""

    expansion = 2

    def num_scalars(self, channels: int) -> int:
        return 3 * channels

    def forward(
        self,
        scalars: torch.Tensor,
        x: torch.Tensor,
        grid: GridMatrices,
        differentiable_twice: bool = False,
    ) -> torch.Tensor:
        channels = x.shape[-1] // 2
        up, gates = scalars.split([2 * channels, channels], dim=-1)
        out = grid_product(x, grid) * torch.sigmoid(gates).unsqueeze(1)
        rest = out[:, 1:]
        return torch.cat(((out[:, 0] + swiglu(up)).unsqueeze(1), rest), dim=1)
