import math

import torch

from eqv2.nn import activation
from eqv2.nn.activation import (
    SmoothLeakyReLU,
    SphereGrid,
    gate_activation,
    s2_activation,
    separable_s2_activation,
)
from eqv2.so3 import CoefficientLayout, s2_grid_matrices
from tests.nn.symmetry import EXACT, features, random_rotation, rotate, y_rotation


def _grid(lmax=3, mmax=2, res=10):
    to, fr = s2_grid_matrices(lmax, mmax, resolution=res)
    n = to.shape[-1]
    return SphereGrid(to.reshape(-1, n), fr.reshape(-1, n).T.contiguous()), n


def test_recomputing_s2_activation_matches_plain_autograd(monkeypatch):
    """The memory-saving path (grid values recomputed in backward, in column chunks) gives the
    same values and gradients as plain autograd ops, also when chunks split the columns."""
    monkeypatch.setattr(activation, "GRID_CHUNK", 7)
    grid, n = _grid()
    x = torch.randn(5, n, 3, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(5, n, 3, dtype=torch.float64)
    fast = s2_activation(x, grid)
    (g_fast,) = torch.autograd.grad((fast * weight).sum(), x)
    plain = s2_activation(x, grid, differentiable_twice=True)
    (g_plain,) = torch.autograd.grad((plain * weight).sum(), x)
    torch.testing.assert_close(fast, plain, rtol=0, atol=1e-14)
    torch.testing.assert_close(g_fast, g_plain, rtol=0, atol=1e-13)


def test_recomputing_s2_activation_gradcheck():
    grid, n = _grid(2, 1, 6)
    x = torch.randn(3, n, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: s2_activation(t, grid), (x,))


def test_separable_replaces_l0_with_silu_of_scalars():
    grid, n = _grid()
    x = torch.randn(4, n, 3, dtype=torch.float64)
    scalars = torch.randn(4, 3, dtype=torch.float64)
    out = separable_s2_activation(scalars, x, grid)
    torch.testing.assert_close(out[:, 0], torch.nn.functional.silu(scalars))
    torch.testing.assert_close(out[:, 1:], s2_activation(x, grid)[:, 1:])


# -- symmetry (float64) ---------------------------------------------------------------------------
def test_sphere_activations_equivariant_under_the_grid_symmetry():
    """Turns about +y by multiples of 2π/long permute the grid's columns: exact equivariance."""
    layout, res = CoefficientLayout(3), 8
    grid = layout.node_grid(res)
    x, scalars = features(4, 3, 5, seed=1), torch.randn(4, 5, dtype=torch.float64)
    for k in (1, 2, 5):
        R = y_rotation(2 * math.pi * k / res)
        torch.testing.assert_close(
            s2_activation(rotate(x, R), grid), rotate(s2_activation(x, grid), R), rtol=0, atol=EXACT
        )
        torch.testing.assert_close(
            separable_s2_activation(scalars, rotate(x, R), grid),
            rotate(separable_s2_activation(scalars, x, grid), R),
            rtol=0,
            atol=EXACT,
        )


def test_gate_activation_equivariant_for_any_rotation():
    lmax, channels = 3, 4
    gate_index = CoefficientLayout(lmax).degree_index()[1:] - 1
    x, R = features(6, lmax, channels, seed=2), random_rotation(3)
    gates = torch.randn(6, lmax * channels, dtype=torch.float64)
    out = gate_activation(gates, x, gate_index)
    torch.testing.assert_close(gate_activation(gates, rotate(x, R), gate_index), rotate(out, R))
    # l = 0: SiLU; degree l: sigmoid of its own gate row
    torch.testing.assert_close(out[:, 0], torch.nn.functional.silu(x[:, 0]))
    gate_l2 = torch.sigmoid(gates.view(6, lmax, channels)[:, 1])
    torch.testing.assert_close(out[:, 4:9], x[:, 4:9] * gate_l2[:, None])


def test_smooth_leaky_relu():
    act = SmoothLeakyReLU(0.2)
    x = torch.linspace(-30, 30, 61, dtype=torch.float64)
    want = 0.6 * x + 0.4 * x * (2 * torch.sigmoid(x) - 1)
    torch.testing.assert_close(act(x), want, rtol=0, atol=1e-13)
    torch.testing.assert_close(act(x[-1:]), x[-1:], rtol=0, atol=1e-10)  # slope 1 far right
    torch.testing.assert_close(act(x[:1]), 0.2 * x[:1], rtol=0, atol=1e-10)  # slope 0.2 far left
