"""Sphere-grid matrices: reference buffers (fixture), stored e3nn values, quadrature properties."""

from pathlib import Path

import numpy as np
import pytest
import torch

from eqv2.so3 import grid_resolution, s2_grid_matrices, spherical_harmonics, truncated_index

DATA = np.load(Path(__file__).parent / "data" / "reference.npz")
F64 = torch.float64


def test_matches_reference_state_dict(reference_state_dict):
    checked = 0
    for lmax in range(5):
        for mmax in range(5):
            key = f"backbone.SO3_grid.{lmax}.{mmax}."
            if key + "to_grid_mat" not in reference_state_dict:
                continue
            to_grid, from_grid = s2_grid_matrices(lmax, mmax, resolution=18, dtype=torch.float32)
            for ours, name in ((to_grid, "to_grid_mat"), (from_grid, "from_grid_mat")):
                ref = reference_state_dict[key + name]
                assert ours.shape == ref.shape, key + name
                torch.testing.assert_close(ours, ref, atol=2e-6, rtol=1e-5, msg=key + name)
            checked += 1
    assert checked == 25


def test_matches_e3nn_stored_integral():
    to_grid, from_grid = s2_grid_matrices(3, 1, normalization="integral")
    torch.testing.assert_close(
        to_grid, torch.from_numpy(DATA["grid_l3_m1_integral_to"]), atol=1e-13, rtol=0
    )
    torch.testing.assert_close(
        from_grid, torch.from_numpy(DATA["grid_l3_m1_integral_from"]), atol=1e-13, rtol=0
    )


def test_resolution_rules():
    assert grid_resolution(6, 6) == (14, 15)
    assert grid_resolution(6, 2) == (14, 5)
    assert grid_resolution(6, 2, 18) == (18, 18)
    to_grid, from_grid = s2_grid_matrices(6, 2)
    assert to_grid.shape == from_grid.shape == (14, 5, len(truncated_index(6, 2)))
    with pytest.raises(ValueError, match="resolution"):
        s2_grid_matrices(6, 6, resolution=8)


def test_to_grid_is_scaled_harmonics():
    lmax, mmax, res = 4, 2, 12
    to_grid, _ = s2_grid_matrices(lmax, mmax, res, normalization="integral")
    beta = (torch.arange(res, dtype=F64) + 0.5) * torch.pi / res
    alpha = torch.arange(res, dtype=F64) * 2 * torch.pi / res
    b, a = torch.meshgrid(beta, alpha, indexing="ij")
    pts = torch.stack([b.sin() * a.sin(), b.cos(), b.sin() * a.cos()], -1)
    keep = truncated_index(lmax, mmax)
    Y = spherical_harmonics(lmax, pts)[..., keep]
    ls = torch.tensor([l for l in range(lmax + 1) for _ in range(2 * l + 1)], dtype=F64)[keep]
    scale = torch.where(ls > mmax, torch.sqrt((2 * ls + 1) / (2 * mmax + 1)), 1.0)
    torch.testing.assert_close(to_grid, Y * scale, atol=1e-14, rtol=0)


@pytest.mark.parametrize("normalization", ["component", "integral", "norm"])
@pytest.mark.parametrize(("lmax", "res"), [(3, None), (6, 18), (4, 10)])
def test_round_trip_identity(normalization, lmax, res):
    to_grid, from_grid = s2_grid_matrices(lmax, lmax, res, normalization=normalization)
    gram = torch.einsum("bak,ban->kn", from_grid, to_grid)
    torch.testing.assert_close(gram, torch.eye((lmax + 1) ** 2, dtype=F64), atol=1e-12, rtol=0)


def test_round_trip_truncated_is_diagonal():
    lmax, mmax = 6, 2
    to_grid, from_grid = s2_grid_matrices(lmax, mmax, 18)
    gram = torch.einsum("bak,ban->kn", from_grid, to_grid)
    ls = torch.tensor([l for l in range(lmax + 1) for _ in range(2 * l + 1)], dtype=F64)
    ls = ls[truncated_index(lmax, mmax)]
    want = torch.where(ls > mmax, (2 * ls + 1) / (2 * mmax + 1), 1.0)
    torch.testing.assert_close(gram, torch.diag(want), atol=1e-12, rtol=0)


def test_cache_dtype_device():
    a64, _ = s2_grid_matrices(2, 2)
    a32, _ = s2_grid_matrices(2, 2, dtype=torch.float32)
    assert a64.dtype == F64 and a32.dtype == torch.float32
    assert s2_grid_matrices(2, 2)[0] is a64
    torch.testing.assert_close(a32.double(), a64, atol=1e-7, rtol=0)
