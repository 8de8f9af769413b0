"""S2EF training losses, as the EquiformerV2 paper trains OC20/OC22 models.

``loss = λ_E · energy_loss + λ_F · force_loss`` on normalised targets, where the energy loss is
the MAE over structures (or over per-atom energies) and the force loss is the L2MAE: the mean
over atoms of the Euclidean norm of the force error, counting free atoms only by default.
"""

from __future__ import annotations

import torch

ENERGY_LOSSES = ("mae", "per_atom_mae", "mse")


def energy_loss(
    pred: torch.Tensor, target: torch.Tensor, natoms: torch.Tensor, kind: str = "mae"
) -> torch.Tensor:
    """Energy loss over structures (B,)."""
    if kind == "mae":
        return (pred - target).abs().mean()
    if kind == "per_atom_mae":
        return ((pred - target).abs() / natoms.to(pred.dtype)).mean()
    if kind == "mse":
        return (pred - target).pow(2).mean()
    raise ValueError(f"energy loss {kind!r}: choose one of {ENERGY_LOSSES}.")


def force_l2mae(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean over (masked) atoms of |F_pred − F_ref|₂. An empty mask gives 0, not NaN."""
    norms = (pred - target).norm(dim=1)
    if mask is not None:
        norms = norms[mask]
    if norms.numel() == 0:
        return pred.sum() * 0.0
    return norms.mean()


def s2ef_loss(
    out: dict[str, torch.Tensor],
    target_energy: torch.Tensor,
    target_forces: torch.Tensor,
    natoms: torch.Tensor,
    fixed: torch.Tensor | None = None,
    energy_coefficient: float = 1.0,
    force_coefficient: float = 1.0,
    energy_kind: str = "mae",
    free_atoms_only: bool = True,
) -> tuple[torch.Tensor, dict[str, float]]:
    """λ_E·energy loss + λ_F·force L2MAE, and the two parts as floats for logging."""
    e = energy_loss(out["energy"], target_energy, natoms, energy_kind)
    mask = ~fixed.bool() if (free_atoms_only and fixed is not None) else None
    f = force_l2mae(out["forces"], target_forces, mask)
    total = energy_coefficient * e + force_coefficient * f
    return total, {"energy_loss": float(e.detach()), "force_loss": float(f.detach())}
