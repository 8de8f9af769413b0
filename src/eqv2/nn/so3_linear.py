"""SO(3)-equivariant linear map: one weight matrix per degree, shared by its 2l+1 orders."""

from __future__ import annotations

import math

import torch
from torch import nn

from eqv2.so3 import CoefficientLayout


class SO3Linear(nn.Module):
    """y[:, (l, m), :] = x[:, (l, m), :] @ W_lᵀ, plus a bias on l = 0 only.

    Parameter names (``weight`` of shape (lmax+1, out, in), ``bias`` of shape (out,)) match the
    reference's ``SO3_LinearV2``. Input and output are (N, (lmax+1)², channels), l-major.
    """

    def __init__(self, in_features: int, out_features: int, lmax: int) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.lmax = lmax
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(lmax + 1, out_features, in_features))
        nn.init.uniform_(self.weight, -bound, bound)
        self.bias = nn.Parameter(torch.zeros(out_features))
        degree = CoefficientLayout(lmax).degree_index()
        self.register_buffer("expand_index", degree, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.index_select(0, self.expand_index)  # (S, out, in)
        # One batched GEMM over coefficients: (S, N, in) @ (S, in, out).
        out = torch.bmm(x.transpose(0, 1), weight.transpose(1, 2)).transpose(0, 1)
        bias = torch.zeros_like(out[0])
        bias[0] = self.bias
        return out + bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, lmax={self.lmax}"
