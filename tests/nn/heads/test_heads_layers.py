"""Each output head on its own, in float64: invariant energies, equivariant forces and stress."""

from __future__ import annotations

import torch

from eqv2.nn.context import SphereGrids
from eqv2.nn.heads import EnergyHead, ForceHead, HeadInputs, Rank2Head
from eqv2.nn.heads.inputs import per_structure
from eqv2.so3 import CoefficientLayout, wigner_d
from tests.nn.symmetry import EXACT, NUM_EDGE_SCALARS, Graph, features, random_rotation, rotate

LAYOUT = CoefficientLayout(2, 1)
GRIDS = SphereGrids.build(layout=LAYOUT, resolution=8, dtype=torch.float64, device="cpu")
NATOMS = torch.tensor([3, 2])


def _inputs(graph: Graph, rotation=None, carry: bool = False) -> HeadInputs:
    edges = graph.context(LAYOUT, rotation, carry=carry)
    return HeadInputs(edges, GRIDS, graph.edge_vec(rotation), NATOMS)


def test_energy_head_invariant_and_reduced_per_structure():
    torch.manual_seed(0)
    head = EnergyHead(4, 6, LAYOUT.lmax, avg_num_nodes=2.0, use_gate_act=True).double().eval()
    graph, R = Graph(), random_rotation(2)
    x = features(graph.num_nodes, LAYOUT.lmax, 4, seed=1)
    energy = head(x, _inputs(graph))["energy"]
    assert energy.shape == (2,)
    rotated = head(rotate(x, R), _inputs(graph, R))["energy"]
    torch.testing.assert_close(rotated, energy, rtol=0, atol=EXACT)
    node = super(EnergyHead, head).forward(x, GRIDS)[:, 0, 0]
    torch.testing.assert_close(energy, torch.stack([node[:3].sum(), node[3:].sum()]) / 2.0)
    mean_head = EnergyHead(
        4, 6, LAYOUT.lmax, 2.0, reduce="mean", output_name="e", use_gate_act=True
    ).double()
    mean_head.load_state_dict(head.state_dict())
    mean = mean_head.eval()(x, _inputs(graph))["e"]
    torch.testing.assert_close(mean, torch.stack([node[:3].mean(), node[3:].mean()]))


def test_force_head_rotates_with_the_structure():
    """Forces are the l = 1 coefficients: they rotate by D¹(R) = R (frames carried along)."""
    torch.manual_seed(0)
    head = (
        ForceHead(4, 6, 2, 3, 2, 1, LAYOUT.lmax, LAYOUT.mmax, 10, [NUM_EDGE_SCALARS, 8, 8])
        .double()
        .eval()
    )
    graph, R = Graph(), random_rotation(3)
    x = features(graph.num_nodes, LAYOUT.lmax, 4, seed=2)
    forces = head(x, _inputs(graph))["forces"]
    assert forces.shape == (graph.num_nodes, 3)
    rotated = head(rotate(x, R), _inputs(graph, R, carry=True))["forces"]
    torch.testing.assert_close(rotated, forces @ R.T, rtol=0, atol=EXACT)


def _rank2(**options) -> Rank2Head:
    """One bias-free Linear per tensor MLP: the head is then exactly equivariant (the default
    two layers act on each tensor component with a SiLU and biases, as in the reference; the
    model-level tests in tests/nn/test_heads.py cover those quirks)."""
    torch.manual_seed(0)
    head = Rank2Head(4, LAYOUT.lmax, num_mlp_layers=1, **options).double().eval()
    with torch.no_grad():
        for name in ("irrep2_MLP", "r2tensor_MLP"):
            for layer in getattr(head.block, name, []):
                layer.bias.zero_()
    return head


def test_rank2_head_decomposed_parts_rotate_as_l0_and_l2():
    head = _rank2(norm_type="layer_norm_sh", decompose=True)
    graph, R = Graph(), random_rotation(4)
    x = features(graph.num_nodes, LAYOUT.lmax, 4, seed=3)
    out = head(x, _inputs(graph))
    rotated = head(rotate(x, R), _inputs(graph, R))
    assert out["stress_isotropic"].shape == (2, 1) and out["stress_anisotropic"].shape == (2, 5)
    torch.testing.assert_close(
        rotated["stress_isotropic"], out["stress_isotropic"], rtol=0, atol=EXACT
    )
    d2 = wigner_d(R, 2)[4:9, 4:9]
    torch.testing.assert_close(
        rotated["stress_anisotropic"], out["stress_anisotropic"] @ d2.T, rtol=0, atol=EXACT
    )
    assert out["stress_anisotropic"].abs().max() > 1e-3


def test_rank2_head_full_tensor_rotates_as_r_sigma_rt():
    head = _rank2(norm_type="rms_norm_sh", use_source_target_embedding=True)
    graph, R = Graph(), random_rotation(5)
    x = features(graph.num_nodes, LAYOUT.lmax, 4, seed=4)
    sigma = head(x, _inputs(graph))["stress"]
    rotated = head(rotate(x, R), _inputs(graph, R))["stress"]
    assert sigma.shape == (2, 3, 3)
    torch.testing.assert_close(rotated, R @ sigma @ R.T, rtol=0, atol=EXACT)
    torch.testing.assert_close(sigma, sigma.transpose(1, 2), rtol=0, atol=1e-14)


def test_per_structure_sum_and_mean():
    graph = Graph()
    inputs = _inputs(graph)
    values = torch.arange(5, dtype=torch.float64).view(5, 1)
    torch.testing.assert_close(
        per_structure(values, inputs, "sum"), torch.tensor([[3.0], [7.0]], dtype=torch.float64)
    )
    torch.testing.assert_close(
        per_structure(values, inputs, "mean"), torch.tensor([[1.0], [3.5]], dtype=torch.float64)
    )
