"""Symmetric rank-2 tensors ↔ (l=0, l=2) irreducible parts."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from eqv2.so3 import wigner_d
from eqv2.so3.rank2 import rank2_from_irreps, rank2_to_irreps

F64 = torch.float64


def _random_rotation(seed: int) -> torch.Tensor:
    q, r = torch.linalg.qr(
        torch.randn(3, 3, dtype=F64, generator=torch.Generator().manual_seed(seed))
    )
    q = q * torch.sign(torch.diagonal(r))
    return q if torch.det(q) > 0 else -q


def test_formulas_of_the_reference():
    """The README's written-out composition (fairchem's cg_change_mat(2))."""
    iso = torch.tensor([[0.7]], dtype=F64)
    a = torch.tensor([[0.1, -0.2, 0.3, 0.05, -0.4]], dtype=F64)
    s = rank2_from_irreps(iso, a)[0]
    s2, s3, s6 = 1 / math.sqrt(2), 1 / math.sqrt(3), 1 / math.sqrt(6)
    expected = torch.tensor(
        [
            [0.7 * s3 - 0.3 * s6 + 0.4 * s2, -0.2 * s2, 0.1 * s2],
            [-0.2 * s2, 0.7 * s3 + 2 * 0.3 * s6, 0.05 * s2],
            [0.1 * s2, 0.05 * s2, 0.7 * s3 - 0.3 * s6 - 0.4 * s2],
        ],
        dtype=F64,
    )
    torch.testing.assert_close(s, expected, rtol=0, atol=1e-15)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000))
def test_round_trip_and_norm(seed):
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(4, 3, 3, dtype=F64, generator=g)
    sym = 0.5 * (m + m.transpose(1, 2))
    iso, aniso = rank2_to_irreps(m)
    torch.testing.assert_close(rank2_from_irreps(iso, aniso), sym, rtol=0, atol=1e-13)
    torch.testing.assert_close(iso[:, 0], torch.diagonal(sym, dim1=1, dim2=2).sum(1) / math.sqrt(3))
    norm = (iso**2).sum(1) + (aniso**2).sum(1)
    torch.testing.assert_close(norm, (sym**2).sum((1, 2)))


@pytest.mark.parametrize("seed", range(3))
def test_equivariance_l2_part_rotates_with_wigner_d(seed):
    """R σ Rᵀ has isotropic part iso and anisotropic part D²(R) a (e3nn's l=2 basis)."""
    rot = _random_rotation(seed)
    iso, aniso = torch.randn(1, 1, dtype=F64), torch.randn(1, 5, dtype=F64)
    sigma = rank2_from_irreps(iso, aniso)[0]
    d2 = wigner_d(rot, 2)[4:9, 4:9]
    rotated = rank2_from_irreps(iso, (d2 @ aniso[0])[None])[0]
    torch.testing.assert_close(rotated, rot @ sigma @ rot.T, rtol=0, atol=1e-12)


def test_bad_shapes():
    with pytest.raises(ValueError, match="5 components"):
        rank2_from_irreps(torch.zeros(1, 1), torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, 3\)"):
        rank2_to_irreps(torch.zeros(2, 3))
