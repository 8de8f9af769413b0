"""Distance basis and radial MLP: invariant inputs, the fused embedding path, parameter names."""

from __future__ import annotations

import torch

from eqv2.nn.radial import NUM_GAUSSIANS, GaussianBasis, RadialMLP, atom_edge_embeddings
from tests.nn.symmetry import Graph, random_rotation


def test_gaussian_basis_centres_and_width():
    basis = GaussianBasis(6.0).double()
    d = torch.tensor([0.0, 1.234, 6.0], dtype=torch.float64)
    out = basis(d)
    assert out.shape == (3, NUM_GAUSSIANS)
    spacing = 6.0 / (NUM_GAUSSIANS - 1)
    centres = torch.linspace(0.0, 6.0, NUM_GAUSSIANS, dtype=torch.float64)
    want = torch.exp(-0.5 * (d[:, None] - centres) ** 2 / (2.0 * spacing) ** 2)
    torch.testing.assert_close(out, want, rtol=0, atol=1e-14)
    assert out[0].argmax() == 0 and out[2].argmax() == NUM_GAUSSIANS - 1


def test_edge_features_are_rotation_invariant():
    graph, R = Graph(), random_rotation(5)
    basis = GaussianBasis(5.0)
    a = basis(graph.edge_vec().norm(dim=1))
    b = basis(graph.edge_vec(R).norm(dim=1))
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_forward_edges_equals_the_mlp_on_the_concatenation():
    torch.manual_seed(0)
    source, target, channels = atom_edge_embeddings(True, 10, [7, 16, 16])
    assert channels == [7 + 32, 16, 16]
    mlp = RadialMLP([*channels, 12]).double()
    source, target = source.double(), target.double()
    scalars = torch.randn(9, 7, dtype=torch.float64)
    zs, zt = torch.randint(0, 10, (9,)), torch.randint(0, 10, (9,))
    fused = mlp.forward_edges(scalars, source, target, zs, zt)
    plain = mlp(torch.cat((scalars, source(zs), target(zt)), dim=1))
    torch.testing.assert_close(fused, plain, rtol=0, atol=1e-13)
    plain_mlp = RadialMLP([7, 16, 12]).double()
    torch.testing.assert_close(plain_mlp.forward_edges(scalars), plain_mlp(scalars))


def test_reference_parameter_names_and_disabled_embeddings():
    mlp = RadialMLP([4, 8, 8, 3])
    names = [n for n, _ in mlp.named_parameters()]
    assert names[:4] == ["net.0.weight", "net.0.bias", "net.1.weight", "net.1.bias"]
    assert "net.6.weight" in names  # the last Linear after two (Linear, LayerNorm, SiLU)
    assert atom_edge_embeddings(False, 10, [4, 8]) == (None, None, [4, 8])
