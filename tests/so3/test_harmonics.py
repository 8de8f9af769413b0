"""Spherical harmonics: e3nn parity (stored values), orthonormality, normalisations, gradients."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from eqv2.so3 import spherical_harmonics

DATA = np.load(Path(__file__).parent / "data" / "reference.npz")


def _quadrature(n: int):
    """Exact quadrature on the sphere for polynomials of degree < 2n (in y) and < 2n (in phi)."""
    nodes, weights = np.polynomial.legendre.leggauss(n)
    y = torch.from_numpy(nodes)[:, None].expand(n, 2 * n)
    phi = torch.arange(2 * n, dtype=torch.float64) * (math.pi / n)
    s = torch.sqrt(1 - y**2)
    r = torch.stack([s * torch.sin(phi), y, s * torch.cos(phi)], dim=-1).reshape(-1, 3)
    w = (torch.from_numpy(weights)[:, None] * (math.pi / n)).expand(n, 2 * n).reshape(-1)
    return r, w


def test_matches_e3nn_stored_up_to_l12():
    points = torch.from_numpy(DATA["sh_points"])
    ours = spherical_harmonics(12, points)
    torch.testing.assert_close(ours, torch.from_numpy(DATA["sh_values"]), atol=1e-12, rtol=0)


@pytest.mark.parametrize("lmax", [6, 16])
def test_orthonormal_integral(lmax):
    r, w = _quadrature(lmax + 1)
    Y = spherical_harmonics(lmax, r)
    gram = torch.einsum("p,pa,pb->ab", w, Y, Y)
    torch.testing.assert_close(
        gram, torch.eye((lmax + 1) ** 2, dtype=gram.dtype), atol=1e-12, rtol=0
    )


def test_normalizations():
    v = torch.randn(50, 3, dtype=torch.float64)
    comp = spherical_harmonics(5, v, normalization="component")
    integ = spherical_harmonics(5, v, normalization="integral")
    norm = spherical_harmonics(5, v, normalization="norm")
    torch.testing.assert_close(comp / math.sqrt(4 * math.pi), integ)
    for l in range(6):
        block = slice(l * l, (l + 1) ** 2)
        torch.testing.assert_close(
            comp[:, block].pow(2).sum(-1), torch.full((50,), 2.0 * l + 1, dtype=torch.float64)
        )
        torch.testing.assert_close(norm[:, block], comp[:, block] / math.sqrt(2 * l + 1))


def test_l1_is_xyz_and_polar_axis_is_y():
    v = torch.randn(20, 3, dtype=torch.float64)
    u = v / v.norm(dim=-1, keepdim=True)
    Y = spherical_harmonics(3, v, normalization="component")
    torch.testing.assert_close(Y[:, 1:4], math.sqrt(3) * u)
    Yy = spherical_harmonics(3, torch.tensor([[0.0, 2.0, 0.0]], dtype=torch.float64))
    nonzero = torch.nonzero(Yy[0].abs() > 1e-14).flatten().tolist()
    assert nonzero == [l * l + l for l in range(4)]  # only m = 0 at the pole


def test_unnormalized_is_homogeneous():
    v = torch.randn(10, 3, dtype=torch.float64)
    a = spherical_harmonics(7, 2.5 * v, normalize=False)
    b = spherical_harmonics(7, v, normalize=False)
    scale = torch.tensor([2.5**l for l in range(8) for _ in range(2 * l + 1)], dtype=torch.float64)
    torch.testing.assert_close(a, b * scale)


def test_zero_vector_and_float32_and_grad():
    v = torch.zeros(1, 3)
    Y = spherical_harmonics(4, v)
    assert torch.isfinite(Y).all() and Y[0, 1:].abs().max() == 0
    pts = torch.tensor([[0.0, 1.0, 0.0], [0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.3, -0.2, 0.9]])
    pts.requires_grad_(True)
    Y = spherical_harmonics(8, pts)
    assert Y.dtype == torch.float32
    (Y**2 * torch.arange(81.0)).sum().backward()
    assert torch.isfinite(pts.grad).all()
    ref = spherical_harmonics(8, pts.detach().double())
    torch.testing.assert_close(Y.double(), ref, atol=1e-5, rtol=0)


def test_bad_input():
    with pytest.raises(ValueError, match="normalization"):
        spherical_harmonics(2, torch.randn(3), normalization="unit")
    with pytest.raises(ValueError, match="shape"):
        spherical_harmonics(2, torch.randn(4, 2))
