"""``layer_norm_sh`` (the EquiformerV2 paper's separable layer norm, in released configs)."""

from __future__ import annotations

import torch
from torch import nn

from eqv2.nn.norms.common import EPS, LayerNorm, balance_weights
from eqv2.nn.precision import full_precision
from eqv2.so3 import CoefficientLayout


class EquivariantLayerNormSH(nn.Module):
    """Ordinary LayerNorm on l = 0; one RMS over all l > 0 in which each degree's mean square
    is weighted 1/(2l+1) and the degrees are averaged; per-degree affine scale."""

    def __init__(self, lmax: int, num_channels: int, eps: float = EPS) -> None:
        super().__init__()
        self.lmax, self.num_channels, self.eps = lmax, num_channels, eps
        self.norm_l0 = LayerNorm(num_channels, eps=eps)
        self.affine_weight = nn.Parameter(torch.ones(lmax, num_channels))
        self.register_buffer("balance", balance_weights(lmax, 1), persistent=False)
        degree = CoefficientLayout(lmax).degree_index()
        self.register_buffer("degree", degree[1:] - 1, persistent=False)

    @full_precision
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out0 = self.norm_l0(x[:, :1])
        xv = x[:, 1:]
        # balanced mean square over coefficients, then mean over channels -> (N, 1, 1)
        ms = torch.einsum("nsc,s->nc", xv.pow(2), self.balance.to(x.dtype)).mean(dim=1)
        scale = (ms + self.eps).pow(-0.5).view(-1, 1, 1) * self.affine_weight[self.degree]
        return torch.cat((out0, xv * scale), dim=1)
