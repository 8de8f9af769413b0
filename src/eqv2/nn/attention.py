"""Equivariant graph attention built on SO(2) convolutions (EquiformerV2 §3)."""

from __future__ import annotations

import math

import torch
from torch import nn

from eqv2.nn.activation import (
    SmoothLeakyReLU,
    gate_activation,
    s2_activation,
    separable_s2_activation,
)
from eqv2.nn.context import EdgeContext, SphereGrids
from eqv2.nn.norm import LayerNorm
from eqv2.nn.radial import RadialMLP, atom_edge_embeddings
from eqv2.nn.segment import segment_softmax, segment_sum
from eqv2.nn.so2_conv import SO2Convolution
from eqv2.nn.so3_linear import SO3Linear
from eqv2.so3 import CoefficientLayout


class GraphAttention(nn.Module):
    """Message = SO(2) conv → activation → SO(2) conv; attention over edges sharing a target.

    1. Messages concatenate source and target features (2C channels) and are rotated into each
       edge's frame, keeping |m| ≤ mmax.
    2. The first SO(2) convolution is modulated by a radial function of the edge scalars
       (or, with ``use_m_share_rad``, the rotated input is scaled per degree beforehand) and
       emits extra m = 0 scalars: attention logits (heads × alpha channels) and gates.
    3. Values: activation (separable S2, S2 or gate) then a second SO(2) convolution.
    4. Logits: LayerNorm (the attention re-normalisation, optional) → smooth leaky ReLU → dot
       with a learned vector per head → softmax over edges with the same target → dropout.
       In smooth mode (``edges.envelope``) the softmax is weighted by the cut-off envelope and
       the weights are multiplied by it once more: a_ij = env_ij² exp(z_ij) / Σ_k env_ik exp(z_ik).
    5. Weighted values are rotated back, summed into targets and mixed by an SO(3) linear.

    Parameter names match the reference's ``SO2EquivariantGraphAttention``.
    """

    def __init__(
        self,
        sphere_channels: int,
        hidden_channels: int,
        num_heads: int,
        attn_alpha_channels: int,
        attn_value_channels: int,
        output_channels: int,
        lmax: int,
        mmax: int,
        max_num_elements: int,
        edge_channels: list[int],
        use_atom_edge_embedding: bool = True,
        use_m_share_rad: bool = False,
        use_attn_renorm: bool = True,
        use_gate_act: bool = False,
        use_sep_s2_act: bool = True,
        alpha_drop: float = 0.0,
    ) -> None:
        super().__init__()
        self.sphere_channels = sphere_channels
        self.hidden_channels = hidden_channels
        self.num_heads = num_heads
        self.attn_alpha_channels = attn_alpha_channels
        self.attn_value_channels = attn_value_channels
        self.lmax, self.mmax = lmax, mmax
        layout = CoefficientLayout(lmax, mmax)
        self.use_m_share_rad = use_m_share_rad
        self.use_gate_act = use_gate_act
        self.use_sep_s2_act = use_sep_s2_act

        self.source_embedding, self.target_embedding, edge_channels = atom_edge_embeddings(
            use_atom_edge_embedding, max_num_elements, edge_channels
        )

        extra = num_heads * attn_alpha_channels
        if use_gate_act:
            extra += lmax * hidden_channels
        elif use_sep_s2_act:
            extra += hidden_channels

        if use_m_share_rad:
            self.rad_func = RadialMLP([*edge_channels, 2 * sphere_channels * (lmax + 1)])
            self.register_buffer("expand_index", layout.degree_index(), persistent=False)
        else:
            self.rad_func = None
        if use_gate_act:  # gate row (degree − 1) of each edge-frame coefficient k ≥ 1
            gate_index = layout.edge_degree_index()[1:] - 1
            self.register_buffer("gate_index", gate_index, persistent=False)
        self.so2_conv_1 = SO2Convolution(
            2 * sphere_channels,
            hidden_channels,
            lmax,
            mmax,
            edge_channels=None if use_m_share_rad else edge_channels,
            extra_m0_channels=extra,
        )
        self.alpha_norm = LayerNorm(attn_alpha_channels) if use_attn_renorm else nn.Identity()
        self.alpha_act = SmoothLeakyReLU(0.2)
        self.alpha_dot = nn.Parameter(torch.empty(num_heads, attn_alpha_channels))
        bound = 1.0 / math.sqrt(attn_alpha_channels)
        nn.init.uniform_(self.alpha_dot, -bound, bound)
        self.alpha_dropout = nn.Dropout(alpha_drop) if alpha_drop > 0.0 else None
        self.so2_conv_2 = SO2Convolution(
            hidden_channels, num_heads * attn_value_channels, lmax, mmax
        )
        self.proj = SO3Linear(num_heads * attn_value_channels, output_channels, lmax)

    def forward(self, x: torch.Tensor, edges: EdgeContext, grids: SphereGrids) -> torch.Tensor:
        """x: (N, S, C) l-major node features → (N, S, output_channels)."""
        num_nodes, num_coeff, channels = x.shape
        # index_select (not x[idx]): its backward is a fast index_add rather than index_put
        message = x.reshape(num_nodes * num_coeff, channels).index_select(0, edges.message_index)
        # (E, S, 2C): source | target (sizes explicit so that E = 0 works)
        message = message.view(edges.src.shape[0], num_coeff, 2 * channels)
        rad_func = self.rad_func if self.rad_func is not None else self.so2_conv_1.rad_func
        radial = rad_func.forward_edges(
            edges.scalars,
            self.source_embedding,
            self.target_embedding,
            edges.src_z,
            edges.dst_z,
        )
        if self.rad_func is not None:
            weight = radial.view(radial.shape[0], self.lmax + 1, 2 * self.sphere_channels)
            message = message * weight.index_select(1, self.expand_index)
            radial = None
        message = torch.bmm(edges.to_edge, message)  # (E, K, 2C) in the edge frame

        message, extra = self.so2_conv_1(message, radial)
        n_alpha = self.num_heads * self.attn_alpha_channels
        alpha, gates = extra.split([n_alpha, extra.shape[1] - n_alpha], dim=1)
        if self.use_gate_act:
            message = gate_activation(gates, message, self.gate_index)
        elif self.use_sep_s2_act:
            message = separable_s2_activation(
                gates, message, grids.edge, grids.differentiable_twice
            )
        else:
            message = s2_activation(message, grids.edge, grids.differentiable_twice)
        message, _ = self.so2_conv_2(message)

        alpha = self.alpha_act(
            self.alpha_norm(alpha.view(alpha.shape[0], self.num_heads, n_alpha // self.num_heads))
        )
        logits = torch.einsum("ehk,hk->eh", alpha, self.alpha_dot)
        # smooth mode: env inside the softmax and once more on the weights (EquiformerV3), so
        # an edge's message fades out even when it is its target's only neighbour
        attn = segment_softmax(logits, edges.dst, edges.num_nodes, edges.envelope)
        if edges.envelope is not None:
            attn = attn * edges.envelope.to(attn.dtype).unsqueeze(1)
        if self.alpha_dropout is not None:
            attn = self.alpha_dropout(attn)

        num_edges, num_coeff = message.shape[:2]
        message = message.view(num_edges, num_coeff, self.num_heads, self.attn_value_channels)
        message = (message * attn.view(num_edges, 1, self.num_heads, 1)).view(
            num_edges, num_coeff, self.num_heads * self.attn_value_channels
        )
        message = torch.bmm(edges.from_edge, message)  # (E, S, heads·V) back in the global frame
        return self.proj(segment_sum(message, edges.dst, edges.num_nodes))
