"""`EqV2TorchSimModel`: an eqv2 `Potential` behind torch-sim's ``ModelInterface``.

torch-sim advances many systems at once as one ``SimState`` (positions (N, 3), column-vector
cells (S, 3, 3), ``system_idx`` (N,)). The wrapper turns a state into eqv2's graph batch with
eqv2's own neighbour search (:func:`eqv2.graph.batch_structures` on
:class:`~eqv2.graph.Structure` records made from the state's tensors; no ``ase.Atoms`` on the
way), runs the potential and returns ``energy`` (S,) in eV, ``forces`` (N, 3) in eV/Å and, when
``compute_stress`` is set, ``stress`` (S, 3, 3) in eV/Å³. torch-sim's stress has ASE's sign
(positive under tension, its consistency checks compare it with ``Atoms.get_stress()``), which
is eqv2's: the tensor passes through unchanged.

The neighbour search runs on the CPU (positions are copied there once per call); the model runs
on the wrapper's device.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
import torch_sim as ts
from torch_sim.models.interface import ModelInterface

from eqv2.graph import Structure
from eqv2.model.loading import load_model
from eqv2.model.potential import Potential

__all__ = ["EqV2TorchSimModel", "state_pbc", "structures_from_state"]


def state_pbc(state: Any) -> np.ndarray:
    """Periodicity per system, (S, 3) bool, from the state's ``pbc`` (one bool in torch-sim
    0.3, a (3,) or (S, 3) tensor in later releases)."""
    pbc = np.asarray(torch.as_tensor(state.pbc).cpu(), dtype=bool)
    return np.broadcast_to(pbc, (state.n_systems, 3)).copy()


def structures_from_state(state: Any) -> list[Structure]:
    """One :class:`~eqv2.graph.Structure` per system of a torch-sim state (float64 copies)."""
    counts = state.n_atoms_per_system.tolist()
    positions = np.split(state.positions.detach().cpu().double().numpy(), np.cumsum(counts)[:-1])
    numbers = np.split(state.atomic_numbers.detach().cpu().numpy(), np.cumsum(counts)[:-1])
    # torch-sim stores lattice vectors as columns; eqv2 (like ASE) as rows
    cells = state.cell.detach().transpose(-1, -2).cpu().double().numpy()
    pbc = state_pbc(state)
    return [
        Structure(numbers=z, positions=p, cell=c, pbc=b)
        for z, p, c, b in zip(numbers, positions, cells, pbc, strict=True)
    ]


class EqV2TorchSimModel(ModelInterface):
    """torch-sim model for an eqv2 potential (an eqv2 or fairchem checkpoint).

    Args:
        model: a `Potential` or a checkpoint path.
        device: where the model runs (default: the potential's device, or CPU for a path).
        dtype: the model's precision (default: the potential's, float32 for a path); torch-sim
            states must use the same dtype.
        compute_stress: return ``stress`` (default: whenever the model can, i.e. it has a
            stress head or conservative forces).
        use_ema: with a fairchem path, load its EMA weights.

    Memory scaling (for torch-sim's autobatchers): with a neighbour cap (``max_neighbors``, as
    in every released EquiformerV2) the edge count, which dominates memory, grows with the atom
    count alone: ``"n_atoms"``. Without a cap it also grows with the number density:
    ``"n_atoms_x_density"``.
    """

    def __init__(
        self,
        model: Potential | str | os.PathLike,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        compute_stress: bool | None = None,
        use_ema: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(model, Potential):
            potential = model.to(device=device or model.device, dtype=dtype or model.dtype)
        else:
            potential = load_model(model, dtype=dtype, device=device or "cpu", use_ema=use_ema)
        self.potential = potential.eval()
        if compute_stress and not potential.can_compute_stress:
            raise ValueError(
                "compute_stress=True: this model has neither a stress head nor conservative "
                "forces (direct_forces: false), so it has no stress. Fix: use a model with one "
                "of them, or compute_stress=False (no NPT or cell relaxation then)."
            )
        self._device = potential.device
        self._dtype = potential.dtype
        self._compute_forces = True
        self._compute_stress = (
            potential.can_compute_stress if compute_stress is None else bool(compute_stress)
        )
        capped = potential.config.max_neighbors is not None
        self._memory_scales_with = "n_atoms" if capped else "n_atoms_x_density"

    def graph(self, state: Any) -> dict[str, torch.Tensor]:
        """The eqv2 graph batch of a state (validated: elements, close contacts, cells)."""
        return self.potential.build_graph(structures_from_state(state))

    def forward(self, state: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        """``energy`` (S,), ``forces`` (N, 3) and, with ``compute_stress``, ``stress``
        (S, 3, 3) of a ``SimState`` (or a dict of its fields), detached, in the model's dtype.
        The state is not modified."""
        if isinstance(state, dict):
            state = ts.SimState(**state)
        if state.dtype != self._dtype:
            raise ValueError(
                f"the state is {state.dtype} but the model runs in {self._dtype}. Fix: build "
                "the state with the model's dtype (e.g. initialize_state(atoms, model.device, "
                "model.dtype))."
            )
        graph = self.graph(state)
        # no_grad, not inference_mode: conservative forces and stress need autograd inside
        with torch.no_grad():
            out = self.potential(graph, stress=self._compute_stress)
        result = {"energy": out["energy"].detach(), "forces": out["forces"].detach()}
        if self._compute_stress:
            result["stress"] = out["stress"].detach()
        return result
