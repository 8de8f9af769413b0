"""What a training step minimises: normalised targets of a batch and the weighted loss terms.

The terms are the config's (`LossSpec`): energy (MAE, per-atom MAE or MSE) and force L2MAE,
as the EquiformerV2 paper trains OC20/OC22, plus, for a model with a decomposed stress head,
the MAE of the isotropic and anisotropic stress parts, as fairchem trains OMat24
(configs/omat24/all/eqV2_31M.yml: ``per_atom_mae`` 2.5, ``l2mae`` 20, ``stress_isotropic``
``mae`` 5, ``stress_anisotropic`` ``mae`` 5). Targets are put into the model's normalised
units by the `Potential` itself (`Potential.normalize`, `Potential.stress_targets`), the exact
inverse of how it denormalises at inference, so training and inference cannot disagree.
With ``denoising`` set (`eqv2.train.denoising`: Noisy Nodes or DeNS), a corrupted batch adds
the denoising term and trains each corrupted atom on its noise instead of its force.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from eqv2.model.potential import Potential
from eqv2.train.corruption import Corruption
from eqv2.train.denoising import DenoisingConfig, hybrid_force_denoising_loss
from eqv2.train.loader import LabelledBatch
from eqv2.train.losses import ENERGY_LOSSES, energy_loss, s2ef_loss, stress_losses

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
    #: the denoising auxiliary task (Noisy Nodes / DeNS), or None
    denoising: DenoisingConfig | None = None

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
        parts += ("stress_isotropic_loss", "stress_anisotropic_loss") if self.stress else ()
        return parts + (("denoising_loss",) if self.denoising is not None else ())


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
        if spec.denoising is not None and not potential.model.can_denoise:
            raise ValueError(
                "train.denoising is set but the model has nothing that predicts the noise: use "
                "the DeNS backbone and heads (configs/dens_emt.yaml) or add a denoising head "
                "(heads: {denoising: {module: position_denoising_head}}, configs/dens_noisy_nodes"
                "_emt.yaml), or remove train.denoising."
            )
        if spec.denoising is not None and potential.conservative:
            raise ValueError(
                "train.denoising needs direct force heads (direct_forces=True): the forces of "
                "a corrupted structure are replaced by its noise, which −dE/dx cannot predict."
            )
        self.potential = potential
        self.spec = spec
        heads = potential.model.heads
        #: whether the energy / stress terms are kept on corrupted batches
        self.denoise_energy, self.denoise_stress = (
            kind not in heads or bool(heads[kind].spec.get("use_denoising", True))
            for kind in ("energy", "stress")
        )

    def model_input(
        self, batch: LabelledBatch
    ) -> tuple[dict[str, torch.Tensor], Corruption | None]:
        """The graph the model sees for a training batch: the batch's own, or, with denoising
        on and probability ``denoising.prob``, a corrupted copy (also returned, for `loss`)."""
        if self.spec.denoising is None:
            return batch.graph, None
        radius = self.potential.model.config.max_radius
        corruption = self.spec.denoising.maybe_corrupt(batch.graph, batch.forces, radius)
        return (batch.graph, None) if corruption is None else (corruption.graph, corruption)

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
        corruption: Corruption | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The weighted loss of raw outputs ``out`` on ``batch``, and its parts (a detached
        float64 vector ordered as `LossSpec.part_names`). ``num_structures`` and
        ``num_force_atoms`` replace the batch's own counts as denominators (see
        `eqv2.train.losses`). ``corruption``: the batch was corrupted (the model saw
        ``corruption.graph`` and returned ``out["denoising"]``)."""
        s, graph = self.spec, batch.graph
        target = self.targets(batch)
        denoise = None
        if corruption is None:
            total, parts = s2ef_loss(
                out, target["energy"], target["forces"], graph["natoms"], graph["fixed"],
                s.energy_coefficient, s.force_coefficient, s.energy_loss, s.free_atoms_only,
                num_structures=num_structures, num_force_atoms=num_force_atoms,
            )  # fmt: skip
            values = [parts["energy_loss"], parts["force_loss"]]
        else:
            total, values, denoise = self._corrupted_loss(
                out, target, graph, corruption, num_structures, num_force_atoms
            )
        if s.stress and (corruption is None or self.denoise_stress):
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
        elif s.stress:
            values += [total.detach() * 0.0] * 2
        if s.denoising is not None:
            values.append(total.detach() * 0.0 if denoise is None else denoise)
        return total, torch.stack([v.double() for v in values])

    def _corrupted_loss(
        self,
        out: dict[str, torch.Tensor],
        target: dict[str, torch.Tensor],
        graph: dict[str, torch.Tensor],
        corruption: Corruption,
        num_structures: float | None,
        num_force_atoms: float | None,
    ) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        """The loss of a corrupted batch: energy (clean label) and the hybrid force/noise
        terms; the energy and force parts, and the denoising part (detached)."""
        s = self.spec
        energy = energy_loss(out["energy"], target["energy"], graph["natoms"], s.energy_loss,
                             num_structures)  # fmt: skip
        if not self.denoise_energy:  # fairchem zeroes the prediction: no gradient either way
            energy = energy * 0.0
        fixed = graph["fixed"].bool()
        counted = ~fixed if s.free_atoms_only else torch.ones_like(fixed)
        force, denoise = hybrid_force_denoising_loss(
            out.get("forces"), target["forces"], out["denoising"], corruption, counted,
            num_force_atoms,
        )  # fmt: skip
        total = (
            s.energy_coefficient * energy
            + s.force_coefficient * force
            + s.denoising.coefficient * denoise
        )
        return total, [energy.detach(), force.detach()], denoise.detach()
