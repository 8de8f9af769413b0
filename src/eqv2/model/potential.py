"""A trained model ready for use: EquiformerV2 plus its target normalisers and element references.

``Potential.predict(atoms_or_list)`` is the user-facing call: it validates structures, builds
their graphs, runs the model in batches under ``torch.inference_mode`` and returns energies in eV
and forces in eV/Å, denormalised the way the reference's ASE calculator does:
``E = E_model · σ_E + μ_E + Σ_atoms ref[Z]`` and ``F = F_model · σ_F + μ_F``.

Stress, one convention everywhere: a (3, 3) tensor in eV/Å³ with ASE's sign (positive under
tension, σ = (1/V) ∂E/∂ε). A model with a stress head (the OMat24 and DeNS families) predicts it
directly: each part is denormalised with its own normaliser (``stress_isotropic``,
``stress_anisotropic``), the parts are recomposed (:func:`eqv2.so3.rank2.rank2_from_irreps`),
then a ``stress`` normaliser applies if the file has one, exactly as fairchem's trainer does.
Without a head the stress is the strain derivative of the energy (``eqv2.model.gradients``).

Named per-structure targets (a model's property heads, ``eqv2.model.heads``: a QM9 gap, an
IS2RE relaxed energy) each have their own normaliser, stored under the target's name:
``y = y_model · σ + μ``, in the unit the target was trained in (`Potential.units`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from ase import Atoms
from torch import nn

from eqv2.deprecation import deprecated_alias
from eqv2.graph import batch_structures
from eqv2.model.equiformer_v2 import EquiformerV2
from eqv2.model.gradients import energy_derivatives
from eqv2.so3.rank2 import rank2_from_irreps, rank2_to_irreps

NUM_ELEMENT_REFERENCES = 119
#: targets a normaliser may exist for (fairchem's names); others in a file are ignored
NORMALIZED_TARGETS = ("energy", "forces", "stress", "stress_isotropic", "stress_anisotropic")


class Potential(nn.Module):
    """EquiformerV2 with denormalisation; ``forward`` takes and returns tensors in eV and eV/Å
    (and each named target in its own unit).

    Args:
        model: the network.
        normalizers: ``{target: {"mean", "std"}}`` for targets in ``NORMALIZED_TARGETS`` and
            the model's property heads (a missing energy, forces or property entry is the
            identity; stress entries only when given).
        element_references: (119,) per-element energy added to each structure's energy,
            indexed by atomic number, or None.
    """

    def __init__(
        self,
        model: EquiformerV2,
        normalizers: Mapping[str, Mapping[str, float]] | None = None,
        element_references: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        normalizers = normalizers or {}
        # energy, forces and every property head always have one (identity when absent);
        # stress parts only if given
        always = ("energy", "forces", *model.property_heads)
        self.normalizers = {
            target: {
                "mean": float(normalizers.get(target, {}).get("mean", 0.0)),
                "std": float(normalizers.get(target, {}).get("std", 1.0)),
            }
            for target in (*NORMALIZED_TARGETS, *model.property_heads)
            if target in always or target in normalizers
        }
        refs = torch.zeros(NUM_ELEMENT_REFERENCES, dtype=torch.float64)
        if element_references is not None:
            element_references = torch.as_tensor(element_references).flatten()
            refs[: len(element_references)] = element_references.to(torch.float64)
        self.has_element_references = element_references is not None
        self.register_buffer("element_references", refs, persistent=False)

    @property
    def config(self):
        return self.model.config

    @property
    def dtype(self) -> torch.dtype:
        return self.model.sphere_embedding.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.model.sphere_embedding.weight.device

    @property
    def has_energy(self) -> bool:
        """Whether the model predicts energies (a property-only model does not)."""
        return self.model.energy_block is not None

    @property
    def property_names(self) -> tuple[str, ...]:
        """The named per-structure scalar targets the model predicts (its scalar heads)."""
        kinds = self.model.property_kinds
        return tuple(n for n in self.model.property_heads if kinds[n] == "property")

    @property
    def vector_names(self) -> tuple[str, ...]:
        """The named per-atom vector targets the model predicts (its vector heads)."""
        kinds = self.model.property_kinds
        return tuple(n for n in self.model.property_heads if kinds[n] == "node_vector")

    @property
    def units(self) -> dict[str, str | None]:
        """The unit each property head declares (None where it declares none)."""
        heads = self.config.heads or {}
        return {name: heads.get(name, {}).get("unit") for name in self.model.property_heads}

    @property
    def conservative(self) -> bool:
        """Whether forces are −dE/dx (an energy head and no direct force head)."""
        return self.model.force_block is None and self.has_energy

    @property
    def has_stress_head(self) -> bool:
        """Whether the stress comes from a direct head (else from the strain derivative)."""
        return self.model.stress_head is not None and self.model.stress_head.output_name == (
            "stress"
        )

    @property
    def can_compute_stress(self) -> bool:
        """A stress head, or conservative forces (whose strain derivative is a stress)."""
        return self.has_stress_head or self.conservative

    def _needs_autograd(self, stress: bool) -> bool:
        return self.conservative or (stress and self.has_energy and not self.has_stress_head)

    def forward(
        self, graph: Mapping[str, torch.Tensor], stress: bool = False
    ) -> dict[str, torch.Tensor]:
        """Energies (B,) and forces (N, 3), plus stress (B, 3, 3) in eV/Å³ if asked.

        Forces come from the direct head when the model has one, else from −dE/dx; the stress
        from the stress head when there is one (:attr:`has_stress_head`), else from the strain
        derivative of the energy; both in ASE's sign convention. Derivatives need autograd, so
        call this under ``torch.no_grad()`` (not ``inference_mode``) when they are computed.
        """
        if not self._needs_autograd(stress):
            out = self._denormalize(self.model(graph), graph)
            if not stress:
                out.pop("stress", None)
            return out
        direct: dict[str, torch.Tensor] = {}

        def energy(g: dict[str, torch.Tensor]) -> torch.Tensor:
            direct.update(self._denormalize(self.model(g), g))
            return direct["energy"]

        with torch.enable_grad():
            out = energy_derivatives(
                energy,
                graph,
                stress=stress and not self.has_stress_head,
                create_graph=self.training and torch.is_grad_enabled(),
            )
        if "forces" in direct:
            out["forces"] = direct["forces"]
        if stress and "stress" in direct:
            out["stress"] = direct["stress"]
        return out

    def _denormalize(
        self, raw: Mapping[str, torch.Tensor], graph: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        out = {name: self._scaled(raw[name], name) for name in self.model.property_heads}
        if "energy" in raw:
            energy = self._scaled(raw["energy"], "energy")
            if self.has_element_references:
                refs = self.element_references.to(energy.dtype)[graph["atomic_numbers"].long()]
                energy = energy.index_add(0, graph["batch"], refs)
            out["energy"] = energy
        if "forces" in raw:
            out["forces"] = self._scaled(raw["forces"], "forces")
        stress = self._stress(raw)
        if stress is not None:
            out["stress"] = stress
        return out

    def _scaled(self, raw: torch.Tensor, target: str) -> torch.Tensor:
        stats = self.normalizers.get(target)
        return raw if stats is None else raw * stats["std"] + stats["mean"]

    def normalize(self, target: str, value: torch.Tensor) -> torch.Tensor:
        """``value`` (eV units) in the model's normalised units for ``target``: the inverse of
        the denormalisation ``forward`` applies (identity for a target without normaliser)."""
        stats = self.normalizers.get(target)
        return value if stats is None else (value - stats["mean"]) / stats["std"]

    def force_targets(self, forces: torch.Tensor) -> torch.Tensor:
        """What the model must output for forces (N, 3) in eV/Å: conservative forces are
        −d(normalised E)/dx, so they scale like energies (the energy std, no mean); direct forces
        use their own normaliser."""
        if self.conservative:
            stats = self.normalizers.get("energy")
            return forces if stats is None else forces / stats["std"]
        return self.normalize("forces", forces)

    def stress_targets(self, stress: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What a decomposed stress head must output for stresses (B, 3, 3) in eV/Å³: the
        normalised isotropic (B, 1) and anisotropic (B, 5) parts, the exact inverse of the
        composition in ``forward`` (``stress`` normaliser, then the parts' own)."""
        iso, aniso = rank2_to_irreps(self.normalize("stress", stress))
        return self.normalize("stress_isotropic", iso), self.normalize("stress_anisotropic", aniso)

    def _stress(self, raw: Mapping[str, torch.Tensor]) -> torch.Tensor | None:
        """The head's stress in eV/Å³ (fairchem's recomposition order), or None."""
        if "stress_isotropic" in raw:
            iso = self._scaled(raw["stress_isotropic"], "stress_isotropic")
            aniso = self._scaled(raw["stress_anisotropic"], "stress_anisotropic")
            return self._scaled(rank2_from_irreps(iso, aniso), "stress")
        if "stress" in raw:
            return self._scaled(raw["stress"], "stress")
        return None

    def build_graph(
        self, structures: Sequence[Atoms], index_offset: int = 0
    ) -> dict[str, torch.Tensor]:
        """Validate structures and batch them into one graph for this model.

        ``index_offset`` is the position of ``structures[0]`` in the user's list (for messages).
        """
        c = self.config
        return batch_structures(
            list(structures),
            cutoff=c.max_radius,
            max_neighbors=c.max_neighbors,
            strict=c.enforce_max_neighbors_strictly,
            dtype=self.dtype,
            device=self.device,
            max_atomic_number=c.max_num_elements - 1,
            index_offset=index_offset,
        )

    def predict(
        self, structures: Atoms | Sequence[Atoms], batch_size: int = 16, stress: bool = False
    ) -> dict[str, Any] | list[dict[str, Any]]:
        """Energy (float, eV) and forces ((N, 3) array, eV/Å) per structure, and each named
        target of a model with property heads (a float per structure, or an (N, 3) array for
        a per-atom vector target, in `units`; a property-only model returns only those).

        With ``stress=True`` also ``stress`` ((3, 3) array, eV/Å³, ASE's sign: positive under
        tension) from the stress head, or the strain derivative of the energy when the model
        has none. A single ``Atoms`` gives one dict; a list gives a list in input order.
        """
        single = isinstance(structures, Atoms)
        items = [structures] if single else list(structures)
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}: must be at least 1.")
        results: list[dict[str, Any]] = []
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            graph = self.build_graph(chunk, index_offset=start)
            results.extend(self.predict_graph(graph, stress=stress))
        return results[0] if single else results

    def predict_graph(
        self, graph: Mapping[str, torch.Tensor], stress: bool = False
    ) -> list[dict[str, Any]]:
        """`predict`'s per-structure results for a graph built already (`build_graph`), in
        eval mode (the module's mode is restored afterwards)."""
        was_training = self.training
        self.eval()
        try:
            out = self.compute(graph, stress=stress)
        finally:
            self.train(was_training)
        bounds = np.cumsum([0, *graph["natoms"].tolist()])
        results: list[dict[str, Any]] = []
        per_structure = [n for n in ("energy", *self.property_names) if n in out]
        per_atom = [n for n in ("forces", *self.vector_names) if n in out]
        for k in range(len(bounds) - 1):
            result: dict[str, Any] = {name: float(out[name][k]) for name in per_structure}
            for name in per_atom:
                result[name] = out[name][bounds[k] : bounds[k + 1]].copy()
            if "stress" in out:
                result["stress"] = out["stress"][k]
            results.append(result)
        return results

    def compute(
        self, graph: Mapping[str, torch.Tensor], stress: bool = False
    ) -> dict[str, np.ndarray]:
        """Outputs for a batched graph without gradients, as float64 numpy arrays.

        ``energy`` (B,), ``forces`` (N, 3) and with ``stress=True`` ``stress`` (B, 3, 3).
        Runs under ``torch.inference_mode`` when nothing needs autograd, else (−dE/dx forces,
        stress without a stress head) under ``torch.no_grad``; in the module's current
        train/eval mode.
        """
        with torch.no_grad() if self._needs_autograd(stress) else torch.inference_mode():
            out = self(graph, stress=stress)
        return {k: v.detach().double().cpu().numpy() for k, v in out.items()}

    evaluate = deprecated_alias(compute, "eqv2.model.Potential.evaluate")
