"""What a training step minimises: normalised targets of a batch and the weighted loss terms.

The terms are the run's (`eqv2.train.targets_spec.TaskSpec`). Its S2EF part (`LossSpec`):
energy (MAE, per-atom MAE or MSE) and force L2MAE, as the EquiformerV2 paper trains OC20/OC22,
plus, for a model with a decomposed stress head, the MAE of the isotropic and anisotropic
stress parts, as fairchem trains OMat24 (configs/omat24/all/eqV2_31M.yml: ``per_atom_mae``
2.5, ``l2mae`` 20, ``stress_isotropic`` ``mae`` 5, ``stress_anisotropic`` ``mae`` 5). Each
named target adds ``coefficient · fn`` of its property head: MAE or MSE over structures for a
scalar, MAE over components (or L2MAE) of free atoms for a per-atom displacement, with the
coefficient decaying linearly over the run when the term has a ``final_coefficient``
(`Objective.progress`, set by the trainer before each step).
Targets are put into the model's normalised units by the `Potential` itself
(`Potential.normalize`, `Potential.stress_targets`), the exact inverse of how it denormalises
at inference, so training and inference cannot disagree.
With ``denoising`` set (`eqv2.train.denoising`: Noisy Nodes or DeNS), a corrupted batch adds
the denoising term and trains each corrupted atom on its noise instead of its force (S2EF), or
next to the property terms (a property task: their loss is taken on the corrupted structure
against the clean label). Per-atom displacement targets are measured from the positions the
model sees (IS2RE's Noisy Nodes, ``relaxed_interpolation``, relies on it).
"""

from __future__ import annotations

import torch

from eqv2.model.potential import Potential
from eqv2.train.corruption import Corruption
from eqv2.train.denoising import DenoisingConfig, hybrid_force_denoising_loss
from eqv2.train.loader import LabelledBatch
from eqv2.train.losses import (
    displacement_loss,
    energy_loss,
    property_loss,
    s2ef_loss,
    stress_losses,
)
from eqv2.train.targets_spec import LossSpec, TaskSpec

__all__ = ["LossSpec", "Objective"]


