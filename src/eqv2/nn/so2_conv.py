"""SO(2) convolution: linear maps acting on each order m of edge-frame features.

In an edge's own frame (edge along +y) an SO(3)-equivariant convolution reduces to independent
maps per order m (eSCN). Inputs are (E, K, C_in) features in the reference's m-major layout
(``eqv2.so3.CoefficientLayout``): the L+1 coefficients of m = 0, then for each m = 1..mmax the +m
block and the −m block of L+1−m coefficients each. For m = 0 the map is an ordinary Linear; for
m > 0 it is a complex multiplication (W_r, W_i) shared by the two signs:
y₊ = W_r x₊ − W_i x₋ and y₋ = W_r x₋ + W_i x₊.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from eqv2.nn.radial import RadialMLP
from eqv2.so3 import CoefficientLayout


class SO2OrderConv(nn.Module):
    """The m > 0 map for one order: one Linear producing both W_r x and W_i x (no bias)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, 2 * out_features, bias=False)
        with torch.no_grad():
            self.fc.weight.mul_(1.0 / math.sqrt(2.0))
        self.out_features = out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (E, 2, n_in) with rows (+m, −m) → (E, 2, n_out)."""
        w_r, w_i = self.fc.weight.split(self.out_features, dim=0)
        x_p, x_m = x.unbind(1)
        # y₊ + i·y₋ = (W_r + i·W_i)(x₊ + i·x₋): three real GEMMs instead of four (Gauss's
        # complex product), in forward and backward alike
        k1 = torch.mm(x_p, (w_r + w_i).T)
        k2 = torch.mm(x_m - x_p, w_r.T)
        k3 = torch.mm(x_p + x_m, w_i.T)
        return torch.stack((k1 - k3, k1 + k2), dim=1)


class SO2Convolution(nn.Module):
    """SO(2) convolution for all orders |m| ≤ mmax, optionally modulated by a radial function.

    Args:
        in_channels: channels per coefficient of the input.
        out_channels: channels per coefficient of the output.
        lmax, mmax: degrees and orders kept in the edge frame.
        edge_channels: radial MLP channel list ``[in, hidden, hidden]`` or None for plain weights.
            With a radial MLP the inputs of every order are multiplied element-wise by its
            output (one weight per (m, l, channel), shared by +m and −m) before the maps.
        extra_m0_channels: extra scalar outputs of the m = 0 Linear (attention logits, gates),
            returned separately and placed first in that Linear's output, as in the reference.

    Parameter names (``fc_m0``, ``so2_m_conv.{m-1}.fc``, ``rad_func``) match the reference.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        lmax: int,
        mmax: int,
        edge_channels: list[int] | None = None,
        extra_m0_channels: int = 0,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.lmax, self.mmax = lmax, mmax
        self.extra_m0_channels = extra_m0_channels
        #: coefficients per sign of each order m = 0..mmax (m-major blocks)
        self.block_sizes = list(CoefficientLayout(lmax, mmax).order_sizes)
        n_m0 = (lmax + 1) * in_channels
        self.fc_m0 = nn.Linear(n_m0, (lmax + 1) * out_channels + extra_m0_channels)
        self.so2_m_conv = nn.ModuleList(
            SO2OrderConv(n * in_channels, n * out_channels) for n in self.block_sizes[1:]
        )
        self.rad_sizes = [n * in_channels for n in self.block_sizes]
        self.rad_func = (
            RadialMLP([*edge_channels, sum(self.rad_sizes)]) if edge_channels is not None else None
        )

    def forward(
        self, x: torch.Tensor, radial: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: (E, K, C_in) m-major → ((E, K, C_out) m-major, extra m=0 scalars or None).

        ``radial`` is this layer's ``rad_func`` output for the edges (computed by the caller,
        which knows the edge scalars); required when the layer has a radial function.
        """
        num_edges = x.shape[0]
        rad = None
        if self.rad_func is not None:
            if radial is None:
                raise ValueError(
                    "this SO(2) convolution is modulated by a radial function: pass `radial`"
                )
            rad = radial.split(self.rad_sizes, dim=1)

        n0, c_in = self.block_sizes[0], self.in_channels
        # one split for all orders: its backward is a single concatenation
        blocks = x.split([n0] + [2 * n for n in self.block_sizes[1:]], dim=1)
        # blocks are strided views: the radial product (when there is one) makes them
        # contiguous in the same pass, instead of a reshape copy followed by the product
        if rad is not None:
            x0 = (blocks[0] * rad[0].reshape(num_edges, n0, c_in)).view(num_edges, n0 * c_in)
        else:
            x0 = blocks[0].reshape(num_edges, n0 * c_in)
        y0 = self.fc_m0(x0)
        extra = None
        if self.extra_m0_channels:
            extra, y0 = y0.split([self.extra_m0_channels, y0.shape[1] - self.extra_m0_channels], 1)
        out = [y0.view(num_edges, n0, self.out_channels)]

        for m, conv in enumerate(self.so2_m_conv, start=1):
            n = self.block_sizes[m]
            if rad is not None:
                weight = rad[m].reshape(num_edges, 1, n, c_in)
                xm = (blocks[m].reshape(num_edges, 2, n, c_in) * weight).view(
                    num_edges, 2, n * c_in
                )
            else:
                xm = blocks[m].reshape(num_edges, 2, n * c_in)
            out.append(conv(xm).view(num_edges, 2 * n, self.out_channels))
        return torch.cat(out, dim=1), extra

    def m0_extra(
        self, x0: torch.Tensor, radial: torch.Tensor | None = None, count: int | None = None
    ) -> torch.Tensor:
        """The first ``count`` (default: all) extra m = 0 scalars of `forward`, from the m = 0
        rows only: x0 (E, L+1, C_in) → (E, count). The same arithmetic as `forward` for them,
        without the other orders' maps (attention logits of a chunk need nothing else)."""
        num_edges, n0 = x0.shape[0], self.block_sizes[0]
        count = self.extra_m0_channels if count is None else count
        if self.rad_func is not None:
            if radial is None:
                raise ValueError(
                    "this SO(2) convolution is modulated by a radial function: pass `radial`"
                )
            x0 = x0 * radial[:, : self.rad_sizes[0]].reshape(num_edges, n0, self.in_channels)
        x0 = x0.reshape(num_edges, n0 * self.in_channels)
        return nn.functional.linear(x0, self.fc_m0.weight[:count], self.fc_m0.bias[:count])
