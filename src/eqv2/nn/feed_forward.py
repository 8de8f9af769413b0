"""Node-wise feed-forward network with S2 / grid activations (EquiformerV2 §3)."""

from __future__ import annotations

import torch
from torch import nn

from eqv2.nn.activation import (
    SphereGrid,
    gate_activation,
    s2_activation,
    separable_s2_activation,
)
from eqv2.nn.context import SphereGrids
from eqv2.nn.grid_mlp import grid_mlp
from eqv2.nn.precision import autocast_dtype
from eqv2.nn.so3_linear import SO3Linear
from eqv2.so3 import CoefficientLayout


class FeedForward(nn.Module):
    """SO(3) linear C→H, activation on the sphere, SO(3) linear H→out.

    With ``use_grid_mlp`` the activation is a bias-free Linear-SiLU-Linear-SiLU-Linear along
    channels at every grid point (the l = 0 output replaced by a scalar MLP branch when
    ``use_sep_s2_act``); otherwise the gate, S2 or separable S2 activation. Parameter names
    match the reference's ``FeedForwardNetwork``.
    """

    def __init__(
        self,
        sphere_channels: int,
        hidden_channels: int,
        output_channels: int,
        lmax: int,
        use_gate_act: bool = False,
        use_grid_mlp: bool = False,
        use_sep_s2_act: bool = True,
    ) -> None:
        super().__init__()
        self.use_gate_act = use_gate_act
        self.use_grid_mlp = use_grid_mlp
        self.use_sep_s2_act = use_sep_s2_act
        self.so3_linear_1 = SO3Linear(sphere_channels, hidden_channels, lmax)
        self.scalar_mlp = self.grid_mlp = self.gating_linear = None
        if use_grid_mlp:
            if use_sep_s2_act:
                self.scalar_mlp = nn.Sequential(
                    nn.Linear(sphere_channels, hidden_channels), nn.SiLU()
                )
            self.grid_mlp = nn.Sequential(
                nn.Linear(hidden_channels, hidden_channels, bias=False),
                nn.SiLU(),
                nn.Linear(hidden_channels, hidden_channels, bias=False),
                nn.SiLU(),
                nn.Linear(hidden_channels, hidden_channels, bias=False),
            )
        elif use_gate_act:
            self.gating_linear = nn.Linear(sphere_channels, lmax * hidden_channels)
            # gate row (degree − 1) of each node coefficient k ≥ 1
            gate_index = CoefficientLayout(lmax).degree_index()[1:] - 1
            self.register_buffer("gate_index", gate_index, persistent=False)
        elif use_sep_s2_act:
            self.gating_linear = nn.Linear(sphere_channels, hidden_channels)
        self.so3_linear_2 = SO3Linear(hidden_channels, output_channels, lmax)

    def forward(self, x: torch.Tensor, grids: SphereGrids) -> torch.Tensor:
        """x: (N, S, C) l-major → (N, S, output_channels)."""
        scalars = None
        if self.scalar_mlp is not None:
            scalars = self.scalar_mlp(x[:, 0])
        elif self.gating_linear is not None:
            scalars = self.gating_linear(x[:, 0])
        h = self.so3_linear_1(x)
        if self.grid_mlp is not None:
            h = self._grid_mlp(h, grids.node, grids.differentiable_twice, grids.memory_saving)
            if scalars is not None:
                h = torch.cat((scalars.unsqueeze(1), h[:, 1:]), dim=1)
        elif self.use_gate_act:
            h = gate_activation(scalars, h, self.gate_index)
        elif self.use_sep_s2_act:
            h = separable_s2_activation(scalars, h, grids.node, grids.differentiable_twice)
        else:
            h = s2_activation(h, grids.node, grids.differentiable_twice)
        return self.so3_linear_2(h)

    def _grid_mlp(
        self,
        h: torch.Tensor,
        grid: SphereGrid,
        differentiable_twice: bool = False,
        memory_saving: bool = False,
    ) -> torch.Tensor:
        """The channel MLP at every grid point.

        Outside training (and in training with ``memory_saving``), fused and chunked over nodes
        (`eqv2.nn.grid_mlp`): faster forward, and backward recomputes the grid tensors instead
        of storing them. Otherwise (and for double backward, and under autocast) plain
        (coefficient, node·channel) GEMMs and modules: in training the fused backward's
        recomputation made a 31M step 9-18 % slower for 21 % less memory.
        """
        training = self.training and torch.is_grad_enabled()
        fused = (memory_saving or not training) and not differentiable_twice
        if fused and autocast_dtype(h) is None:
            weights = [self.grid_mlp[i].weight for i in (0, 2, 4)]
            return grid_mlp(h, grid.to_grid, grid.from_grid, *weights)
        num_nodes, n, channels = h.shape
        columns = h.transpose(0, 1).reshape(n, num_nodes * channels)
        values = torch.mm(grid.to_grid, columns).view(-1, num_nodes, channels)  # (G, N, H)
        values = self.grid_mlp(values).view(-1, num_nodes * channels)
        out = torch.mm(grid.from_grid, values)
        return out.view(n, num_nodes, channels).transpose(0, 1)
