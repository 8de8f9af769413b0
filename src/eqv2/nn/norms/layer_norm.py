"""``layer_norm``: statistics per degree (reference ``EquivariantLayerNormArray``)."""

from __future__ import annotations

import torch
from torch import nn

from eqv2.nn.norms.common import EPS, center_scalars
from eqv2.nn.precision import full_precision
from eqv2.so3 import CoefficientLayout


class EquivariantLayerNorm(nn.Module):
    """Per degree l, RMS over its orders and all channels (l = 0 centred first), per-degree
    affine scale, bias on l = 0."""

    def __init__(self, lmax: int, num_channels: int, eps: float = EPS) -> None:
        super().__init__()
        self.lmax, self.num_channels, self.eps = lmax, num_channels, eps
        self.affine_weight = nn.Parameter(torch.ones(lmax + 1, num_channels))
        self.affine_bias = nn.Parameter(torch.zeros(num_channels))
        deg = CoefficientLayout(lmax).degree_index()
        self.register_buffer("degree", deg, persistent=False)
        # averaging matrix (S, L+1): mean over the 2l+1 orders of each degree
        avg = torch.zeros(len(deg), lmax + 1, dtype=torch.float64)
        avg[torch.arange(len(deg)), deg] = 1.0 / (2 * deg.to(torch.float64) + 1)
        self.register_buffer("average", avg, persistent=False)

    @full_precision
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = center_scalars(x)
        ms = torch.einsum("nsc,sl->nl", x.pow(2), self.average.to(x.dtype)) / self.num_channels
        scale = (ms + self.eps).pow(-0.5)  # (N, L+1)
        scale = scale.index_select(1, self.degree).unsqueeze(-1) * self.affine_weight[self.degree]
        out = x * scale
        out[:, 0] = out[:, 0] + self.affine_bias
        return out
