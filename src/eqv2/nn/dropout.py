"""Regularisers used in training: stochastic depth per structure and equivariant dropout."""

from __future__ import annotations

import torch
from torch import nn


class GraphDropPath(nn.Module):
    """Stochastic depth: drop a residual branch for whole structures at rate ``drop_prob``.

    Kept branches are scaled by 1/(1 − p) so the expectation is unchanged. Identity in eval mode.
    """

    def __init__(self, drop_prob: float) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor, batch: torch.Tensor, num_graphs: int) -> torch.Tensor:
        if not self.training or self.drop_prob == 0.0:
            return x
        keep = 1.0 - self.drop_prob
        mask = (keep + torch.rand(num_graphs, dtype=x.dtype, device=x.device)).floor_() / keep
        return x * mask[batch].view(-1, *([1] * (x.dim() - 1)))

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


class EquivariantDropout(nn.Module):
    """Dropout of whole channels (all coefficients of a channel together), per node.

    Dropping a channel's every (l, m) coefficient at once keeps the layer equivariant.
    """

    def __init__(self, drop_prob: float) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_prob == 0.0:
            return x
        mask = torch.ones((x.shape[0], 1, x.shape[2]), dtype=x.dtype, device=x.device)
        return x * nn.functional.dropout(mask, self.drop_prob, training=True)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"
