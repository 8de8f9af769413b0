"""Symmetric rank-2 tensors (stress) ↔ their irreducible parts: an l=0 scalar and an l=2 vector.

A symmetric 3×3 tensor σ carries degrees 0 and 2 (the antisymmetric l=1 part is zero). The
scalar is ``iso = tr(σ)/√3`` and the five l=2 components are in e3nn's real order (polar axis
+y, as everywhere in eqv2), proportional to ``[xz, xy, 2y²−x²−z², yz, z²−x²]``:

    σ_xx = iso/√3 − a₂/√6 − a₄/√2     σ_xy = a₁/√2
    σ_yy = iso/√3 + 2a₂/√6            σ_xz = a₀/√2
    σ_zz = iso/√3 − a₂/√6 + a₄/√2     σ_yz = a₃/√2

This is the Clebsch–Gordan change of basis fairchem uses to compose its decomposed stress
head's outputs (and to decompose its training labels); the map is orthonormal, so
``|σ|_F² = iso² + |a|²``.
"""

from __future__ import annotations

import math

import torch

__all__ = ["rank2_from_irreps", "rank2_to_irreps"]


def _basis() -> torch.Tensor:
    """(6, 3, 3) float64: σ = Σ_k c_k B_k for c = (iso, a₀, …, a₄)."""
    s2, s3, s6 = 1 / math.sqrt(2), 1 / math.sqrt(3), 1 / math.sqrt(6)
    basis = torch.zeros(6, 3, 3, dtype=torch.float64)
    basis[0] = torch.eye(3, dtype=torch.float64) * s3
    basis[1, 0, 2] = basis[1, 2, 0] = s2  # xz
    basis[2, 0, 1] = basis[2, 1, 0] = s2  # xy
    basis[3, 0, 0], basis[3, 1, 1], basis[3, 2, 2] = -s6, 2 * s6, -s6  # 2y² − x² − z²
    basis[4, 1, 2] = basis[4, 2, 1] = s2  # yz
    basis[5, 0, 0], basis[5, 2, 2] = -s2, s2  # z² − x²
    return basis


_BASIS = _basis()


def rank2_from_irreps(isotropic: torch.Tensor, anisotropic: torch.Tensor) -> torch.Tensor:
    """Symmetric tensors (..., 3, 3) from ``isotropic`` (..., 1) and ``anisotropic`` (..., 5).

    Computed in the inputs' dtype (float32 in, float32 constants, as the reference does).
    """
    if isotropic.shape[-1] != 1 or anisotropic.shape[-1] != 5:
        raise ValueError(
            f"isotropic must end in 1 and anisotropic in 5 components, got "
            f"{tuple(isotropic.shape)} and {tuple(anisotropic.shape)}."
        )
    coeffs = torch.cat((isotropic, anisotropic), dim=-1)
    basis = _BASIS.to(dtype=coeffs.dtype, device=coeffs.device)
    return torch.einsum("...k,kij->...ij", coeffs, basis)


def rank2_to_irreps(tensor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(isotropic (..., 1), anisotropic (..., 5)) of the symmetric part of ``tensor`` (..., 3, 3).

    The inverse of :func:`rank2_from_irreps` on symmetric tensors.
    """
    if tensor.shape[-2:] != (3, 3):
        raise ValueError(f"tensor must have shape (..., 3, 3), got {tuple(tensor.shape)}.")
    sym = 0.5 * (tensor + tensor.transpose(-1, -2))
    basis = _BASIS.to(dtype=sym.dtype, device=sym.device)
    coeffs = torch.einsum("...ij,kij->...k", sym, basis)  # orthonormal basis: projection
    return coeffs[..., :1], coeffs[..., 1:]
