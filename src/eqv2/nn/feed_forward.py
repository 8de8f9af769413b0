"""Node-wise feed-forward network with S2 / grid activations (EquiformerV2 §3)."""

from __future__ import annotations

import torch
from torch import nn

from eqv2.nn.activations import ffn_activation_name, make_ffn_activation
from eqv2.nn.context import SphereGrids
from eqv2.nn.so3_linear import SO3Linear
from eqv2.so3 import CoefficientLayout


class FeedForward(nn.Module):
    """SO(3) linear C→H, an activation on the sphere, SO(3) linear H→out.

    The activation is a variant of `eqv2.nn.activations` chosen by ``activation`` (a name of
    ``ffn_activation_names()``), or, when None, by fairchem's switches: with ``use_grid_mlp`` a
    bias-free Linear-SiLU-Linear-SiLU-Linear along channels at every grid point (the l = 0
    output replaced by a scalar MLP branch when ``use_sep_s2_act``); otherwise the gate, S2 or
    separable S2 activation. Parameter names match the reference's ``FeedForwardNetwork``.
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
        activation: str | None = None,
    ) -> None:
        super().__init__()
        if activation is None:
            activation = ffn_activation_name(use_gate_act, use_sep_s2_act, use_grid_mlp)
        self.activation = activation
        self.act = make_ffn_activation(activation, CoefficientLayout(lmax).degree_index())
        self.so3_linear_1 = SO3Linear(sphere_channels, self.act.hidden_in(hidden_channels), lmax)
        for name, module in self.act.build(sphere_channels, hidden_channels).items():
            self.add_module(name, module)
        self.so3_linear_2 = SO3Linear(hidden_channels, output_channels, lmax)

    def forward(self, x: torch.Tensor, grids: SphereGrids) -> torch.Tensor:
        """x: (N, S, C) l-major → (N, S, output_channels)."""
        return self.so3_linear_2(self.act(self, x, self.so3_linear_1(x), grids))
