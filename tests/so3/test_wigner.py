"""Wigner-D matrices and edge rotations: group properties, equivariance, reference parity."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from eqv2.so3 import (
    edge_frames,
    edge_rotation,
    m_major_index,
    rotate_back_rescale,
    spherical_harmonics,
    truncated_index,
    wigner_d,
)

DATA = np.load(Path(__file__).parent / "data" / "reference.npz")
F64 = torch.float64


def random_rotations(n: int, seed: int = 0, dtype=F64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n, 4, generator=g, dtype=F64)
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    R = torch.stack(
        [
            torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            torch.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            torch.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )
    return R.to(dtype)


def axis_rotation(axis: int, angle: float) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    R = torch.eye(3, dtype=F64)
    R[i, i], R[i, j], R[j, i], R[j, j] = c, -s, s, c
    return R


def singular_rotations() -> torch.Tensor:
    """Rotations with R y = +-y (Euler-angle singularities) and other special cases."""
    return torch.stack(
        [
            torch.eye(3, dtype=F64),
            axis_rotation(1, 0.7),  # about y: R y = y
            axis_rotation(0, math.pi),  # R y = -y
            axis_rotation(0, math.pi) @ axis_rotation(1, 1.3),
            axis_rotation(2, math.pi) @ axis_rotation(1, -0.4),
            axis_rotation(0, 1e-9),  # nearly identity
            axis_rotation(2, math.pi / 2),
            axis_rotation(0, math.pi / 4) @ axis_rotation(2, math.pi / 4),
        ]
    )


ALL = torch.cat([random_rotations(32), singular_rotations()])
LMAX = 12


@pytest.fixture(scope="module")
def D_all():
    return wigner_d(ALL, LMAX)


def test_identity():
    torch.testing.assert_close(
        wigner_d(torch.eye(3, dtype=F64), LMAX), torch.eye((LMAX + 1) ** 2, dtype=F64)
    )


def test_homomorphism(D_all):
    R2 = random_rotations(len(ALL), seed=1)
    lhs = wigner_d(ALL @ R2, LMAX)
    torch.testing.assert_close(lhs, D_all @ wigner_d(R2, LMAX), atol=1e-12, rtol=0)


def test_inverse_is_transpose_and_orthogonal(D_all):
    torch.testing.assert_close(
        wigner_d(ALL.transpose(-1, -2), LMAX), D_all.transpose(-1, -2), atol=1e-12, rtol=0
    )
    eye = torch.eye((LMAX + 1) ** 2, dtype=F64).expand_as(D_all)
    torch.testing.assert_close(D_all @ D_all.transpose(-1, -2), eye, atol=1e-12, rtol=0)


def test_l1_block_is_R(D_all):
    torch.testing.assert_close(D_all[:, 1:4, 1:4], ALL, atol=1e-14, rtol=0)
    torch.testing.assert_close(D_all[:, 0, 0], torch.ones(len(ALL), dtype=F64))


def test_block_diagonal(D_all):
    mask = torch.zeros((LMAX + 1) ** 2, (LMAX + 1) ** 2, dtype=torch.bool)
    for l in range(LMAX + 1):
        mask[l * l : (l + 1) ** 2, l * l : (l + 1) ** 2] = True
    assert D_all[:, ~mask].abs().max() == 0


def test_equivariance_of_harmonics(D_all):
    r = torch.randn(len(ALL), 3, dtype=F64)
    lhs = spherical_harmonics(LMAX, torch.einsum("eij,ej->ei", ALL, r))
    rhs = torch.einsum("eij,ej->ei", D_all, spherical_harmonics(LMAX, r))
    torch.testing.assert_close(lhs, rhs, atol=1e-12, rtol=0)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-1, 1), min_size=4, max_size=4), st.integers(0, 8))
def test_equivariance_hypothesis(q, lmax):
    q = torch.tensor(q, dtype=F64)
    if q.norm() < 1e-3:
        q = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=F64)
    w, x, y, z = q / q.norm()
    R = torch.tensor(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ],
        dtype=F64,
    )
    r = torch.tensor([0.3, -0.5, 0.8], dtype=F64)
    D = wigner_d(R, lmax)
    torch.testing.assert_close(
        spherical_harmonics(lmax, R @ r), D @ spherical_harmonics(lmax, r), atol=1e-12, rtol=0
    )


def test_matches_fairchem_stored():
    R = torch.from_numpy(DATA["rotations"])
    torch.testing.assert_close(
        wigner_d(R, 4), torch.from_numpy(DATA["wigner_lmax4"]), atol=1e-12, rtol=0
    )


def test_leading_shape_and_float32():
    R = random_rotations(6, seed=3).reshape(2, 3, 3, 3)
    D64 = wigner_d(R, 6)
    assert D64.shape == (2, 3, 49, 49)
    D32 = wigner_d(R.float(), 6)
    assert D32.dtype == torch.float32
    torch.testing.assert_close(D32.double(), D64, atol=2e-6, rtol=0)


def test_gradients_finite_near_singularities():
    eps = [0.0, 1e-12, 1e-7, -1e-7]
    base = [axis_rotation(0, math.pi + e) @ axis_rotation(1, 0.3) for e in eps]
    base += [axis_rotation(2, e) @ axis_rotation(1, -0.8) for e in eps]
    for dtype in (F64, torch.float32):
        R = torch.stack(base).to(dtype).requires_grad_(True)
        D = wigner_d(R, 6)
        (D * torch.randn(D.shape, dtype=dtype)).sum().backward()
        assert torch.isfinite(R.grad).all()
        assert R.grad.abs().max() < 1e3


def test_gradient_matches_finite_difference_at_pole():
    # d/dt D(R_x(t) R0) at R0 = R_y(0.5) (R y = y): analytic vs central difference
    R0 = axis_rotation(1, 0.5)
    t = torch.zeros((), dtype=F64, requires_grad=True)
    c, s = torch.cos(t), torch.sin(t)
    Rx = torch.stack(
        [
            torch.stack([torch.ones_like(c), 0 * c, 0 * c]),
            torch.stack([0 * c, c, -s]),
            torch.stack([0 * c, s, c]),
        ]
    )
    D = wigner_d(Rx @ R0, 5)
    weight = torch.randn(D.shape, dtype=F64)
    (grad,) = torch.autograd.grad((D * weight).sum(), t)
    h = 1e-6
    fd = (wigner_d(axis_rotation(0, h) @ R0, 5) - wigner_d(axis_rotation(0, -h) @ R0, 5)) * weight
    torch.testing.assert_close(grad, fd.sum() / (2 * h), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize(("lmax", "mmax"), [(6, 2), (4, 4), (3, 1), (2, 0), (5, 7)])
def test_edge_rotation_matches_wigner_d(lmax, mmax):
    R = torch.cat([random_rotations(10, seed=4), singular_rotations()])
    to_edge, from_edge = edge_rotation(R, lmax, mmax)
    D = wigner_d(R, lmax)
    idx = m_major_index(lmax, min(mmax, lmax))
    scale = rotate_back_rescale(lmax, min(mmax, lmax))
    K = len(idx)
    assert to_edge.shape == (len(R), K, (lmax + 1) ** 2)
    assert from_edge.shape == (len(R), (lmax + 1) ** 2, K)
    torch.testing.assert_close(to_edge, D[:, idx, :], atol=1e-13, rtol=0)
    want = scale[:, None] * D.transpose(1, 2)[:, :, idx]
    torch.testing.assert_close(from_edge, want, atol=1e-13, rtol=0)
    # rotating in and back out: identity on the kept coefficients (up to the rescale)
    back = to_edge @ (from_edge / scale[:, None])
    torch.testing.assert_close(back, torch.eye(K, dtype=F64).expand_as(back), atol=1e-12, rtol=0)
    if mmax >= lmax:
        full = from_edge @ to_edge
        eye = torch.eye((lmax + 1) ** 2, dtype=F64).expand_as(full)
        torch.testing.assert_close(full, eye, atol=1e-12, rtol=0)
    else:  # from_edge @ to_edge is the rescaled projector onto |m| <= mmax in the edge frame
        P = from_edge @ to_edge
        trunc = truncated_index(lmax, mmax)
        Pm = torch.zeros((lmax + 1) ** 2, dtype=F64)
        Pm[trunc] = 1.0
        want = scale[:, None] * D.transpose(1, 2) @ torch.diag(Pm) @ D
        torch.testing.assert_close(P, want, atol=1e-12, rtol=0)


def test_edge_frame_sh_is_zonal():
    v = torch.randn(40, 3, dtype=F64)
    R = edge_frames(v)
    lmax, mmax = 6, 2
    to_edge, _ = edge_rotation(R, lmax, mmax)
    y = to_edge @ spherical_harmonics(lmax, v)[..., None]
    y = y[..., 0]
    m0 = lmax + 1  # the first block of the m-major order is m = 0
    torch.testing.assert_close(y[:, m0:], torch.zeros_like(y[:, m0:]), atol=1e-12, rtol=0)
    # and the m=0 values are Y_l0 at +y: sqrt((2l+1)/(4 pi))
    want = torch.tensor(
        [math.sqrt((2 * l + 1) / (4 * math.pi)) for l in range(lmax + 1)], dtype=F64
    )
    torch.testing.assert_close(y[:, :m0], want.expand(len(v), -1), atol=1e-12, rtol=0)


def test_edge_rotation_float32_and_grad():
    v = torch.randn(64, 3, requires_grad=True)
    to_edge, from_edge = edge_rotation(edge_frames(v), 6, 2)
    assert to_edge.dtype == from_edge.dtype == torch.float32
    assert to_edge.is_contiguous() and from_edge.is_contiguous()
    ref, _ = edge_rotation(edge_frames(v.detach().double()), 6, 2)
    torch.testing.assert_close(to_edge.double(), ref, atol=2e-6, rtol=0)
    (to_edge.sum() + from_edge.pow(2).sum()).backward()
    assert torch.isfinite(v.grad).all()


def test_bad_input():
    with pytest.raises(ValueError, match="shape"):
        wigner_d(torch.eye(2), 2)
    with pytest.raises(TypeError):
        wigner_d(torch.eye(3, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="E, 3, 3"):
        edge_rotation(torch.eye(3), 2, 1)


def test_cached_constants_built_in_inference_mode_work_with_autograd():
    """Constants first cached inside inference_mode must still serve autograd later."""
    from eqv2.so3 import s2_grid_matrices

    with torch.inference_mode():
        wigner_d(torch.eye(3, dtype=F64).unsqueeze(0), 7)
        s2_grid_matrices(7, 3, dtype=F64)
    R = torch.eye(3, dtype=F64).unsqueeze(0).requires_grad_(True)
    wigner_d(R, 7).sum().backward()
    to_grid, _ = s2_grid_matrices(7, 3, dtype=F64)
    x = torch.ones(to_grid.shape[-1], dtype=F64, requires_grad=True)
    (to_grid @ x).sum().backward()
    assert torch.isfinite(R.grad).all() and torch.isfinite(x.grad).all()
