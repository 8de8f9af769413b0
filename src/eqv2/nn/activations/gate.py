"""``gate``: SiLU on l = 0, each l > 0 coefficient scaled by σ(its degree's gate)."""

from __future__ import annotations

import torch

from eqv2.nn.activation import gate_activation
from eqv2.nn.activations.base import SphereActivation
from eqv2.so3 import GridMatrices


class GateActivation(SphereActivation):
    """Exactly equivariant (no grid): one sigmoid gate per degree l ≥ 1 and channel."""

    def __init__(self, degree: torch.Tensor) -> None:
        super().__init__(degree)
        # gate row (degree − 1) of each coefficient k ≥ 1
        self.register_buffer("gate_index", degree[1:] - 1, persistent=False)

    def num_scalars(self, channels: int) -> int:
        return self.lmax * channels

    def forward(
        self,
        scalars: torch.Tensor,
        x: torch.Tensor,
        grid: GridMatrices,
        differentiable_twice: bool = False,
    ) -> torch.Tensor:
        return gate_activation(scalars, x, self.gate_index)
