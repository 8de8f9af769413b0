"""SO(2) convolution: the complex per-order product, and equivariance once wrapped in frames."""

from __future__ import annotations

import pytest
import torch

from eqv2.nn.so2_conv import SO2Convolution, SO2OrderConv
from eqv2.so3 import CoefficientLayout
from tests.nn.symmetry import EXACT, NUM_EDGE_SCALARS, Graph, features, random_rotation, rotate

LAYOUT = CoefficientLayout(3, 2)


def _conv(radial: bool, extra: int = 0) -> SO2Convolution:
    torch.manual_seed(0)
    edge_channels = [NUM_EDGE_SCALARS, 8, 8] if radial else None
    conv = SO2Convolution(3, 4, LAYOUT.lmax, LAYOUT.mmax, edge_channels, extra)
    return conv.double()


def _convolve(conv: SO2Convolution, x: torch.Tensor, edges) -> torch.Tensor:
    """Rotate source features into each edge frame, convolve, rotate back (per edge)."""
    message = torch.bmm(edges.to_edge, x.index_select(0, edges.src))
    radial = conv.rad_func(edges.scalars) if conv.rad_func is not None else None
    out, _ = conv(message, radial)
    return torch.bmm(edges.from_edge, out)


@pytest.mark.parametrize("radial", [False, True])
@pytest.mark.parametrize("carry", [False, True])
def test_equivariant_in_edge_frames(radial, carry):
    """Exact whether the frames are carried along or recomputed: maps per |m| commute with the
    roll about the edge, so any frame with the edge on +y gives the same result."""
    conv, graph, R = _conv(radial), Graph(), random_rotation(7)
    x = features(graph.num_nodes, LAYOUT.lmax, 3, seed=1)
    out = _convolve(conv, x, graph.context(LAYOUT))
    out_rot = _convolve(conv, rotate(x, R), graph.context(LAYOUT, R, carry=carry))
    torch.testing.assert_close(out_rot, rotate(out, R), rtol=0, atol=EXACT)


def test_order_conv_is_a_complex_product():
    torch.manual_seed(0)
    conv = SO2OrderConv(5, 3).double()
    x = torch.randn(4, 2, 5, dtype=torch.float64)
    w_r, w_i = conv.fc.weight.split(3, dim=0)
    want_p = x[:, 0] @ w_r.T - x[:, 1] @ w_i.T
    want_m = x[:, 1] @ w_r.T + x[:, 0] @ w_i.T
    out = conv(x)
    torch.testing.assert_close(out[:, 0], want_p, rtol=0, atol=1e-13)
    torch.testing.assert_close(out[:, 1], want_m, rtol=0, atol=1e-13)


def test_shapes_extra_scalars_and_missing_radial():
    conv = _conv(radial=True, extra=5)
    assert conv.block_sizes == list(LAYOUT.order_sizes) == [4, 3, 2]
    x = torch.randn(6, LAYOUT.num_edge_coefficients, 3, dtype=torch.float64)
    out, extra = conv(x, conv.rad_func(torch.randn(6, NUM_EDGE_SCALARS, dtype=torch.float64)))
    assert out.shape == (6, LAYOUT.num_edge_coefficients, 4) and extra.shape == (6, 5)
    with pytest.raises(ValueError, match="pass `radial`"):
        conv(x)
    empty, _ = conv(x[:0], conv.rad_func(torch.zeros(0, NUM_EDGE_SCALARS, dtype=torch.float64)))
    assert empty.shape == (0, LAYOUT.num_edge_coefficients, 4)
