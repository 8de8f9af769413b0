"""S2EF training losses, as the EquiformerV2 paper trains OC20/OC22 models, the stress
terms of the OMat24 recipe, and the losses of named targets: per structure (`property_loss`)
and per-atom vectors (`displacement_loss`).

``loss = λ_E · energy_loss + λ_F · force_loss`` on normalised targets, where the energy loss is
the MAE over structures (or over per-atom energies) and the force loss is the L2MAE: the mean
over atoms of the Euclidean norm of the force error, counting free atoms only by default.
A model with a decomposed stress head adds ``λ_iso · iso_loss + λ_aniso · aniso_loss``
(`stress_losses`): the MAE of the normalised l=0 part over structures and the MAE of the
normalised l=2 part over its 5 components of every structure, as fairchem 1.10's ``mae`` loss
reduces them (configs/omat24/all/eqV2_31M.yml).

Each mean may instead divide by a given ``denominator``: with data-parallel training a process
holds part of a batch, and dividing its sums by the whole batch's counts makes the processes'
losses add up to the loss of the whole batch (OC20 normalises the force loss over all free
atoms of the global batch in the same way).
"""

from __future__ import annotations

import torch

ENERGY_LOSSES = ("mae", "per_atom_mae", "mse")
#: Loss functions of a named per-structure target (normalised units).
PROPERTY_LOSSES = ("mae", "mse")


def _mean(values: torch.Tensor, denominator: float | None) -> torch.Tensor:
    if denominator is None:
        denominator = values.numel()
    if denominator == 0:  # nothing counted: 0, not NaN, still attached to the graph
        return values.sum() * 0.0
    return values.sum() / denominator


def energy_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    natoms: torch.Tensor,
    kind: str = "mae",
    denominator: float | None = None,
) -> torch.Tensor:
    """Energy loss over structures (B,): the mean, or the sum over ``denominator``."""
    if kind == "mae":
        per_structure = (pred - target).abs()
    elif kind == "per_atom_mae":
        per_structure = (pred - target).abs() / natoms.to(pred.dtype)
    elif kind == "mse":
        per_structure = (pred - target).pow(2)
    else:
        raise ValueError(f"energy loss {kind!r}: choose one of {ENERGY_LOSSES}.")
    return _mean(per_structure, denominator)


def property_loss(
    pred: torch.Tensor, target: torch.Tensor, kind: str = "mae", denominator: float | None = None
) -> torch.Tensor:
    """Loss of a named per-structure target (B,): the mean absolute or squared error over
    structures, or its sum over ``denominator``."""
    if kind == "mae":
        error = (pred - target).abs()
    elif kind == "mse":
        error = (pred - target).pow(2)
    else:
        raise ValueError(f"property loss {kind!r}: choose one of {PROPERTY_LOSSES}.")
    return _mean(error, denominator)


def displacement_loss(
    pred: torch.Tensor, target: torch.Tensor, kind: str = "mae", mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Loss of a per-atom vector target (N, 3) over the (masked) atoms: the mean absolute
    error over components (``mae``, as Equiformer's IS2RS auxiliary loss) or the mean of the
    per-atom error norms (``l2mae``). An empty mask gives 0."""
    error = pred - target
    if mask is not None:
        error = error[mask]
    if kind == "l2mae":
        return _mean(error.norm(dim=1), None)
    if kind == "mae":
        return _mean(error.abs(), None)
    raise ValueError(f"displacement loss {kind!r}: choose 'mae' or 'l2mae'.")


def force_l2mae(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    denominator: float | None = None,
) -> torch.Tensor:
    """Mean over (masked) atoms of |F_pred − F_ref|₂, or their sum over ``denominator``.

    An empty mask (or a zero denominator) gives 0, not NaN.
    """
    norms = (pred - target).norm(dim=1)
    if mask is not None:
        norms = norms[mask]
    return _mean(norms, denominator)


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
    num_structures: float | None = None,
    num_force_atoms: float | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """λ_E·energy loss + λ_F·force L2MAE, and the two parts (detached 0-d tensors, for logging:
    reading them after backward saves a device synchronisation before it).

    ``num_structures`` and ``num_force_atoms`` replace the batch's own counts of structures
    and of counted (free, unless ``free_atoms_only`` is False) atoms as the denominators.
    """
    e = energy_loss(out["energy"], target_energy, natoms, energy_kind, num_structures)
    mask = ~fixed.bool() if (free_atoms_only and fixed is not None) else None
    f = force_l2mae(out["forces"], target_forces, mask, num_force_atoms)
    total = energy_coefficient * e + force_coefficient * f
    return total, {"energy_loss": e.detach(), "force_loss": f.detach()}


def stress_losses(
    pred_isotropic: torch.Tensor,
    pred_anisotropic: torch.Tensor,
    target_isotropic: torch.Tensor,
    target_anisotropic: torch.Tensor,
    denominator: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """MAE of the isotropic (B, 1) and anisotropic (B, 5) stress parts (normalised units).

    The isotropic MAE is the mean over structures, the anisotropic one over all 5·B
    components; ``denominator`` (a number of structures, e.g. the global batch's) replaces
    B in both.
    """
    iso = (pred_isotropic - target_isotropic).abs().reshape(-1)
    aniso = (pred_anisotropic - target_anisotropic).abs().reshape(-1)
    if denominator is None:
        return _mean(iso, None), _mean(aniso, None)
    return _mean(iso, denominator), _mean(aniso, 5 * denominator)