class Objective:
    """The loss of ``potential``'s raw outputs on labelled batches, as ``spec`` defines it
    (a `TaskSpec`, or a `LossSpec` for energy and forces only).

    Raises:
        ValueError: the stress loss is on but the model has no decomposed stress head; a
            term's output has no head in the model.
    """

    def __init__(self, potential: Potential, spec: LossSpec | TaskSpec) -> None:
        spec = TaskSpec(spec) if isinstance(spec, LossSpec) else spec
        head = potential.model.stress_head
        s2ef = spec.s2ef
        if spec.stress and (not potential.has_stress_head or not head.decompose):
            raise ValueError(
                "the stress loss is on (stress_isotropic_coefficient="
                f"{s2ef.stress_isotropic_coefficient}, stress_anisotropic_coefficient="
                f"{s2ef.stress_anisotropic_coefficient}), but the model has no decomposed stress "
                "head to train. Add one to model.heads (stress: {module: rank2_symmetric_head, "
                "decompose: true}, as configs/materials/omat24_31m.yaml does), or set both "
                "coefficients to 0."
            )
        if s2ef is not None and not potential.has_energy:
            raise ValueError(
                "the loss has energy and force terms but the model has no energy head; add "
                "one to model.heads or drop energy and forces from outputs/loss."
            )
        have = potential.property_names
        missing = [t.name for t in spec.targets
                   if t.name not in (potential.vector_names if t.per_atom else have)]  # fmt: skip
        if missing:
            raise ValueError(
                f"the loss trains the target(s) {missing}, which the model has no property "
                f"head for (it has {list(potential.property_names)}); add "
                "{module: scalar_head, reduce: sum|mean} under model.heads.<name>."
            )
        denoising = self.denoising_of(spec)
        if denoising is not None and denoising.predicts_noise and not potential.model.can_denoise:
            raise ValueError(
                "train.denoising is set but the model has nothing that predicts the noise: add "
                "a denoising head (model.heads: {denoising: {module: position_denoising_head}}; "
                "configs/dens_noisy_nodes_emt.yaml, configs/qm9.yaml's header), use the DeNS "
                "backbone and heads (configs/dens_emt.yaml), or remove train.denoising."
            )
        if denoising is not None and spec.s2ef is not None and potential.conservative:
            raise ValueError(
                "train.denoising needs direct force heads (direct_forces=True): the forces of "
                "a corrupted structure are replaced by its noise, which −dE/dx cannot predict."
            )
        self.potential = potential
        self.spec = spec
        self.denoising = denoising
        self._per_atom = {t.name for t in spec.targets if t.per_atom}
        #: the fraction of training done (0 to 1): where decaying coefficients stand
        self.progress = 0.0
        heads = potential.model.heads
        energy_head = heads.get("energy")
        #: whether the energy / stress terms are kept on corrupted batches
        self.denoise_energy = energy_head is None or bool(
            energy_head.spec.get("use_denoising", True)
        )
        stress = heads.get("stress")
        self.denoise_stress = stress is None or bool(stress.spec.get("use_denoising", True))

    @staticmethod
    def denoising_of(spec: TaskSpec) -> DenoisingConfig | None:
        """The denoising task of a run, or None."""
        return spec.denoising

    def model_input(
        self, batch: LabelledBatch
    ) -> tuple[dict[str, torch.Tensor], Corruption | None]:
        """The graph the model sees for a training batch: the batch's own, or, with denoising
        on and probability ``denoising.prob``, a corrupted copy (also returned, for `loss`)."""
        if self.denoising is None:
            return batch.graph, None
        radius = self.potential.model.config.max_radius
        per_atom = [batch.targets[n] for n in self.spec.target_names if n in self._per_atom]
        displacement = per_atom[0] if per_atom else None
        corruption = self.denoising.maybe_corrupt(batch.graph, batch.forces, radius, displacement)
        return (batch.graph, None) if corruption is None else (corruption.graph, corruption)

    def targets(
        self, batch: LabelledBatch, corruption: Corruption | None = None
    ) -> dict[str, torch.Tensor]:
        """Normalised targets of a batch (what the raw model predicts), in the graph's dtype;
        per-atom displacements measured from the corrupted positions when ``corruption``."""
        p, graph = self.potential, batch.graph
        dtype, device = graph["pos"].dtype, graph["pos"].device
        out = {}
        for name in self.spec.target_names:
            value = batch.targets[name].to(device=device, dtype=dtype)
            if corruption is not None and name in self._per_atom:
                value = value - corruption.noise.to(dtype)  # from the moved atom to its image
            out[name] = p.normalize(name, value)
        if self.spec.s2ef is None:
            return out
        residual = (batch.energy - batch.reference).to(device=device, dtype=dtype)
        forces = batch.forces.to(device=device, dtype=dtype)
        out["energy"] = p.normalize("energy", residual)
        out["forces"] = p.force_targets(forces)
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
        float64 vector ordered as `TaskSpec.part_names`). ``num_structures`` and
        ``num_force_atoms`` replace the batch's own counts as denominators (see
        `eqv2.train.losses`). ``corruption``: the batch was corrupted (the model saw
        ``corruption.graph`` and returned ``out["denoising"]``)."""
        s, graph = self.spec.s2ef, batch.graph
        target = self.targets(batch, corruption)
        total = graph["pos"].new_zeros(())
        values: list[torch.Tensor] = []
        denoise = None
        if s is not None and corruption is None:
            total, parts = s2ef_loss(
                out, target["energy"], target["forces"], graph["natoms"], graph["fixed"],
                s.energy_coefficient, s.force_coefficient, s.energy_loss, s.free_atoms_only,
                num_structures=num_structures, num_force_atoms=num_force_atoms,
            )  # fmt: skip
            values += [parts["energy_loss"], parts["force_loss"]]
        elif s is not None:
            total, values, denoise = self._corrupted_loss(
                out, target, graph, corruption, num_structures, num_force_atoms
            )
        if s is not None and s.stress and (corruption is None or self.denoise_stress):
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
        elif s is not None and s.stress:
            values += [total.detach() * 0.0] * 2
        free = ~graph["fixed"].bool()
        if s is None and corruption is not None and self.denoising.predicts_noise:
            counted = free if self.spec.free_atoms_only else torch.ones_like(free)
            _, denoise_term = hybrid_force_denoising_loss(
                None, None, out["denoising"], corruption, counted, num_force_atoms
            )
            total = total + self.denoising.coefficient * denoise_term
            denoise = denoise_term.detach()
        if self.denoising is not None and self.denoising.predicts_noise:
            values.append(total.detach() * 0.0 if denoise is None else denoise)
        for term in self.spec.losses:
            name = term.target
            if name in self._per_atom:
                value = displacement_loss(out[name], target[name], term.fn, free)
            else:
                value = property_loss(out[name], target[name], term.fn, num_structures)
            total = total + term.coefficient_at(self.progress) * value
            values.append(value.detach())
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
        s = self.spec.s2ef
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
            + self.denoising.coefficient * denoise
        )
        return total, [energy.detach(), force.detach()], denoise.detach()
