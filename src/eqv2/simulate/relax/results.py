"""What a relaxation returns per structure, and the labelled frames and calculators it keeps.

:class:`RelaxResult` is public (re-exported by :mod:`eqv2.simulate.relax`); the helpers attach
the model's final values to structures and word a non-finite model output as a user error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from eqv2.graph import structure_label

__all__ = ["RelaxResult", "final_calculator", "labelled_frame", "nonfinite_message"]


@dataclass
class RelaxResult:
    """The outcome of relaxing one structure.

    Attributes:
        index: position in the input list.
        atoms: the final structure (a copy of the input with the final positions, and cell in a
            cell relaxation): its ``info`` kept plus ``converged`` and ``relax_steps`` (and
            ``relax_error`` on failure); a ``SinglePointCalculator`` with the final energy and
            raw forces (and stress in a cell relaxation) unless it failed.
        energy: final energy in eV (None when the structure was stopped by an error).
        forces: (N, 3) raw model forces in eV/Å at the final positions, fixed atoms included
            (None on error).
        converged: whether the largest force on a free atom (and, in a cell relaxation, the
            largest generalised force on the cell) is at most ``fmax``.
        steps: optimiser steps taken.
        error: why the structure was stopped, or None.
        trajectory: every evaluated frame (with energy and forces), first to last, when asked.
        stress: (3, 3) stress in eV/Å³ (ASE's sign: positive under tension) at the final
            structure of a cell relaxation; None otherwise.
    """

    index: int
    atoms: Atoms
    energy: float | None
    forces: np.ndarray | None
    converged: bool
    steps: int
    error: str | None = None
    trajectory: list[Atoms] | None = None
    stress: np.ndarray | None = None


def nonfinite_message(
    index: int,
    atoms: Atoms,
    steps: int,
    energy: float,
    forces: np.ndarray,
    stress: np.ndarray | None,
) -> str | None:
    """Why structure ``index`` stops at relaxation step ``steps`` (a non-finite model output).

    None when the energy, the forces and the stress (if any) are all finite.
    """
    bad_atoms = np.flatnonzero(~np.isfinite(forces).all(axis=1))
    bad_stress = stress is not None and not np.isfinite(stress).all()
    if np.isfinite(energy) and len(bad_atoms) == 0 and not bad_stress:
        return None
    what = [] if np.isfinite(energy) else [f"energy {energy}"]
    if len(bad_atoms):
        what.append(f"non-finite forces on {len(bad_atoms)} atom(s) (first: atom {bad_atoms[0]})")
    if bad_stress:
        what.append("a non-finite stress")
    return (
        f"{structure_label(index, atoms, formula=True)}: the model returned "
        f"{' and '.join(what)} at relaxation step "
        f"{steps}. The structure may be far outside the training data (check its geometry "
        "and elements) or the model is broken (check it with Potential.predict)."
    )


def final_calculator(
    atoms: Atoms, energy: float, forces: np.ndarray, stress: np.ndarray | None
) -> SinglePointCalculator:
    """Final values for ``atoms``; the stress in ASE's Voigt order (xx yy zz yz xz xy)."""
    results: dict = {"energy": energy, "forces": forces.copy()}
    if stress is not None:
        results["stress"] = stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
    return SinglePointCalculator(atoms, **results)


def labelled_frame(
    atoms: Atoms, energy: float, forces: np.ndarray, stress: np.ndarray | None
) -> Atoms:
    """A copy of ``atoms`` carrying its model values (a trajectory frame)."""
    frame = atoms.copy()
    frame.calc = final_calculator(frame, energy, forces, stress)
    return frame
