"""What a training step minimises: normalised targets of a batch and the weighted loss terms.

The terms are the config's (`LossSpec`): energy (MAE, per-atom MAE or MSE) and force L2MAE,
as the EquiformerV2 paper trains OC20/OC22, plus, for a model with a decomposed stress head,
the MAE of the isotropic and anisotropic stress parts, as fairchem trains OMat24
(configs/omat24/all/eqV2_31M.yml: ``per_atom_mae`` 2.5, ``l2mae`` 20, ``stress_isotropic``
``mae`` 5, ``stress_anisotropic`` ``mae`` 5). Targets are put into the model's normalised
units by the `Potential` itself (`Potential.normalize`, `Potential.stress_targets`), the exact
inverse of how it denormalises at inference, so training and inference cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from eqv2.model.potential import Potential
from eqv2.train.loader import LabelledBatch
from eqv2.train.losses import ENERGY_LOSSES, s2ef_loss, stress_losses

__all__ = ["LossSpec", "Objective"]


@dataclass(frozen=True)
class LossSpec:
    """Loss terms and coefficients (the ``train`` section's loss keys).

    A stress coefficient above 0 turns the stress loss on: every training structure then
    needs a stress label.
    """

    energy_coefficient: float = 1.0
    force_coefficient: float = 1.0
    energy_loss: str = "mae"
    free_atoms_only: bool = True
    stress_isotropic_coefficient: float = 0.0
    stress_anisotropic_coefficient: float = 0.0

    def __post_init__(self) -> None:
        if self.energy_loss not in ENERGY_LOSSES:
            raise ValueError(f"energy_loss={self.energy_loss!r}: choose one of {ENERGY_LOSSES}.")
        for name in ("stress_isotropic_coefficient", "stress_anisotropic_coefficient"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name}={getattr(self, name)}: must be 0 (off) or positive.")

    @property
    def stress(self) -> bool:
        """Whether the stress loss is on."""
        return self.stress_isotropic_coefficient > 0 or self.stress_anisotropic_coefficient > 0

    def part_names(self) -> tuple[str, ...]:
        """Names of the logged loss parts, in the order `Objective.loss` returns them."""
        parts = ("energy_loss", "force_loss")
        return parts + (("stress_isotropic_loss", "stress_anisotropic_loss") if self.stress else ())


class Objective:
    """The loss of ``potential``'s raw outputs on labelled batches, as ``spec`` defines it.

    Raises:
        ValueError: the stress loss is on but the model has no decomposed stress head.
    """

    def __init__(self, potential: Potential, spec: LossSpec) -> None:
        head = potential.model.stress_head
        if spec.stress and (not potential.has_stress_head or not head.decompose):
            raise ValueError(
                "the stress loss is on (stress_isotropic_coefficient="
                f"{spec.stress_isotropic_coefficient}, stress_anisotropic_coefficient="
                f"{spec.stress_anisotropic_coefficient}), but the model has no decomposed stress "
                "head to train. Add one to model.heads (stress: {module: rank2_symmetric_head, "
                "decompose: true}, as configs/materials/omat24_31m.yaml does), or set both "
                "coefficients to 0."
            )
        self.potential = potential
        self.spec = spec

    def targets(self, batch: LabelledBatch) -> dict[str, torch.Tensor]:
        """Normalised targets of a batch (what the raw model predicts), in the graph's dtype."""
        p, graph = self.potential, batch.graph
        dtype, device = graph["pos"].dtype, graph["pos"].device
        residual = (batch.energy - batch.reference).to(device=device, dtype=dtype)
        forces = batch.forces.to(device=device, dtype=dtype)
        out = {"energy": p.normalize("energy", residual)}
        if p.conservative:  # forces are −d(normalised E)/dx: scaled like energies
            out["forces"] = forces / p.normalizers["energy"]["std"]
        else:
            out["forces"] = p.normalize("forces", forces)
        if self.spec.stress:
            if batch.stress is None:
                raise ValueError("the stress loss needs batches read with stress='require'.")
            iso, aniso = p.stress_targets(batch.stress.to(device=device, dtype=dtype))
            out["stress_isotropic"], out["stress_anisotropic"] = iso, aniso
        return out

    def loss(
        self,
        out: dict[str, torch.Tensor],
        batch: LabelledBatch,
        num_structures: float | None = None,
        num_force_atoms: float | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The weighted loss of raw outputs ``out`` on ``batch``, and its parts (a detached
        float64 vector ordered as `LossSpec.part_names`). ``num_structures`` and
        ``num_force_atoms`` replace the batch's own counts as denominators (see
        `eqv2.train.losses`)."""
        s, graph = self.spec, batch.graph
        target = self.targets(batch)
        total, parts = s2ef_loss(
            out, target["energy"], target["forces"], graph["natoms"], graph["fixed"],
            s.energy_coefficient, s.force_coefficient, s.energy_loss, s.free_atoms_only,
            num_structures=num_structures, num_force_atoms=num_force_atoms,
        )  # fmt: skip
        values = [parts["energy_loss"], parts["force_loss"]]
        if s.stress:
            iso, aniso = stress_losses(
                out["stress_isotropic"], out["stress_anisotropic"], target["stress_isotropic"],
                target["stress_anisotropic"], num_structures,
            )  # fmt: skip
            total = (
                total
                + s.stress_isotropic_coefficient * iso
                + s.stress_anisotropic_coefficient * aniso
            )
            values += [iso.detach(), aniso.detach()]
        return total, torch.stack([v.double() for v in values])
