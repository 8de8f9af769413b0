"""``swiglu_grid_mlp``: EquiformerV3's feed-forward grid MLP with SwiGLU-S² activation.

Between the two SO(3) linears (hidden width H), with ``x0`` the network input's l = 0 row:

* sphere path: sample h (N, n, H) on the node grid; at every point ``Linear(H→2H)`` (no bias),
  split into halves a, b; ``(a · σ(Linear(x0))) · b``; ``Linear(H→H)`` (no bias); project back;
* scalar path: ``SwiGLU(Linear(x0))`` (C → 2H → H), *added* to the l = 0 output.

The gate σ(Linear(x0)) is invariant, one value per channel, so the product stays equivariant up
to grid quadrature. EquiformerV3 calls this ``ffn_activation: sep-merge_gates2_swiglu`` with
``use_grid_mlp: true`` (its ``GatedSwiGLUGridMLP``).
"""

from __future__ import annotations

import torch
from torch import nn

from eqv2.nn.activations.ffn import FFNActivation, on_node_grid
from eqv2.nn.activations.swiglu_s2 import swiglu
from eqv2.nn.context import SphereGrids


class LinearSwiGLU(nn.Module):
    """``SwiGLU(Linear(C → 2H))`` → H channels."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_channels, 2 * out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return swiglu(self.linear(x))


class GatedSwiGLUGridMLP(nn.Module):
    """Per grid point: ``Linear₂((Linear₁(v)[:H] · σ(gate(x0))) · Linear₁(v)[H:])``."""

    def __init__(self, in_channels: int, hidden: int) -> None:
        super().__init__()
        self.gating_linear = nn.Linear(in_channels, hidden)
        self.grid_linear_1 = nn.Linear(hidden, 2 * hidden, bias=False)
        self.grid_linear_2 = nn.Linear(hidden, hidden, bias=False)

    def forward(self, values: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """values (G, N, H) at the grid points of N nodes; x0 (N, C) → (G, N, H)."""
        a, b = self.grid_linear_1(values).chunk(2, dim=-1)
        return self.grid_linear_2(a * torch.sigmoid(self.gating_linear(x0)) * b)


class SwiGLUGridMLP(FFNActivation):
    """EquiformerV3's FFN activation: gated SwiGLU grid MLP plus an added SwiGLU scalar path."""

    def build(self, in_channels: int, hidden: int) -> dict[str, nn.Module]:
        return {
            "scalar_mlp": LinearSwiGLU(in_channels, hidden),
            "grid_mlp": GatedSwiGLUGridMLP(in_channels, hidden),
        }

    def forward(
        self, ffn: nn.Module, x: torch.Tensor, h: torch.Tensor, grids: SphereGrids
    ) -> torch.Tensor:
        x0 = x[:, 0]
        out = on_node_grid(lambda values: ffn.grid_mlp(values, x0), h, grids.node)
        return torch.cat(((out[:, 0] + ffn.scalar_mlp(x0)).unsqueeze(1), out[:, 1:]), dim=1)
