"""The fused, node-chunked grid MLP equals the plain one, values and gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from eqv2.nn import grid_mlp as grid_mlp_module
from eqv2.nn.activation import SphereGrid
from eqv2.nn.context import SphereGrids
from eqv2.nn.feed_forward import FeedForward
from eqv2.nn.grid_mlp import grid_mlp
from eqv2.so3 import CoefficientLayout, s2_grid_matrices
from tests.nn.symmetry import EXACT, rotate, y_rotation


def _plain(h, to_grid, from_grid, w1, w2, w3):
    values = torch.einsum("gn,bnc->gbc", to_grid, h)
    values = F.silu(values @ w1.T)
    values = F.silu(values @ w2.T) @ w3.T
    return torch.einsum("ng,gbc->bnc", from_grid, values)


def _inputs(num_nodes, lmax, channels, seed):
    gen = torch.Generator().manual_seed(seed)
    to_grid, from_grid = s2_grid_matrices(lmax, lmax, resolution=2 * (lmax + 1))
    n = (lmax + 1) ** 2
    to_grid, from_grid = to_grid.reshape(-1, n), from_grid.reshape(-1, n).T.contiguous()
    h = torch.randn(num_nodes, n, channels, generator=gen, dtype=torch.float64)
    ws = [torch.randn(channels, channels, generator=gen, dtype=torch.float64) / channels**0.5]
    ws += [torch.randn(channels, channels, generator=gen, dtype=torch.float64) / channels**0.5]
    ws += [torch.randn(channels, channels, generator=gen, dtype=torch.float64) / channels**0.5]
    return h, to_grid, from_grid, ws


@settings(max_examples=12, deadline=None)
@given(
    num_nodes=st.integers(1, 9),
    lmax=st.integers(1, 3),
    channels=st.integers(1, 6),
    chunk_rows=st.sampled_from([1, 40, 100, 4096]),
    seed=st.integers(0, 2**16),
)
def test_fused_equals_plain_values_and_gradients(num_nodes, lmax, channels, chunk_rows, seed):
    h, to_grid, from_grid, ws = _inputs(num_nodes, lmax, channels, seed)
    old = grid_mlp_module.CHUNK_ROWS
    grid_mlp_module.CHUNK_ROWS = chunk_rows  # 1 → one node per chunk, uneven last chunks
    try:
        leaves = [t.clone().requires_grad_(True) for t in (h, *ws)]
        fused = grid_mlp(leaves[0], to_grid, from_grid, *leaves[1:])
        upstream = torch.randn_like(fused)
        grads = torch.autograd.grad(fused, leaves, upstream)
    finally:
        grid_mlp_module.CHUNK_ROWS = old
    leaves_p = [t.clone().requires_grad_(True) for t in (h, *ws)]
    plain = _plain(leaves_p[0], to_grid, from_grid, *leaves_p[1:])
    grads_p = torch.autograd.grad(plain, leaves_p, upstream)
    torch.testing.assert_close(fused, plain, rtol=0, atol=1e-12)
    for g, gp in zip(grads, grads_p, strict=True):
        torch.testing.assert_close(g, gp, rtol=0, atol=1e-11)


def test_gradcheck_across_chunks(monkeypatch):
    monkeypatch.setattr(grid_mlp_module, "CHUNK_ROWS", 20)
    h, to_grid, from_grid, ws = _inputs(3, 1, 2, 0)
    args = [t.requires_grad_(True) for t in (h, *ws)]
    assert torch.autograd.gradcheck(
        lambda x, a, b, c: grid_mlp(x, to_grid, from_grid, a, b, c), args
    )


def _ffn_and_grids(lmax=2, channels=4):
    torch.manual_seed(0)
    ffn = FeedForward(channels, channels, channels, lmax, use_grid_mlp=True).double()
    to_grid, from_grid = s2_grid_matrices(lmax, lmax, resolution=2 * (lmax + 1))
    n = (lmax + 1) ** 2
    grid = SphereGrid(to_grid.reshape(-1, n), from_grid.reshape(-1, n).T.contiguous())
    return ffn, grid


@pytest.mark.parametrize("twice", [False, True])
def test_feed_forward_paths_agree_and_twice_supports_double_backward(twice):
    ffn, grid = _ffn_and_grids()
    x = torch.randn(5, 9, 4, dtype=torch.float64, requires_grad=True)
    calls = []
    hook = ffn.grid_mlp.register_forward_hook(lambda *a: calls.append(1))
    fused = ffn.eval()(x, SphereGrids(grid, grid, False))
    assert calls == []  # eval: the fused function, not the modules
    plain = ffn.train()(x, SphereGrids(grid, grid, twice))
    assert calls == [1]  # training or double backward: the plain modules
    hook.remove()
    torch.testing.assert_close(fused, plain, rtol=0, atol=1e-12)
    out = plain
    (g,) = torch.autograd.grad(out.pow(2).sum(), x, create_graph=twice)
    if twice:  # the plain path is what training on -dE/dx forces needs
        g.pow(2).sum().backward()
        assert ffn.grid_mlp[0].weight.grad is not None


def test_frozen_weights_get_no_gradient_and_inputs_still_do():
    h, to_grid, from_grid, ws = _inputs(4, 2, 3, 7)
    h = h.requires_grad_(True)
    out = grid_mlp(h, to_grid, from_grid, *ws)  # weights do not require grad
    (grad,) = torch.autograd.grad(out.pow(2).sum(), h)
    h_plain = h.detach().clone().requires_grad_(True)
    plain = _plain(h_plain, to_grid, from_grid, *ws)
    (expected,) = torch.autograd.grad(plain.pow(2).sum(), h_plain)
    torch.testing.assert_close(grad, expected, rtol=0, atol=1e-11)
    assert all(w.grad is None for w in ws)


def test_fused_grid_mlp_equivariant_under_the_grid_symmetry():
    lmax, res = 3, 8
    grid = CoefficientLayout(lmax).node_grid(res)
    h, _, _, ws = _inputs(4, lmax, 5, seed=3)
    out = grid_mlp(h, grid.to_grid, grid.from_grid, *ws)
    for k in (1, 3):
        R = y_rotation(2 * math.pi * k / res)
        got = grid_mlp(rotate(h, R), grid.to_grid, grid.from_grid, *ws)
        torch.testing.assert_close(got, rotate(out, R), rtol=0, atol=EXACT)
