"""Batched relaxation of many structures through torch-sim's FIRE and ``InFlightAutoBatcher``.

Structures join the batch while the memory budget allows; every ``steps_between_swaps`` steps
the converged ones (max force below ``fmax``, and for a cell relaxation the cell force too)
leave and waiting ones take their place, so the batch stays full until the queue runs dry.
eqv2's own engine (`eqv2.simulate.relax.relax_structures`) stays the one for OC20-style
relaxations with fixed atoms and for AdsorbML.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch_sim as ts
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from torch_sim.autobatching import InFlightAutoBatcher, calculate_memory_scaler
from torch_sim.optimizers import fire, frechet_cell_fire

from eqv2.simulate.torchsim.model import EqV2TorchSimModel
from eqv2.simulate.torchsim.state import check_structures, state_from_atoms

__all__ = ["relax_batch"]


def _to_atoms(template: Atoms, state: ts.SimState) -> Atoms:
    """The relaxed structure with its energy, forces (and stress) attached."""
    atoms = template.copy()
    atoms.positions = state.positions.detach().double().cpu().numpy()
    atoms.cell = state.cell[0].detach().T.double().cpu().numpy()
    results = {
        "energy": float(state.energy[0]),
        "forces": state.forces.detach().double().cpu().numpy(),
    }
    stress = getattr(state, "stress", None)
    if stress is not None:
        results["stress"] = stress[0].detach().double().cpu().numpy()
    atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


def relax_batch(
    structures: Sequence[Atoms],
    model: EqV2TorchSimModel,
    *,
    fmax: float = 0.05,
    max_steps: int = 500,
    relax_cell: bool = False,
    steps_between_swaps: int = 5,
    max_memory_scaler: float | None = None,
) -> list[Atoms]:
    """Relax ``structures`` with FIRE (positions; with ``relax_cell`` also the cell, by
    torch-sim's Fréchet-cell FIRE); the inputs are left unchanged.

    Args:
        structures: ``ase.Atoms``, all periodic or all open, no fixed atoms.
        model: the torch-sim wrapper (with stress for ``relax_cell``).
        fmax: convergence threshold on the largest atomic (and cell) force, eV/Å.
        max_steps: steps after which a structure stops unconverged (checked after the first
            step and then every ``steps_between_swaps`` steps, so it may run up to that many
            more).
        relax_cell: also relax the cell.
        steps_between_swaps: steps between convergence checks and swaps.
        max_memory_scaler: the in-flight batcher's budget (sum of per-structure ``n_atoms`` or
            ``n_atoms_x_density``); default: measured on a GPU, all at once on a CPU.

    Each structure's relaxation is the same whatever else shares its batch (to round-off).

    Returns:
        Relaxed copies in input order with energy, forces (and stress) attached and
        ``info["relax_converged"]`` (bool) and ``info["relax_steps"]``.
    """
    if not (math.isfinite(fmax) and fmax > 0):
        raise ValueError(f"fmax={fmax}: must be a positive force in eV/Å (e.g. 0.05).")
    if max_steps < 1 or steps_between_swaps < 1:
        raise ValueError(
            f"max_steps={max_steps}, steps_between_swaps={steps_between_swaps}: both must be "
            "at least 1."
        )
    if relax_cell and not model.compute_stress:
        raise ValueError(
            "relax_cell=True needs a model with stress (a stress head or conservative forces)."
        )
    structures = list(structures)
    periodic = check_structures(structures)
    init, update = (frechet_cell_fire if relax_cell else fire)(model=model)
    # torch-sim 0.3's FIRE takes a special first step (velocities NaN until then) and takes it
    # for the whole batch when any structure in it is new, which would bend the paths of the
    # others when one is swapped in: so each structure takes its first step alone.
    states = [update(init(state_from_atoms(a, model.device, model.dtype))) for a in structures]
    scales = model.memory_scales_with if periodic else "n_atoms"
    if max_memory_scaler is None and model.device.type == "cpu":
        max_memory_scaler = sum(calculate_memory_scaler(s, scales) for s in states) * (1 + 1e-9)
    batcher = InFlightAutoBatcher(
        model=model,
        memory_scales_with=scales,
        max_memory_scaler=max_memory_scaler,
        return_indices=True,
        max_iterations=max(1, math.ceil((max_steps - 1) / steps_between_swaps)),
    )
    batcher.load_states(states)
    converged_fn = ts.generate_force_convergence_fn(force_tol=fmax, include_cell_forces=relax_cell)
    steps_done = np.ones(len(structures), dtype=np.int64)  # the first step, above
    converged = np.zeros(len(structures), dtype=bool)
    finished: list[ts.SimState] = []
    state, done, indices = batcher.next_batch(None, None)
    while state is not None:
        for _ in range(steps_between_swaps):
            state = update(state)
        flags = converged_fn(state, None)
        steps_done[indices] += steps_between_swaps
        converged[indices] = flags.cpu().numpy()
        # the batcher marks structures past max_steps as done on its own copy
        state, done, indices = batcher.next_batch(state, flags.clone())
        finished.extend(done)
    finished = batcher.restore_original_order(finished)
    relaxed = []
    for i, (atoms, final) in enumerate(zip(structures, finished, strict=True)):
        out = _to_atoms(atoms, final)
        out.info.update(relax_converged=bool(converged[i]), relax_steps=int(steps_done[i]))
        relaxed.append(out)
    return relaxed
