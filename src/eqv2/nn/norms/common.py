"""What every equivariant norm shares: the float32 LayerNorm, the epsilon, balance weights."""

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


def balance_weights(lmax: int, start: int) -> torch.Tensor:
    """Weight 1/(2l+1)/(number of degrees) per coefficient, for degrees l ≥ start."""
    deg = CoefficientLayout(lmax).degree_index()[start**2 :].to(torch.float64)
    return (1.0 / (2 * deg + 1)) / (lmax + 1 - start)


def center_scalars(x: torch.Tensor) -> torch.Tensor:
    """x with its l = 0 row centred over channels (the other degrees unchanged)."""
    x0 = x[:, :1] - x[:, :1].mean(dim=2, keepdim=True)
    return torch.cat((x0, x[:, 1:]), dim=1)
