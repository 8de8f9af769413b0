import torch

from eqv2.nn import activation
from eqv2.nn.activation import SphereGrid, s2_activation, separable_s2_activation
from eqv2.so3 import s2_grid_matrices


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
