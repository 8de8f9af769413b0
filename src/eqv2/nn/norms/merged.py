"""Norms over all degrees at once: ``rms_norm_sh`` (EquiformerV2) = ``merge_layer_norm``
(EquiformerV3's equivariant merged layer norm), and ``merge_rms_norm`` (its variant without
centring).

Both compute one balanced mean square over every coefficient, each degree weighted 1/(2l+1)
and the degrees averaged (so every degree counts equally whatever its 2l+1 orders), averaged
over channels: one scale per node. Each degree then gets its own affine scale per channel.

* ``rms_norm_sh`` / ``merge_layer_norm`` (`MergedLayerNorm`): the l = 0 row is centred over
  channels first and gets a bias afterwards. EquiformerV3's ``EquivariantMergeLayerNorm``
  computes exactly this (same statistics, parameters and eps; only the order of the channel
  mean and the degree sum differs, which changes float rounding, not the function): the two
  names are one class.
* ``merge_rms_norm`` (`MergedRMSNorm`): no centring and no bias, a pure RMS norm over degrees
  (EquiformerV3's ``EquivariantMergeLayerNorm(centering=False)``).
"""

from __future__ import annotations

import torch
from torch import nn

from eqv2.nn.norms.common import EPS, balance_weights, center_scalars
from eqv2.nn.precision import full_precision
from eqv2.so3 import CoefficientLayout


class MergedRMSNorm(nn.Module):
    """``merge_rms_norm``: x · (balanced mean square over all degrees + eps)^(-1/2) · w_l."""

    #: centre the l = 0 row and add a bias to it (the layer-norm variant)
    centering = False

    def __init__(self, lmax: int, num_channels: int, eps: float = EPS) -> None:
        super().__init__()
        self.lmax, self.num_channels, self.eps = lmax, num_channels, eps
        self.affine_weight = nn.Parameter(torch.ones(lmax + 1, num_channels))
        if self.centering:
            self.affine_bias = nn.Parameter(torch.zeros(num_channels))
        self.register_buffer("balance", balance_weights(lmax, 0), persistent=False)
        self.register_buffer("degree", CoefficientLayout(lmax).degree_index(), persistent=False)

    @full_precision
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.centering:
            x = center_scalars(x)
        ms = torch.einsum("nsc,s->nc", x.pow(2), self.balance.to(x.dtype)).mean(dim=1)
        scale = (ms + self.eps).pow(-0.5).view(-1, 1, 1) * self.affine_weight[self.degree]
        out = x * scale
        if self.centering:
            out[:, 0] = out[:, 0] + self.affine_bias
        return out


class MergedLayerNorm(MergedRMSNorm):
    """``rms_norm_sh`` = ``merge_layer_norm``: l = 0 centred first, bias on l = 0 after."""

    centering = True
