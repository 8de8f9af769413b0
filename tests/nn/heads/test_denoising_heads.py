"""The denoising heads on their own, in float64: predicted position noise is an equivariant
vector (Noisy Nodes' `PositionDenoisingHead`, DeNS's `DeNSForceHead.denoise`)."""

from __future__ import annotations

import torch

from eqv2.nn.context import SphereGrids
from eqv2.nn.heads import HeadInputs
from eqv2.nn.heads.denoising import PositionDenoisingHead
from eqv2.nn.heads.forces import DeNSForceHead
from eqv2.so3 import CoefficientLayout
from tests.nn.symmetry import EXACT, NUM_EDGE_SCALARS, Graph, features, random_rotation, rotate

LAYOUT = CoefficientLayout(2, 1)
GRIDS = SphereGrids.build(layout=LAYOUT, resolution=8, dtype=torch.float64, device="cpu")
#: channels in/hidden, heads, alpha/value channels, output channels, lmax, mmax, elements, radial
ATTENTION = (4, 6, 2, 3, 2, 1, LAYOUT.lmax, LAYOUT.mmax, 10, [NUM_EDGE_SCALARS, 8, 8])


def _inputs(graph: Graph, rotation=None) -> HeadInputs:
    """Frames carried along with the rotation: exact for every attention block."""
    edges = graph.context(LAYOUT, rotation, carry=rotation is not None)
    return HeadInputs(edges, GRIDS, graph.edge_vec(rotation), torch.tensor([3, 2]))


def test_position_denoising_head_rotates_with_the_structure():
    torch.manual_seed(0)
    head = PositionDenoisingHead(*ATTENTION).double().eval()
    graph, R = Graph(), random_rotation(6)
    x = features(graph.num_nodes, LAYOUT.lmax, 4, seed=5)
    out = head(x, _inputs(graph))
    assert set(out) == {"denoising"} and out["denoising"].shape == (graph.num_nodes, 3)
    assert out["denoising"].abs().max() > 1e-3  # a real vector, not zeros
    rotated = head(rotate(x, R), _inputs(graph, R))["denoising"]
    torch.testing.assert_close(rotated, out["denoising"] @ R.T, rtol=0, atol=EXACT)


def test_dens_force_head_forces_and_noise_rotate_and_differ():
    torch.manual_seed(0)
    head = DeNSForceHead(*ATTENTION).double().eval()
    graph, R = Graph(), random_rotation(7)
    x = features(graph.num_nodes, LAYOUT.lmax, 4, seed=6)
    forces = head(x, _inputs(graph))["forces"]
    noise = head.denoise(x, _inputs(graph))
    assert noise.shape == forces.shape == (graph.num_nodes, 3)
    # two blocks with their own weights: the noise is not the force read twice
    assert (noise - forces).abs().max() > 1e-3
    x_rot, rotated = rotate(x, R), _inputs(graph, R)
    torch.testing.assert_close(head(x_rot, rotated)["forces"], forces @ R.T, rtol=0, atol=EXACT)
    torch.testing.assert_close(head.denoise(x_rot, rotated), noise @ R.T, rtol=0, atol=EXACT)
