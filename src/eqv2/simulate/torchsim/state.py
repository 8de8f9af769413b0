"""``ase.Atoms`` → torch-sim ``SimState``, checked for what torch-sim 0.3 can simulate.

torch-sim 0.3 holds one periodicity flag for a whole state and has no constraints, so a
structure with mixed periodicity (a slab, pbc T T F) or with fixed atoms is refused with the fix,
rather than silently simulated as something else (``torch_sim.io.atoms_to_state`` would turn a
slab into an open system).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch_sim as ts
from ase import Atoms

from eqv2.graph import fixed_mask

__all__ = ["check_structures", "state_from_atoms"]


def check_structures(structures: Sequence[Atoms]) -> bool:
    """Refuse what torch-sim 0.3 cannot simulate; return the common periodicity flag.

    Raises:
        ValueError: naming the structure: fixed atoms, mixed periodicity within a structure,
            or structures of a batch that differ in periodicity.
    """
    if len(structures) == 0:
        raise ValueError("no structures given; pass at least one ase.Atoms.")
    flags = []
    for i, atoms in enumerate(structures):
        if not isinstance(atoms, Atoms):
            raise ValueError(f"structure {i} is a {type(atoms).__name__}, not an ase.Atoms.")
        if fixed_mask(atoms).any():
            raise ValueError(
                f"structure {i} ({atoms.get_chemical_formula()}) has fixed atoms (FixAtoms); "
                "torch-sim 0.3 has no constraints. Fix: use the ASE engine (eqv2 md --engine "
                "ase, eqv2.simulate.md.run_md) or remove the constraint."
            )
        pbc = np.asarray(atoms.pbc, dtype=bool)
        if pbc.any() and not pbc.all():
            raise ValueError(
                f"structure {i} ({atoms.get_chemical_formula()}) has pbc={pbc.tolist()}; "
                "torch-sim 0.3 holds one periodicity flag for all three axes. Fix: set "
                "atoms.pbc = True when the vacuum is wider than the model's cut-off (the graph "
                "is then the same), or use the ASE engine."
            )
        flags.append(bool(pbc.all()))
    if len(set(flags)) > 1:
        raise ValueError(
            f"structures {flags.index(True)} and {flags.index(False)} differ in periodicity "
            "(periodic and open); a torch-sim state holds one flag for all of them. Fix: run "
            "periodic and open structures in separate batches."
        )
    return flags[0]


def state_from_atoms(
    structures: Atoms | Sequence[Atoms], device: torch.device | str, dtype: torch.dtype
) -> ts.SimState:
    """One ``SimState`` holding all ``structures`` (checked by :func:`check_structures`).

    Positions in Å, masses in amu (ASE's), cells stored as columns (torch-sim's convention).
    """
    structures = [structures] if isinstance(structures, Atoms) else list(structures)
    pbc = check_structures(structures)
    counts = torch.tensor([len(a) for a in structures], device=device)

    def floats(arrays: list[np.ndarray]) -> torch.Tensor:
        return torch.as_tensor(np.concatenate(arrays), dtype=dtype, device=device)

    return ts.SimState(
        positions=floats([a.positions for a in structures]),
        masses=floats([a.get_masses() for a in structures]),
        cell=torch.as_tensor(
            np.stack([a.cell.array.T for a in structures]), dtype=dtype, device=device
        ),
        pbc=pbc,
        atomic_numbers=torch.as_tensor(
            np.concatenate([a.numbers for a in structures]), dtype=torch.long, device=device
        ),
        system_idx=torch.repeat_interleave(torch.arange(len(structures), device=device), counts),
    )
