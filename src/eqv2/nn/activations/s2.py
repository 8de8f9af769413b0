"""``s2`` and ``separable_s2``: SiLU applied point-wise on a sphere grid (EquiformerV2)."""

from __future__ import annotations

import torch

from eqv2.nn.activation import s2_activation, separable_s2_activation
from eqv2.nn.activations.base import SphereActivation
from eqv2.so3 import GridMatrices


class S2Activation(SphereActivation):
    """Project to the grid, SiLU, project back (all degrees, no scalar channels)."""

    def forward(
        self,
        scalars: torch.Tensor,
        x: torch.Tensor,
        grid: GridMatrices,
        differentiable_twice: bool = False,
    ) -> torch.Tensor:
        return s2_activation(x, grid, differentiable_twice)


class SeparableS2Activation(SphereActivation):
    """The S2 activation with its l = 0 output replaced by SiLU of dedicated scalars."""

    def num_scalars(self, channels: int) -> int:
        return channels

    def forward(
        self,
        scalars: torch.Tensor,
        x: torch.Tensor,
        grid: GridMatrices,
        differentiable_twice: bool = False,
    ) -> torch.Tensor:
        return separable_s2_activation(scalars, x, grid, differentiable_twice)
