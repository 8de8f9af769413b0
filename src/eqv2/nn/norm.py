"""Equivariant normalisations of (N, (lmax+1)², C) features, l-major.

Three variants, named as in the reference's configs:

* ``layer_norm``: per degree l, RMS over its orders and all channels (l = 0 centred first),
  per-degree affine scale, bias on l = 0.
* ``layer_norm_sh`` (the paper's separable layer norm): ordinary LayerNorm on l = 0; a single
  RMS over all l > 0 in which each degree's mean square is weighted 1/(2l+1) and the degrees are
  averaged; per-degree affine scale.
* ``rms_norm_sh``: one balanced RMS over all degrees including l = 0 (centred), per-degree
  scale, bias on l = 0.

All statistics are computed without Python loops over degrees, and in float32 under autocast
(`eqv2.nn.precision`).
"""

from __future__ import annotations

import torch
from torch import nn

from eqv2.nn.precision import full_precision
from eqv2.so3 import CoefficientLayout

EPS = 1e-5


class LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` (same parameters and names) that computes in float32 under autocast."""

    @full_precision
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x)


def _balance_weights(lmax: int, start: int) -> torch.Tensor:
    """Weight 1/(2l+1)/(number of degrees) per coefficient, for degrees l ≥ start."""
    deg = CoefficientLayout(lmax).degree_index()[start**2 :].to(torch.float64)
    return (1.0 / (2 * deg + 1)) / (lmax + 1 - start)


class EquivariantLayerNorm(nn.Module):
    """``layer_norm``: statistics per degree (reference ``EquivariantLayerNormArray``)."""

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
        x0 = x[:, :1] - x[:, :1].mean(dim=2, keepdim=True)
        x = torch.cat((x0, x[:, 1:]), dim=1)
        ms = torch.einsum("nsc,sl->nl", x.pow(2), self.average.to(x.dtype)) / self.num_channels
        scale = (ms + self.eps).pow(-0.5)  # (N, L+1)
        scale = scale.index_select(1, self.degree).unsqueeze(-1) * self.affine_weight[self.degree]
        out = x * scale
        out[:, 0] = out[:, 0] + self.affine_bias
        return out


class EquivariantLayerNormSH(nn.Module):
    """``layer_norm_sh``: LayerNorm on l = 0, one balanced RMS over l > 0."""

    def __init__(self, lmax: int, num_channels: int, eps: float = EPS) -> None:
        super().__init__()
        self.lmax, self.num_channels, self.eps = lmax, num_channels, eps
        self.norm_l0 = LayerNorm(num_channels, eps=eps)
        self.affine_weight = nn.Parameter(torch.ones(lmax, num_channels))
        self.register_buffer("balance", _balance_weights(lmax, 1), persistent=False)
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


class EquivariantRMSNormSH(nn.Module):
    """``rms_norm_sh``: one balanced RMS over all degrees (l = 0 centred), bias on l = 0."""

    def __init__(self, lmax: int, num_channels: int, eps: float = EPS) -> None:
        super().__init__()
        self.lmax, self.num_channels, self.eps = lmax, num_channels, eps
        self.affine_weight = nn.Parameter(torch.ones(lmax + 1, num_channels))
        self.affine_bias = nn.Parameter(torch.zeros(num_channels))
        self.register_buffer("balance", _balance_weights(lmax, 0), persistent=False)
        self.register_buffer("degree", CoefficientLayout(lmax).degree_index(), persistent=False)

    @full_precision
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0 = x[:, :1] - x[:, :1].mean(dim=2, keepdim=True)
        x = torch.cat((x0, x[:, 1:]), dim=1)
        ms = torch.einsum("nsc,s->nc", x.pow(2), self.balance.to(x.dtype)).mean(dim=1)
        scale = (ms + self.eps).pow(-0.5).view(-1, 1, 1) * self.affine_weight[self.degree]
        out = x * scale
        out[:, 0] = out[:, 0] + self.affine_bias
        return out


def make_norm(norm_type: str, lmax: int, num_channels: int) -> nn.Module:
    """The normalisation layer called ``norm_type`` in the reference's configs."""
    if norm_type == "layer_norm":
        return EquivariantLayerNorm(lmax, num_channels)
    if norm_type == "layer_norm_sh":
        return EquivariantLayerNormSH(lmax, num_channels)
    if norm_type == "rms_norm_sh":
        return EquivariantRMSNormSH(lmax, num_channels)
    raise ValueError(
        f"norm_type={norm_type!r}: choose one of 'layer_norm', 'layer_norm_sh', 'rms_norm_sh'."
    )
