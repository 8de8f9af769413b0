"""Bad input is rejected with a message naming the structure, the field, the value and a fix."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms

from eqv2.graph import batch_structures, validate_structure


def _bulk(name: str | None = "cu111") -> Atoms:
    atoms = Atoms(
        "Cu2",
        positions=[[0.0, 0.0, 0.0], [1.8, 1.8, 0.0]],
        cell=np.eye(3) * 3.6,
        pbc=True,
    )
    if name is not None:
        atoms.info["name"] = name
    return atoms


def _expect(atoms: Atoms, *fragments: str, **kwargs) -> None:
    with pytest.raises(ValueError) as info:
        validate_structure(atoms, 12, **kwargs)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


def test_valid_structures_pass():
    validate_structure(_bulk(), 0, max_atomic_number=90)
    validate_structure(Atoms("H2O", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]]), 1)


def test_empty_structure():
    empty = Atoms(cell=np.eye(3), pbc=True, info={"name": "nothing"})
    _expect(empty, "Structure 12 ('nothing')", "no atoms")


def test_atomic_number_out_of_range():
    atoms = _bulk()
    atoms.numbers[1] = 0
    _expect(
        atoms,
        "Structure 12 ('cu111') has an atom with Z=0 at index 1; "
        "atomic numbers must be in [1, 90]. Fix the species",
        max_atomic_number=90,
    )
    atoms.numbers[1] = 92
    _expect(atoms, "Structure 12 ('cu111')", "Z=92 at index 1", "[1, 90]", max_atomic_number=90)
    validate_structure(atoms, 12)  # no upper bound without a model


def test_non_finite_positions_and_cell():
    atoms = _bulk(name=None)
    atoms.positions[1, 2] = np.nan
    _expect(atoms, "Structure 12 has a non-finite position", "atom index 1", "nan")
    atoms = _bulk()
    atoms.cell.array[2, 0] = np.inf
    _expect(atoms, "Structure 12 ('cu111')", "non-finite cell", "cell[2, 0]=inf")


def test_degenerate_periodic_cell():
    atoms = _bulk()
    atoms.cell.array[2] = 0.0
    _expect(atoms, "Structure 12 ('cu111')", "periodic along c", "zero length", "pbc=False")
    atoms.pbc = [True, True, False]
    validate_structure(atoms, 12)  # a slab needs no vacuum vector
    atoms = _bulk()
    atoms.cell.array[2] = atoms.cell.array[0] + atoms.cell.array[1]
    _expect(atoms, "Structure 12 ('cu111')", "singular cell", "linearly dependent")


def test_atoms_too_close():
    atoms = _bulk()
    atoms.positions[1] = [0.0, 0.0, 5e-4]
    _expect(atoms, "Structure 12 ('cu111')", "atoms 0 and 1", "0.0005 Å apart", "0.001 Å")


def test_atoms_too_close_through_a_periodic_image():
    atoms = _bulk()
    atoms.positions[1] = [3.6 - 2e-4, 0.0, 0.0]  # 2e-4 Å from atom 0's image across x
    _expect(atoms, "atoms", "periodic image shifted by", "0.0002 Å apart")
    atoms.pbc = False  # without periodicity they are 3.6 Å apart
    validate_structure(atoms, 12)


def test_batch_names_the_failing_structure():
    bad = _bulk("slab-7")
    bad.numbers[0] = 200
    with pytest.raises(ValueError, match=r"Structure 1 \('slab-7'\) has an atom with Z=200"):
        batch_structures([_bulk(), bad], cutoff=5.0, max_atomic_number=90)
    close = _bulk("dup")
    close.positions[1] = close.positions[0]
    with pytest.raises(ValueError, match=r"Structure 2 \('dup'\) has atoms 0 and 1"):
        batch_structures([_bulk(), _bulk(), close], cutoff=5.0)
    with pytest.raises(ValueError, match="Structure 0 is a str, not an eqv2 Structure"):
        batch_structures(["POSCAR"], cutoff=5.0)
    with pytest.raises(ValueError, match="no structures"):
        batch_structures([], cutoff=5.0)


def test_structure_label_with_name_and_formula():
    from eqv2.graph import structure_label

    atoms = Atoms("Cu2O", positions=[[0, 0, 0], [2, 0, 0], [0, 2, 0]])
    assert structure_label(3) == "Structure 3"
    assert structure_label(None, atoms) == "Structure"
    assert structure_label(3, atoms, formula=True) == "Structure 3 (Cu2O)"
    atoms.info["name"] = "slab"
    assert structure_label(3, atoms) == "Structure 3 ('slab')"
    assert structure_label(3, atoms, formula=True) == "Structure 3 ('slab', Cu2O)"
