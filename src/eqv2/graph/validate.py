"""Input validation at the structure → graph boundary.

Every message names the structure (its index and ``atoms.info['name']`` when present), the field
and the offending value, and says how to fix it. Checks are vectorised; the close-contact check
reuses the neighbour search so it costs nothing extra when a graph is being built anyway.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms

from eqv2.graph.cells import check_cell
from eqv2.graph.neighbors import PairList, as_arrays, find_pairs
from eqv2.graph.structure import Structure

__all__ = ["validate_structure", "structure_label", "MIN_ATOM_DISTANCE"]

# Two atoms (or an atom and a periodic image) closer than this are almost surely a duplicate.
MIN_ATOM_DISTANCE = 1e-3


def structure_label(
    index: int | None, atoms: Atoms | Structure | None = None, formula: bool = False
) -> str:
    """``"Structure 12 ('cu111')"``: how messages refer to a structure.

    With ``formula=True`` the chemical formula follows the name: ``Structure 3 ('cu', Cu12O)``
    (for messages about a structure whose input may have been changed, e.g. a relaxation).
    """
    label = "Structure" if index is None else f"Structure {index}"
    if not isinstance(atoms, (Atoms, Structure)):
        return label
    name = atoms.info.get("name")
    parts = [repr(name)] if name is not None else []
    if formula:
        parts.append(
            atoms.formula() if isinstance(atoms, Structure) else atoms.get_chemical_formula()
        )
    return f"{label} ({', '.join(parts)})" if parts else label


def check_fields(
    numbers: np.ndarray,
    positions: np.ndarray,
    cell: np.ndarray,
    pbc: np.ndarray,
    label: str,
    max_atomic_number: int | None = None,
) -> None:
    """Cheap per-field checks: non-empty, valid Z, finite positions, usable cell."""
    if len(numbers) == 0:
        raise ValueError(f"{label} has no atoms. Remove it from the input or add its atoms.")
    upper = max_atomic_number if max_atomic_number is not None else np.iinfo(np.int64).max
    bad = np.flatnonzero((numbers < 1) | (numbers > upper))
    if len(bad):
        i = int(bad[0])
        allowed = f"[1, {max_atomic_number}]" if max_atomic_number is not None else ">= 1"
        more = f" ({len(bad)} atoms in all)" if len(bad) > 1 else ""
        raise ValueError(
            f"{label} has an atom with Z={int(numbers[i])} at index {i}{more}; atomic numbers "
            f"must be in {allowed}. Fix the species or use a model trained on this element."
        )
    bad = np.flatnonzero(~np.isfinite(positions).all(axis=1))
    if len(bad):
        i = int(bad[0])
        raise ValueError(
            f"{label} has a non-finite position {positions[i].tolist()} at atom index {i}. "
            "Fix the coordinates (a diverged relaxation or MD run often causes this)."
        )
    check_cell(cell, pbc, label)


def check_contacts(pairs: PairList, label: str, min_distance: float = MIN_ATOM_DISTANCE) -> None:
    """Reject two atoms (or an atom and any periodic image) closer than ``min_distance`` Å."""
    close = np.flatnonzero(pairs.dist_sq < min_distance * min_distance)
    if len(close) == 0:
        return
    k = close[np.argmin(pairs.dist_sq[close])]
    i, j, shift = int(pairs.target[k]), int(pairs.source[k]), pairs.offsets[k].tolist()
    where = "" if not any(shift) else f" (periodic image shifted by {shift} cells)"
    raise ValueError(
        f"{label} has atoms {i} and {j}{where} only {np.sqrt(pairs.dist_sq[k]):.3g} Å apart; "
        f"positions must be at least {min_distance:g} Å apart. Remove the duplicated atom or "
        "wrap positions with a consistent cell."
    )


def validate_structure(
    atoms: Atoms,
    index: int | None = None,
    max_atomic_number: int | None = None,
    min_distance: float = MIN_ATOM_DISTANCE,
) -> None:
    """Raise ``ValueError`` if ``atoms`` cannot be turned into a graph.

    Checks: at least one atom; atomic numbers in ``[1, max_atomic_number]``; finite positions
    and cell; cell vectors non-zero and linearly independent on every periodic axis; no two
    atoms (periodic images included) closer than ``min_distance`` Å.

    Args:
        atoms: the structure.
        index: its position in the user's input, used in messages.
        max_atomic_number: largest element the model knows (``None``: no upper bound).
        min_distance: smallest allowed interatomic distance in Å.
    """
    label = structure_label(index, atoms)
    positions, cell, pbc = as_arrays(atoms.positions, atoms.cell.array, atoms.pbc)
    check_fields(atoms.numbers, positions, cell, pbc, label, max_atomic_number)
    check_contacts(find_pairs(positions, cell, pbc, min_distance), label, min_distance)
