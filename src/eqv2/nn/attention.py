"""Equivariant graph attention built on SO(2) convolutions (EquiformerV2 §3)."""

from __future__ import annotations

import math

import torch
from torch import nn

from eqv2.nn.activation import SmoothLeakyReLU
from eqv2.nn.activations import attention_activation_name, make_activation
from eqv2.nn.chunking import chunk_bounds, run_chunk
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
    3. Values: activation (a variant of `eqv2.nn.activations`: ``activation`` names it, or
       fairchem's ``use_gate_act`` / ``use_sep_s2_act`` choose gate, separable S2 or S2), then
       a second SO(2) convolution.
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
        activation: str | None = None,
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
        if activation is None:
            activation = attention_activation_name(use_gate_act, use_sep_s2_act)
        self.activation = activation
        self.act = make_activation(activation, layout.edge_degree_index())

        self.source_embedding, self.target_embedding, edge_channels = atom_edge_embeddings(
            use_atom_edge_embedding, max_num_elements, edge_channels
        )

        extra = num_heads * attn_alpha_channels + self.act.num_scalars(hidden_channels)

        if use_m_share_rad:
            self.rad_func = RadialMLP([*edge_channels, 2 * sphere_channels * (lmax + 1)])
            self.register_buffer("expand_index", layout.degree_index(), persistent=False)
        else:
            self.rad_func = None
        self.so2_conv_1 = SO2Convolution(
            2 * sphere_channels,
            self.act.expansion * hidden_channels,
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

    def bytes_per_edge(self, dtype: torch.dtype) -> int:
        """Working memory of one edge's intermediates in ``forward`` (for chunk sizes)."""
        k = CoefficientLayout(self.lmax, self.mmax).num_edge_coefficients
        s = (self.lmax + 1) ** 2
        conv1 = self.so2_conv_1
        radial = sum(conv1.rad_sizes) if self.rad_func is None else self.rad_func.out_features
        values = self.num_heads * self.attn_value_channels
        floats = (
            (s + k) * 2 * self.sphere_channels  # gathered message, rotated into the edge frame
            + radial
            + 3 * k * self.act.expansion * self.hidden_channels  # conv 1 out, activation
            + conv1.extra_m0_channels
            + 2 * k * values  # conv 2 output, weighted values
            + s * values  # rotated back
        )
        return floats * torch.finfo(dtype).bits // 8

    def forward(self, x: torch.Tensor, edges: EdgeContext, grids: SphereGrids) -> torch.Tensor:
        """x: (N, S, C) l-major node features → (N, S, output_channels).

        Edges are processed in chunks when ``edges.chunking`` says the layer's edge
        intermediates exceed its budget: logits of all edges first (E × heads, small), then
        the softmax over all of them, then values chunk by chunk summed into the targets.
        """
        num_edges = edges.num_edges
        size = edges.chunking.chunk_size(self.bytes_per_edge(x.dtype))
        if size >= num_edges:
            message, extra = self._convolve(x, edges)
            alpha, gates = self._split_extra(extra)
            attn = self.attention_weights(self._logits(alpha), edges)
            values = self._weighted_values(message, gates, attn, edges, grids)
            return self.proj(segment_sum(values, edges.dst, edges.num_nodes))

        bounds = list(chunk_bounds(num_edges, size))
        logits = torch.cat(
            [run_chunk(self._chunk_logits, x, edges.edge_slice(a, b)) for a, b in bounds]
        )
        attn = self.attention_weights(logits, edges)
        out = None
        for a, b in bounds:
            chunk = edges.edge_slice(a, b)
            values = run_chunk(self._chunk_values, x, chunk, attn[a:b], grids)
            if out is None:
                out = values.new_zeros((edges.num_nodes, *values.shape[1:]))
            out.index_add_(0, chunk.dst, values)
        return self.proj(out)

    def attention_weights(self, logits: torch.Tensor, edges: EdgeContext) -> torch.Tensor:
        """Attention (E, heads) from logits (E, heads): softmax over the edges sharing a
        target, then dropout. The one place the softmax happens (whole graph, also when the
        values are chunked)."""
        # smooth mode: env inside the softmax and once more on the weights (EquiformerV3), so
        # an edge's message fades out even when it is its target's only neighbour
        attn = segment_softmax(logits, edges.dst, edges.num_nodes, edges.envelope)
        if edges.envelope is not None:
            attn = attn * edges.envelope.to(attn.dtype).unsqueeze(1)
        if self.alpha_dropout is not None:
            attn = self.alpha_dropout(attn)
        return attn

    def _message(self, x: torch.Tensor, edges: EdgeContext, rows: int | None = None):
        """Edge messages rotated into the edge frame (E, K, 2C) (the first ``rows`` edge-frame
        coefficients only, if given) and the radial weights of conv 1 (or None)."""
        num_nodes, num_coeff, channels = x.shape
        # index_select (not x[idx]): its backward is a fast index_add rather than index_put
        message = x.reshape(num_nodes * num_coeff, channels).index_select(0, edges.message_index)
        # (E, S, 2C): source | target (sizes explicit so that E = 0 works)
        message = message.view(edges.num_edges, num_coeff, 2 * channels)
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
        to_edge = edges.to_edge if rows is None else edges.to_edge[:, :rows]
        return torch.bmm(to_edge, message), radial

    def _convolve(self, x: torch.Tensor, edges: EdgeContext):
        """SO(2) conv 1 of the edge messages: ((E, K, hidden), extra m = 0 scalars (E, ·))."""
        message, radial = self._message(x, edges)
        return self.so2_conv_1(message, radial)

    def _split_extra(self, extra: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Conv 1's extra scalars → (alpha (E, heads·alpha), gates (E, ·))."""
        n_alpha = self.num_heads * self.attn_alpha_channels
        alpha, gates = extra.split([n_alpha, extra.shape[1] - n_alpha], dim=1)
        return alpha, gates

    def _logits(self, alpha: torch.Tensor) -> torch.Tensor:
        """Attention logits (E, heads) from the alpha scalars (E, heads·alpha)."""
        alpha = alpha.view(alpha.shape[0], self.num_heads, self.attn_alpha_channels)
        alpha = self.alpha_act(self.alpha_norm(alpha))
        return torch.einsum("ehk,hk->eh", alpha, self.alpha_dot)

    def _weighted_values(
        self,
        message: torch.Tensor,
        gates: torch.Tensor,
        attn: torch.Tensor,
        edges: EdgeContext,
        grids: SphereGrids,
    ) -> torch.Tensor:
        """Activation → conv 2 → weighted by attention → rotated back: (E, S, heads·V)."""
        message = self.act(gates, message, grids.edge, grids.differentiable_twice)
        message, _ = self.so2_conv_2(message)

        num_edges, num_coeff = message.shape[:2]
        message = message.view(num_edges, num_coeff, self.num_heads, self.attn_value_channels)
        message = (message * attn.view(num_edges, 1, self.num_heads, 1)).view(
            num_edges, num_coeff, self.num_heads * self.attn_value_channels
        )
        return torch.bmm(edges.from_edge, message)  # (E, S, heads·V) back in the global frame

    def _chunk_logits(self, x: torch.Tensor, edges: EdgeContext) -> torch.Tensor:
        """Logits of one chunk: only the m = 0 rows of the message feed them."""
        n0 = self.lmax + 1
        message, radial = self._message(x, edges, rows=n0)
        n_alpha = self.num_heads * self.attn_alpha_channels
        return self._logits(self.so2_conv_1.m0_extra(message, radial, n_alpha))

    def _chunk_values(
        self, x: torch.Tensor, edges: EdgeContext, attn: torch.Tensor, grids: SphereGrids
    ) -> torch.Tensor:
        message, extra = self._convolve(x, edges)
        return self._weighted_values(message, self._split_extra(extra)[1], attn, edges, grids)
