"""The EquiformerV2 transformer block (pre-norm attention and feed-forward, residuals)."""

from __future__ import annotations

import torch
from torch import nn

from eqv2.nn.attention import GraphAttention
from eqv2.nn.context import EdgeContext, SphereGrids
from eqv2.nn.dropout import EquivariantDropout, GraphDropPath
from eqv2.nn.feed_forward import FeedForward
from eqv2.nn.norm import make_norm


class TransformerBlock(nn.Module):
    """x = x + DropPath(Attention(Norm₁(x))); x = x + DropPath(FFN(Norm₂(x))).

    Parameter names (``norm_1``, ``ga``, ``norm_2``, ``ffn``) match the reference's
    ``TransBlockV2``.
    """

    def __init__(
        self,
        attention: GraphAttention,
        ffn: FeedForward,
        norm_type: str,
        lmax: int,
        sphere_channels: int,
        drop_path_rate: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm_1 = make_norm(norm_type, lmax, sphere_channels)
        self.ga = attention
        self.norm_2 = make_norm(norm_type, lmax, sphere_channels)
        self.ffn = ffn
        self.drop_path = GraphDropPath(drop_path_rate) if drop_path_rate > 0 else None
        self.proj_drop = EquivariantDropout(proj_drop) if proj_drop > 0 else None

    def _regularise(self, h: torch.Tensor, edges: EdgeContext) -> torch.Tensor:
        if self.drop_path is not None:
            h = self.drop_path(h, edges.batch, edges.num_graphs)
        if self.proj_drop is not None:
            h = self.proj_drop(h)
        return h

    def forward(self, x: torch.Tensor, edges: EdgeContext, grids: SphereGrids) -> torch.Tensor:
        x = x + self._regularise(self.ga(self.norm_1(x), edges, grids), edges)
        return x + self._regularise(self.ffn(self.norm_2(x), grids), edges)
